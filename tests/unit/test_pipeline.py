"""Settings, source order and the samples of a slot (pure logic; real runs are in integration/)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from btc_usd.model import ConfigError, Pair, Quote
from btc_usd.pipeline import Attempt, Endpoint, Settings, SlotResult, parse_settings, slot_samples, source_order
from btc_usd.quota import uses_alphavantage

SLOT = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
WITH_KEY = {
    "alphavantage": Endpoint("https://www.alphavantage.co", "KEY"),
    "coinbase": Endpoint("https://api.coinbase.com"),
    "kraken": Endpoint("https://api.kraken.com"),
    "bitstamp": Endpoint("https://www.bitstamp.net"),
}
NO_KEY = WITH_KEY | {"alphavantage": Endpoint("https://www.alphavantage.co")}


def test_defaults_when_no_variable_is_set() -> None:
    settings = parse_settings({})
    assert settings == Settings()
    assert settings.pairs == (Pair("BTC", "USD"),)
    assert settings.sources == ("alphavantage", "coinbase", "kraken", "bitstamp")
    assert settings.alphavantage_daily_budget == 25


def test_variables_override_defaults() -> None:
    settings = parse_settings(
        {
            "exchange_rate_pairs": '["BTC/USD", "eth/usd"]',
            "exchange_rate_sources": '["kraken", "coinbase"]',
            "alphavantage_daily_budget": "100000",
            "exchange_rate_max_quote_age_seconds": "60",
            "exchange_rate_batch_size": "40",
        }
    )
    assert settings.pairs == (Pair("BTC", "USD"), Pair("ETH", "USD"))
    assert settings.sources == ("kraken", "coinbase")
    assert settings.alphavantage_daily_budget == 100000
    assert settings.max_quote_age_seconds == 60
    assert settings.batch_size == 40


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("exchange_rate_pairs", "BTC/USD", "must be a non-empty JSON list of strings"),
        ("exchange_rate_pairs", "[]", "must be a non-empty JSON list"),
        ("exchange_rate_pairs", '["BTCUSD"]', "must look like 'BTC/USD'"),
        ("exchange_rate_pairs", '["BTC/BTC"]', "same base and quote"),
        ("exchange_rate_pairs", '["BTC/US D"]', "is not a currency code"),
        ("exchange_rate_pairs", '["BTC/USD", "btc/usd"]', "lists a pair twice"),
        ("exchange_rate_sources", '["coinbase", "binance"]', "unknown sources ['binance']"),
        ("exchange_rate_sources", '"coinbase"', "must be a non-empty JSON list"),
        ("alphavantage_daily_budget", "-1", "whole number ≥ 0"),
        ("alphavantage_daily_budget", "lots", "whole number ≥ 0"),
        ("exchange_rate_max_quote_age_seconds", "0", "whole number > 0"),
        ("exchange_rate_batch_size", "0", "whole number > 0"),
    ],
)
def test_bad_variables_name_the_variable_and_the_fix(variable: str, value: str, message: str) -> None:
    with pytest.raises(ConfigError, match=f"^Variable {variable}") as caught:
        parse_settings({variable: value})
    assert message in str(caught.value)


def test_without_a_key_alphavantage_is_skipped_with_the_reason() -> None:
    order, skipped = source_order(Settings(), NO_KEY, SLOT)
    assert order == ["coinbase", "kraken", "bitstamp"]
    assert skipped == ["alphavantage: no API key configured (set the password of its connection)"]


def test_budgeted_slots_try_alphavantage_first_and_others_do_not() -> None:
    day = [SLOT.replace(hour=0) + timedelta(minutes=10 * i) for i in range(144)]
    firsts = [source_order(Settings(), WITH_KEY, slot)[0][0] for slot in day]
    assert firsts.count("alphavantage") == 25
    assert set(firsts) == {"alphavantage", "coinbase"}


def test_retries_do_not_spend_the_free_budget() -> None:
    slot = next(
        s for s in (SLOT + timedelta(minutes=10 * i) for i in range(12)) if uses_alphavantage(s, daily_budget=25)
    )
    assert source_order(Settings(), WITH_KEY, slot)[0][0] == "alphavantage"
    order, skipped = source_order(Settings(), WITH_KEY, slot, first_try=False)
    assert "alphavantage" not in order
    assert skipped == ["alphavantage: retries do not spend the free daily budget"]


def test_a_paid_key_uses_alphavantage_in_every_slot_and_retry() -> None:
    paid = Settings(alphavantage_daily_budget=100000)
    for minutes in range(0, 1440, 10):
        order, _ = source_order(paid, WITH_KEY, SLOT + timedelta(minutes=minutes), first_try=False)
        assert order[0] == "alphavantage"


def test_configured_order_is_kept() -> None:
    order, skipped = source_order(Settings(sources=("bitstamp", "kraken")), NO_KEY, SLOT)
    assert (order, skipped) == (["bitstamp", "kraken"], [])


def lines(samples) -> set[str]:
    return {f"{s.name}{dict(sorted(s.tags.items()))}={s.value}@{s.timestamp}" for s in samples}


def test_a_successful_slot_writes_rate_spread_age_health_and_failures() -> None:
    pair = Pair("BTC", "USD")
    ts = int(SLOT.timestamp())
    fetched = SLOT + timedelta(seconds=3)
    quote = Quote("bitstamp", pair, 64091.0, 64090.0, 64092.0, SLOT - timedelta(seconds=7))
    result = SlotResult(
        pair,
        ts,
        [Attempt("alphavantage", fetched, error="throttled"), Attempt("bitstamp", fetched, quote, accepted=True)],
    )
    tags = "'base': 'BTC', 'quote': 'USD'"
    assert lines(slot_samples(result, Settings())) == {
        f"exchange_rate{{{tags}, 'source': 'bitstamp'}}=64091.0@{ts}",
        f"exchange_rate_bid{{{tags}, 'source': 'bitstamp'}}=64090.0@{ts}",
        f"exchange_rate_ask{{{tags}, 'source': 'bitstamp'}}=64092.0@{ts}",
        f"exchange_rate_quote_age_seconds{{{tags}, 'source': 'bitstamp'}}=10.0@{ts}",
        f"exchange_rate_last_success_timestamp_seconds{{{tags}}}={float(ts)}@{ts}",
        f"exchange_rate_source_up{{{tags}, 'source': 'alphavantage'}}=0.0@{ts}",
        f"exchange_rate_source_up{{{tags}, 'source': 'bitstamp'}}=1.0@{ts}",
        f"exchange_rate_alphavantage_daily_budget{{}}=25.0@{ts}",
    }


def test_a_failed_slot_writes_only_the_failure_signal() -> None:
    pair = Pair("BTC", "USD")
    ts = int(SLOT.timestamp())
    result = SlotResult(pair, ts, [Attempt("coinbase", SLOT, error="HTTP 500"), Attempt("kraken", SLOT, error="x")])
    assert {s.name for s in slot_samples(result, Settings())} == {"exchange_rate_source_up"}
    assert {s.value for s in slot_samples(result, Settings())} == {0.0}
