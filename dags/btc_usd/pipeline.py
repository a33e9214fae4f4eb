"""Record one slot: pick sources, fetch with failover, write and verify."""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from btc_usd.graphite import Sample
from btc_usd.model import AllSourcesFailed, ConfigError, ImplausibleQuote, Pair, Quote, SlotTooLate, SourceError
from btc_usd.quota import uses_alphavantage
from btc_usd.sources import SOURCES, fetch_quote
from btc_usd.victoriametrics import VictoriaMetrics, selector

log = logging.getLogger(__name__)

INTERVAL_SECONDS = 600
# How far back the last stored point counts as the reference of the plausibility band.
REFERENCE_LOOKBACK_SECONDS = 86400


@dataclass(frozen=True)
class Settings:
    """What the Airflow Variables configure; defaults apply when a Variable is unset."""

    pairs: tuple[Pair, ...] = (Pair("BTC", "USD"),)
    sources: tuple[str, ...] = ("alphavantage", "coinbase", "kraken", "bitstamp")
    alphavantage_daily_budget: int = 25
    max_quote_age_seconds: int = 900
    max_lateness_seconds: int = 900
    http_timeout_seconds: int = 10
    max_move_percent: int = 20
    confirm_tolerance_percent: int = 1


# Variable name -> Settings field.
VARIABLES = {
    "exchange_rate_pairs": "pairs",
    "exchange_rate_sources": "sources",
    "alphavantage_daily_budget": "alphavantage_daily_budget",
    "exchange_rate_max_quote_age_seconds": "max_quote_age_seconds",
    "exchange_rate_max_lateness_seconds": "max_lateness_seconds",
    "exchange_rate_http_timeout_seconds": "http_timeout_seconds",
    "exchange_rate_max_move_percent": "max_move_percent",
    "exchange_rate_confirm_tolerance_percent": "confirm_tolerance_percent",
}


def _json_list(variable: str, raw: str, example: str) -> list[str]:
    try:
        value = json.loads(raw)
    except ValueError:
        value = None
    if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
        raise ConfigError(
            f"Variable {variable} must be a non-empty JSON list of strings like {example}; got {raw[:80]!r}"
        )
    if len(set(value)) != len(value):
        raise ConfigError(f"Variable {variable} lists an entry twice: {raw[:80]!r}")
    return value


def _positive_int(variable: str, raw: str, *, allow_zero: bool = False) -> int:
    try:
        value = int(raw.strip())
    except ValueError:
        value = -1
    if value < 0 or (value == 0 and not allow_zero):
        raise ConfigError(
            f"Variable {variable} must be a whole number{' ≥ 0' if allow_zero else ' > 0'}; got {raw[:40]!r}"
        )
    return value


def parse_settings(raw: Mapping[str, str | None]) -> Settings:
    """Settings from raw Variable values (None = unset); ConfigError names the bad one."""
    values: dict[str, object] = {}
    if (text := raw.get("exchange_rate_pairs")) is not None:
        try:
            pairs = tuple(Pair.parse(p) for p in _json_list("exchange_rate_pairs", text, '["BTC/USD"]'))
        except ConfigError as exc:
            raise ConfigError(
                str(exc) if str(exc).startswith("Variable") else f"Variable exchange_rate_pairs: {exc}"
            ) from None
        if len(set(pairs)) != len(pairs):
            raise ConfigError(f"Variable exchange_rate_pairs lists a pair twice: {text[:80]!r}")
        values["pairs"] = pairs
    if (text := raw.get("exchange_rate_sources")) is not None:
        sources = _json_list("exchange_rate_sources", text, '["alphavantage", "coinbase"]')
        unknown = sorted(set(sources) - set(SOURCES))
        if unknown:
            raise ConfigError(
                f"Variable exchange_rate_sources names unknown sources {unknown}; known: {sorted(SOURCES)}"
            )
        values["sources"] = tuple(sources)
    if (text := raw.get("alphavantage_daily_budget")) is not None:
        values["alphavantage_daily_budget"] = _positive_int("alphavantage_daily_budget", text, allow_zero=True)
    for variable in (
        "exchange_rate_max_quote_age_seconds",
        "exchange_rate_max_lateness_seconds",
        "exchange_rate_http_timeout_seconds",
        "exchange_rate_max_move_percent",
        "exchange_rate_confirm_tolerance_percent",
    ):
        if (text := raw.get(variable)) is not None:
            values[VARIABLES[variable]] = _positive_int(variable, text)
    return Settings(**values)


