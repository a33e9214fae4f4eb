"""VictoriaMetrics of the deployed stack, read from the host over the Docker network."""

from __future__ import annotations

import base64
import json
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from harness.docker import container_ip
from harness.settings import RATE_SERIES, SECRETS, VM_USER, secret


def vm_url(path: str) -> str:
    return f"http://{container_ip('victoriametrics')}:8428{path}"


def vm_open(path: str, data: bytes | None = None, secrets: Path = SECRETS):
    """GET (or POST ``data`` to) the stack's VictoriaMetrics with its basic auth."""
    request = urllib.request.Request(vm_url(path), data=data)  # noqa: S310 - the stack's VM
    token = base64.b64encode(f"{VM_USER}:{secret('victoriametrics_http_password', secrets)}".encode()).decode()
    request.add_header("Authorization", f"Basic {token}")
    return urllib.request.urlopen(request, timeout=10)  # noqa: S310 - the stack's VM


def vm_export(match: str, start: int, end: int) -> list[dict]:
    """Points of /api/v1/export."""
    query = urllib.parse.urlencode({"match[]": match, "start": start, "end": end})
    with vm_open(f"/api/v1/export?{query}") as resp:
        return [json.loads(line) for line in resp.read().decode().splitlines() if line]


def vm_query(expr: str, secrets: Path = SECRETS) -> list[dict]:
    """An instant query, as Grafana sends it (subject to -search.latencyOffset)."""
    with vm_open("/api/v1/query?" + urllib.parse.urlencode({"query": expr}), secrets=secrets) as reply:
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
