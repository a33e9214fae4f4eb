"""Value types and the project's errors."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import datetime

_CURRENCY = re.compile(r"^[A-Z0-9]{2,10}\Z")


class ExchangeRateError(Exception):
    """Base of every error this package raises on purpose."""


class PermanentError(ExchangeRateError):
    """Retrying cannot help: the run should fail at once."""


class ConfigError(PermanentError):
    """A Variable, Connection or parameter is malformed; the message says how to fix it."""


class SlotTooLate(PermanentError):
    """A live quote can no longer be recorded for this slot without misdating it."""


class SourceError(ExchangeRateError):
    """One rate source failed for one request; ``reason`` is a one-line explanation."""

    def __init__(self, source: str, reason: str) -> None:
        super().__init__(f"{source}: {reason}")
        self.source = source
        self.reason = reason


class AllSourcesFailed(ExchangeRateError):
    """Every configured source failed for a slot; nothing was recorded."""


class ImplausibleQuote(ExchangeRateError):
    """A quote moved beyond the plausibility band and no second source confirmed it; nothing was recorded."""


class StorageError(ExchangeRateError):
    """VictoriaMetrics could not be written to or did not return what was written."""


@dataclass(frozen=True, order=True)
class Pair:
    """A currency pair such as BTC/USD."""

    base: str
    quote: str

    @classmethod
    def parse(cls, text: object) -> Pair:
        if not isinstance(text, str) or text.count("/") != 1:
            raise ConfigError(f"currency pair {text!r} must look like 'BTC/USD'")
        base, quote = (part.strip().upper() for part in text.split("/"))
        for code in (base, quote):
            if not _CURRENCY.match(code):
                raise ConfigError(
                    f"currency pair {text!r}: {code!r} is not a currency code (2-10 letters or digits, e.g. 'BTC/USD')"
                )
        if base == quote:
            raise ConfigError(f"currency pair {text!r} has the same base and quote")
        return cls(base, quote)

    def __str__(self) -> str:
        return f"{self.base}/{self.quote}"


@dataclass(frozen=True)
class Quote:
    """A validated price from one source.

    ``quoted_at`` is the source's own timestamp (timezone-aware), or None when the
    source does not give one.
    """

    source: str
    pair: Pair
    rate: float
    bid: float | None = None
    ask: float | None = None
    quoted_at: datetime | None = None

    def problems(self) -> list[str]:
        """Why this quote is not trustworthy; empty when it is."""
        found = []
        for name in ("rate", "bid", "ask"):
            value = getattr(self, name)
            if value is None and name != "rate":
                continue
            if not isinstance(value, float) or not math.isfinite(value) or value <= 0:
                found.append(f"{name} {value!r} is not a positive finite number")
        if self.bid is not None and self.ask is not None and self.bid > self.ask:
            found.append(f"bid {self.bid} is above ask {self.ask}")
        if self.quoted_at is not None and self.quoted_at.tzinfo is None:
            found.append("quote timestamp has no time zone")
        return found
