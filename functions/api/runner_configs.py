"""Runner-config routes: PUT (with ``***`` keeping stored header values), GET, DELETE, list."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.api_gateway import Router
from pydantic import JsonValue, ValidationError

from core.api_errors import ApiError
from core.models import HEADER_PROBLEMS, REDACTED, PoolKey, RunnerConfig, header_problem
from functions.api import schemas
from functions.api.deps import ApiDeps
from functions.api.routing import (
    DELETED,
    Name,
    NamespaceQuery,
    answer,
    errors,
    no_content,
    ok,
    request_deps,
)

router = Router()  # type: ignore[no-untyped-call]


@router.put(
    "/runner-configs/<namespace>/<runner_name>",
    operation_id="put_runner_config",
    summary="Create or replace a runner config",
    tags=["runner-configs"],
    responses={200: ok(schemas.RunnerConfigView), **errors(400, 409, 413, 415, 422)},
)
def put_runner_config(
    namespace: Name, runner_name: Name, body: schemas.RunnerConfigIn
) -> Response[Any]:
    deps = request_deps(router)
    pool = PoolKey(namespace=namespace, runner_name=runner_name)
    _check_headers(body.headers)
    lifespan_cap = deps.settings.max_request_lifespan_s
    lifespan = body.request_lifespan or min(schemas.DEFAULT_REQUEST_LIFESPAN_S, lifespan_cap)
    # A first pass validates everything but the kept values (the stored config is read below).
    headers = _split_headers(body.headers, None, keep_missing=True)
    config = _runner_config(deps, pool, body, headers, lifespan)
    if config.request_lifespan > lifespan_cap:
        raise ApiError(
            "runner_config_invalid",
            f"request_lifespan {config.request_lifespan} s is more than the actor host can hold "
            f"({lifespan_cap} s: its timeout minus the deadline margin)",
            metadata={"max_request_lifespan": lifespan_cap},
        )
    refusal = deps.check_url(config.url, config.allow_private_network)
    if refusal is not None:
        raise ApiError(
            "runner_config_url_blocked",
            refusal,
            metadata={"allow_private_network": config.allow_private_network},
        )
    # One read serves both the retire decision and the first "***" merge.
    found = deps.runner_configs.get_with_revision(pool)
    if found is None:
        # A new (or re-created) pool starts healthy, whatever a deleted one left behind.
        deps.tracker.retire(pool)
    if any(value == REDACTED for value in body.headers.values()):
        config = _put_keeping_stored_values(deps, pool, body, lifespan, found)
    else:
        _put(deps, config)
    # A saved config is a user's fix: probe the pool on the next tick, not after the backoff.
    deps.probes.reset(pool)
    return answer(200, schemas.RunnerConfigView.of(config, deps.tracker.active_error(pool)))


KEEP_RETRIES = 5
"""How often a ``"***"`` PUT re-reads and retries after another writer won the race."""

_Headers = tuple[dict[str, str], dict[str, str]]
"""``(values, secret ARNs)`` by header name."""


def _split_headers(
    headers: dict[str, str | schemas.SecretRef],
    existing: RunnerConfig | None,
    *,
    keep_missing: bool = False,
) -> _Headers:
    """Plain values and Secrets Manager references; ``***`` takes what ``existing`` has (422
    if it has none, unless ``keep_missing``)."""
    kept = existing.header_values() if existing is not None else {}
    kept_refs = existing.header_secrets if existing is not None else {}
    values: dict[str, str] = {}
    refs: dict[str, str] = {}
    for name, value in headers.items():
        if isinstance(value, schemas.SecretRef):
            refs[name] = value.secret_arn
        elif value == REDACTED and name in kept_refs:
            refs[name] = kept_refs[name]
        elif value == REDACTED and name in kept:
            values[name] = kept[name]
        elif value == REDACTED and not keep_missing:
            # A copied GET answer for a new pool or header: sending "***" would never work.
            raise ApiError(
                "runner_config_header_invalid",
                f"header {name!r} is {REDACTED!r} but the pool has no stored value to keep",
                metadata={"header": name, "problem": "nothing_to_keep"},
            )
        else:
            values[name] = value
    return values, refs


def _put_keeping_stored_values(
    deps: ApiDeps,
    pool: PoolKey,
    body: schemas.RunnerConfigIn,
    lifespan: int,
    found: tuple[RunnerConfig, str] | None,
) -> RunnerConfig:
    """Merge the kept values of ``found`` (the caller's read), write only if nobody wrote since
    the read (no reverts); after a lost race, read again."""
    for attempt in range(KEEP_RETRIES):
        if attempt:
            found = deps.runner_configs.get_with_revision(pool)
        existing, revision = found if found is not None else (None, None)
        headers = _split_headers(body.headers, existing)
        config = _runner_config(deps, pool, body, headers, lifespan)
        if _put(deps, config, revision=revision, conditional=True):
            return config
    raise ApiError(
        "runner_config_conflict",
        f"the runner config of {pool.id} kept changing while it was saved; read it and retry",
        metadata={"pool": pool.id, "attempts": KEEP_RETRIES},
    )


def _runner_config(
    deps: ApiDeps,
    pool: PoolKey,
    body: schemas.RunnerConfigIn,
    headers: _Headers,
    lifespan: int,
) -> RunnerConfig:
    values, refs = headers
    try:
        return RunnerConfig(
            namespace=pool.namespace,
            runner_name=pool.runner_name,
            **body.model_dump(exclude={"headers", "request_lifespan"}),
            request_lifespan=lifespan,
            headers=values,  # pydantic turns each str into a SecretStr
            header_secrets=refs,
            updated_at=deps.clock.now(),
        )
    except ValidationError as exc:
        raise ApiError(
            "runner_config_invalid",
            "; ".join(str(e["msg"]) for e in exc.errors()),
            metadata={"errors": [_error_entry(e) for e in exc.errors()]},
        ) from None


MAX_HEADER_BYTES = 32 * 1024
"""All configured headers together (names and values): servers refuse larger header sections
(8-64 KB is common), and it keeps the stored config far below DynamoDB's 400 KB item."""


def _check_headers(headers: dict[str, str | schemas.SecretRef]) -> None:
    """Refuse a bad header by name, never echoing its value (it is a secret)."""
    for name, value in headers.items():
        problem = header_problem(name, value if isinstance(value, str) else "")
        if problem is not None:
            raise ApiError(
                "runner_config_header_invalid",
                f"header {name!r} {HEADER_PROBLEMS[problem]}",
                metadata={"header": name, "problem": problem},
            )
    total = sum(
        len(n.encode()) + len(v.encode() if isinstance(v, str) else v.secret_arn.encode())
        for n, v in headers.items()
    )
    if total > MAX_HEADER_BYTES:
        raise ApiError(
            "runner_config_header_invalid",
            f"the headers take {total} bytes together; at most {MAX_HEADER_BYTES}",
            metadata={"problem": "too_large", "size": total, "limit": MAX_HEADER_BYTES},
        )


def _put(
    deps: ApiDeps, config: RunnerConfig, *, revision: str | None = None, conditional: bool = False
) -> bool:
    """Write ``config`` (if ``conditional``: only over ``revision``); 413 if it cannot fit."""
    from adapters.dynamodb.runner_configs import ItemTooLargeError

    try:
        if conditional:
            return deps.runner_configs.put_if(config, revision)
        deps.runner_configs.put(config)
        return True
    except ItemTooLargeError as exc:
        raise ApiError(
            "item_too_large",
            f"the runner config would take {exc.size} bytes in DynamoDB; at most {exc.limit}",
            metadata={"size": exc.size, "limit": exc.limit},
        ) from None


@router.get(
    "/runner-configs/<namespace>/<runner_name>",
    operation_id="get_runner_config",
    summary="Get a runner config with its pool's active error",
    tags=["runner-configs"],
    responses={200: ok(schemas.RunnerConfigView), **errors(404, 422)},
)
def get_runner_config(namespace: Name, runner_name: Name) -> Response[Any]:
    deps = request_deps(router)
    pool = PoolKey(namespace=namespace, runner_name=runner_name)
    config = deps.runner_configs.get(pool)
    if config is None:
        raise _not_found(pool)
    return answer(200, schemas.RunnerConfigView.of(config, deps.tracker.active_error(pool)))


@router.delete(
    "/runner-configs/<namespace>/<runner_name>",
    operation_id="delete_runner_config",
    summary="Delete a runner config (its pool's tracker error and probe schedule go too)",
    tags=["runner-configs"],
    responses={204: DELETED, **errors(404, 422)},
)
def delete_runner_config(namespace: Name, runner_name: Name) -> Response[Any]:
    deps = request_deps(router)
    pool = PoolKey(namespace=namespace, runner_name=runner_name)
    if not deps.runner_configs.delete(pool):
        raise _not_found(pool)
    # Retire what the pool's past left: its tracker error and its probe schedule.
    deps.tracker.retire(pool)
    deps.probes.reset(pool)
    return no_content()


@router.get(
    "/runner-configs",
    operation_id="list_runner_configs",
    summary="List a namespace's runner configs, each with its pool's active error",
    tags=["runner-configs"],
    responses={200: ok(schemas.RunnerConfigList), **errors(422)},
)
def list_runner_configs(
    namespace: NamespaceQuery,
) -> Response[Any]:
    deps = request_deps(router)
    configs = deps.runner_configs.list(namespace)
    statuses = deps.tracker.active_errors([c.pool for c in configs]) if configs else {}
    views = [schemas.RunnerConfigView.of(c, statuses.get(c.pool)) for c in configs]
    return answer(200, schemas.RunnerConfigList(runner_configs=views))


def _not_found(pool: PoolKey) -> ApiError:
    return ApiError(
        "runner_config_not_found", f"no runner config for {pool.id}", metadata={"pool": pool.id}
    )


def _error_entry(error: Any) -> dict[str, JsonValue]:
    return {"loc": [str(part) for part in error.get("loc", ())], "msg": str(error.get("msg", ""))}
