"""HTTP failures of a source, against a local fake speaking the real formats."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from btc_usd.fetch import FetchError, base_url, get_json
from btc_usd.model import Pair, SourceError
from btc_usd.sources import SOURCES, fetch_quote, fetch_quotes
from fakes.rate_apis import FakeRateAPI, price_of, synthetic_pairs

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


# -- many pairs from one source ------------------------------------------------------


def quotes_from(fake: FakeRateAPI, source: str, pairs: list[Pair], timeout: float = 2.0):
    return fetch_quotes(
        SOURCES[source],
        pairs,
        base_url=fake.url,
        api_key=KEY,
        now=datetime.now(UTC),
        max_age=timedelta(seconds=900),
        timeout=timeout,
    )


def test_kraken_answers_120_pairs_in_three_requests(fake: FakeRateAPI) -> None:
    pairs = [Pair.parse(p) for p in synthetic_pairs(120)]
    outcomes = quotes_from(fake, "kraken", pairs)
    assert list(outcomes) == pairs
    assert {pair: quote.rate for pair, quote in outcomes.items()} == {
        pair: price_of(pair.base, pair.quote) + 2 for pair in pairs
    }
    assert [path for path, _, _ in fake.requests] == ["/0/public/Ticker"] * 3


def test_coinbase_asks_once_per_base(fake: FakeRateAPI) -> None:
    pairs = [Pair.parse(p) for p in synthetic_pairs(40)]  # 10 bases, 4 quotes each
    outcomes = quotes_from(fake, "coinbase", pairs)
    assert {p: q.rate for p, q in outcomes.items()} == pytest.approx({p: price_of(p.base, p.quote) + 1 for p in pairs})
    assert sorted(query["currency"] for _, query, _ in fake.requests) == [f"S{i:04d}" for i in range(10)]


def test_an_unknown_pair_fails_only_its_kraken_chunk(fake: FakeRateAPI) -> None:
    pairs = [Pair.parse(p) for p in synthetic_pairs(60)] + [Pair("NOPE", "USD")]  # chunks of 50 and 11
    outcomes = quotes_from(fake, "kraken", pairs)
    failed = {pair for pair, outcome in outcomes.items() if isinstance(outcome, SourceError)}
    assert failed == set(pairs[50:])
    assert all("EQuery:Unknown asset pair" in outcomes[pair].reason for pair in failed)


def test_an_unavailable_source_is_not_asked_again_within_the_run(fake: FakeRateAPI) -> None:
    fake.mode = "slow"  # every request waits out its deadline
    pairs = [Pair.parse(p) for p in synthetic_pairs(40)]
    outcomes = quotes_from(fake, "bitstamp", pairs, timeout=0.5)
    assert all(isinstance(outcome, SourceError) for outcome in outcomes.values())
    reasons = [outcome.reason for outcome in outcomes.values()]
    timed_out = [r for r in reasons if r == "no complete reply within 0.5 s"]
    # Only the first wave went out (fewer if a request timed out before the others began).
    assert 1 <= len(timed_out) <= SOURCES["bitstamp"].concurrency
    assert len(fake.requests) <= SOURCES["bitstamp"].concurrency
    not_asked = [r for r in reasons if r.startswith("not asked: unavailable earlier in this run (no complete reply")]
    assert len(not_asked) == len(pairs) - len(timed_out)
