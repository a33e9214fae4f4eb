"""Record one slot: pick sources, fetch with failover, write and verify."""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from btc_usd.graphite import Sample
from btc_usd.model import (
    AllSourcesFailed,
    ConfigError,
    ExchangeRateError,
    ImplausibleQuote,
    Pair,
    Quote,
    SlotTooLate,
    SourceError,
)
from btc_usd.quota import uses_alphavantage
from btc_usd.sources import SOURCES, fetch_quotes
from btc_usd.victoriametrics import VictoriaMetrics

log = logging.getLogger(__name__)

INTERVAL_SECONDS = 600
# How far back the last stored point counts as the reference of the plausibility band.
REFERENCE_LOOKBACK_SECONDS = 86400
# Batches up to this size log every pair; larger ones log a summary.
LOG_EACH_PAIR_UP_TO = 10


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
    batch_size: int = 250


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
    "exchange_rate_batch_size": "batch_size",
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
        "exchange_rate_batch_size",
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
    error: ExchangeRateError | None = None

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


def pair_selector(name: str, pairs: Sequence[Pair]) -> str:
    """A selector for ``name`` over the bases and quotes of ``pairs`` (a superset: filter by pair)."""
    bases = "|".join(sorted({p.base for p in pairs}))
    quotes = "|".join(sorted({p.quote for p in pairs}))
    return f'{{__name__="{name}",base=~"{bases}",quote=~"{quotes}"}}'


def stored_rates(vm: VictoriaMetrics, pairs: Sequence[Pair], start: int, end: int) -> dict[Pair, dict[int, float]]:
    """The recorded rates of ``pairs`` in [start, end] as {pair: {timestamp: rate}}, all sources merged."""
    wanted = set(pairs)
    found: dict[Pair, dict[int, float]] = {}
    for key, points in vm.export(pair_selector("exchange_rate", pairs), start, end + 1).items():
        labels = dict(key)
        pair = Pair(labels.get("base", ""), labels.get("quote", ""))
        if pair in wanted:
            found.setdefault(pair, {}).update({t: v for t, v in points.items() if start <= t <= end})
    return found


def last_stored_rates(vm: VictoriaMetrics, pairs: Sequence[Pair], ts: int) -> dict[Pair, float]:
    """Each pair's latest recorded rate in the day before ``ts``, the reference of the band.
    The last two slots are read first; only pairs with no point there cost a day's read."""
    latest: dict[Pair, float] = {}
    for lookback in (2 * INTERVAL_SECONDS, REFERENCE_LOOKBACK_SECONDS):
        todo = [p for p in pairs if p not in latest]
        if not todo:
            break
        for pair, points in stored_rates(vm, todo, ts - lookback, ts - 1).items():
            latest[pair] = points[max(points)]
    return latest


def record_slots(
    pairs: Sequence[Pair],
    slot: datetime,
    *,
    settings: Settings,
    endpoints: Mapping[str, Endpoint],
    vm: VictoriaMetrics,
    first_index: int = 0,
    first_try: bool = True,
    now: datetime | None = None,
) -> list[SlotResult]:
    """Record the rate of each pair for the 10-minute ``slot``; idempotent per slot and pair.

    Sources are asked in turn, each for all pairs still open, in as few requests as it
    allows. A pair's first answer inside the plausibility band is recorded; one outside
    it waits for the next source that answers to confirm or refute it. Every pair's
    points are written and verified at once; a pair that could not be recorded carries
    its ``error``. ``first_index`` is the index of ``pairs[0]`` in ``settings.pairs``.
    """
    now = now or datetime.now(UTC)
    ts = int(slot.timestamp())
    results = {pair: SlotResult(pair, ts) for pair in pairs}
    recorded = stored_rates(vm, pairs, ts, ts)
    todo = [pair for pair in pairs if pair not in recorded]
    for pair in recorded:
        results[pair].already_recorded = True
    if recorded:
        log.info(
            "%d of %d pairs at %s are already recorded; leaving them as they are",
            len(recorded),
            len(pairs),
            slot.isoformat(),
        )
    if not todo:
        return list(results.values())
    lateness = (now - slot).total_seconds()
    if lateness > settings.max_lateness_seconds:
        raise SlotTooLate(
            f"slot {slot.isoformat()} is {lateness:.0f} s old (limit {settings.max_lateness_seconds} s): "
            "a live quote would misdate it; fill past slots with the btc_usd_backfill DAG"
        )
    orders = {}
    for index, pair in enumerate(pairs, start=first_index):
        if pair in todo:
            orders[pair], results[pair].skipped = source_order(
                settings, endpoints, slot, pair_index=index, first_try=first_try
            )
    skipped = Counter(reason for pair in todo for reason in results[pair].skipped)
    for reason, count in skipped.items():
        log.info("skipping %s%s", reason, f" ({count} pairs)" if count > 1 else "")
    references = last_stored_rates(vm, todo, ts)
    claims: dict[Pair, Attempt] = {}  # first answers outside the band, waiting for a second source
    rejections: dict[Pair, str] = {}
    open_pairs = set(todo)
    for name in settings.sources:
        asking = [pair for pair in todo if pair in open_pairs and name in orders[pair]]
        for pair, attempt in ask(name, asking, settings, endpoints, results).items():
            if attempt.quote is None:
                continue
            claim = claims.get(pair)
            if claim is None:
                moved = move(attempt.quote.rate, references.get(pair))
                if moved <= settings.max_move_percent:
                    attempt.accepted = True
                    open_pairs.discard(pair)
                else:  # not on its own word: the next source that answers decides
                    claims[pair] = attempt
                continue
            open_pairs.discard(pair)
            said = _claim(claim, references[pair], settings)
            if move(claim.quote.rate, attempt.quote.rate) <= settings.confirm_tolerance_percent:
                log.warning("%s; %s confirms it with %g, so it is recorded", said, name, attempt.quote.rate)
                claim.accepted = True
            else:
                rejections[pair] = f"{said}, but {name} says {attempt.quote.rate:g}"
    for pair in open_pairs & set(claims):
        rejections[pair] = (
            f"{_claim(claims[pair], references[pair], settings)}, and no other source answered to confirm it"
        )
    vm.write_and_verify([sample for pair in todo for sample in slot_samples(results[pair], settings)])
    for pair in todo:
        results[pair].error = _failure(results[pair], slot, rejections.get(pair))
    _log_outcome([results[pair] for pair in todo], slot)
    return list(results.values())


