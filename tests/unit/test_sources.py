"""Parsers against the real reply shapes and every failure shape (shared/reference/sources.md)."""

from __future__ import annotations

import copy
import re
from datetime import UTC, datetime, timedelta

import pytest

from btc_usd.model import Pair, SourceError
from btc_usd.sources import (
    KRAKEN_PAIRS_PER_REQUEST,
    SOURCES,
    parse_alphavantage,
    parse_bitstamp,
    parse_coinbase,
    parse_kraken,
    read_coinbase_rates,
    read_kraken,
)

BTC_USD = Pair("BTC", "USD")

ALPHAVANTAGE = {
    "Realtime Currency Exchange Rate": {
        "1. From_Currency Code": "BTC",
        "2. From_Currency Name": "Bitcoin",
        "3. To_Currency Code": "USD",
        "4. To_Currency Name": "United States Dollar",
        "5. Exchange Rate": "23933.49000000",
        "6. Last Refreshed": "2020-12-19 22:37:01",
        "7. Time Zone": "UTC",
        "8. Bid Price": "23930.67000000",
        "9. Ask Price": "23933.49000000",
    }
}
COINBASE = {"data": {"amount": "64090.00", "base": "BTC", "currency": "USD"}}
KRAKEN = {
    "error": [],
    "result": {
        "XXBTZUSD": {
            "a": ["64090.1", "1", "1.000"],
            "b": ["64090.0", "2", "2.000"],
            "c": ["64090.0", "0.001"],
            "v": ["100", "200"],
        }
    },
}
BITSTAMP = {
    "last": "64091.00",
    "high": "65000.00",
    "low": "63000.00",
    "vwap": "64000.00",
    "volume": "1234.5",
    "bid": "64090.00",
    "ask": "64092.00",
    "timestamp": "1764180000",
    "open": "64000.00",
}


def test_alphavantage_real_reply() -> None:
    quote = parse_alphavantage(ALPHAVANTAGE, BTC_USD)
    assert (quote.source, quote.rate, quote.bid, quote.ask) == ("alphavantage", 23933.49, 23930.67, 23933.49)
    assert quote.quoted_at == datetime(2020, 12, 19, 22, 37, 1, tzinfo=UTC)
    assert quote.problems() == []


def test_alphavantage_older_reply_without_bid_and_ask() -> None:
    reply = copy.deepcopy(ALPHAVANTAGE)
    del reply["Realtime Currency Exchange Rate"]["8. Bid Price"]
    del reply["Realtime Currency Exchange Rate"]["9. Ask Price"]
    quote = parse_alphavantage(reply, BTC_USD)
    assert (quote.rate, quote.bid, quote.ask) == (23933.49, None, None)


@pytest.mark.parametrize(
    ("reply", "reason"),
    [
        ({"Error Message": "the parameter apikey is invalid or missing."}, "error: Error Message"),
        ({"Error Message": "Invalid API call. Please retry."}, "error: Error Message"),
        ({"Information": "our standard API rate limit is 25 requests per day."}, "throttled: Information"),
        ({"Information": "Please consider spreading out your free API requests (1 request per second)."}, "throttled"),
        (
            {"Note": "Thank you for using Alpha Vantage! Our standard API call frequency is 5 calls per minute."},
            "throttled: Note",
        ),
        ({"Information": "The **demo** API key is for demo purposes only."}, "throttled"),
        ({}, "'Realtime Currency Exchange Rate' is missing"),
        ({"Realtime Currency Exchange Rate": []}, "not a JSON object"),
        ([], "reply is missing or not a JSON object"),
    ],
)
def test_alphavantage_error_replies(reply: object, reason: str) -> None:
    with pytest.raises(SourceError, match=r"^alphavantage: ") as caught:
        parse_alphavantage(reply, BTC_USD)
    assert reason in caught.value.reason


@pytest.mark.parametrize(
    ("field", "value", "reason"),
    [
        ("5. Exchange Rate", None, "5. Exchange Rate' is missing"),
        ("5. Exchange Rate", "abc", "not a decimal number"),
        ("5. Exchange Rate", "NaN", "not a decimal number"),
        ("5. Exchange Rate", "inf", "not a decimal number"),
        ("5. Exchange Rate", "-1.5", "not a decimal number"),
        ("5. Exchange Rate", "0.00000000", "not a positive finite number"),
        ("5. Exchange Rate", "1" + "0" * 400, "not a positive finite number"),
        ("5. Exchange Rate", True, "not a number"),
        ("8. Bid Price", "23999.0", "bid 23999.0 is above ask 23933.49"),
        ("1. From_Currency Code", "ETH", "reply is for ETH/USD, asked for BTC/USD"),
        ("3. To_Currency Code", "EUR", "reply is for BTC/EUR"),
        ("6. Last Refreshed", "yesterday", "is not 'YYYY-MM-DD HH:MM:SS'"),
        ("7. Time Zone", "US/Eastern", "unsupported time zone"),
    ],
)
def test_alphavantage_bad_fields(field: str, value: object, reason: str) -> None:
    reply = copy.deepcopy(ALPHAVANTAGE)
    if value is None:
        del reply["Realtime Currency Exchange Rate"][field]
    else:
        reply["Realtime Currency Exchange Rate"][field] = value
    with pytest.raises(SourceError) as caught:
        parse_alphavantage(reply, BTC_USD)
    assert reason in caught.value.reason


