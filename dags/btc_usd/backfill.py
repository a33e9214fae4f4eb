"""Fill past 10-minute slots from Bitstamp's 5-minute OHLC candles.

A slot at time t takes the open of the candle starting at t (the price at the
boundary), or else the close of the candle just before it. Slots that already
hold a point, from any source, are left alone, so a rerun writes nothing new.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from btc_usd.fetch import FetchError, get_json
from btc_usd.graphite import Sample
from btc_usd.model import ConfigError, Pair, SourceError
from btc_usd.sources import json_object, positive_number
from btc_usd.victoriametrics import VictoriaMetrics, selector

log = logging.getLogger(__name__)

SOURCE = "bitstamp_ohlc"
CANDLE_SECONDS = 300
SLOT_SECONDS = 600
# 480 slots need 961 candles: one request each, under Bitstamp's limit of 1000.
BATCH_SLOTS = 480
MAX_RANGE = timedelta(days=400)


@dataclass(frozen=True)
class Candle:
    timestamp: int
    open: float
    close: float


@dataclass
class BackfillReport:
    pair: Pair
    slots: int = 0
    written: int = 0
    already_present: int = 0
    without_trades: int = 0


def parse_range(start: str | None, end: str | None, now: datetime) -> tuple[datetime, datetime]:
    """Resolve the DAG's ``start``/``end`` params into whole-slot UTC bounds [start, end).

    Empty ``end`` means the current slot; empty ``start`` means 30 days before ``end``.
    """

    def parse(name: str, text: str) -> datetime:
        try:
            value = datetime.fromisoformat(text.strip())
        except ValueError:
            raise ConfigError(
                f"param {name}={text!r} is not an ISO date or time such as 2026-01-31 or 2026-01-31T12:00Z"
            ) from None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)

    def floor(value: datetime) -> datetime:
        return datetime.fromtimestamp(int(value.timestamp()) // SLOT_SECONDS * SLOT_SECONDS, tz=UTC)

    last_slot = floor(now)
    stop = floor(parse("end", end)) if end else last_slot
    begin = floor(parse("start", start)) if start else stop - timedelta(days=30)
    if stop > last_slot:
        raise ConfigError(
            f"param end={end!r} is in the future; the newest slot that can be filled is {last_slot.isoformat()}"
        )
    if begin >= stop:
        raise ConfigError(f"param start ({begin.isoformat()}) must be before end ({stop.isoformat()})")
    if stop - begin > MAX_RANGE:
        raise ConfigError(
            f"range {begin.date()}..{stop.date()} is longer than {MAX_RANGE.days} days; split it into several runs"
        )
    return begin, stop


def parse_bitstamp_ohlc(payload: object, pair: Pair) -> list[Candle]:
    """Candles from ``{"data": {"pair": "BTC/USD", "ohlc": [{timestamp, open, close, ...}]}}``."""
    name = "bitstamp"
    data = json_object(name, json_object(name, payload, "reply").get("data"), "'data'")
    if data.get("pair") != str(pair):
        raise SourceError(name, f"reply is for {str(data.get('pair'))[:20]!r}, asked for {pair}")
    rows = data.get("ohlc")
    if not isinstance(rows, list):
        raise SourceError(name, "'data.ohlc' is missing or not a list")
    candles = []
    for row in rows:
        row = json_object(name, row, "an OHLC row")
        ts = positive_number(name, row.get("timestamp"), "timestamp")
        if ts % CANDLE_SECONDS:
            raise SourceError(name, f"candle timestamp {ts:.0f} is not on a {CANDLE_SECONDS} s boundary")
        candles.append(
            Candle(
                int(ts),
                positive_number(name, row.get("open"), "open"),
                positive_number(name, row.get("close"), "close"),
            )
        )
    return candles


def sample_slots(candles: list[Candle], slots: range) -> dict[int, float]:
    """Price at each slot boundary that the candles cover."""
    by_start = {c.timestamp: c for c in candles}
    prices = {}
    for ts in slots:
        if (candle := by_start.get(ts)) is not None:
            prices[ts] = candle.open
        elif (before := by_start.get(ts - CANDLE_SECONDS)) is not None:
            prices[ts] = before.close
    return prices


def fetch_candles(base_url: str, pair: Pair, first: int, last: int, timeout: float) -> list[Candle]:
    """Candles starting in [first, last]; Bitstamp honours end+limit when both bounds are sent."""
    count = (last - first) // CANDLE_SECONDS + 1
    params = {"step": str(CANDLE_SECONDS), "limit": str(count), "start": str(first), "end": str(last)}
    url = f"{base_url}/api/v2/ohlc/{pair.base.lower()}{pair.quote.lower()}/"
    try:
        candles = parse_bitstamp_ohlc(get_json(url, params, timeout=timeout), pair)
    except FetchError as exc:
        raise SourceError("bitstamp", str(exc)) from None
    except SourceError:
        raise
    except Exception as exc:  # see sources.fetch_quote
        raise SourceError("bitstamp", f"reply could not be read: {type(exc).__name__}") from None
    return [c for c in candles if first <= c.timestamp <= last]


def backfill_pair(
    pair: Pair,
    start: datetime,
    end: datetime,
    *,
    base_url: str,
    vm: VictoriaMetrics,
    timeout: float = 30.0,
) -> BackfillReport:
    """Fill the empty slots of [start, end) for one pair, one batch at a time."""
    report = BackfillReport(pair)
    first_slot, stop = int(start.timestamp()), int(end.timestamp())
    for batch_start in range(first_slot, stop, BATCH_SLOTS * SLOT_SECONDS):
        slots = range(batch_start, min(stop, batch_start + BATCH_SLOTS * SLOT_SECONDS), SLOT_SECONDS)
        present = vm.export(selector("exchange_rate", base=pair.base, quote=pair.quote), slots[0], slots[-1] + 1)
        taken = {ts for points in present.values() for ts in points}
        wanted = [ts for ts in slots if ts not in taken]
        report.slots += len(slots)
        report.already_present += len(slots) - len(wanted)
        if not wanted:
            continue
        candles = fetch_candles(base_url, pair, wanted[0] - CANDLE_SECONDS, wanted[-1], timeout)
        prices = sample_slots(candles, range(wanted[0], wanted[-1] + 1, SLOT_SECONDS))
        tags = {"base": pair.base, "quote": pair.quote, "source": SOURCE}
        samples = [Sample("exchange_rate", tags, prices[ts], ts) for ts in wanted if ts in prices]
        report.without_trades += len(wanted) - len(samples)
        if samples:
            vm.write_and_verify(samples, wait=60.0)
        report.written += len(samples)
        log.info(
            "%s %s..%s: wrote %d points, %d slots already held data, %d had no trades",
            pair,
            datetime.fromtimestamp(slots[0], UTC).isoformat(),
            datetime.fromtimestamp(slots[-1], UTC).isoformat(),
            len(samples),
            len(slots) - len(wanted),
            len(wanted) - len(samples),
        )
    return report
