"""Actors in ``ActorsTable`` (hash ``actor_id``, GSI ``by_namespace``).

Three independent writers never get in each other's way:
- the state commit (``state``, ``state_version``; conditional on ``state_version``; see
  ``commit.py``);
- ``set_failure_reason`` (``failure_reason``/``failure_code``; never bumps ``state_version``);
- ``append_errors`` (``extra``; optimistic on ``extra_rev``; never bumps ``state_version``).
Each update names only its own attributes, so telemetry can never make a state commit fail.
"""

from __future__ import annotations

import builtins
import json
import logging
import random
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import replace
from typing import Any, Final

from adapters.aws import LazyClient
from adapters.clock import SYSTEM_CLOCK
from adapters.dynamodb.expressions import (
    Cond,
    Exists,
    Item,
    Op,
    Query,
    Write,
    delete_request,
    eq,
    missing,
    put_request,
    unless_refused,
    update_request,
)
from adapters.dynamodb.items import (
    decode_cursor,
    decode_fields,
    encode_cursor,
    encode_fields,
    json_attr,
    number,
    with_timestamps,
)
from core.errors import (
    ActorError,
    ActorFailed,
    ActorFailureReason,
    ErrorDecodeError,
    OtherFailureReason,
    RunnerPoolError,
)
from core.events import ErrorEvent
from core.events import append_errors as _append_errors
from core.models import ActorRecord, ActorStatus
from core.policy import backoff_s
from core.ports import ActorExistsError, Clock
from core.times import format_time

APPEND_TRIES: Final = 8
"""``append_errors`` attempts before the telemetry is dropped (never fails an execution)."""
APPEND_BASE_S: Final = 0.005
APPEND_MAX_S: Final = 0.1
UNDECODABLE: Final = "record_undecodable"

logger = logging.getLogger(__name__)

_JSON_FIELDS: Final = (
    "state",
    "extra",
    "failure_reason",
    "last_actor_error",
    "error_policy",
    "start_error",
    "stop_error",
)
_ERROR_FIELDS: Final = ("failure_reason", "last_actor_error", "start_error", "stop_error")
_TIME_FIELDS: Final = ("created_at", "updated_at")
_EXISTS: Final = Exists("actor_id")


def actor_key(actor_id: str) -> Item:
    """The key of an actor item."""
    return {"actor_id": {"S": actor_id}}


def actor_to_item(actor: ActorRecord) -> Item:
    """ActorRecord -> low-level DynamoDB item."""
    item: Item = {
        **actor_key(actor.actor_id),
        "namespace": {"S": actor.namespace},
        "runner_name": {"S": actor.runner_name},
        "state_version": {"N": str(actor.state_version)},
        "status": {"S": actor.status},
        "extra_rev": {"N": "0"},
    }
    if actor.failure_reason is not None:
        item["failure_code"] = {"S": actor.failure_reason.code}
    return encode_fields(
        item, actor, texts=("key",), json_fields=_JSON_FIELDS, time_fields=_TIME_FIELDS
    )


def actor_from_item(item: Item) -> ActorRecord:
    """Low-level DynamoDB item -> ActorRecord."""
    doc: dict[str, Any] = {
        "actor_id": item["actor_id"]["S"],
        "namespace": item["namespace"]["S"],
        "runner_name": item["runner_name"]["S"],
        "state_version": number(item, "state_version"),
        "status": item.get("status", {"S": "active"})["S"],
    }
    decode_fields(doc, item, texts=("key",), json_fields=_JSON_FIELDS, time_fields=_TIME_FIELDS)
    try:
        return ActorRecord.model_validate(doc)
    except ValueError:
        pass
    # One stored error does not decode (written by a bug or a far newer build): isolate it.
    # Drop the error fields that fail on their own and mark the actor with record_undecodable,
    # so the API shows that instead of failing (the rest of a listing goes on).
    base = {k: v for k, v in doc.items() if k not in _ERROR_FIELDS}
    bad: list[str] = []
    for name in _ERROR_FIELDS:
        if name in doc:
            try:
                ActorRecord.model_validate({**base, name: doc[name]})
            except ValueError:
                bad.append(name)
    if not bad:
        raise ErrorDecodeError(f"actor {doc['actor_id']}: item does not decode")
    logger.warning(
        "actor item has an undecodable error field",
        extra={"code": UNDECODABLE, "actor_id": doc["actor_id"], "fields": bad},
    )
    raw = json.dumps(doc[bad[0]])[:512]
    for name in bad:
        doc[name] = None
    if doc.get("failure_reason") is None:
        doc["failure_reason"] = OtherFailureReason(
            data={"code": UNDECODABLE, "message": f"stored {bad[0]} does not decode", "raw": raw}
        )
    return ActorRecord.model_validate(doc)


