"""HTTP failures of a source, against a local fake speaking the real formats."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from btc_usd.fetch import FetchError, base_url, get_json
from btc_usd.model import Pair, SourceError
from btc_usd.sources import SOURCES, fetch_quote
from fakes.rate_apis import FakeRateAPI

BTC_USD = Pair("BTC", "USD")
KEY = "K3YSECRET42"


@pytest.fixture
def fake() -> Iterator[FakeRateAPI]:
    api = FakeRateAPI("any", delay=2.0).start()
    yield api
    api.stop()


def quote_from(fake: FakeRateAPI, source: str, *, now: datetime | None = None, max_age: int = 900):
    return fetch_quote(
        SOURCES[source],
        BTC_USD,
        base_url=fake.url,
        api_key=KEY,
        now=now or datetime.now(UTC),
        max_age=timedelta(seconds=max_age),
        timeout=0.5,
    )


@pytest.mark.parametrize("source", sorted(SOURCES))
def test_each_source_answers_through_http(fake: FakeRateAPI, source: str) -> None:
    quote = quote_from(fake, source)
    assert quote.source == source
    assert quote.problems() == []
    path, _query, headers = fake.requests[-1]
    assert headers["User-Agent"].startswith("btc-usd-stack/")  # Coinbase refuses requests without one
    assert path == SOURCES[source].request(BTC_USD, KEY)[0]


@pytest.mark.parametrize(
    ("mode", "reason"),
    [
        ("http_500", "HTTP 500"),
        ("http_429", "rate limited (HTTP 429)"),
        ("not_json", "reply is not JSON"),
        ("slow", "no complete reply within 0.5 s"),
    ],
)
def test_transport_failures_become_one_line_reasons(fake: FakeRateAPI, mode: str, reason: str) -> None:
    fake.mode = mode
    with pytest.raises(FetchError, match=re.escape(reason)):
        get_json(fake.url + "/v2/prices/BTC-USD/spot", timeout=0.5)


def test_a_redirect_is_refused_and_never_followed(fake: FakeRateAPI) -> None:
    internal = FakeRateAPI("victoriametrics").start()
    try:
        fake.mode = "redirect"
        fake.redirect_to = internal.url + '/api/v1/admin/tsdb/delete_series?match[]={__name__=~".+"}'
        with pytest.raises(FetchError, match=r"HTTP 302 redirect refused"):
            get_json(fake.url + "/v2/prices/BTC-USD/spot", timeout=0.5)
        assert internal.requests == []
    finally:
        internal.stop()


@pytest.mark.parametrize(
    ("mode", "reason"),
    [
        ("trickle", "no complete reply within 0.5 s"),  # each byte in time, the whole body not
        ("nested", "reply is not JSON"),  # RecursionError in the decoder
        ("huge", "reply is larger than 2097152 bytes"),
    ],
)
def test_hostile_replies_are_one_line_failures(fake: FakeRateAPI, mode: str, reason: str) -> None:
    fake.mode = mode
    with pytest.raises(FetchError, match=re.escape(reason)):
        get_json(fake.url + "/v2/prices/BTC-USD/spot", timeout=0.5)


@pytest.mark.parametrize("mode", ["nan", "inf"])
@pytest.mark.parametrize("source", sorted(SOURCES))
def test_non_finite_prices_are_refused(fake: FakeRateAPI, source: str, mode: str) -> None:
    fake.mode = mode
    with pytest.raises(SourceError, match="not a positive finite number"):
        quote_from(fake, source)


def test_connection_refused(fake: FakeRateAPI) -> None:
    url = fake.url
    fake.stop()
    with pytest.raises(FetchError, match="cannot connect"):
        get_json(url + "/query", timeout=0.5)


def test_throttled_alphavantage_never_leaks_the_key(fake: FakeRateAPI) -> None:
    fake.mode = "throttled"  # the real quota reply quotes the key back
    with pytest.raises(SourceError) as caught:
        quote_from(fake, "alphavantage")
    assert "throttled" in caught.value.reason
    assert "***" in caught.value.reason
    assert KEY not in str(caught.value)
    assert caught.value.__suppress_context__  # the unredacted original is not chained


def test_stale_quote_is_refused(fake: FakeRateAPI) -> None:
    fake.mode = "stale"
    with pytest.raises(SourceError, match=r"quote is \d+ s old \(limit 900 s\)"):
        quote_from(fake, "bitstamp")


def test_quote_from_the_future_is_refused(fake: FakeRateAPI) -> None:
    with pytest.raises(SourceError, match="in the future"):
        quote_from(fake, "alphavantage", now=datetime.now(UTC) - timedelta(hours=1))


def test_sources_without_timestamps_are_not_aged(fake: FakeRateAPI) -> None:
    fake.mode = "stale"
    assert quote_from(fake, "coinbase").quoted_at is None


@pytest.mark.parametrize(
    ("host", "schema", "port", "expected"),
    [
        (None, None, None, "https://api.coinbase.com"),
        ("www.alphavantage.co", "https", None, "https://www.alphavantage.co"),
        ("127.0.0.1", "http", 8001, "http://127.0.0.1:8001"),
        ("https://proxy.example/api/", None, None, "https://proxy.example/api"),
        ("api.kraken.com", "", None, "https://api.kraken.com"),
    ],
)
def test_base_url_from_connection_fields(host, schema, port, expected) -> None:
    assert base_url(host, schema, port, "https://api.coinbase.com") == expected