@dataclass(frozen=True)
class Endpoint:
    """Where a source lives; ``api_key`` only for sources that need one."""

    base_url: str
    api_key: str | None = field(default=None, repr=False)


@dataclass
class Attempt:
    """What happened when one source was asked."""

    source: str
    fetched_at: datetime
    quote: Quote | None = None
    error: str | None = None
    accepted: bool = False


@dataclass
class SlotResult:
    """The outcome of recording one slot for one pair."""

    pair: Pair
    timestamp: int
    attempts: list[Attempt] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    already_recorded: bool = False

    @property
    def success(self) -> Attempt | None:
        return next((a for a in self.attempts if a.accepted), None)

    @property
    def quote(self) -> Quote | None:
        return self.success.quote if self.success else None


def source_order(
    settings: Settings,
    endpoints: Mapping[str, Endpoint],
    slot: datetime,
    *,
    pair_index: int = 0,
    first_try: bool = True,
) -> tuple[list[str], list[str]]:
    """The sources to try for this slot, and why any configured one is left out."""
    order, skipped = [], []
    for name in settings.sources:
        if SOURCES[name].needs_key:
            if not endpoints[name].api_key:
                skipped.append(f"{name}: no API key configured (set the password of its connection)")
                continue
            budgeted = uses_alphavantage(
                slot,
                daily_budget=settings.alphavantage_daily_budget,
                interval_seconds=INTERVAL_SECONDS,
                pair_index=pair_index,
                pair_count=len(settings.pairs),
            )
            if not budgeted:
                skipped.append(f"{name}: slot outside the daily budget of {settings.alphavantage_daily_budget}")
                continue
            if not first_try and settings.alphavantage_daily_budget < 86400 // INTERVAL_SECONDS * len(settings.pairs):
                skipped.append(f"{name}: retries do not spend the free daily budget")
                continue
        order.append(name)
    return order, skipped


def slot_samples(result: SlotResult, settings: Settings) -> list[Sample]:
    """The samples a slot writes: the rate and its health, all at the slot's timestamp."""
    ts, pair = result.timestamp, result.pair
    tags = {"base": pair.base, "quote": pair.quote}
    samples = [
        Sample("exchange_rate_source_up", {**tags, "source": a.source}, 0.0 if a.error else 1.0, ts)
        for a in result.attempts
    ]
    if any(a.source == "alphavantage" for a in result.attempts):
        samples.append(
            Sample("exchange_rate_alphavantage_daily_budget", {}, float(settings.alphavantage_daily_budget), ts)
        )
    success = result.success
    if success is None or success.quote is None:
        return samples
    quote = success.quote
    source_tags = {**tags, "source": quote.source}
    samples.append(Sample("exchange_rate", source_tags, quote.rate, ts))
    if quote.bid is not None:
        samples.append(Sample("exchange_rate_bid", source_tags, quote.bid, ts))
    if quote.ask is not None:
        samples.append(Sample("exchange_rate_ask", source_tags, quote.ask, ts))
    if quote.quoted_at is not None:
        age = max(0.0, (success.fetched_at - quote.quoted_at).total_seconds())
        samples.append(Sample("exchange_rate_quote_age_seconds", source_tags, age, ts))
    samples.append(Sample("exchange_rate_last_success_timestamp_seconds", tags, float(ts), ts))
    return samples


