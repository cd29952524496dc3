"""``PoolErrorsTable`` (hash ``pool_id``): one item per pool, one conditional write per change.

Item (attributes besides the key; see docs/tracker.md):

    version     N  +1 on every write (never reset; the item is never deleted)
    successes   N  consecutive successes since the latest failure
    threshold   N  successes that end the episode (the policy of the latest failure)
    error       S  the latest error's wire JSON
    error_code  S  its code (for the console and filters)
    first_seen  S  the failure that opened the episode (``items.format_time``, as every time)
    last_seen   S  the latest failure
    count       N  failures in the episode
    updated_at  S  the latest write

The pool has an active error exactly when ``successes < threshold``. A clear is therefore not a
separate kind of write: the success that brings the counter to the threshold ends the episode,
and nothing is ever removed. So every success is the same ``UpdateItem``
(``successes + 1`` if ``successes < threshold``) whatever the counter is: concurrent successes
never conflict with each other, a success while healthy fails its condition and writes nothing,
and a clear can never erase an error that arrived in between (that error reset the counter).

A failure either continues the active episode (condition ``successes < threshold``: bump
``count``) or opens a new one (the complement: new ``first_seen``, ``count = 1``). The store picks
the branch from the caller's hint; if the condition fails, DynamoDB hands back the current item
(``ReturnValuesOnConditionCheckFailure=ALL_OLD``) and the other branch is sent. Only failures
that race with the start or end of an episode need that second request.
"""

from __future__ import annotations

import json
import logging
import random
import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any, Final

from adapters.aws import CONDITIONAL_CHECK_FAILED, LazyClient, error_code
from core.errors import OtherPoolError, decode_pool_error
from core.exceptions import StoreCommitFailedError, StoreReadFailedError
from core.hysteresis import ActiveError, Failure, HysteresisPolicy, Outcome, PoolState
from core.models import PoolKey
from core.policy import backoff_s
from core.ports import ApplyResult
from core.times import format_time, parse_time

logger = logging.getLogger(__name__)

UNDECODABLE: Final = "record_undecodable"
"""The stable code a record that does not decode is logged and shown under."""

BATCH_GET_LIMIT: Final = 100
"""BatchGetItem takes at most 100 keys per request."""

UNPROCESSED_BACKOFF_BASE_S: Final = 0.025
UNPROCESSED_BACKOFF_MAX_S: Final = 1.0
"""Pauses before asking again for ``UnprocessedKeys`` (throttled reads: short, capped)."""

ACTIVE: Final = "#s < #t"
"""Condition: an episode is active (false on a missing item: comparisons with a missing
attribute are false)."""
HEALTHY: Final = "attribute_not_exists(#s) OR #s >= #t"
"""Condition: the exact complement of ``ACTIVE``."""

SUCCESS_UPDATE: Final = "SET #v = #v + :one, #s = #s + :one, #u = :now"
CONTINUE_UPDATE: Final = (
    "SET #v = #v + :one, #s = :zero, #t = :t, #e = :err, #ec = :code,"
    " #l = :now, #n = #n + :one, #u = :now"
)
OPEN_UPDATE: Final = (
    "SET #v = if_not_exists(#v, :zero) + :one, #s = :zero, #t = :t, #e = :err, #ec = :code,"
    " #f = :now, #l = :now, #n = :one, #u = :now"
)

_NAMES: Final = {
    "#v": "version",
    "#s": "successes",
    "#t": "threshold",
    "#e": "error",
    "#ec": "error_code",
    "#f": "first_seen",
    "#l": "last_seen",
    "#n": "count",
    "#u": "updated_at",
}


def _names(*placeholders: str) -> dict[str, str]:
    # DynamoDB rejects names that the expressions do not use.
    return {p: _NAMES[p] for p in placeholders}


def state_from_item(item: dict[str, Any] | None) -> PoolState:
    """A low-level DynamoDB item (``{"attr": {"N": "1"}}``) -> ``PoolState``.

    An item that does not decode is isolated, never raised: the pool shows the active error
    ``record_undecodable`` (logged under that code), so the pool manager probes it and the next
    real outcome overwrites it, while every other pool of a round or listing goes on.
    """
    if not item:
        return PoolState()
    try:
        return _decode_state(item)
    except (ValueError, KeyError, TypeError) as exc:
        return _undecodable(item, exc)


