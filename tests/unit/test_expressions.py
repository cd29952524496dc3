"""Writes and queries as values: the in-memory evaluation the fakes run (moto checks the
rendering through the store contract suites)."""

from __future__ import annotations

from typing import Any

import pytest

from adapters.dynamodb.expressions import (
    Cond,
    Copy,
    Exists,
    Query,
    Write,
    among,
    apply,
    eq,
    ge,
    lt,
    missing,
    render_update,
)

ITEM: dict[str, Any] = {"k": {"S": "a"}, "n": {"N": "5"}, "s": {"S": "pending"}}


@pytest.mark.parametrize(
    ("cond", "holds"),
    [
        pytest.param(Exists("n"), True, id="exists"),
        pytest.param(missing("n"), False, id="not_missing"),
        pytest.param(missing("gone"), True, id="missing"),
        pytest.param(eq("n", {"N": "5.0"}), True, id="numbers_compare_as_numbers"),
        pytest.param(eq("n", {"S": "5"}), False, id="types_differ"),
        pytest.param(lt("n", {"N": "10"}), True, id="less_numeric_not_text"),
        pytest.param(ge("n", {"N": "5"}), True, id="greater_or_equal"),
        pytest.param(eq("gone", {"S": "x"}), False, id="compare_missing_is_false"),
        pytest.param(~eq("gone", {"S": "x"}), True, id="not_compare_missing_is_true"),
        pytest.param(among("s", ["pending", "running"]), True, id="in"),
        pytest.param(~among("gone", ["x"]), True, id="not_in_missing"),
        pytest.param(Exists("n") & missing("n"), False, id="and"),
        pytest.param(missing("n") | eq("s", {"S": "pending"}), True, id="or"),
    ],
)
def test_conditions_hold_as_dynamodb_evaluates_them(cond: Cond, holds: bool) -> None:
    assert cond.holds(ITEM) is holds


def test_no_item_has_no_attributes() -> None:
    assert missing("k").holds(None) and not Exists("k").holds(None)


def test_apply_sets_adds_copies_and_removes_from_the_old_item() -> None:
    write = Write(
        set={"s": {"S": "done"}, "base": Copy("n")},
        add={"n": 2, "fresh": 1},
        remove=("gone", "s2"),
        when=eq("s", {"S": "pending"}),
    )
    new = apply({**ITEM, "s2": {"S": "x"}}, {"k": {"S": "a"}}, write)
    assert new == {
        "k": {"S": "a"},
        "n": {"N": "7"},
        "s": {"S": "done"},
        "base": {"N": "5"},
        "fresh": {"N": "1"},
    }
    assert apply(ITEM, {"k": {"S": "a"}}, Write(when=missing("k"))) is None


def test_a_write_whose_condition_holds_creates_a_missing_item() -> None:
    assert apply(None, {"k": {"S": "b"}}, Write(set={"x": {"S": "1"}})) == {
        "k": {"S": "b"},
        "x": {"S": "1"},
    }


def test_render_names_every_attribute_through_a_placeholder() -> None:
    params = render_update(
        Write(set={"status": {"S": "x"}}, add={"n": 1}, remove=("error",), when=Exists("status"))
    )
    assert params["UpdateExpression"] == "SET #a0 = :v0 ADD #a1 :v1 REMOVE #a2"
    assert params["ConditionExpression"] == "attribute_exists(#a0)"
    assert params["ExpressionAttributeNames"] == {"#a0": "status", "#a1": "n", "#a2": "error"}


def _items() -> list[dict[str, Any]]:
    return [
        {"h": {"S": "a"}, "r": {"S": f"{i}"}, "id": {"S": f"m{i}"}, "odd": {"N": str(i % 2)}}
        for i in range(5)
    ] + [{"h": {"S": "b"}, "r": {"S": "0"}, "id": {"S": "x"}}, {"h": {"S": "a"}, "id": {"S": "y"}}]


def test_query_pages_in_range_order_and_filters_after_the_limit() -> None:
    query = Query(hash=("h", "a"), range="r", keys=("id",), limit=2, where=eq("odd", {"N": "1"}))
    page, last = query.run(_items())
    assert [i["id"]["S"] for i in page] == ["m1"]  # m0 and m1 read, m0 filtered out
    assert last == {"id": {"S": "m1"}, "r": {"S": "1"}, "h": {"S": "a"}}
    page, last = Query(("h", "a"), "r", ("id",), limit=2, start=last).run(_items())
    assert [i["id"]["S"] for i in page] == ["m2", "m3"] and last is not None
    page, last = Query(("h", "a"), "r", ("id",), start=last).run(_items())
    assert [i["id"]["S"] for i in page] == ["m4"] and last is None


def test_query_backwards_and_below() -> None:
    page, _ = Query(("h", "a"), "r", ("id",), below="3", forward=False).run(_items())
    assert [i["id"]["S"] for i in page] == ["m2", "m1", "m0"]
