"""Spend Alpha Vantage's daily request budget evenly over the day's slots.

Each (slot, pair) is one possible request; a day holds ``slots_per_day * pairs``
of them. Request ``j`` is spent on Alpha Vantage when ``floor((j+1)*B/N)`` steps
past ``floor(j*B/N)``: exactly B requests per day, spaced as evenly as integers
allow. The pattern repeats every day, so any 24-hour window (not only a UTC day)
also holds exactly B requests, whichever way the provider counts.
"""

from __future__ import annotations

from datetime import datetime


def request_index(slot: datetime, interval_seconds: int, pair_index: int, pair_count: int) -> tuple[int, int]:
    """Return (index of this request in its UTC day, requests per day)."""
    seconds = slot.hour * 3600 + slot.minute * 60 + slot.second
    per_day = 86400 // interval_seconds
    return (seconds // interval_seconds) * pair_count + pair_index, per_day * pair_count


def uses_alphavantage(
    slot: datetime,
    *,
    daily_budget: int,
    interval_seconds: int = 600,
    pair_index: int = 0,
    pair_count: int = 1,
) -> bool:
    """Whether this slot and pair is one of the day's budgeted Alpha Vantage requests."""
    index, total = request_index(slot, interval_seconds, pair_index, pair_count)
    if daily_budget >= total:
        return True
    if daily_budget <= 0:
        return False
    return (index + 1) * daily_budget // total > index * daily_budget // total
