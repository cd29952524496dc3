"""Dict items behind the one lock of the fakes, written by the same ``Write`` values as DynamoDB."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import ClassVar, Final

from adapters.dynamodb.expressions import Cond, Item, Query, Write, apply
from adapters.settings import in_lambda as _in_lambda
from core.exceptions import DurableStoreRequiredError

LOCK: Final = threading.RLock()
"""Every fake of the commit (messages, actors, slots) holds this one lock, so the in-memory
commit checks and writes its three items atomically, as TransactWriteItems does."""


class MemoryTable:
    """The item primitives of a DynamoDB store (``_get``/``_put``/``_update``/``_delete``) on a
    dict; mixed in before the DynamoDB store class, whose logic it then runs unchanged."""

    key_attrs: ClassVar[tuple[str, ...]]
    lock: threading.RLock

    def _open(self, facet: str, in_lambda: bool | None) -> None:
        """Refuse to run inside Lambda (state would not survive or be shared), else start empty."""
        if _in_lambda() if in_lambda is None else in_lambda:
            raise DurableStoreRequiredError(facet)
        self._items: dict[tuple[str, ...], Item] = {}
        self.lock = LOCK

    def _row(self, key: Item) -> tuple[str, ...]:
        return tuple(str(next(iter(key[name].values()))) for name in self.key_attrs)

    def _scan(self) -> Iterator[Item]:
        """Copies of every item (call with ``lock`` held)."""
        return (dict(item) for item in list(self._items.values()))

    def _get(self, key: Item) -> Item | None:
        with self.lock:
            item = self._items.get(self._row(key))
            return dict(item) if item is not None else None

    def _put(self, item: Item, when: Cond) -> bool:
        with self.lock:
            row = self._row(item)
            if not when.holds(self._items.get(row)):
                return False
            self._items[row] = dict(item)
            return True

    def _update(self, key: Item, write: Write, *, returning: bool = False) -> Item | None:
        with self.lock:
            row = self._row(key)
            new = apply(self._items.get(row), key, write)
            if new is None:
                return None
            self._items[row] = new
            return dict(new)

    def _delete(self, key: Item, when: Cond) -> bool:
        with self.lock:
            row = self._row(key)
            if not when.holds(self._items.get(row)):
                return False
            self._items.pop(row, None)
            return True

    def _query(self, query: Query) -> tuple[list[Item], Item | None]:
        with self.lock:
            return query.run(self._scan())

    def _holds(self, key: Item, when: Cond | None) -> bool:
        """Whether ``when`` is true of the item now (a transaction's check; ``lock`` held)."""
        return when is None or when.holds(self._items.get(self._row(key)))

    def _apply(self, key: Item, write: Write | None) -> None:
        """Write (or with ``None`` delete) the item, its condition checked already."""
        row = self._row(key)
        if write is None:
            self._items.pop(row, None)
            return
        new = apply(self._items.get(row), key, Write(write.set, write.add, write.remove))
        if new is not None:
            self._items[row] = new
