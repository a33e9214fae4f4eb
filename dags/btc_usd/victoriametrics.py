"""Write samples to VictoriaMetrics over Graphite and read them back over HTTP."""

from __future__ import annotations

import base64
import json
import math
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from btc_usd import graphite
from btc_usd.graphite import Sample
from btc_usd.model import StorageError

SeriesKey = tuple[tuple[str, str], ...]


def selector(name: str, **labels: str) -> str:
    """A series selector; ``name`` is a regex when it holds ``|``."""
    op = "=~" if "|" in name else "="
    matchers = [f'__name__{op}"{name}"'] + [f'{k}="{v}"' for k, v in sorted(labels.items())]
    return "{" + ",".join(matchers) + "}"


@dataclass(frozen=True)
class VictoriaMetrics:
    """A VictoriaMetrics single node: HTTP API at ``url``, Graphite on ``graphite_port``
    of ``graphite_host`` (by default the host of ``url``; another one for a vmagent that
    writes to several nodes, read through vmauth); ``username`` and ``password`` its HTTP
    basic auth (-httpAuth.*), ``flush_key`` its -forceFlushAuthKey, when it has them."""

    url: str
    graphite_port: int = 2003
    graphite_host: str | None = None
    timeout: float = 10.0
    flush_key: str | None = field(default=None, repr=False)
    username: str | None = None
    password: str | None = field(default=None, repr=False)

    def _get(self, path: str):
        request = urllib.request.Request(f"{self.url}{path}")  # noqa: S310 - URL comes from a Connection
        if self.username:
            token = base64.b64encode(f"{self.username}:{self.password or ''}".encode()).decode()
            request.add_header("Authorization", f"Basic {token}")
        return urllib.request.urlopen(request, timeout=self.timeout)  # noqa: S310 - URL comes from a Connection

    @property
    def host(self) -> str:
        return urllib.parse.urlsplit(self.url).hostname or "localhost"

    @property
    def graphite_address(self) -> tuple[str, int]:
        return (self.graphite_host or self.host, self.graphite_port)

    def export(self, match: str, start: int, end: int) -> dict[SeriesKey, dict[int, float]]:
        """Raw samples in [start, end] (unix seconds) as {series: {timestamp: value}}."""
        query = urllib.parse.urlencode({"match[]": match, "start": start, "end": end})
        try:
            with self._get(f"/api/v1/export?{query}") as reply:
                body = reply.read().decode()
        except urllib.error.HTTPError as exc:
            detail = exc.read()[:200].decode("utf-8", "replace").strip()
            if exc.code == 401:
                detail = "set the login and password of its connection to its -httpAuth.* credentials"
            raise StorageError(f"VictoriaMetrics export at {self.url} answered HTTP {exc.code}: {detail}") from None
        except (urllib.error.URLError, OSError) as exc:
            raise StorageError(f"cannot read from VictoriaMetrics at {self.url}: {exc}") from None
        series: dict[SeriesKey, dict[int, float]] = {}
        try:
            for line in filter(str.strip, body.splitlines()):
                row = json.loads(line)
                points = series.setdefault(tuple(sorted(row["metric"].items())), {})
                for ts, value in zip(row["timestamps"], row["values"], strict=True):
                    points[ts // 1000] = float(value)
        except (ValueError, KeyError, TypeError) as exc:
            raise StorageError(f"VictoriaMetrics export at {self.url} returned an unexpected body: {exc}") from None
        return series

    def write(self, samples: Sequence[Sample]) -> int:
        """Send samples to the Graphite listener."""
        try:
            return graphite.send(samples, self.graphite_address[0], self.graphite_address[1], self.timeout)
        except OSError as exc:
            host, port = self.graphite_address
            raise StorageError(
                f"cannot write to VictoriaMetrics Graphite listener {host}:{port}: {exc}; "
                "check that it runs with -graphiteListenAddr"
            ) from None

    def flush(self) -> None:
        """Make the points received so far searchable now rather than within a
        second or so (/internal/force_flush). Only a speed-up: errors are ignored."""
        query = f"?{urllib.parse.urlencode({'authKey': self.flush_key})}" if self.flush_key else ""
        try:
            with self._get(f"/internal/force_flush{query}"):
                pass
        except (urllib.error.URLError, OSError):
            pass

    def missing(self, samples: Iterable[Sample]) -> list[Sample]:
        """The samples VictoriaMetrics does not (yet) return with the written value."""
        samples = list(samples)
        if not samples:
            return []
        names = "|".join(sorted({s.name for s in samples}))
        stored = self.export(selector(names), min(s.timestamp for s in samples), max(s.timestamp for s in samples) + 1)
        return [
            s
            for s in samples
            if not math.isclose(stored.get(s.key, {}).get(s.timestamp, math.nan), s.value, rel_tol=1e-9)
        ]

    def write_and_verify(
        self,
        samples: Sequence[Sample],
        *,
        wait: float = 30.0,
        poll: float = 0.1,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        """Write, then read back until every sample is visible or ``wait`` runs out."""
        self.write(samples)
        deadline = time.monotonic() + wait
        while self.flush() or (missing := self.missing(samples)):
            if time.monotonic() >= deadline:
                first = graphite.format_line(missing[0]).strip()
                raise StorageError(
                    f"{len(missing)} of {len(samples)} written points are not in VictoriaMetrics "
                    f"after {wait:g} s (first: {first!r}); check its log, -retentionPeriod "
                    "(points older than retention are dropped) and disk space"
                )
            sleep(poll)