def test_coinbase_real_reply() -> None:
    quote = parse_coinbase(COINBASE, BTC_USD)
    assert (quote.source, quote.rate, quote.bid, quote.ask, quote.quoted_at) == ("coinbase", 64090.0, None, None, None)


@pytest.mark.parametrize(
    ("reply", "reason"),
    [
        ({"errors": [{"id": "not_found", "message": "Invalid currency"}]}, "error: "),
        ({"data": {"amount": "64090.00", "base": "ETH", "currency": "USD"}}, "reply is for ETH/USD"),
        ({"data": {"amount": "", "base": "BTC", "currency": "USD"}}, "not a decimal number"),
        ({"data": {"base": "BTC", "currency": "USD"}}, "'amount' is missing"),
        ({"data": "64090"}, "'data' is missing or not a JSON object"),
    ],
)
def test_coinbase_error_replies(reply: object, reason: str) -> None:
    with pytest.raises(SourceError) as caught:
        parse_coinbase(reply, BTC_USD)
    assert reason in caught.value.reason


def test_kraken_real_reply_uses_last_trade() -> None:
    quote = parse_kraken(KRAKEN, BTC_USD)
    assert (quote.source, quote.rate, quote.bid, quote.ask) == ("kraken", 64090.0, 64090.0, 64090.1)


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"error": ["EAPI:Rate limit exceeded"], "result": {}}, "error: EAPI:Rate limit exceeded"),
        ({"error": ["EQuery:Unknown asset pair"]}, "EQuery:Unknown asset pair"),
        ({"error": None}, "'error' is missing or not a list"),
        ({"result": {"XETHZUSD": KRAKEN["result"]["XXBTZUSD"]}}, "reply is for 'XETHZUSD'"),
        ({"result": {"XXBTZUSD": {}, "XETHZUSD": {}}}, "holds 2 pairs"),
        ({"result": {"XXBTZUSD": {"a": ["1"], "b": ["2"], "c": ["1.5"]}}}, "bid 2.0 is above ask 1.0"),
        ({"result": {"XXBTZUSD": {"a": [], "b": ["2"], "c": ["1.5"]}}}, "'a' is not a non-empty list"),
    ],
)
def test_kraken_error_replies(change: dict, reason: str) -> None:
    with pytest.raises(SourceError) as caught:
        parse_kraken(KRAKEN | change, BTC_USD)
    assert reason in caught.value.reason


def test_bitstamp_real_reply() -> None:
    quote = parse_bitstamp(BITSTAMP, BTC_USD)
    assert (quote.rate, quote.bid, quote.ask) == (64091.0, 64090.0, 64092.0)
    assert quote.quoted_at == datetime.fromtimestamp(1764180000, UTC)


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"timestamp": "soon"}, "timestamp 'soon' is not a decimal number"),
        ({"timestamp": "9" * 30}, "is not a valid unix time"),
        ({"bid": "64093.00"}, "bid 64093.0 is above ask 64092.0"),
        ({"last": 0}, "not a positive finite number"),
        ({"errors": [{"message": "Not found"}]}, "error: "),
    ],
)
def test_bitstamp_error_replies(change: dict, reason: str) -> None:
    with pytest.raises(SourceError) as caught:
        parse_bitstamp(BITSTAMP | change, BTC_USD)
    assert reason in caught.value.reason


def test_request_shapes_follow_the_apis() -> None:
    eth_eur = Pair("ETH", "EUR")
    assert SOURCES["alphavantage"].request(BTC_USD, "KEY") == (
        "/query",
        {"function": "CURRENCY_EXCHANGE_RATE", "from_currency": "BTC", "to_currency": "USD", "apikey": "KEY"},
    )
    assert SOURCES["coinbase"].request(eth_eur, None) == ("/v2/prices/ETH-EUR/spot", {})
    assert SOURCES["kraken"].request(BTC_USD, None) == ("/0/public/Ticker", {"pair": "XBTUSD"})
    assert SOURCES["bitstamp"].request(eth_eur, None) == ("/api/v2/ticker/etheur/", {})


