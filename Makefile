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

.PHONY: test demo local lint typecheck pytest bench template-check clean

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

clean:
	rm -rf $(VENV) $(TRANSLATOR_VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis
