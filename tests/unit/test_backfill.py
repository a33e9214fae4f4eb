"""Backfill range parsing, OHLC parsing and sampling at the slot boundaries."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from btc_usd.backfill import Candle, parse_bitstamp_ohlc, parse_range, sample_slots
from btc_usd.model import ConfigError, Pair, SourceError

NOW = datetime(2026, 11, 26, 18, 47, 12, tzinfo=UTC)
BTC_USD = Pair("BTC", "USD")


def test_empty_params_mean_the_last_30_days_up_to_this_run() -> None:
    start, end = parse_range("", "", NOW)
    assert end == datetime(2026, 11, 26, 18, 40, tzinfo=UTC)
    assert end - start == timedelta(days=30)


def test_dates_are_utc_and_floored_to_slots() -> None:
    assert parse_range("2026-11-01", "2026-11-03T00:05:59+01:00", NOW) == (
        datetime(2026, 11, 1, tzinfo=UTC),
        datetime(2026, 11, 2, 23, 0, tzinfo=UTC),
    )


@pytest.mark.parametrize(
    ("start", "end", "message"),
    [
        ("yesterday", "", "param start='yesterday' is not an ISO date"),
        ("", "2026-12-01", "is in the future"),
        ("2026-11-20", "2026-11-10", "must be before end"),
        ("2025-01-01", "", "longer than 400 days"),
    ],
)
def test_bad_ranges_are_refused_with_the_fix(start: str, end: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_range(start, end, NOW)


def ohlc(*rows: dict) -> dict:
    return {"data": {"pair": "BTC/USD", "ohlc": list(rows)}}


def test_bitstamp_ohlc_real_shape() -> None:
    row = {
        "timestamp": "1764180000",
        "open": "64000.00",
        "high": "64100.00",
        "low": "63900.00",
        "close": "64050.00",
        "volume": "2.1",
    }
    assert parse_bitstamp_ohlc(ohlc(row), BTC_USD) == [Candle(1764180000, 64000.0, 64050.0)]


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ({"data": {"pair": "ETH/USD", "ohlc": []}}, "reply is for 'ETH/USD'"),
        ({"data": {"pair": "BTC/USD"}}, "'data.ohlc' is missing"),
        (ohlc({"timestamp": "1764180001", "open": "1", "close": "1"}), "not on a 300 s boundary"),
        (ohlc({"timestamp": "1764180000", "open": "-", "close": "1"}), "open '-' is not a decimal number"),
        ({"code": "API0005", "errors": ["Invalid"]}, "'data' is missing"),
    ],
)
def test_bad_ohlc_replies(payload: object, message: str) -> None:
    with pytest.raises(SourceError, match=message):
        parse_bitstamp_ohlc(payload, BTC_USD)


def test_slot_takes_open_at_the_boundary_else_the_previous_close() -> None:
    candles = [Candle(0, 10.0, 11.0), Candle(300, 12.0, 13.0), Candle(900, 14.0, 15.0), Candle(1500, 16.0, 17.0)]
    # 0 opens a candle; 600, 1200 and 1800 fall back to the close of the candle before
    assert sample_slots(candles, range(0, 2400, 600)) == {0: 10.0, 600: 13.0, 1200: 15.0, 1800: 17.0}
    assert sample_slots(candles[:2], range(1200, 1800, 600)) == {}
