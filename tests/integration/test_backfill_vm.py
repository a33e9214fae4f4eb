"""backfill_pair against a real VictoriaMetrics and a fake Bitstamp OHLC API."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

from btc_usd.backfill import backfill_pair
from btc_usd.graphite import Sample
from btc_usd.model import Pair
from btc_usd.victoriametrics import selector
from fakes.rate_apis import candle_open

BTC_USD = Pair("BTC", "USD")
END = datetime(2026, 11, 20, tzinfo=UTC)


def rates(vm, start: datetime, end: datetime) -> dict[int, float]:
    series = vm.export(selector("exchange_rate", base="BTC", quote="USD"), int(start.timestamp()), int(end.timestamp()))
    return {ts: value for points in series.values() for ts, value in points.items() if ts < int(end.timestamp())}


def test_thirty_days_fill_every_slot_once_and_a_rerun_writes_nothing(vm, fakes, figures) -> None:
    start = END - timedelta(days=30)
    began = time.monotonic()
    report = backfill_pair(BTC_USD, start, END, base_url=fakes["bitstamp"].url, vm=vm)
    elapsed = time.monotonic() - began
    figures["backfill_30_days_seconds"] = round(elapsed, 2)
    figures["backfill_points_per_s"] = round(report.written / elapsed, 1)
    assert (report.slots, report.written, report.already_present) == (4320, 4320, 0)
    points = rates(vm, start, END)
    assert len(points) == 4320
    assert all(points[ts] == candle_open(ts) for ts in points)
    requests = len(fakes["bitstamp"].requests)
    assert requests == 9  # 480 slots per request

    again = backfill_pair(BTC_USD, start, END, base_url=fakes["bitstamp"].url, vm=vm)
    assert (again.written, again.already_present) == (0, 4320)
    assert len(fakes["bitstamp"].requests) == requests


def test_live_points_are_kept_and_only_gaps_are_filled(vm, fakes) -> None:
    start = END - timedelta(hours=2)
    live = int((start + timedelta(minutes=30)).timestamp())
    vm.write_and_verify([Sample("exchange_rate", {"base": "BTC", "quote": "USD", "source": "coinbase"}, 1.0, live)])
    report = backfill_pair(BTC_USD, start, END, base_url=fakes["bitstamp"].url, vm=vm)
    assert (report.slots, report.written, report.already_present) == (12, 11, 1)
    points = rates(vm, start, END)
    assert len(points) == 12
    assert points[live] == 1.0
