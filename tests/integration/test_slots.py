"""Slot leases per pool (DynamoDB on moto, in-memory): the cap holds and expired slots return."""

from __future__ import annotations

import threading

import pytest

from adapters.dynamodb.slots import DynamoDBSlotStore
from adapters.memory.slots import InMemorySlotStore
from core.exceptions import DurableStoreRequiredError
from core.ports import SlotStore


@pytest.fixture(params=["dynamodb", "memory"])
def slots(request: pytest.FixtureRequest) -> SlotStore:
    if request.param == "memory":
        return InMemorySlotStore(in_lambda=False, seed=1)
    tables = request.getfixturevalue("tables")
    return DynamoDBSlotStore(
        tables["SlotsTable"], client=request.getfixturevalue("dynamodb"), seed=1
    )


def test_cap_holds_and_release_frees(slots: SlotStore) -> None:
    a = slots.acquire("ns/p", total=2, owner="a", lease_s=60, now=1000.0)
    b = slots.acquire("ns/p", total=2, owner="b", lease_s=60, now=1000.0)
    assert a is not None and b is not None and {a.slot, b.slot} == {0, 1}
    assert slots.acquire("ns/p", total=2, owner="c", lease_s=60, now=1000.0) is None
    assert slots.held("ns/p", now=1000.0) == 2
    # Another pool has its own slots.
    assert slots.acquire("ns/q", total=1, owner="d", lease_s=60, now=1000.0) is not None
    slots.release(a)
    c = slots.acquire("ns/p", total=2, owner="c", lease_s=60, now=1000.0)
    assert c is not None and c.slot == a.slot


def test_expired_slot_comes_back(slots: SlotStore) -> None:
    crashed = slots.acquire("ns/p", total=1, owner="crashed", lease_s=10, now=1000.0)
    assert crashed is not None
    assert slots.acquire("ns/p", total=1, owner="x", lease_s=10, now=1005.0) is None
    later = slots.acquire("ns/p", total=1, owner="x", lease_s=10, now=1011.0)
    assert later is not None
    # The crashed holder's late release must not free the new holder's slot.
    slots.release(crashed)
    assert slots.held("ns/p", now=1012.0) == 1


def test_concurrent_acquirers_never_exceed_cap(slots: SlotStore) -> None:
    won: list[object] = []
    lock = threading.Lock()

    def grab(i: int) -> None:
        lease = slots.acquire("ns/burst", total=3, owner=f"o{i}", lease_s=60, now=1000.0)
        if lease is not None:
            with lock:
                won.append(lease)

    threads = [threading.Thread(target=grab, args=(i,)) for i in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(won) == 3
    assert slots.held("ns/burst", now=1000.0) == 3


def test_in_memory_refused_in_lambda() -> None:
    with pytest.raises(DurableStoreRequiredError):
        InMemorySlotStore(in_lambda=True)
