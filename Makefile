# One entry point for developers and CI. `make test` works on a fresh machine: it creates .venv.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# aws-sam-translator pins its own pydantic, so the SAM transform check runs in its own venv.
# It lives under .venv/ because `sam build` (aws-lambda-builders) skips .venv when it copies
# CodeUri: . into each function's package.
SAM_TRANSLATOR_VERSION ?= 1.115.0
TRANSLATOR_VENV  ?= .venv/translator
TRANSLATOR_STAMP := $(TRANSLATOR_VENV)/.installed-$(SAM_TRANSLATOR_VERSION)

# Lambda packages. `sam build` (BuildMethod: makefile in template.yaml) runs build-<LogicalId>
# with ARTIFACTS_DIR; infra/package.py copies the handler's kit modules and pip-installs
# requirements.txt as CPython 3.12 / arm64 wheels, so no local python3.12 is needed to build.
FUNCTIONS := ActorHostFunction ApiFunction PoolManagerFunction
SAM_VENV  ?= $(VENV)/sam
SAM       ?= $(shell command -v sam 2>/dev/null || echo $(SAM_VENV)/bin/sam)
PYTHON312 ?= python3.12

.PHONY: test demo local lint typecheck pytest bench template-check clean build package-check \
	$(addprefix build-,$(FUNCTIONS))

$(STAMP): pyproject.toml endpoint/pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]' -e ./endpoint
	touch $(STAMP)

$(TRANSLATOR_STAMP):
	rm -rf $(TRANSLATOR_VENV)
	$(PYTHON) -m venv $(TRANSLATOR_VENV)
	$(TRANSLATOR_VENV)/bin/pip install --quiet --disable-pip-version-check 'aws-sam-translator==$(SAM_TRANSLATOR_VERSION)'
	touch $(TRANSLATOR_STAMP)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check core adapters functions infra bench endpoint examples

typecheck: $(STAMP)
	$(BIN)/mypy

pytest: $(STAMP) $(TRANSLATOR_STAMP)
	RUNNER_KIT_TRANSLATOR_PYTHON=$(TRANSLATOR_VENV)/bin/python $(BIN)/pytest

template-check: $(STAMP) $(TRANSLATOR_STAMP)
	$(BIN)/python -m infra.template_check
	RUNNER_KIT_TRANSLATOR_PYTHON=$(TRANSLATOR_VENV)/bin/python $(BIN)/pytest -q tests/integration/test_template_checks.py

test: lint typecheck pytest

demo: $(STAMP)
	$(BIN)/runner-kit demo

# make local PORT=9000 [DEV_PORT=9100]: the API's port; the dev runner's defaults to PORT + 1.
PORT ?= 8080
local: $(STAMP)
	$(BIN)/runner-kit local --port $(PORT)$(if $(DEV_PORT), --dev-port $(DEV_PORT))

bench: $(STAMP)
	for b in bench/*.py; do $(BIN)/python $$b || exit 1; done

$(addprefix build-,$(FUNCTIONS)):
	$(PYTHON) -m infra.package $(@:build-%=%) "$(ARTIFACTS_DIR)" $(if $(BUNDLE_BOTO3),--bundle-boto3)

$(SAM_VENV)/.installed:
	$(PYTHON) -m venv $(SAM_VENV)
	$(SAM_VENV)/bin/pip install --quiet --disable-pip-version-check aws-sam-cli
	touch $@

# `make build`: sam build in the source tree (no copy of .venv). Then, when python3.12 is here,
# the import check of package-check.
build:
	@test -x "$(SAM)" || command -v "$(SAM)" >/dev/null || { \
	  echo "sam not found: install the AWS SAM CLI, or run 'make $(SAM_VENV)/.installed'"; exit 1; }
	SAM_CLI_TELEMETRY=0 $(SAM) build --build-in-source
	@du -sh .aws-sam/build/*Function
	@if command -v $(PYTHON312) >/dev/null; then $(MAKE) --no-print-directory package-check; else \
	  echo "python3.12 not found, package import check skipped. Get it with pyenv" \
	       "(pyenv install 3.12, then make package-check PYTHON312=<its python3.12>)" \
	       "or build and check in SAM's image: sam build --use-container"; fi

# Each package, built for this machine's python3.12, imports its handler from the package alone
# (python3.12 -I -S), and builds deps() with boto3 beside it as the Lambda runtime provides.
package-check:
	@command -v $(PYTHON312) >/dev/null || { echo "$(PYTHON312) not found: pyenv install 3.12," \
	  "or sam build --use-container"; exit 1; }
	rm -rf build/package-check && $(PYTHON312) -m pip install --quiet --disable-pip-version-check \
	  --target build/package-check/runtime 'boto3>=1.34'
	for f in $(FUNCTIONS); do $(PYTHON312) -m infra.package $$f build/package-check/$$f \
	  --host-platform --check $(PYTHON312) --runtime build/package-check/runtime || exit 1; done

clean:
	rm -rf $(VENV) $(TRANSLATOR_VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis .aws-sam build