def _undecodable(item: dict[str, Any], exc: Exception) -> PoolState:
    pool_id = item.get("pool_id", {}).get("S", "?") if isinstance(item, dict) else "?"
    logger.warning(
        "pool error item does not decode; isolated",
        extra={"code": UNDECODABLE, "pool": pool_id, "error": str(exc)[:200]},
    )

    def number(name: str, default: int) -> int:
        try:
            return int(item[name]["N"])
        except (KeyError, TypeError, ValueError):
            return default

    def when(name: str) -> datetime:
        try:
            return parse_time(item[name]["S"])
        except (KeyError, TypeError, ValueError):
            return datetime(1970, 1, 1, tzinfo=UTC)

    raw = item.get("error", {}).get("S", "") if isinstance(item.get("error"), dict) else ""
    error = OtherPoolError(
        data={
            "code": UNDECODABLE,
            "message": f"pool {pool_id}: the stored error does not decode",
            "raw": str(raw)[:512],
        }
    )
    active = ActiveError(
        error=error,
        first_seen=when("first_seen"),
        last_seen=when("last_seen"),
        count=number("count", 1),
    )
    return PoolState(active_error=active, consecutive_successes=0, version=number("version", 0))


def _decode_state(item: dict[str, Any]) -> PoolState:
    version = int(item["version"]["N"])
    successes = int(item["successes"]["N"])
    if successes >= int(item["threshold"]["N"]):
        return PoolState(active_error=None, consecutive_successes=0, version=version)
    active = ActiveError(
        error=decode_pool_error(item["error"]["S"]),
        first_seen=parse_time(item["first_seen"]["S"]),
        last_seen=parse_time(item["last_seen"]["S"]),
        count=int(item["count"]["N"]),
    )
    return PoolState(active_error=active, consecutive_successes=successes, version=version)


def aws_error_code(exc: BaseException) -> str:
    """``Error.Code`` of a botocore ``ClientError``; the class name for other botocore errors."""
    return error_code(exc) or type(exc).__name__


def _botocore_errors() -> tuple[type[Exception], ...]:
    from botocore.exceptions import BotoCoreError, ClientError

    return (ClientError, BotoCoreError)


