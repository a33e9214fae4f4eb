"""Rate sources: how to ask each one, and a strict parser for each reply.

A parser takes the decoded JSON and returns a valid Quote or raises SourceError.
Reply shapes: ``shared/reference/sources.md`` (Alpha Vantage, Coinbase, Kraken, Bitstamp).
"""

from __future__ import annotations

import math
import re
import threading
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from btc_usd.fetch import FetchError, Unavailable, get_json
from btc_usd.model import Pair, Quote, SourceError

_DECIMAL = re.compile(r"^\s*[0-9]+(\.[0-9]+)?\s*$")
_UTC_NAMES = {"UTC", "Etc/UTC", "GMT", "Z"}
# Kraken's own asset codes where they differ from ISO-style ones.
_KRAKEN_CODES = {"BTC": "XBT", "DOGE": "XDG"}
# A source clock may run slightly ahead of ours; beyond this the timestamp is bogus.
MAX_CLOCK_SKEW = timedelta(minutes=5)


def excerpt(value: object, limit: int = 160) -> str:
    """An upstream message on one line, cut to ``limit`` characters, for logs and errors."""
    return " ".join(str(value).split())[:limit]


def positive_number(source: str, value: object, field: str) -> float:
    """A strictly positive, finite number from a decimal string or a JSON number."""
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise SourceError(source, f"{field} is {type(value).__name__}, not a number")
    if isinstance(value, str) and not _DECIMAL.match(value):
        raise SourceError(source, f"{field} {value[:40]!r} is not a decimal number")
    try:
        number = float(value)
    except OverflowError:
        raise SourceError(source, f"{field} is out of range") from None
    if not math.isfinite(number) or number <= 0:
        raise SourceError(source, f"{field} {number!r} is not a positive finite number")
    return number


def json_object(source: str, value: object, what: str) -> Mapping[str, Any]:
    if not isinstance(value, dict):
        raise SourceError(source, f"{what} is missing or not a JSON object")
    return value


def _field(source: str, obj: Mapping[str, Any], key: str) -> Any:
    if key not in obj:
        raise SourceError(source, f"field {key!r} is missing")
    return obj[key]


def _epoch(source: str, value: object, field: str) -> datetime:
    seconds = positive_number(source, value, field)
    try:
        return datetime.fromtimestamp(seconds, tz=UTC)
    except (OverflowError, OSError, ValueError):
        raise SourceError(source, f"{field} {seconds!r} is not a valid unix time") from None


def _check_pair(source: str, pair: Pair, base: object, quote: object) -> None:
    if (base, quote) != (pair.base, pair.quote):
        raise SourceError(source, f"reply is for {excerpt(base, 12)}/{excerpt(quote, 12)}, asked for {pair}")


def _check_spread(source: str, bid: float | None, ask: float | None) -> None:
    if bid is not None and ask is not None and bid > ask:
        raise SourceError(source, f"bid {bid} is above ask {ask}")


def parse_alphavantage(payload: object, pair: Pair) -> Quote:
    """Alpha Vantage CURRENCY_EXCHANGE_RATE; errors and throttling arrive as HTTP 200."""
    name = "alphavantage"
    body = json_object(name, payload, "reply")
    for key in ("Error Message", "Information", "Note"):
        if key in body:
            kind = "throttled" if key != "Error Message" else "error"
            raise SourceError(name, f"{kind}: {key}: {excerpt(body[key])}")
    data = json_object(name, body.get("Realtime Currency Exchange Rate"), "'Realtime Currency Exchange Rate'")
    _check_pair(name, pair, _field(name, data, "1. From_Currency Code"), _field(name, data, "3. To_Currency Code"))
    rate = positive_number(name, _field(name, data, "5. Exchange Rate"), "5. Exchange Rate")
    bid = positive_number(name, data["8. Bid Price"], "8. Bid Price") if "8. Bid Price" in data else None
    ask = positive_number(name, data["9. Ask Price"], "9. Ask Price") if "9. Ask Price" in data else None
    _check_spread(name, bid, ask)
    zone = _field(name, data, "7. Time Zone")
    if zone not in _UTC_NAMES:
        raise SourceError(name, f"unsupported time zone {excerpt(zone, 40)!r}, expected UTC")
    refreshed = _field(name, data, "6. Last Refreshed")
    try:
        quoted_at = datetime.strptime(str(refreshed), "%Y-%m-%d %H:%M:%S").replace(tzinfo=UTC)
    except ValueError:
        raise SourceError(name, f"6. Last Refreshed {excerpt(refreshed, 40)!r} is not 'YYYY-MM-DD HH:MM:SS'") from None
    return Quote(name, pair, rate, bid, ask, quoted_at)


