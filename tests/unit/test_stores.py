"""``DynamoDBStores``: every store of a composition root on the one client it is given."""

from __future__ import annotations

from adapters.settings import Settings
from adapters.stores import DynamoDBStores


def test_every_store_and_the_tracker_use_the_given_client() -> None:
    client = object()  # never called: building the stores sends no request
    stores = DynamoDBStores(Settings(), client)
    built = [
        stores.actors,
        stores.slots,
        stores.configs,
        stores.probes,
        stores.messages,
        stores.committing_messages,
        stores.tracker.store,
    ]
    assert [store.client for store in built] == [client] * len(built)  # type: ignore[attr-defined]


def test_final_messages_expire_whichever_store_makes_them_final() -> None:
    stores = DynamoDBStores(Settings(message_retention_days=2), object())
    assert stores.messages.retention_s == stores.committing_messages.retention_s == 2 * 86_400
