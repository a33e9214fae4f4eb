"""VictoriaMetrics of the deployed stack, read from the host over the Docker network."""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request

from harness.docker import container_ip
from harness.settings import RATE_SERIES


def vm_url(path: str) -> str:
    return f"http://{container_ip('victoriametrics')}:8428{path}"


def vm_export(match: str, start: int, end: int) -> list[dict]:
    """Points of /api/v1/export."""
    query = urllib.parse.urlencode({"match[]": match, "start": start, "end": end})
    with urllib.request.urlopen(vm_url(f"/api/v1/export?{query}"), timeout=10) as resp:  # noqa: S310 - the stack's VM
        return [json.loads(line) for line in resp.read().decode().splitlines() if line]


def vm_query(expr: str) -> list[dict]:
    """An instant query, as Grafana sends it (subject to -search.latencyOffset)."""
    url = vm_url("/api/v1/query?" + urllib.parse.urlencode({"query": expr}))
    with urllib.request.urlopen(url, timeout=10) as reply:  # noqa: S310 - the stack's VM
        return json.load(reply)["data"]["result"]


def vm_points(match: str, start: int, end: int) -> set[tuple]:
    """Every point as (labels, timestamp ms, value): sets compare series point by point."""
    return {
        (tuple(sorted(series["metric"].items())), ts, value)
        for series in vm_export(match, start, end)
        for ts, value in zip(series["timestamps"], series["values"], strict=True)
    }


def rate_points(slot: int) -> list[dict]:
    return vm_export(RATE_SERIES, slot - 1, slot + 1)


def is_reachable(url: str) -> bool:
    try:
        urllib.request.urlopen(url, timeout=2).close()  # noqa: S310 - a container of the stack
    except urllib.error.HTTPError:
        return True
    except OSError:
        return False
    return True
