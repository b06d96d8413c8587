"""Level specs and the meaning of an empty query: a live subscription, a store read and
a pack's lines must agree on what a query lets through."""

from __future__ import annotations

import pytest

from logcast.hub.journal import Journal
from logcast.hub.ring import Ring
from logcast.hub.subscription import Phase, Subscription
from logcast.query import Query, parse_levels
from logcast.types import Level, LogRecord, Stream


@pytest.mark.parametrize("spec", [None, "", "  ", ",", " , ,"])
def test_a_spec_that_names_no_level_is_no_filter(spec: str | None) -> None:
    assert parse_levels(spec) is None


def test_named_levels_and_a_floor() -> None:
    assert parse_levels("warning") == frozenset({Level.WARNING, Level.ERROR, Level.CRITICAL})
    assert parse_levels("info, ERROR") == frozenset({Level.INFO, Level.ERROR})
    with pytest.raises(ValueError, match="unknown level"):
        parse_levels("info,loud")


def test_an_empty_set_of_levels_is_a_filter_that_lets_nothing_through() -> None:
    """Found while adding packs: `is_empty` read `frozenset()` as no filter, so a live
    subscription with it delivered every line while the store's SQL returned none."""
    query = Query(levels=frozenset())
    assert not query.is_empty
    line = LogRecord(1, 1.0, Level.INFO, "x", Stream.STDOUT, "web", 1, False, None)
    assert not query.matches(line)
    journal = Journal("web", Ring(10, 1 << 20))
    sub = Subscription(None, journal, query)  # type: ignore[arg-type]  # no hub needed here
    sub.phase = Phase.LIVE
    out: list[object] = []
    sub._deliver([line], out)  # type: ignore[arg-type]
    assert out == [] and sub.cursor == 1
    assert Query().is_empty and not Query(levels=frozenset({Level.INFO})).is_empty