def _claim(attempt: Attempt, reference: float, settings: Settings) -> str:
    return (
        f"{attempt.source} says {attempt.quote.rate:g}, {move(attempt.quote.rate, reference):.1f} % away from "
        f"the last stored {reference:g} (band {settings.max_move_percent} %)"
    )


def _failure(result: SlotResult, slot: datetime, rejection: str | None) -> ExchangeRateError | None:
    if rejection:
        return ImplausibleQuote(
            f"{result.pair} at {slot.isoformat()} is not recorded: {rejection}. If the market really moved, a second "
            f"source will agree on the next try; the band is the Variable exchange_rate_max_move_percent"
        )
    if result.quote is None:
        tried = "; ".join(f"{a.source}: {a.error}" for a in result.attempts) or "no source was tried"
        skipped = f" (skipped: {'; '.join(result.skipped)})" if result.skipped else ""
        return AllSourcesFailed(f"every source failed for {result.pair} at {slot.isoformat()}: {tried}{skipped}")
    return None


def _log_outcome(results: Sequence[SlotResult], slot: datetime) -> None:
    by_source = Counter(r.quote.source for r in results if r.quote is not None and r.error is None)
    if len(results) <= LOG_EACH_PAIR_UP_TO:
        for r in results:
            if r.quote is not None and r.error is None:
                log.info("recorded %s = %s from %s at %s", r.pair, r.quote.rate, r.quote.source, slot.isoformat())
    failed = sum(1 for r in results if r.error is not None)
    log.info(
        "recorded %d of %d pairs at %s (%s)%s",
        sum(by_source.values()),
        len(results),
        slot.isoformat(),
        ", ".join(f"{source} {count}" for source, count in by_source.most_common()) or "no source",
        f"; {failed} failed" if failed else "",
    )


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
    """Record one pair for the ``slot`` (record_slots for one); raises its error, if any."""
    (result,) = record_slots(
        [pair],
        slot,
        settings=settings,
        endpoints=endpoints,
        vm=vm,
        first_index=pair_index,
        first_try=first_try,
        now=now,
    )
    if result.error is not None:
        raise result.error
    return result


def ask(
    name: str,
    pairs: Sequence[Pair],
    settings: Settings,
    endpoints: Mapping[str, Endpoint],
    results: Mapping[Pair, SlotResult],
) -> dict[Pair, Attempt]:
    """Ask one source for ``pairs`` and note an attempt per pair in its result."""
    if not pairs:
        return {}
    endpoint = endpoints[name]
    fetched_at = datetime.now(UTC)
    outcomes = fetch_quotes(
        SOURCES[name],
        pairs,
        base_url=endpoint.base_url,
        api_key=endpoint.api_key,
        now=fetched_at,
        max_age=timedelta(seconds=settings.max_quote_age_seconds),
        timeout=settings.http_timeout_seconds,
    )
    attempts = {}
    failures = 0
    for pair, outcome in outcomes.items():
        attempt = attempts[pair] = Attempt(name, fetched_at=fetched_at)
        results[pair].attempts.append(attempt)
        if isinstance(outcome, SourceError):
            attempt.error = outcome.reason
            failures += 1
            if failures <= LOG_EACH_PAIR_UP_TO:
                log.warning("source %s failed for %s: %s", name, pair, outcome.reason)
        else:
            attempt.quote = outcome
    if failures > LOG_EACH_PAIR_UP_TO:
        log.warning("source %s failed for %d more pairs", name, failures - LOG_EACH_PAIR_UP_TO)
    return attempts


def move(rate: float, reference: float | None) -> float:
    """How far ``rate`` is from ``reference``, in percent of the reference (0 without one)."""
    return 0.0 if reference is None else abs(rate - reference) / reference * 100