def test_every_parser_returns_timezone_aware_or_no_timestamp() -> None:
    for quote in (
        parse_alphavantage(ALPHAVANTAGE, BTC_USD),
        parse_bitstamp(BITSTAMP, BTC_USD),
        parse_kraken(KRAKEN, BTC_USD),
        parse_coinbase(COINBASE, BTC_USD),
    ):
        assert quote.quoted_at is None or quote.quoted_at.utcoffset() == timedelta(0)


# -- many pairs per request ------------------------------------------------------

ETH_USD, BTC_EUR = Pair("ETH", "USD"), Pair("BTC", "EUR")
TICKER = KRAKEN["result"]["XXBTZUSD"]


def test_kraken_batch_reply_maps_legacy_and_new_pair_names() -> None:
    reply = {"error": [], "result": {"XXBTZUSD": TICKER, "ETHUSD": TICKER | {"c": ["3150.5", "1"]}}}
    outcomes = read_kraken(reply, [BTC_USD, ETH_USD])
    assert outcomes[BTC_USD].rate == 64090.0
    assert outcomes[ETH_USD].rate == 3150.5
    assert outcomes[ETH_USD].pair == ETH_USD


def test_kraken_batch_fails_only_the_pair_it_leaves_out_or_breaks() -> None:
    reply = {"error": [], "result": {"XXBTZUSD": TICKER | {"c": ["NaN", "1"]}}}
    outcomes = read_kraken(reply, [BTC_USD, ETH_USD])
    assert "not a decimal number" in outcomes[BTC_USD].reason
    assert outcomes[ETH_USD].reason == "the reply has no ticker for ETH/USD"


@pytest.mark.parametrize(
    ("result", "reason"),
    [
        ({"XXBTZUSD": TICKER, "XLTCZUSD": TICKER}, "reply is for 'XLTCZUSD', which was not asked for"),
        ({"XXBTZUSD": TICKER, "XBTUSD": TICKER, "ETHUSD": TICKER}, "holds 3 pairs, expected 2"),
    ],
)
def test_kraken_batch_reply_with_pairs_not_asked_for_is_refused_whole(result: dict, reason: str) -> None:
    with pytest.raises(SourceError, match=re.escape(reason)):
        read_kraken({"error": [], "result": result}, [BTC_USD, ETH_USD])


def test_coinbase_exchange_rates_give_every_quote_of_a_base() -> None:
    reply = {"data": {"currency": "BTC", "rates": {"USD": "64090.00", "EUR": "59011.75", "XAU": "25.1"}}}
    outcomes = read_coinbase_rates(reply, [BTC_USD, BTC_EUR])
    assert (outcomes[BTC_USD].rate, outcomes[BTC_EUR].rate) == (64090.0, 59011.75)
    assert outcomes[BTC_EUR].source == "coinbase"


@pytest.mark.parametrize(
    ("reply", "reason"),
    [
        ({"data": {"currency": "ETH", "rates": {"USD": "1"}}}, "reply is for ETH, asked for BTC"),
        ({"errors": [{"id": "invalid_request"}]}, "error: "),
        ({"data": {"currency": "BTC", "rates": ["64090"]}}, "'data.rates' is missing or not a JSON object"),
    ],
)
def test_coinbase_exchange_rates_refused_whole(reply: object, reason: str) -> None:
    with pytest.raises(SourceError, match=re.escape(reason)):
        read_coinbase_rates(reply, [BTC_USD, BTC_EUR])


def test_coinbase_exchange_rates_fail_a_missing_or_absurd_quote_alone() -> None:
    reply = {"data": {"currency": "BTC", "rates": {"USD": "1e400"}}}
    outcomes = read_coinbase_rates(reply, [BTC_USD, BTC_EUR])
    assert "not a decimal number" in outcomes[BTC_USD].reason
    assert "'EUR' is missing" in outcomes[BTC_EUR].reason


def test_batched_sources_plan_as_few_requests_as_their_apis_allow() -> None:
    coinbase = SOURCES["coinbase"].requests([BTC_USD, ETH_USD, BTC_EUR], None)
    assert [(r.path, r.params, r.pairs) for r in coinbase] == [
        ("/v2/exchange-rates", {"currency": "BTC"}, (BTC_USD, BTC_EUR)),
        ("/v2/prices/ETH-USD/spot", {}, (ETH_USD,)),
    ]
    many = [Pair(f"S{i:04d}", "USD") for i in range(120)]
    kraken = SOURCES["kraken"].requests(many, None)
    assert [len(r.pairs) for r in kraken] == [KRAKEN_PAIRS_PER_REQUEST, KRAKEN_PAIRS_PER_REQUEST, 20]
    assert kraken[0].params["pair"].split(",")[:2] == ["S0000USD", "S0001USD"]
    assert [r.pairs for r in SOURCES["bitstamp"].requests([BTC_USD, ETH_USD], None)] == [(BTC_USD,), (ETH_USD,)]
    assert SOURCES["alphavantage"].concurrency == 1  # its burst limit is one request per second
