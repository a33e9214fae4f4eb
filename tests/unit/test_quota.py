"""Alpha Vantage's daily budget is spent evenly, and never overspent."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from btc_usd.quota import uses_alphavantage

DAY = datetime(2026, 11, 26, tzinfo=UTC)
SLOTS = [DAY + timedelta(minutes=10 * i) for i in range(144)]


def plan(budget: int, pair_index: int = 0, pair_count: int = 1) -> list[bool]:
    return [
        uses_alphavantage(slot, daily_budget=budget, pair_index=pair_index, pair_count=pair_count) for slot in SLOTS
    ]


def test_free_key_spends_exactly_25_requests_a_day() -> None:
    assert sum(plan(25)) == 25


def test_requests_are_spread_over_the_day() -> None:
    used = [i for i, yes in enumerate(plan(25)) if yes]
    gaps = {b - a for a, b in itertools.pairwise(used)}
    assert gaps <= {5, 6}, gaps  # every 50 or 60 minutes
    assert 6 <= sum(1 for i in used if i < 36) <= 7  # a quarter of the day gets a quarter of the budget


def test_any_24_hour_window_holds_the_budget() -> None:
    week = [DAY + timedelta(minutes=10 * i) for i in range(144 * 3)]
    used = [uses_alphavantage(slot, daily_budget=25) for slot in week]
    assert {sum(used[start : start + 144]) for start in range(len(week) - 144)} == {25}


def test_paid_key_uses_every_slot_and_zero_uses_none() -> None:
    assert all(plan(100000))
    assert not any(plan(0))


def test_pairs_share_one_budget() -> None:
    spent = sum(sum(plan(25, pair_index=k, pair_count=2)) for k in range(2))
    assert spent == 25


@given(budget=st.integers(0, 1000), pair_count=st.integers(1, 4))
def test_daily_total_is_the_budget_capped_by_the_requests(budget: int, pair_count: int) -> None:
    spent = sum(sum(plan(budget, pair_index=k, pair_count=pair_count)) for k in range(pair_count))
    assert spent == min(budget, 144 * pair_count)