def listed(items: Iterable[Item]) -> builtins.list[ActorRecord]:
    """The actors among ``items`` that decode; any other is logged and skipped (never a 500)."""
    out: builtins.list[ActorRecord] = []
    for item in items:
        try:
            out.append(actor_from_item(item))
        except (ValueError, KeyError, TypeError):
            logger.warning(
                "actor item does not decode; skipped in a listing",
                extra={"code": UNDECODABLE, "actor_id": item.get("actor_id", {}).get("S")},
            )
    return out


def _error_attr(error: ActorError | RunnerPoolError | None) -> dict[str, Any]:
    return {} if error is None else json_attr(error.to_json())


class DynamoDBActorStore(LazyClient):
    """``ActorsTable`` through the low-level boto3 client."""

    def __init__(
        self,
        table_name: str,
        client: Any = None,
        *,
        clock: Clock = SYSTEM_CLOCK,
        sleep: Callable[[float], None] = time.sleep,
        rand: Callable[[], float] = random.random,
    ) -> None:
        self.table_name, self._client, self._clock = table_name, client, clock
        # append_errors backs off through these (tests pass FakeClock.sleep).
        self._sleep, self._rand = sleep, rand

    def create(self, actor: ActorRecord) -> ActorRecord:
        actor = with_timestamps(actor, self._clock.now())
        if not self._put(actor_to_item(actor), missing("actor_id")):
            raise ActorExistsError(actor.actor_id)
        return actor

    def get(self, actor_id: str) -> ActorRecord | None:
        item = self._get(actor_key(actor_id))
        return actor_from_item(item) if item else None

    def get_many(self, actor_ids: Sequence[str]) -> dict[str, ActorRecord]:
        out: dict[str, ActorRecord] = {}
        ids = list(dict.fromkeys(actor_ids))
        for start in range(0, len(ids), 100):  # BatchGetItem takes at most 100 keys
            request: dict[str, Any] = {
                self.table_name: {
                    "Keys": [actor_key(i) for i in ids[start : start + 100]],
                    "ConsistentRead": True,
                }
            }
            for _ in range(10):
                resp = self.client.batch_get_item(RequestItems=request)
                for item in resp.get("Responses", {}).get(self.table_name, []):
                    actor = actor_from_item(item)
                    out[actor.actor_id] = actor
                request = resp.get("UnprocessedKeys") or {}
                if not request:
                    break
            else:  # throttled ten times: read the rest one by one
                for key in request.get(self.table_name, {}).get("Keys", []):
                    got = self.get(key["actor_id"]["S"])
                    if got is not None:
                        out[got.actor_id] = got
        return out

    def list(
        self, namespace: str, *, limit: int = 100, cursor: str | None = None
    ) -> tuple[builtins.list[ActorRecord], str | None]:
        limit = max(1, min(limit, 1000))
        start = None
        if cursor:
            start = {"namespace": {"S": namespace}, **actor_key(decode_cursor(cursor))}
        query = Query(
            hash=("namespace", namespace),
            range="actor_id",
            keys=("actor_id",),
            index="by_namespace",
            limit=limit,
            start=start,
        )
        actors: builtins.list[ActorRecord] = []
        while True:
            items, last = self._query(query)
            actors.extend(listed(items))
            if len(actors) >= limit or not last:
                break
            query = replace(query, start=last, limit=limit - len(actors))
        actors = actors[:limit]
        more = bool(last) and len(actors) == limit
        return actors, encode_cursor(actors[-1].actor_id) if more and actors else None

    def set_failure_reason(
        self,
        actor_id: str,
        reason: ActorFailureReason | None,
        *,
        only_if_empty: bool = False,
        only_if_code: str | None = None,
    ) -> bool:
        when: Cond = _EXISTS
        if only_if_empty:
            when = when & missing("failure_code")
        if only_if_code is not None:
            when = when & eq("failure_code", {"S": only_if_code})
        if reason is None:
            return self._touch(actor_id, remove=("failure_reason", "failure_code"), when=when)
        fields = {"failure_reason": json_attr(reason.to_json()), "failure_code": {"S": reason.code}}
        return self._touch(actor_id, fields, when=when)

    def append_errors(self, actor_id: str, events: Sequence[ErrorEvent], *, cap: int) -> None:
        if not events:
            return
        for attempt in range(1, APPEND_TRIES + 1):
            item = self._get(actor_key(actor_id))
            if item is None:
                return
            extra = json.loads(item["extra"]["S"]) if "extra" in item else {}
            new_extra = _append_errors(extra if isinstance(extra, dict) else {}, events, cap=cap)
            # Optimistic on extra_rev (or its absence for items written by older code).
            rev = item.get("extra_rev")
            write = Write(
                set={"extra": json_attr(new_extra)},
                add={"extra_rev": 1},
                when=_EXISTS & (eq("extra_rev", rev) if rev else missing("extra_rev")),
            )
            if self._update(actor_key(actor_id), write) is not None:
                return
            if attempt < APPEND_TRIES:
                # Another writer appended in between: back off so a burst of writers spreads.
                delay = backoff_s(
                    attempt, base_s=APPEND_BASE_S, max_s=APPEND_MAX_S, rand=self._rand()
                )
                self._sleep(delay)
        # Telemetry lost a race eight times in a row: drop it rather than fail the execution.

    def set_status(
        self,
        actor_id: str,
        status: ActorStatus,
        *,
        last_actor_error: ActorFailed | None = None,
        stop_error: ActorError | None = None,
    ) -> None:
        fields = {"status": {"S": status}}
        if last_actor_error is not None:
            fields["last_actor_error"] = _error_attr(last_actor_error)
        if stop_error is not None:
            fields["stop_error"] = _error_attr(stop_error)
        remove = ("stop_error",) if stop_error is None and status == "active" else ()
        self._touch(actor_id, fields, remove=remove)

    def set_last_actor_error(self, actor_id: str, error: ActorFailed | None) -> None:
        self._set_error(actor_id, "last_actor_error", error)

    def set_start_error(self, actor_id: str, error: RunnerPoolError | None) -> None:
        self._set_error(actor_id, "start_error", error)

    def clear_on_init(self, actor_id: str) -> None:
        remove = ("start_error", "failure_reason", "failure_code", "last_actor_error")
        self._touch(actor_id, remove=remove)

    def resume(self, actor_id: str) -> bool:
        return self._touch(
            actor_id,
            {"status": {"S": "active"}},
            remove=("stop_error",),
            when=eq("status", {"S": "stopped"}),
        )

    def delete(self, actor_id: str) -> bool:
        return self._delete(actor_key(actor_id), _EXISTS)

    def op(self, key: Item, write: Write, *, delete: bool = False) -> Op:
        """``write`` on the item ``key`` of this table, as a transaction item."""
        return Op(self, key, write, delete)

    def _set_error(
        self, actor_id: str, name: str, error: ActorError | RunnerPoolError | None
    ) -> None:
        if error is None:
            self._touch(actor_id, remove=(name,))
        else:
            self._touch(actor_id, {name: _error_attr(error)})

    def _touch(
        self,
        actor_id: str,
        fields: dict[str, Any] | None = None,
        *,
        remove: Sequence[str] = (),
        when: Cond = _EXISTS,
    ) -> bool:
        """Set ``fields`` and ``updated_at``, remove ``remove``; ``False`` if ``when`` failed."""
        write = Write(
            set={**(fields or {}), "updated_at": {"S": format_time(self._clock.now())}},
            remove=remove,
            when=when,
        )
        return self._update(actor_key(actor_id), write) is not None

    def _get(self, key: Item) -> Item | None:
        item = self.client.get_item(TableName=self.table_name, Key=key, ConsistentRead=True)
        return dict(item["Item"]) if "Item" in item else None

    def _update(self, key: Item, write: Write, *, returning: bool = False) -> Item | None:
        update = update_request(self.table_name, key, write, returning=returning)
        resp = unless_refused(lambda: self.client.update_item(**update))
        return None if resp is None else dict(resp.get("Attributes", {}))

    def _delete(self, key: Item, when: Cond) -> bool:
        delete = delete_request(self.table_name, key, when)
        return unless_refused(lambda: self.client.delete_item(**delete)) is not None

    def _put(self, item: Item, when: Cond) -> bool:
        put = put_request(self.table_name, item, when)
        return unless_refused(lambda: self.client.put_item(**put)) is not None

    def _query(self, query: Query) -> tuple[builtins.list[Item], Item | None]:
        resp = self.client.query(**query.request(self.table_name))
        return builtins.list(resp.get("Items", [])), resp.get("LastEvaluatedKey")
