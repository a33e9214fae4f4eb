"""Any JSON at all: each parser returns a valid quote or raises SourceError, nothing else."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, find, given, settings
from hypothesis import strategies as st

from btc_usd.backfill import parse_bitstamp_ohlc
from btc_usd.model import Pair, SourceError
from btc_usd.sources import SOURCES

BTC_USD = Pair("BTC", "USD")

scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12)
numbers = (
    st.from_regex(r"\A-?[0-9]{1,7}(\.[0-9]{0,8})?\Z")
    | st.sampled_from(["NaN", "inf", "-0", "0", "1e999", "", " 5 "])
    | st.floats()
    | st.integers(-(10**30), 10**30)
)
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=12,
)


def shaped(keys: list[str], value=numbers | scalars) -> st.SearchStrategy[dict]:
    """Dicts that look like a real reply: the right keys with arbitrary values, some missing."""
    return st.fixed_dictionaries({}, optional={k: value for k in keys})


prices = st.decimals(min_value="0.00000001", max_value="1000000", places=8).map(str)


def mostly(right: st.SearchStrategy, wrong: st.SearchStrategy = numbers | scalars) -> st.SearchStrategy:
    """Values that are usually plausible, so the success path is exercised too."""
    return st.one_of(right, right, right, wrong)


alphavantage = st.fixed_dictionaries(
    {},
    optional={
        "Realtime Currency Exchange Rate": st.fixed_dictionaries(
            {
                "1. From_Currency Code": mostly(st.just("BTC")),
                "3. To_Currency Code": mostly(st.just("USD")),
                "5. Exchange Rate": mostly(prices),
                "6. Last Refreshed": mostly(st.sampled_from(["2026-11-26 12:00:00", "2026-02-30 25:00:00"])),
                "7. Time Zone": mostly(st.sampled_from(["UTC", "US/Eastern"])),
            },
            optional={"8. Bid Price": mostly(prices), "9. Ask Price": mostly(prices)},
        ),
        "Note": scalars,
    },
)
coinbase = st.fixed_dictionaries(
    {}, optional={"data": shaped(["amount", "base", "currency"], numbers | st.sampled_from(["BTC", "USD"]))}
)
price_lists = mostly(st.lists(prices, min_size=1, max_size=3), st.lists(numbers, max_size=2) | scalars)
kraken = st.fixed_dictionaries(
    {},
    optional={
        "error": mostly(st.just([]), st.lists(st.text(max_size=5), max_size=1) | scalars),
        "result": mostly(
            st.dictionaries(
                st.sampled_from(["XXBTZUSD", "XBTUSD", "XETHZUSD"]),
                st.fixed_dictionaries({}, optional=dict.fromkeys("abc", price_lists)),
                min_size=1,
                max_size=1,
            ),
            st.dictionaries(st.text(max_size=8), json_values, max_size=3),
        ),
    },
)
bitstamp = shaped(["last", "bid", "ask", "timestamp"], numbers)
ohlc = st.fixed_dictionaries(
    {},
    optional={
        "data": st.fixed_dictionaries(
            {},
            optional={
                "pair": st.sampled_from(["BTC/USD", "ETH/USD"]),
                "ohlc": st.lists(shaped(["timestamp", "open", "close"]) | scalars, max_size=4),
            },
        )
    },
)
REPLIES = {"alphavantage": alphavantage, "coinbase": coinbase, "kraken": kraken, "bitstamp": bitstamp}


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_source_parsers_return_valid_quotes_or_source_errors(data: st.DataObject) -> None:
    name = data.draw(st.sampled_from(sorted(SOURCES)))
    payload = data.draw(json_values | REPLIES[name])
    try:
        quote = SOURCES[name].parse(payload, BTC_USD)
    except SourceError as exc:
        error = exc
    else:
        assert quote.source == name
        assert quote.pair == BTC_USD
        assert quote.problems() == []
        return
    assert error.source == name
    assert error.reason
    assert "\n" not in error.reason


@settings(max_examples=300)
@given(payload=json_values | ohlc)
def test_ohlc_parser_returns_valid_candles_or_source_errors(payload: object) -> None:
    try:
        candles = parse_bitstamp_ohlc(payload, BTC_USD)
    except SourceError:
        return
    for candle in candles:
        assert candle.timestamp % 300 == 0
        assert candle.open > 0
        assert candle.close > 0


@pytest.mark.parametrize("name", sorted(REPLIES))
def test_the_reply_strategies_also_reach_valid_quotes(name: str) -> None:
    """Guard against a vacuous property: the shaped replies do produce parseable quotes."""

    def parses(payload: dict) -> bool:
        try:
            SOURCES[name].parse(payload, BTC_USD)
        except SourceError:
            return False
        return True

    assert parses(find(REPLIES[name], parses, settings=settings(max_examples=20000, database=None, derandomize=True)))
