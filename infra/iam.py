"""What each function calls on each table and queue, derived from the code, and what
``template.yaml`` grants: ``iam_least_privilege`` (a template rule) compares the two.

The derivation reads the source, it runs nothing:

1. A function's code (``functions/<name>/*.py``) calls its stores through its deps object:
   ``deps.actors.get(...)``, ``self.deps.configs.get(...)``. ``FIELDS`` says which store class
   each deps field holds (the composition roots build them; the list is kept here, beside the
   code it describes).
2. A store method calls the boto3 client (``self.client.update_item(...)``), other methods of
   its class, or another store (``self.actors.commit_update(...)``, ``self.store.apply(...)``);
   the walk follows them. A ``transact_write_items`` grants nothing itself (IAM checks each item
   against the item's table): its items are the ``{"Update"|"Put"|"Delete"|"ConditionCheck":
   ...}`` literals of the method, on the table of the store that built them.
3. Each boto3 operation maps to its IAM action; the SQS event source adds what Lambda's poller
   calls with the function's role (``EVENT_SOURCE_ACTIONS``, on the queue of the SQS event).

What it cannot see: calls through other names than ``deps``/``self.deps`` or ``self.<field>``.
A store method the walk cannot find fails the check, so that gap shows instead of hiding.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from infra.package import HANDLERS

ROOT: Final = Path(__file__).resolve().parent.parent

FUNCTION_DIRS: Final = {
    logical_id: module.rpartition(".")[0].replace(".", "/")
    for logical_id, module in HANDLERS.items()
}
"""Function logical id -> its code's folder (``functions/api``), from ``infra.package``."""


@dataclass(frozen=True)
class Store:
    """A store class, where it lives, and the template resource it works on."""

    module: str
    cls: str
    resource: str


STORES: Final = {
    "actors": Store("adapters/dynamodb/actors.py", "DynamoDBActorStore", "ActorsTable"),
    "messages": Store("adapters/dynamodb/messages.py", "DynamoDBMessageStore", "MessagesTable"),
    "commit": Store("adapters/dynamodb/commit.py", "DynamoDBCommit", ""),
    "configs": Store(
        "adapters/dynamodb/runner_configs.py", "DynamoDBRunnerConfigStore", "RunnerConfigsTable"
    ),
    "slots": Store("adapters/dynamodb/slots.py", "DynamoDBSlotStore", "SlotsTable"),
    "probes": Store("adapters/dynamodb/probes.py", "DynamoDBProbeStore", "PoolProbesTable"),
    "pool_errors": Store(
        "adapters/dynamodb/pool_errors.py", "DynamoDBPoolErrorStore", "PoolErrorsTable"
    ),
    "tracker": Store("adapters/tracker.py", "PoolErrorTracker", ""),
    "queue": Store("adapters/sqs.py", "SqsMessageQueue", "ActorMessagesQueue"),
    "dlq": Store("adapters/sqs.py", "SqsDeadLetterQueue", "ActorMessagesDLQ"),
    "replies": Store("adapters/sqs.py", "SqsReplies", "ReplyQueues"),
}
"""Store key -> class; ``resource`` empty for a class that holds no client itself."""

FIELDS: Final = {
    "actors": "actors",
    "messages": "messages",
    "configs": "configs",
    "runner_configs": "configs",
    "slots": "slots",
    "commit": "commit",
    "probes": "probes",
    "tracker": "tracker",
    "store": "pool_errors",
    "queue": "queue",
    "dlq": "dlq",
    "replies": "replies",
}
"""Attribute name (on deps or on a store's ``self``) -> store key."""

OPERATIONS: Final = {
    "batch_get_item": "dynamodb:BatchGetItem",
    "batch_write_item": "dynamodb:BatchWriteItem",
    "delete_item": "dynamodb:DeleteItem",
    "get_item": "dynamodb:GetItem",
    "put_item": "dynamodb:PutItem",
    "query": "dynamodb:Query",
    "scan": "dynamodb:Scan",
    "update_item": "dynamodb:UpdateItem",
    "change_message_visibility": "sqs:ChangeMessageVisibility",
    "change_message_visibility_batch": "sqs:ChangeMessageVisibility",
    "delete_message": "sqs:DeleteMessage",
    "get_queue_url": "sqs:GetQueueUrl",
    "receive_message": "sqs:ReceiveMessage",
    "send_message": "sqs:SendMessage",
    "send_message_batch": "sqs:SendMessage",
}
"""boto3 operation -> IAM action (batch SQS calls are authorized as their single action)."""