class DynamoDBPoolErrorStore(LazyClient):
    """The durable store. Thread-safe; the boto3 client is created on first use."""

    durable = True

    def __init__(
        self,
        table_name: str,
        client: Any = None,
        *,
        max_attempts: int = 25,
        sleep: Callable[[float], None] = time.sleep,
        rand: Callable[[], float] = random.random,
    ) -> None:
        self.table_name = table_name
        self.max_attempts = max_attempts
        self._client = client
        self._sleep = sleep
        self._rand = rand

    def _new_client(self) -> Any:
        import boto3
        from botocore.config import Config

        # Throttling and 5xx are retried by botocore (standard mode, by Error.Code).
        config = Config(retries={"mode": "standard", "max_attempts": 5})
        return boto3.client(self.service, config=config)

    @staticmethod
    def _key(pool: PoolKey) -> dict[str, Any]:
        return {"pool_id": {"S": pool.id}}

    # --- writes ------------------------------------------------------------------------

    def apply(
        self,
        pool: PoolKey,
        outcome: Outcome,
        *,
        now: datetime,
        policy: HysteresisPolicy,
        hint: PoolState | None = None,
    ) -> ApplyResult:
        now_s = format_time(now)
        if not isinstance(outcome, Failure):
            # Not written means the condition found the pool healthy: nothing to change.
            return self._update(pool, self._success_request(now_s))
        active = hint is not None and not hint.healthy  # unknown: most pools are healthy
        for _ in range(self.max_attempts):
            result = self._update(pool, self._failure_request(outcome, policy, now_s, active))
            if result.written:
                return result
            active = not result.state.healthy  # the item as the condition saw it
        raise StoreCommitFailedError(
            f"pool {pool.id}: failure not applied after {self.max_attempts} conflicting attempts"
        )

    def retire(self, pool: PoolKey, *, now: datetime) -> None:
        """End the pool's episode for good (its config was deleted): healthy, no error kept.

        The item stays (``version`` only grows, so no cached view can look newer than it).
        """
        try:
            self.client.update_item(
                TableName=self.table_name,
                Key=self._key(pool),
                UpdateExpression=(
                    "SET #v = if_not_exists(#v, :zero) + :one, #s = :zero, #t = :zero, #u = :now "
                    "REMOVE #e, #ec, #f, #l, #n"
                ),
                ConditionExpression="attribute_exists(pool_id)",
                ExpressionAttributeNames=_names(
                    "#v", "#s", "#t", "#u", "#e", "#ec", "#f", "#l", "#n"
                ),
                ExpressionAttributeValues={
                    ":zero": {"N": "0"},
                    ":one": {"N": "1"},
                    ":now": {"S": format_time(now)},
                },
            )
        except _botocore_errors() as exc:
            code = aws_error_code(exc)
            if code != CONDITIONAL_CHECK_FAILED:  # no item: nothing to retire
                raise StoreCommitFailedError(f"pool {pool.id}: retire failed: {code}") from exc

    @staticmethod
    def _success_request(now_s: str) -> dict[str, Any]:
        return {
            "UpdateExpression": SUCCESS_UPDATE,
            "ConditionExpression": ACTIVE,
            "ExpressionAttributeNames": _names("#v", "#s", "#t", "#u"),
            "ExpressionAttributeValues": {":one": {"N": "1"}, ":now": {"S": now_s}},
        }

    @staticmethod
    def _failure_request(
        outcome: Failure, policy: HysteresisPolicy, now_s: str, active: bool
    ) -> dict[str, Any]:
        error_json = json.dumps(outcome.error.to_json(), ensure_ascii=False, separators=(",", ":"))
        names = ["#v", "#s", "#t", "#e", "#ec", "#l", "#n", "#u"]
        if not active:
            names.append("#f")
        return {
            "UpdateExpression": CONTINUE_UPDATE if active else OPEN_UPDATE,
            "ConditionExpression": ACTIVE if active else HEALTHY,
            "ExpressionAttributeNames": _names(*names),
            "ExpressionAttributeValues": {
                ":zero": {"N": "0"},
                ":one": {"N": "1"},
                ":t": {"N": str(policy.success_threshold)},
                ":err": {"S": error_json},
                ":code": {"S": outcome.error.code},
                ":now": {"S": now_s},
            },
        }

    def _update(self, pool: PoolKey, request: dict[str, Any]) -> ApplyResult:
        """One ``UpdateItem``: the post-image, or (not written) the item its condition saw."""
        errors = _botocore_errors()
        try:
            resp = self.client.update_item(
                TableName=self.table_name,
                Key=self._key(pool),
                ReturnValues="ALL_NEW",
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
                **request,
            )
        except errors as exc:
            code = aws_error_code(exc)
            if code == CONDITIONAL_CHECK_FAILED:
                item = getattr(exc, "response", {}).get("Item")
                return ApplyResult(state=state_from_item(item), written=False)
            raise StoreCommitFailedError(f"pool {pool.id}: UpdateItem failed: {code}") from exc
        return ApplyResult(state=state_from_item(resp.get("Attributes")), written=True)

    # --- reads -------------------------------------------------------------------------

    def get(self, pool: PoolKey) -> PoolState:
        try:
            resp = self.client.get_item(
                TableName=self.table_name,
                Key=self._key(pool),
                ConsistentRead=True,
            )
        except _botocore_errors() as exc:
            code = aws_error_code(exc)
            raise StoreReadFailedError(f"pool {pool.id}: GetItem failed: {code}") from exc
        return state_from_item(resp.get("Item"))

    def get_many(self, pools: Iterable[PoolKey]) -> dict[PoolKey, PoolState]:
        unique = list(dict.fromkeys(pools))
        by_id = {pool.id: pool for pool in unique}
        found: dict[PoolKey, PoolState] = {}
        for start in range(0, len(unique), BATCH_GET_LIMIT):
            chunk = unique[start : start + BATCH_GET_LIMIT]
            for item in self._batch_get([self._key(pool) for pool in chunk]):
                found[by_id[item["pool_id"]["S"]]] = state_from_item(item)
        return {pool: found.get(pool, PoolState()) for pool in unique}

    def _batch_get(self, keys: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """One ``BatchGetItem``, then its ``UnprocessedKeys`` again with jittered backoff."""
        items: list[dict[str, Any]] = []
        request: dict[str, Any] = {self.table_name: {"Keys": keys, "ConsistentRead": True}}
        for attempt in range(1, self.max_attempts + 1):
            try:
                resp = self.client.batch_get_item(RequestItems=request)
            except _botocore_errors() as exc:
                code = aws_error_code(exc)
                raise StoreReadFailedError(f"BatchGetItem failed: {code}") from exc
            items.extend(resp.get("Responses", {}).get(self.table_name, []))
            request = resp.get("UnprocessedKeys") or {}
            if not request:
                return items
            if attempt == self.max_attempts:
                break  # no pause before giving up
            self._sleep(
                backoff_s(
                    attempt,
                    base_s=UNPROCESSED_BACKOFF_BASE_S,
                    max_s=UNPROCESSED_BACKOFF_MAX_S,
                    rand=self._rand(),
                )
            )
        raise StoreReadFailedError(
            f"BatchGetItem left keys unprocessed after {self.max_attempts} attempts"
        )