def record_slot(
    pair: Pair,
    slot: datetime,
    *,
    settings: Settings,
    endpoints: Mapping[str, Endpoint],
    vm: VictoriaMetrics,
    pair_index: int = 0,
    first_try: bool = True,
    now: datetime | None = None,
) -> SlotResult:
    """Record the rate of ``pair`` for the 10-minute ``slot``; idempotent per slot."""
    now = now or datetime.now(UTC)
    ts = int(slot.timestamp())
    result = SlotResult(pair, ts)
    if vm.export(selector("exchange_rate", base=pair.base, quote=pair.quote), ts, ts + 1):
        log.info("%s at %s is already recorded; leaving it as it is", pair, slot.isoformat())
        result.already_recorded = True
        return result
    lateness = (now - slot).total_seconds()
    if lateness > settings.max_lateness_seconds:
        raise SlotTooLate(
            f"slot {slot.isoformat()} is {lateness:.0f} s old (limit {settings.max_lateness_seconds} s): "
            "a live quote would misdate it; fill past slots with the btc_usd_backfill DAG"
        )
    order, result.skipped = source_order(settings, endpoints, slot, pair_index=pair_index, first_try=first_try)
    for reason in result.skipped:
        log.info("skipping %s", reason)
    reference = last_stored_rate(vm, pair, ts)
    rejection = None
    for index, name in enumerate(order):
        attempt = ask(name, pair, settings, endpoints, result)
        if attempt.quote is None:
            continue
        moved = move(attempt.quote.rate, reference)
        if moved <= settings.max_move_percent:
            attempt.accepted = True
            break
        # Not on its own word: the next source that answers decides.
        second = next((a for n in order[index + 1 :] if (a := ask(n, pair, settings, endpoints, result)).quote), None)
        claim = (
            f"{name} says {attempt.quote.rate:g}, {moved:.1f} % away from the last stored {reference:g} "
            f"(band {settings.max_move_percent} %)"
        )
        if second is not None and move(attempt.quote.rate, second.quote.rate) <= settings.confirm_tolerance_percent:
            log.warning("%s; %s confirms it with %g, so it is recorded", claim, second.source, second.quote.rate)
            attempt.accepted = True
        elif second is None:
            rejection = f"{claim}, and no other source answered to confirm it"
        else:
            rejection = f"{claim}, but {second.source} says {second.quote.rate:g}"
        break
    samples = slot_samples(result, settings)
    vm.write_and_verify(samples)
    if rejection:
        raise ImplausibleQuote(
            f"{pair} at {slot.isoformat()} is not recorded: {rejection}. If the market really moved, a second "
            f"source will agree on the next try; the band is the Variable exchange_rate_max_move_percent"
        )
    if result.quote is None:
        tried = "; ".join(f"{a.source}: {a.error}" for a in result.attempts) or "no source was tried"
        skipped = f" (skipped: {'; '.join(result.skipped)})" if result.skipped else ""
        raise AllSourcesFailed(f"every source failed for {pair} at {slot.isoformat()}: {tried}{skipped}")
    quote = result.quote
    log.info("recorded %s = %s from %s at %s", pair, quote.rate, quote.source, slot.isoformat())
    return result


def ask(name: str, pair: Pair, settings: Settings, endpoints: Mapping[str, Endpoint], result: SlotResult) -> Attempt:
    """Ask one source for a quote and note the attempt in ``result``."""
    endpoint = endpoints[name]
    attempt = Attempt(name, fetched_at=datetime.now(UTC))
    result.attempts.append(attempt)
    try:
        attempt.quote = fetch_quote(
            SOURCES[name],
            pair,
            base_url=endpoint.base_url,
            api_key=endpoint.api_key,
            now=attempt.fetched_at,
            max_age=timedelta(seconds=settings.max_quote_age_seconds),
            timeout=settings.http_timeout_seconds,
        )
    except SourceError as exc:
        attempt.error = exc.reason
        log.warning("source %s failed for %s: %s", name, pair, exc.reason)
    return attempt


def last_stored_rate(vm: VictoriaMetrics, pair: Pair, ts: int) -> float | None:
    """The pair's latest recorded rate in the day before ``ts``, the reference of the band."""
    series = vm.export(
        selector("exchange_rate", base=pair.base, quote=pair.quote), ts - REFERENCE_LOOKBACK_SECONDS, ts - 1
    )
    points = {t: v for values in series.values() for t, v in values.items() if t < ts}
    return points[max(points)] if points else None


def move(rate: float, reference: float | None) -> float:
    """How far ``rate`` is from ``reference``, in percent of the reference (0 without one)."""
    return 0.0 if reference is None else abs(rate - reference) / reference * 100