TRANSACT_ITEMS: Final = {
    "Put": "dynamodb:PutItem",
    "Update": "dynamodb:UpdateItem",
    "Delete": "dynamodb:DeleteItem",
    "ConditionCheck": "dynamodb:ConditionCheckItem",
}
EVENT_SOURCE_ACTIONS: Final = frozenset(
    {"sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:GetQueueAttributes"}
)
CLIENT_NAMES: Final = frozenset({"client", "_client"})

Grants = dict[str, set[str]]
"""Resource logical id (table, queue, ``ReplyQueues``) -> IAM actions."""


class DerivationError(Exception):
    """The code calls something the derivation cannot follow."""


def _classes(path: Path) -> dict[str, ast.ClassDef]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    return {node.name: node for node in tree.body if isinstance(node, ast.ClassDef)}


def _methods(cls: ast.ClassDef) -> dict[str, ast.FunctionDef]:
    return {n.name: n for n in cls.body if isinstance(n, ast.FunctionDef)}


def _self_attr(node: ast.expr) -> str | None:
    """``self.x`` -> ``x``."""
    if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
        return node.attr if node.value.id == "self" else None
    return None


class _Walker:
    """Store method -> the grants its calls need, memoized per (store, method)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._cache: dict[tuple[str, str], Grants] = {}
        self._classes: dict[str, ast.ClassDef] = {}

    def cls(self, key: str) -> ast.ClassDef:
        if key not in self._classes:
            store = STORES[key]
            found = _classes(self.root / store.module).get(store.cls)
            if found is None:
                raise DerivationError(f"{store.module} has no class {store.cls}")
            self._classes[key] = found
        return self._classes[key]

    def grants(self, key: str, method: str, _stack: tuple[tuple[str, str], ...] = ()) -> Grants:
        if (key, method) in self._cache:
            return self._cache[(key, method)]
        if (key, method) in _stack:
            return {}
        methods = _methods(self.cls(key))
        if method not in methods:
            raise DerivationError(f"{STORES[key].cls} has no method {method}")
        out: Grants = {}
        stack = (*_stack, (key, method))
        fn = methods[method]
        origins = _assigned_calls(fn)
        for node in ast.walk(fn):
            if isinstance(node, ast.Dict):
                self._transact_items(key, node, origins, out, stack)
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
                continue
            name, target = node.func.attr, node.func.value
            attr = _self_attr(target)
            if attr in CLIENT_NAMES:
                if name == "transact_write_items":
                    continue  # authorized item by item (the dict literals above)
                action = OPERATIONS.get(name)
                if action is None:
                    raise DerivationError(f"{STORES[key].cls}.{method}: unknown call {name}")
                _add(out, STORES[key].resource, {action})
            elif isinstance(target, ast.Name) and target.id == "self" and name in methods:
                _merge(out, self.grants(key, name, stack))
            elif attr is not None and attr in FIELDS:
                _merge(out, self.grants(FIELDS[attr], name, stack))
        self._cache[(key, method)] = out
        return out

    def _transact_items(
        self,
        key: str,
        node: ast.Dict,
        origins: Mapping[str, ast.Call],
        out: Grants,
        stack: tuple[tuple[str, str], ...],
    ) -> None:
        for k, v in zip(node.keys, node.values, strict=True):
            if not (isinstance(k, ast.Constant) and k.value in TRANSACT_ITEMS):
                continue
            call = origins.get(v.id) if isinstance(v, ast.Name) else v
            owner = key
            if isinstance(call, ast.Call) and isinstance(call.func, ast.Attribute):
                attr = _self_attr(call.func.value)
                if attr in FIELDS:
                    owner = FIELDS[attr]
            _add(out, STORES[owner].resource, {TRANSACT_ITEMS[str(k.value)]})


def _assigned_calls(fn: ast.FunctionDef) -> dict[str, ast.Call]:
    """Local name -> the call it was assigned from (``x = self.actors.commit_update(...)``)."""
    out: dict[str, ast.Call] = {}
    for node in ast.walk(fn):
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Call):
            for target in node.targets:
                if isinstance(target, ast.Name):
                    out[target.id] = node.value
    return out


def _add(out: Grants, resource: str, actions: Iterable[str]) -> None:
    out.setdefault(resource, set()).update(actions)


def _merge(out: Grants, more: Grants) -> None:
    for resource, actions in more.items():
        _add(out, resource, actions)


def _deps_calls(paths: Iterable[Path]) -> set[tuple[str, str]]:
    """``(field, method)`` of every ``deps.<field>.<method>`` /
    ``self.deps.<field>.<method>`` in ``paths``."""
    found: set[tuple[str, str]] = set()
    for path in paths:
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node in ast.walk(tree):
            # Attributes, not only calls: ``asyncio.to_thread(deps.actors.get, ...)`` counts.
            if not isinstance(node, ast.Attribute):
                continue
            holder = node.value
            if not isinstance(holder, ast.Attribute) or holder.attr not in FIELDS:
                continue
            base = holder.value
            is_deps = (isinstance(base, ast.Name) and base.id in {"deps", "d"}) or (
                isinstance(base, ast.Attribute) and base.attr in {"deps", "_deps"}
            )
            if is_deps:
                found.add((holder.attr, node.attr))
    return found


def derived_grants(
    template: Mapping[str, Any] | None = None, root: Path = ROOT
) -> dict[str, Grants]:
    """Function logical id -> the grants its code needs (event source included)."""
    walker = _Walker(root)
    out: dict[str, Grants] = {}
    resources = (template or {}).get("Resources", {})
    for function, folder in FUNCTION_DIRS.items():
        grants: Grants = {}
        for field, method in sorted(_deps_calls(sorted((root / folder).glob("*.py")))):
            _merge(grants, walker.grants(FIELDS[field], method))
        events = resources.get(function, {}).get("Properties", {}).get("Events") or {}
        for event in events.values():
            queue = event.get("Properties", {}).get("Queue")
            if event.get("Type") == "SQS" and isinstance(queue, dict) and "Fn::GetAtt" in queue:
                _add(grants, queue["Fn::GetAtt"][0], EVENT_SOURCE_ACTIONS)
        out[function] = grants
    return out


_SUB_REF: Final = re.compile(r"^\$\{(\w+)\.Arn\}")


def _resource_id(resource: Any) -> str | None:
    """``!GetAtt X.Arn`` / ``!Sub "${X.Arn}/index/*"`` -> ``X``; the reply-queue prefix ARN ->
    ``ReplyQueues``; anything else -> None."""
    if isinstance(resource, dict) and "Fn::GetAtt" in resource:
        return str(resource["Fn::GetAtt"][0])
    if isinstance(resource, dict) and "Fn::Sub" in resource:
        text = resource["Fn::Sub"]
        text = text if isinstance(text, str) else str(text[0])
        match = _SUB_REF.match(text)
        if match:
            return match.group(1)
        if "${ReplyQueuePrefix}" in text:
            return "ReplyQueues"
    return None


DERIVED_SERVICES: Final = ("dynamodb:", "sqs:")
"""The services the derivation covers; other statements (logs, secrets) are not compared."""


def template_grants(template: Mapping[str, Any]) -> dict[str, Grants]:
    """Function logical id -> the DynamoDB and SQS grants of its role, resources by logical
    id; an unknown resource is kept as its JSON text (so it shows in a diff)."""
    resources = template.get("Resources", {})
    out: dict[str, Grants] = {}
    for function in FUNCTION_DIRS:
        role = resources.get(function, {}).get("Properties", {}).get("Role")
        role_id = role["Fn::GetAtt"][0] if isinstance(role, dict) and "Fn::GetAtt" in role else None
        grants: Grants = {}
        role_props = resources.get(role_id, {}).get("Properties", {}) if role_id else {}
        for policy in role_props.get("Policies") or []:
            for statement in policy.get("PolicyDocument", {}).get("Statement", []):
                if statement.get("Effect") != "Allow":
                    continue
                actions = statement.get("Action")
                actions = [actions] if isinstance(actions, str) else list(actions or [])
                actions = [a for a in actions if str(a).startswith(DERIVED_SERVICES)]
                if not actions:
                    continue
                targets = statement.get("Resource")
                targets = targets if isinstance(targets, list) else [targets]
                for target in targets:
                    _add(grants, _resource_id(target) or repr(target), actions)
        out[function] = grants
    return out