def parse_coinbase(payload: object, pair: Pair) -> Quote:
    """Coinbase spot price: ``{"data": {"amount", "base", "currency"}}``; no timestamp."""
    name = "coinbase"
    body = json_object(name, payload, "reply")
    if "errors" in body:
        raise SourceError(name, f"error: {excerpt(body['errors'])}")
    data = json_object(name, body.get("data"), "'data'")
    _check_pair(name, pair, _field(name, data, "base"), _field(name, data, "currency"))
    return Quote(name, pair, positive_number(name, _field(name, data, "amount"), "amount"))


def _kraken_code(code: str) -> str:
    return _KRAKEN_CODES.get(code, code)


def _kraken_names(pair: Pair) -> set[str]:
    """The names Kraken gives a pair in ``result``: XBTUSDT, or X-/Z-prefixed legacy ones like XXBTZUSD."""
    base, quote = _kraken_code(pair.base), _kraken_code(pair.quote)
    return {base + quote, f"X{base}Z{quote}", f"X{base}{quote}", f"{base}Z{quote}"}


def _kraken_ticker(name: str, pair: Pair, ticker: object) -> Quote:
    """One ticker: last trade ``c[0]``, bid ``b[0]``, ask ``a[0]``; no timestamp."""
    ticker = json_object(name, ticker, f"ticker of {pair}")

    def first(key: str) -> float:
        values = _field(name, ticker, key)
        if not isinstance(values, list) or not values:
            raise SourceError(name, f"field {key!r} is not a non-empty list")
        return positive_number(name, values[0], f"{key}[0]")

    ask, bid, last = first("a"), first("b"), first("c")
    _check_spread(name, bid, ask)
    return Quote(name, pair, last, bid, ask)


def read_kraken(payload: object, pairs: Sequence[Pair]) -> dict[Pair, Quote | SourceError]:
    """Kraken ticker for one or more pairs; a reply naming a pair not asked for is refused whole."""
    name = "kraken"
    body = json_object(name, payload, "reply")
    errors = body.get("error")
    if not isinstance(errors, list):
        raise SourceError(name, "field 'error' is missing or not a list")
    if errors:
        raise SourceError(name, f"error: {excerpt('; '.join(str(e) for e in errors))}")
    result = json_object(name, body.get("result"), "'result'")
    if len(result) > len(pairs):
        raise SourceError(name, f"'result' holds {len(result)} pairs, expected {len(pairs)}")
    owner = {kraken_name: pair for pair in pairs for kraken_name in _kraken_names(pair)}
    unasked = [key for key in result if key not in owner]
    if unasked:
        raise SourceError(name, f"reply is for {excerpt(unasked[0], 20)!r}, which was not asked for")
    outcomes: dict[Pair, Quote | SourceError] = {
        pair: SourceError(name, f"the reply has no ticker for {pair}") for pair in pairs
    }
    for key, ticker in result.items():
        try:
            outcomes[owner[key]] = _kraken_ticker(name, owner[key], ticker)
        except SourceError as exc:
            outcomes[owner[key]] = exc
    return outcomes


def parse_kraken(payload: object, pair: Pair) -> Quote:
    """Kraken ticker for one pair."""
    outcome = read_kraken(payload, [pair])[pair]
    if isinstance(outcome, SourceError):
        raise outcome from None
    return outcome


def read_coinbase_rates(payload: object, pairs: Sequence[Pair]) -> dict[Pair, Quote | SourceError]:
    """Coinbase exchange rates of one base: ``{"data": {"currency", "rates": {QUOTE: amount}}}``."""
    name = "coinbase"
    body = json_object(name, payload, "reply")
    if "errors" in body:
        raise SourceError(name, f"error: {excerpt(body['errors'])}")
    data = json_object(name, body.get("data"), "'data'")
    base = _field(name, data, "currency")
    if any(base != pair.base for pair in pairs):
        raise SourceError(name, f"reply is for {excerpt(base, 12)}, asked for {pairs[0].base}")
    rates = json_object(name, data.get("rates"), "'data.rates'")
    outcomes: dict[Pair, Quote | SourceError] = {}
    for pair in pairs:
        try:
            outcomes[pair] = Quote(name, pair, positive_number(name, _field(name, rates, pair.quote), pair.quote))
        except SourceError as exc:
            outcomes[pair] = exc
    return outcomes


