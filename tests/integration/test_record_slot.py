"""record_slot end to end without Airflow: fake rate APIs → real VictoriaMetrics."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

import pytest

from btc_usd.model import AllSourcesFailed, ExchangeRateError, Pair
from btc_usd.pipeline import Endpoint, Settings, record_slot
from btc_usd.victoriametrics import VictoriaMetrics, selector
from fakes.rate_apis import PRICES, FakeRateAPI
from integration.conftest import API_KEY

BTC_USD = Pair("BTC", "USD")
PAID = Settings(alphavantage_daily_budget=100000)


def current_slot() -> datetime:
    now = int(datetime.now(UTC).timestamp())
    return datetime.fromtimestamp(now // 600 * 600, UTC)


def endpoints(fakes: dict[str, FakeRateAPI], key: str | None = API_KEY) -> dict[str, Endpoint]:
    return {name: Endpoint(api.url, key if name == "alphavantage" else None) for name, api in fakes.items()}


def stored(vm: VictoriaMetrics, ts: int) -> dict[tuple[str, str | None], float]:
    """{(metric, source): value} at ``ts``."""
    series = vm.export(selector("exchange_rate.*|exchange_rate"), ts, ts + 1)
    return {
        (dict(key)["__name__"], dict(key).get("source")): points[ts] for key, points in series.items() if ts in points
    }


def test_happy_path_records_alphavantage_with_spread_and_health(vm, fakes) -> None:
    slot = current_slot()
    result = record_slot(BTC_USD, slot, settings=PAID, endpoints=endpoints(fakes), vm=vm)
    ts = int(slot.timestamp())
    points = stored(vm, ts)
    assert points[("exchange_rate", "alphavantage")] == PRICES[("BTC", "USD")]
    assert points[("exchange_rate_bid", "alphavantage")] == PRICES[("BTC", "USD")] - 2.5
    assert points[("exchange_rate_ask", "alphavantage")] == PRICES[("BTC", "USD")] + 0.5
    assert 0 <= points[("exchange_rate_quote_age_seconds", "alphavantage")] < 5
    assert points[("exchange_rate_last_success_timestamp_seconds", None)] == ts
    assert points[("exchange_rate_source_up", "alphavantage")] == 1
    assert result.quote.source == "alphavantage"
    assert [path for path, _, _ in fakes["coinbase"].requests] == []  # no needless fallback calls


def test_throttled_alphavantage_falls_back_and_marks_the_failure(vm, fakes, caplog) -> None:
    fakes["alphavantage"].mode = "throttled"
    slot = current_slot()
    with caplog.at_level(logging.INFO):
        record_slot(BTC_USD, slot, settings=PAID, endpoints=endpoints(fakes), vm=vm)
    points = stored(vm, int(slot.timestamp()))
    assert points[("exchange_rate", "coinbase")] == PRICES[("BTC", "USD")] + 1
    assert points[("exchange_rate_source_up", "alphavantage")] == 0
    assert points[("exchange_rate_source_up", "coinbase")] == 1
    assert ("exchange_rate", "alphavantage") not in points
    failure = [r.getMessage() for r in caplog.records if "source alphavantage failed" in r.getMessage()]
    assert len(failure) == 1
    assert "throttled" in failure[0]
    assert API_KEY not in caplog.text  # the quota reply quotes the key back; it is redacted


@pytest.mark.parametrize("mode", ["http_500", "malformed", "slow"])
def test_every_source_broken_fails_and_records_no_rate(vm, fakes, mode) -> None:
    for api in fakes.values():
        api.mode = mode
    slot = current_slot()
    impatient = Settings(alphavantage_daily_budget=100000, http_timeout_seconds=1)  # the fakes answer in 3 s
    with pytest.raises(AllSourcesFailed) as caught:
        record_slot(BTC_USD, slot, settings=impatient, endpoints=endpoints(fakes), vm=vm)
    message = str(caught.value)
    for name in fakes:
        assert f"{name}: " in message
    points = stored(vm, int(slot.timestamp()))
    up = {source: value for (metric, source), value in points.items() if metric == "exchange_rate_source_up"}
    assert up == dict.fromkeys(fakes, 0.0)
    assert set(points) - {("exchange_rate_source_up", name) for name in fakes} == {
        ("exchange_rate_alphavantage_daily_budget", None)
    }


def test_without_a_key_the_keyless_sources_carry_the_series(vm, fakes) -> None:
    slot = current_slot()
    result = record_slot(BTC_USD, slot, settings=PAID, endpoints=endpoints(fakes, key=None), vm=vm)
    assert result.quote.source == "coinbase"
    assert fakes["alphavantage"].requests == []
    assert result.skipped == ["alphavantage: no API key configured (set the password of its connection)"]


def test_a_second_run_of_the_slot_changes_nothing(vm, fakes) -> None:
    slot = current_slot()
    record_slot(BTC_USD, slot, settings=PAID, endpoints=endpoints(fakes), vm=vm)
    before = stored(vm, int(slot.timestamp()))
    calls = sum(len(api.requests) for api in fakes.values())
    fakes["alphavantage"].mode = "throttled"  # a rerun must not even ask
    again = record_slot(BTC_USD, slot, settings=PAID, endpoints=endpoints(fakes), vm=vm)
    assert again.already_recorded
    assert sum(len(api.requests) for api in fakes.values()) == calls
    assert stored(vm, int(slot.timestamp())) == before


def test_a_late_slot_is_refused_instead_of_misdated(vm, fakes) -> None:
    old = current_slot() - timedelta(hours=3)
    with pytest.raises(ExchangeRateError, match="btc_usd_backfill"):
        record_slot(BTC_USD, old, settings=PAID, endpoints=endpoints(fakes), vm=vm)
    assert stored(vm, int(old.timestamp())) == {}
    assert all(api.requests == [] for api in fakes.values())
