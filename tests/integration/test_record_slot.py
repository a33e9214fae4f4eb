"""record_slot end to end without Airflow: fake rate APIs → real VictoriaMetrics."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

import pytest

from btc_usd.graphite import Sample
from btc_usd.model import AllSourcesFailed, ExchangeRateError, ImplausibleQuote, Pair
from btc_usd.pipeline import Endpoint, Settings, record_slot, record_slots
from btc_usd.sources import SOURCES
from btc_usd.victoriametrics import VictoriaMetrics, selector
from fakes.rate_apis import PRICES, FakeRateAPI, price_of, synthetic_pairs
from integration.conftest import API_KEY

BTC_USD = Pair("BTC", "USD")
PAID = Settings(alphavantage_daily_budget=100000)
KEYLESS = Settings(alphavantage_daily_budget=0)  # the slot's share of 25 requests a day would vary by pair


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


@pytest.mark.parametrize("mode", ["redirect", "trickle", "nested", "huge", "nan", "inf"])
def test_a_hostile_source_fails_over_within_the_try(vm, fakes, mode) -> None:
    internal = FakeRateAPI("internal").start()  # where the redirect points; it must see nothing
    fakes["alphavantage"].mode = mode
    fakes["alphavantage"].redirect_to = internal.url + "/api/v1/admin/tsdb/delete_series"
    slot = current_slot()
    try:
        result = record_slot(BTC_USD, slot, settings=PAID, endpoints=endpoints(fakes), vm=vm)
    finally:
        internal.stop()
    assert internal.requests == []
    assert result.quote.source == "coinbase"
    points = stored(vm, int(slot.timestamp()))
    assert points[("exchange_rate", "coinbase")] == PRICES[("BTC", "USD")] + 1
    assert points[("exchange_rate_source_up", "alphavantage")] == 0
    assert ("exchange_rate", "alphavantage") not in points


def store_previous(vm: VictoriaMetrics, slot: datetime, rate: float) -> None:
    tags = {"base": "BTC", "quote": "USD", "source": "coinbase"}
    vm.write_and_verify([Sample("exchange_rate", tags, rate, int(slot.timestamp()) - 600)])


def test_an_implausible_jump_is_not_stored_on_one_word(vm, fakes) -> None:
    slot = current_slot()
    store_previous(vm, slot, PRICES[("BTC", "USD")])
    fakes["alphavantage"].scale = 10.0  # one source says BTC is worth ten times more; the next disagrees
    with pytest.raises(ImplausibleQuote) as caught:
        record_slot(BTC_USD, slot, settings=PAID, endpoints=endpoints(fakes), vm=vm)
    message = str(caught.value)
    assert "alphavantage says 640905" in message
    assert "coinbase says 64091.5" in message
    assert "exchange_rate_max_move_percent" in message
    points = stored(vm, int(slot.timestamp()))
    assert not [key for key in points if key[0] == "exchange_rate"]
    assert ("exchange_rate_last_success_timestamp_seconds", None) not in points


def test_a_crash_two_sources_agree_on_is_recorded(vm, fakes) -> None:
    slot = current_slot()
    store_previous(vm, slot, PRICES[("BTC", "USD")])
    for api in fakes.values():
        api.scale = 0.5  # the market halves, and every source says so
    result = record_slot(BTC_USD, slot, settings=PAID, endpoints=endpoints(fakes), vm=vm)
    assert result.quote.source == "alphavantage"
    assert [a.source for a in result.attempts] == ["alphavantage", "coinbase"]  # coinbase confirmed it
    points = stored(vm, int(slot.timestamp()))
    assert points[("exchange_rate", "alphavantage")] == PRICES[("BTC", "USD")] * 0.5
    assert ("exchange_rate", "coinbase") not in points


def test_an_unconfirmed_jump_fails_when_no_other_source_answers(vm, fakes) -> None:
    slot = current_slot()
    store_previous(vm, slot, PRICES[("BTC", "USD")])
    fakes["alphavantage"].scale = 3.0
    for name in ("coinbase", "kraken", "bitstamp"):
        fakes[name].mode = "http_500"
    with pytest.raises(ImplausibleQuote, match="no other source answered to confirm it"):
        record_slot(BTC_USD, slot, settings=PAID, endpoints=endpoints(fakes), vm=vm)
    assert not [key for key in stored(vm, int(slot.timestamp())) if key[0] == "exchange_rate"]


def test_a_move_inside_the_band_needs_no_second_source(vm, fakes) -> None:
    slot = current_slot()
    store_previous(vm, slot, PRICES[("BTC", "USD")])
    fakes["alphavantage"].scale = 1.1
    result = record_slot(BTC_USD, slot, settings=PAID, endpoints=endpoints(fakes), vm=vm)
    assert [a.source for a in result.attempts] == ["alphavantage"]
    assert fakes["coinbase"].requests == []


# -- a batch of pairs ------------------------------------------------------------------


def rates_at(vm: VictoriaMetrics, ts: int) -> dict[tuple[str, str, str], float]:
    """{(base, quote, source): rate} of every pair at ``ts``."""
    found = {}
    for key, points in vm.export(selector("exchange_rate"), ts, ts + 1).items():
        labels = dict(key)
        if ts in points:
            found[(labels["base"], labels["quote"], labels["source"])] = points[ts]
    return found


def test_a_batch_of_200_pairs_is_recorded_with_one_request_per_base(vm, fakes) -> None:
    pairs = [Pair.parse(p) for p in synthetic_pairs(200)]  # 50 bases, 4 quotes each
    slot = current_slot()
    results = record_slots(pairs, slot, settings=KEYLESS, endpoints=endpoints(fakes), vm=vm)
    assert [r.error for r in results] == [None] * 200
    expected = {(p.base, p.quote, "coinbase"): price_of(p.base, p.quote) + 1 for p in pairs}
    assert rates_at(vm, int(slot.timestamp())) == pytest.approx(expected)
    assert len(fakes["coinbase"].requests) == 50
    assert fakes["kraken"].requests == fakes["bitstamp"].requests == []

    asked = sum(len(api.requests) for api in fakes.values())
    again = record_slots(pairs, slot, settings=KEYLESS, endpoints=endpoints(fakes), vm=vm)
    assert all(r.already_recorded for r in again)
    assert sum(len(api.requests) for api in fakes.values()) == asked


def test_a_batch_fails_over_per_pair_and_records_the_rest_when_one_pair_is_implausible(vm, fakes) -> None:
    pairs = [Pair.parse(p) for p in synthetic_pairs(120)] + [BTC_USD]
    slot = current_slot()
    store_previous(vm, slot, PRICES[("BTC", "USD")])
    fakes["coinbase"].mode = "http_500"  # the first source is down: kraken carries the batch
    fakes["kraken"].scale = 10.0  # ... and says every price is ten times higher; only BTC/USD has a reference
    results = {r.pair: r for r in record_slots(pairs, slot, settings=KEYLESS, endpoints=endpoints(fakes), vm=vm)}
    stored_now = rates_at(vm, int(slot.timestamp()))
    assert isinstance(results[BTC_USD].error, ImplausibleQuote)
    assert "kraken says 640907, 900.0 % away" in str(results[BTC_USD].error)
    assert "bitstamp says 64093.5" in str(results[BTC_USD].error)
    assert not [key for key in stored_now if key[:2] == ("BTC", "USD")]
    assert all(results[p].error is None and results[p].quote.source == "kraken" for p in pairs[:-1])
    assert len(stored_now) == 120
    assert len(fakes["kraken"].requests) == 3  # 121 pairs in chunks of 50
    assert len(fakes["coinbase"].requests) <= SOURCES["coinbase"].concurrency  # down: not asked per base
    assert [path for path, _, _ in fakes["bitstamp"].requests] == ["/api/v2/ticker/btcusd/"]  # the second opinion
    up = vm.export(
        selector("exchange_rate_source_up", source="coinbase"), int(slot.timestamp()), int(slot.timestamp()) + 1
    )
    assert len(up) == 121
    assert {v for points in up.values() for v in points.values()} == {0.0}