def parse_bitstamp(payload: object, pair: Pair) -> Quote:
    """Bitstamp ticker: last, bid, ask and a unix ``timestamp``, all strings."""
    name = "bitstamp"
    body = json_object(name, payload, "reply")
    if "errors" in body or body.get("status") == "error":
        raise SourceError(name, f"error: {excerpt(body.get('errors') or body.get('reason'))}")
    last = positive_number(name, _field(name, body, "last"), "last")
    bid = positive_number(name, _field(name, body, "bid"), "bid")
    ask = positive_number(name, _field(name, body, "ask"), "ask")
    _check_spread(name, bid, ask)
    return Quote(name, pair, last, bid, ask, _epoch(name, _field(name, body, "timestamp"), "timestamp"))


@dataclass(frozen=True)
class Request:
    """One HTTP GET and how to read its reply into an outcome per pair it covers."""

    path: str
    params: dict[str, str]
    pairs: tuple[Pair, ...]
    read: Callable[[object, Sequence[Pair]], Mapping[Pair, Quote | SourceError]]


def _single(parse: Callable[[object, Pair], Quote]) -> Callable[[object, Sequence[Pair]], dict]:
    def read(payload: object, pairs: Sequence[Pair]) -> dict[Pair, Quote | SourceError]:
        (pair,) = pairs
        return {pair: parse(payload, pair)}

    return read


@dataclass(frozen=True)
class Source:
    """How to call one source: its default base URL, how to ask for one pair, and how
    to ask for many (``plan``: as few requests as the API allows)."""

    name: str
    default_url: str
    needs_key: bool
    request: Callable[[Pair, str | None], tuple[str, dict[str, str]]]
    parse: Callable[[object, Pair], Quote]
    plan: Callable[[Source, Sequence[Pair], str | None], list[Request]] | None = None
    # Requests in flight at once; Alpha Vantage allows one per second, so one.
    concurrency: int = 4

    def requests(self, pairs: Sequence[Pair], api_key: str | None) -> list[Request]:
        if self.plan is not None:
            return self.plan(self, pairs, api_key)
        return [self.single(pair, api_key) for pair in pairs]

    def single(self, pair: Pair, api_key: str | None) -> Request:
        """The request for one pair alone."""
        return Request(*self.request(pair, api_key), (pair,), _single(self.parse))


# Pairs per Kraken ticker request: keeps the URL short, and an unknown pair fails only its chunk.
KRAKEN_PAIRS_PER_REQUEST = 50


def _plan_kraken(source: Source, pairs: Sequence[Pair], key: str | None) -> list[Request]:
    """One ticker request per chunk: the one-pair request with its ``pair`` values joined."""
    chunks = [tuple(pairs[i : i + KRAKEN_PAIRS_PER_REQUEST]) for i in range(0, len(pairs), KRAKEN_PAIRS_PER_REQUEST)]
    path = source.request(pairs[0], key)[0]
    return [
        Request(path, {"pair": ",".join(source.request(p, key)[1]["pair"] for p in chunk)}, chunk, read_kraken)
        for chunk in chunks
    ]


def _plan_coinbase(source: Source, pairs: Sequence[Pair], key: str | None) -> list[Request]:
    """The spot price for a base asked once; its exchange rates when several quotes share it."""
    by_base: dict[str, list[Pair]] = {}
    for pair in pairs:
        by_base.setdefault(pair.base, []).append(pair)
    return [
        Request("/v2/exchange-rates", {"currency": base}, tuple(group), read_coinbase_rates)
        if len(group) > 1
        else source.single(group[0], key)
        for base, group in by_base.items()
    ]


