"""Writing probe points and reading them back from VictoriaMetrics nodes, vmagent
and vmauth, for the tests of replicated time series (tests/timeseries, tests/ha)."""

from __future__ import annotations

import base64
import json
import socket
import threading
import time
import urllib.parse
import urllib.request
from dataclasses import dataclass, field

SERIES = "ha_probe"
# Points are stamped one second apart, an hour back: each is its own sample.
T0 = int(time.time()) - 3600


def get(url: str, auth: tuple[str, str] | None, timeout: float = 5) -> bytes:
    """GET with basic auth (None: without)."""
    request = urllib.request.Request(url)  # noqa: S310 - the test's own hosts
    if auth:
        request.add_header("Authorization", "Basic " + base64.b64encode(":".join(auth).encode()).decode())
    with urllib.request.urlopen(request, timeout=timeout) as reply:  # noqa: S310 - the test's own hosts
        return reply.read()


def points(url: str, run: str, auth: tuple[str, str], timeout: float = 5) -> dict[int, float]:
    """Every point of the run's probe series that ``url`` exports: timestamp (s) -> value."""
    query = urllib.parse.urlencode({"match[]": f'{SERIES}{{run="{run}"}}', "start": T0 - 1})
    found: dict[int, float] = {}
    for line in get(f"{url}/api/v1/export?{query}", auth, timeout).splitlines():
        row = json.loads(line)
        found.update(zip((ts // 1000 for ts in row["timestamps"]), row["values"], strict=True))
    return found


def write(address: tuple[str, int], run: str, numbers: range, interval: float = 0.0) -> None:
    """Point i has the value i at T0 + i, sent to a Graphite listener as the DAG sends."""
    for i in numbers:
        with socket.create_connection(address, timeout=5) as conn:
            conn.sendall(f"{SERIES};run={run} {i} {T0 + i}\n".encode())
        time.sleep(interval)


def expected(numbers: range) -> dict[int, float]:
    return {T0 + i: float(i) for i in numbers}


@dataclass
class Reads:
    """Reads of the run's points through ``url`` every 0.1 s until stopped (at most 300 s),
    each waiting up to 60 s: (monotonic start, points or the error, seconds)."""

    url: str
    run: str
    auth: tuple[str, str] = field(repr=False)
    log: list[tuple[float, int | str, float]] = field(default_factory=list, repr=False)
    done: threading.Event = field(default_factory=threading.Event, repr=False)

    def __enter__(self) -> Reads:
        self.thread = threading.Thread(target=self._loop)
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.done.set()
        self.thread.join(timeout=30)

    def _loop(self) -> None:
        deadline = time.monotonic() + 300
        while not self.done.is_set() and time.monotonic() < deadline:
            started = time.monotonic()
            try:
                found: int | str = len(points(self.url, self.run, self.auth, timeout=60))
            except (OSError, ValueError) as exc:
                found = repr(exc)
            self.log.append((started, found, time.monotonic() - started))
            time.sleep(0.1)

    def failed(self, since: float) -> list[tuple[float, str]]:
        return [(round(t - since, 2), error) for t, error, _ in self.log if isinstance(error, str)]

    def counts(self, start: float, end: float) -> list[int]:
        return [n for t, n, _ in self.log if start < t < end and isinstance(n, int)]

    def slowest(self, start: float, end: float) -> float:
        """Seconds the slowest read begun between ``start`` and ``end`` took."""
        return round(max((s for t, _, s in self.log if start < t < end), default=0.0), 2)

    def short_until(self, start: float, fewer_than: int) -> float:
        """Seconds after ``start`` of the last read that saw fewer than ``fewer_than`` points."""
        short = [t for t, n, _ in self.log if t > start and isinstance(n, int) and n < fewer_than]
        return round(max(short) - start, 1) if short else 0.0
