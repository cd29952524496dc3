"""Conditional writes as values: rendered to DynamoDB expressions, evaluated by the fakes.

Every store write is built once as a ``Write`` (what to set, add and remove, under which
``Cond``). The DynamoDB stores render it to ``UpdateItem``/``TransactWriteItems`` parameters; the
in-memory fakes (``adapters/memory/``) apply the same value to a dict item. So the fake runs the
very conditions DynamoDB runs, and the contract suites check the evaluator against moto.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Protocol, TypeVar

from adapters.aws import is_conditional_check_failed

Item = dict[str, Any]
"""A low-level DynamoDB item: attribute name -> ``{"S": ...}`` / ``{"N": ...}``."""

T = TypeVar("T")


class _Names:
    """Placeholders for one expression set (``#a0``, ``:v0``), so no attribute name can clash
    with a reserved word (``status``, ``error``, ``owner``...)."""

    def __init__(self) -> None:
        self.names: dict[str, str] = {}
        self.values: dict[str, Any] = {}

    def name(self, attr: str) -> str:
        for placeholder, known in self.names.items():
            if known == attr:
                return placeholder
        placeholder = f"#a{len(self.names)}"
        self.names[placeholder] = attr
        return placeholder

    def value(self, value: Any) -> str:
        placeholder = f":v{len(self.values)}"
        self.values[placeholder] = value
        return placeholder

    def params(self) -> dict[str, Any]:
        # DynamoDB refuses an empty map, and a placeholder no expression uses.
        out: dict[str, Any] = {"ExpressionAttributeNames": self.names} if self.names else {}
        if self.values:
            out["ExpressionAttributeValues"] = self.values
        return out


def _comparable(value: Any) -> Any:
    """An attribute value as DynamoDB orders it: numbers as numbers, strings as text."""
    return Decimal(value["N"]) if "N" in value else value.get("S")


class Cond:
    """A condition on one item (``&``, ``|`` and ``~`` combine them)."""

    def render(self, names: _Names) -> str:
        """The condition expression text."""
        raise NotImplementedError

    def holds(self, item: Item | None) -> bool:
        """Whether the condition is true of ``item`` (``None``: no such item)."""
        raise NotImplementedError

    def __and__(self, other: Cond) -> Cond:
        return _Join("AND", (self, other))

    def __or__(self, other: Cond) -> Cond:
        return _Join("OR", (self, other))

    def __invert__(self) -> Cond:
        return _Not(self)


@dataclass(frozen=True)
class Exists(Cond):
    """``attribute_exists(attr)``."""

    attr: str

    def render(self, names: _Names) -> str:
        return f"attribute_exists({names.name(self.attr)})"

    def holds(self, item: Item | None) -> bool:
        return item is not None and self.attr in item


def missing(attr: str) -> Cond:
    """``attribute_not_exists(attr)``."""
    return ~Exists(attr)


@dataclass(frozen=True)
class Compare(Cond):
    """``attr = value`` or ``attr < value``; false if the attribute is missing."""

    attr: str
    op: str
    value: Any

    def render(self, names: _Names) -> str:
        return f"{names.name(self.attr)} {self.op} {names.value(self.value)}"

    def holds(self, item: Item | None) -> bool:
        current = None if item is None else item.get(self.attr)
        if current is None or set(current) != set(self.value):
            return False
        left, right = _comparable(current), _comparable(self.value)
        if self.op == "=":
            return bool(left == right)
        return bool(left < right) if self.op == "<" else bool(left >= right)


def eq(attr: str, value: Any) -> Cond:
    """``attr = value`` (an attribute value such as ``{"S": "x"}``)."""
    return Compare(attr, "=", value)


def lt(attr: str, value: Any) -> Cond:
    """``attr < value``."""
    return Compare(attr, "<", value)


def ge(attr: str, value: Any) -> Cond:
    """``attr >= value``."""
    return Compare(attr, ">=", value)


@dataclass(frozen=True)
class In(Cond):
    """``attr IN (values)``; false if the attribute is missing."""

    attr: str
    values: tuple[Any, ...]

    def render(self, names: _Names) -> str:
        return f"{names.name(self.attr)} IN ({', '.join(names.value(v) for v in self.values)})"

    def holds(self, item: Item | None) -> bool:
        current = None if item is None else item.get(self.attr)
        return current is not None and current in self.values


def among(attr: str, texts: Sequence[str]) -> Cond:
    """``attr IN (...)`` over string values."""
    return In(attr, tuple({"S": t} for t in sorted(texts)))


@dataclass(frozen=True)
class _Not(Cond):
    inner: Cond

    def render(self, names: _Names) -> str:
        if isinstance(self.inner, Exists):
            return f"attribute_not_exists({names.name(self.inner.attr)})"
        return f"NOT {self.inner.render(names)}"

    def holds(self, item: Item | None) -> bool:
        return not self.inner.holds(item)


@dataclass(frozen=True)
class _Join(Cond):
    op: str
    parts: tuple[Cond, ...]

    def render(self, names: _Names) -> str:
        return f" {self.op} ".join(f"({p.render(names)})" for p in self.parts)

    def holds(self, item: Item | None) -> bool:
        test = all if self.op == "AND" else any
        return test(p.holds(item) for p in self.parts)


@dataclass(frozen=True)
class Copy:
    """``SET name = source``: the value another attribute had before the write."""

    source: str


@dataclass(frozen=True)
class Write:
    """One conditional update of one item: ``SET``/``ADD``/``REMOVE`` under ``when``."""

    set: Mapping[str, Any] = field(default_factory=dict)
    add: Mapping[str, int] = field(default_factory=dict)
    remove: Sequence[str] = ()
    when: Cond | None = None


class Table(Protocol):
    """A store with its own table (what a transaction item names)."""

    table_name: str


@dataclass(frozen=True)
class Op:
    """One item of a transaction: ``write`` on ``key`` of ``table``'s table, or (``delete``)
    the item's removal under ``write.when``."""

    table: Table
    key: Item
    write: Write
    delete: bool = False

    def render(self) -> dict[str, Any]:
        """The ``Update``/``Delete`` parameters of TransactWriteItems."""
        where = {"TableName": self.table.table_name, "Key": self.key}
        if self.delete and self.write.when is not None:
            return {**where, **render_condition(self.write.when)}
        return {**where, **render_update(self.write)}


def render_condition(when: Cond) -> dict[str, Any]:
    """``ConditionExpression`` with its placeholders."""
    names = _Names()
    return {"ConditionExpression": when.render(names), **names.params()}


def render_update(write: Write) -> dict[str, Any]:
    """``UpdateExpression`` (and ``ConditionExpression``) with their placeholders."""
    names = _Names()
    clauses = []
    sets = [
        f"{names.name(k)} = " + (names.name(v.source) if isinstance(v, Copy) else names.value(v))
        for k, v in write.set.items()
    ]
    if sets:
        clauses.append("SET " + ", ".join(sets))
    if write.add:
        adds = [f"{names.name(k)} {names.value({'N': str(n)})}" for k, n in write.add.items()]
        clauses.append("ADD " + ", ".join(adds))
    if write.remove:
        clauses.append("REMOVE " + ", ".join(names.name(k) for k in write.remove))
    out: dict[str, Any] = {"UpdateExpression": " ".join(clauses)}
    if write.when is not None:
        out["ConditionExpression"] = write.when.render(names)
    return {**out, **names.params()}


def apply(item: Item | None, key: Item, write: Write) -> Item | None:
    """The item after ``write`` as DynamoDB would leave it, or ``None`` if ``when`` is false.

    Like ``UpdateItem``, a write to a missing item whose condition holds creates it.
    """
    if write.when is not None and not write.when.holds(item):
        return None
    old = item or {}
    new = {**key, **old}
    for name, value in write.set.items():
        new[name] = old[value.source] if isinstance(value, Copy) else value
    for name, n in write.add.items():
        new[name] = {"N": str(Decimal(new.get(name, {"N": "0"})["N"]) + n)}
    for name in write.remove:
        new.pop(name, None)
    return new


@dataclass(frozen=True)
class Query:
    """One page of a ``Query``: the items whose ``hash`` attribute has one value, in the order
    of ``range`` (only those below ``below`` if given), ``where`` filtering what was read.

    ``keys`` names the key attributes a page ends at (``LastEvaluatedKey``): the table's and
    the index's.
    """

    hash: tuple[str, str]
    range: str
    keys: tuple[str, ...]
    index: str | None = None
    below: str | None = None
    where: Cond | None = None
    forward: bool = True
    limit: int | None = None
    start: Item | None = None
    consistent: bool = False

    def request(self, table: str) -> dict[str, Any]:
        """The ``Query`` parameters."""
        names = _Names()
        hash_attr, hash_value = self.hash
        key = f"{names.name(hash_attr)} = {names.value({'S': hash_value})}"
        if self.below is not None:
            key += f" AND {names.name(self.range)} < {names.value({'S': self.below})}"
        out: dict[str, Any] = {"TableName": table, "KeyConditionExpression": key}
        if self.where is not None:
            out["FilterExpression"] = self.where.render(names)
        optional = {
            "IndexName": self.index,
            "Limit": self.limit,
            "ExclusiveStartKey": self.start,
            "ConsistentRead": self.consistent or None,
        }
        out.update({k: v for k, v in optional.items() if v is not None})
        if not self.forward:
            out["ScanIndexForward"] = False
        return {**out, **names.params()}

    def run(self, items: Iterable[Item]) -> tuple[list[Item], Item | None]:
        """The page DynamoDB would return from ``items``, and its ``LastEvaluatedKey``."""
        hash_attr, hash_value = self.hash

        def order(item: Item) -> tuple[Any, ...]:
            return tuple(
                _comparable(item[k]) if k in item else "" for k in (self.range, *self.keys)
            )

        found = [
            i
            for i in items
            if i.get(hash_attr) == {"S": hash_value}
            and self.range in i
            and (self.below is None or _comparable(i[self.range]) < self.below)
        ]
        found.sort(key=order, reverse=not self.forward)
        if self.start is not None:
            edge = order(self.start)
            found = [i for i in found if (order(i) > edge if self.forward else order(i) < edge)]
        read = found if self.limit is None else found[: self.limit]
        last = None
        if len(read) < len(found):
            last = {k: read[-1][k] for k in (*self.keys, self.range, hash_attr) if k in read[-1]}
        return [i for i in read if self.where is None or self.where.holds(i)], last


def put_request(table: str, item: Item, when: Cond) -> dict[str, Any]:
    """``PutItem`` parameters: ``item`` if ``when`` holds."""
    return {"TableName": table, "Item": item, **render_condition(when)}


def update_request(table: str, key: Item, write: Write, *, returning: bool) -> dict[str, Any]:
    """``UpdateItem`` parameters (the new item returned if ``returning``)."""
    extra = {"ReturnValues": "ALL_NEW"} if returning else {}
    return {"TableName": table, "Key": key, **render_update(write), **extra}


def delete_request(table: str, key: Item, when: Cond) -> dict[str, Any]:
    """``DeleteItem`` parameters: the item ``key`` if ``when`` holds."""
    return {"TableName": table, "Key": key, **render_condition(when)}


def unless_refused(call: Callable[[], T]) -> T | None:
    """``call()``, or ``None`` if DynamoDB refused it because its condition was false."""
    try:
        return call()
    except Exception as exc:
        if is_conditional_check_failed(exc):
            return None
        raise