SOURCES: dict[str, Source] = {
    source.name: source
    for source in (
        Source(
            "alphavantage",
            "https://www.alphavantage.co",
            True,
            lambda pair, key: (
                "/query",
                {
                    "function": "CURRENCY_EXCHANGE_RATE",
                    "from_currency": pair.base,
                    "to_currency": pair.quote,
                    "apikey": key or "",
                },
            ),
            parse_alphavantage,
            concurrency=1,
        ),
        Source(
            "coinbase",
            "https://api.coinbase.com",
            False,
            lambda pair, _key: (f"/v2/prices/{pair.base}-{pair.quote}/spot", {}),
            parse_coinbase,
            _plan_coinbase,
        ),
        Source(
            "kraken",
            "https://api.kraken.com",
            False,
            lambda pair, _key: ("/0/public/Ticker", {"pair": _kraken_code(pair.base) + pair.quote}),
            parse_kraken,
            _plan_kraken,
        ),
        Source(
            "bitstamp",
            "https://www.bitstamp.net",
            False,
            lambda pair, _key: (f"/api/v2/ticker/{pair.base.lower()}{pair.quote.lower()}/", {}),
            parse_bitstamp,
        ),
    )
}


def redact(text: str, secret: str | None) -> str:
    """Remove a secret (the API key) from text that may be logged."""
    return text.replace(secret, "***") if secret else text


def fetch_quotes(
    source: Source,
    pairs: Sequence[Pair],
    *,
    base_url: str,
    api_key: str | None,
    now: datetime,
    max_age: timedelta,
    timeout: float,
) -> dict[Pair, Quote | SourceError]:
    """Ask one source for many pairs in as few requests as it allows, at most
    ``source.concurrency`` at once; a quote per pair fresh enough to record, or why not.

    Once a request finds the source unavailable (no reply in time, refused, HTTP 429 or
    5xx), the requests not yet sent fail at once instead of each waiting out its deadline.
    """
    unavailable = threading.Event()
    down: list[str] = []

    def run(request: Request) -> dict[Pair, Quote | SourceError]:
        failure = None  # why the whole request failed; _fresh redacts the key from it
        try:
            if unavailable.is_set():
                failure = f"not asked: {down[0]}"
            else:
                reply = get_json(base_url + request.path, request.params, timeout=timeout)
                outcomes = request.read(reply, request.pairs)
        except Unavailable as exc:
            down.append(f"unavailable earlier in this run ({exc})")
            unavailable.set()
            failure = str(exc)
        except FetchError as exc:
            failure = str(exc)
        except SourceError as exc:
            failure = exc.reason
        except Exception as exc:  # a reply no parser check foresaw is still only this source's failure
            failure = f"reply could not be read: {type(exc).__name__}"
        if failure is not None:
            outcomes = dict.fromkeys(request.pairs, SourceError(source.name, failure))
        return {pair: _fresh(source.name, outcomes[pair], api_key, now, max_age) for pair in request.pairs}

    requests = source.requests(pairs, api_key)
    found: dict[Pair, Quote | SourceError] = {}
    with ThreadPoolExecutor(max_workers=min(source.concurrency, len(requests))) as pool:
        for outcomes in pool.map(run, requests):
            found |= outcomes
    return {pair: found[pair] for pair in pairs}


def _fresh(
    name: str, outcome: Quote | SourceError, api_key: str | None, now: datetime, max_age: timedelta
) -> Quote | SourceError:
    if isinstance(outcome, SourceError):
        return SourceError(name, redact(outcome.reason, api_key))
    if outcome.quoted_at is not None:
        age = now - outcome.quoted_at
        if age > max_age:
            return SourceError(
                name, f"quote is {age.total_seconds():.0f} s old (limit {max_age.total_seconds():.0f} s)"
            )
        if age < -MAX_CLOCK_SKEW:
            return SourceError(name, f"quote is dated {-age.total_seconds():.0f} s in the future")
    return outcome


def fetch_quote(
    source: Source,
    pair: Pair,
    *,
    base_url: str,
    api_key: str | None,
    now: datetime,
    max_age: timedelta,
    timeout: float,
) -> Quote:
    """Ask one source for one pair and return a quote fresh enough to record."""
    outcome = fetch_quotes(
        source, [pair], base_url=base_url, api_key=api_key, now=now, max_age=max_age, timeout=timeout
    )[pair]
    if isinstance(outcome, SourceError):
        raise outcome from None
    return outcome
