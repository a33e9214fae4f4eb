"""The VictoriaMetrics client against a real victoria-metrics with its Graphite listener."""

from __future__ import annotations

import base64
import dataclasses
import socket
import urllib.error
import urllib.parse
import urllib.request

import pytest

from btc_usd.graphite import Sample
from btc_usd.model import StorageError
from btc_usd.victoriametrics import VictoriaMetrics, selector
from harness.services import free_port

T = 1795716000  # a 10-minute boundary


def rate(value: float, ts: int = T, source: str = "coinbase") -> Sample:
    return Sample("exchange_rate", {"base": "BTC", "quote": "USD", "source": source}, value, ts)


def test_written_points_read_back_with_labels_value_and_timestamp(vm: VictoriaMetrics) -> None:
    samples = [rate(64090.12345678), rate(64100.5, T + 600), rate(64000.25, T, "kraken")]
    vm.write_and_verify(samples)
    stored = vm.export(selector("exchange_rate", base="BTC", quote="USD"), T - 600, T + 1200)
    coinbase = (("__name__", "exchange_rate"), ("base", "BTC"), ("quote", "USD"), ("source", "coinbase"))
    # VictoriaMetrics keeps about 12 significant digits: plenty for a price
    assert stored[coinbase] == {T: pytest.approx(64090.12345678, rel=1e-11), T + 600: 64100.5}
    assert len(stored) == 2


def test_a_rewrite_of_the_same_slot_leaves_one_point(vm: VictoriaMetrics) -> None:
    # -dedup.minScrapeInterval keeps one sample per series and timestamp
    vm.write_and_verify([rate(100.0)])
    vm.write_and_verify([rate(100.0)])
    stored = vm.export(selector("exchange_rate"), T - 1, T + 1)
    assert [list(points.items()) for points in stored.values()] == [[(T, 100.0)]]


def test_missing_reports_points_not_stored(vm: VictoriaMetrics) -> None:
    vm.write_and_verify([rate(1.5)])
    assert vm.missing([rate(1.5)]) == []
    assert vm.missing([rate(2.5)]) == [rate(2.5)]
    assert vm.missing([rate(1.5, T + 600)]) == [rate(1.5, T + 600)]


def test_verify_fails_clearly_when_points_never_arrive(vm: VictoriaMetrics) -> None:
    # The HTTP API is the real one, but Graphite lines go to a sink that drops them.
    with socket.create_server(("127.0.0.1", 0)) as sink:
        sink.listen(8)
        lossy = dataclasses.replace(vm, graphite_port=sink.getsockname()[1])
        with pytest.raises(StorageError, match=r"^1 of 1 written points are not in VictoriaMetrics after 1 s"):
            lossy.write_and_verify([rate(8.0)], wait=1, poll=0.2)


def test_unreachable_victoriametrics_is_a_storage_error() -> None:
    down = VictoriaMetrics(f"http://127.0.0.1:{free_port()}", graphite_port=free_port(), timeout=2)
    with pytest.raises(StorageError, match="cannot write to VictoriaMetrics Graphite listener"):
        down.write([rate(1.0)])
    with pytest.raises(StorageError, match="cannot read from VictoriaMetrics"):
        down.export(selector("exchange_rate"), T, T + 1)


def status(url: str, user: str | None = None, password: str | None = None) -> int:
    request = urllib.request.Request(url)  # noqa: S310 - our own loopback URL
    if user:
        token = base64.b64encode(f"{user}:{password}".encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
    try:
        with urllib.request.urlopen(request, timeout=5) as reply:  # noqa: S310 - our own loopback URL
            return reply.status
    except urllib.error.HTTPError as exc:
        return exc.code


def test_the_http_api_needs_the_login_the_client_sends(vm: VictoriaMetrics) -> None:
    vm.write_and_verify([rate(4.5)])
    export = f"{vm.url}/api/v1/export?{urllib.parse.urlencode({'match[]': 'exchange_rate'})}"
    assert status(export) == 401
    assert status(export, vm.username, "guess") == 401
    assert status(export, vm.username, vm.password) == 200
    anonymous = VictoriaMetrics(vm.url, graphite_port=vm.graphite_port)
    with pytest.raises(StorageError, match="answered HTTP 401: set the login and password of its connection"):
        anonymous.export(selector("exchange_rate"), T - 1, T + 1)


def test_the_writers_flush_key_cannot_delete_or_merge(vm: VictoriaMetrics) -> None:
    vm.write_and_verify([rate(3.5)])
    everything = urllib.parse.urlencode({"match[]": '{__name__=~".+"}'})
    login = (vm.username, vm.password)
    # VictoriaMetrics answers 400 or 401 depending on the API; neither acts.
    assert status(f"{vm.url}/api/v1/admin/tsdb/delete_series?{everything}", *login) in (400, 401)
    assert status(f"{vm.url}/api/v1/admin/tsdb/delete_series?{everything}&authKey={vm.flush_key}", *login) in (400, 401)
    assert status(f"{vm.url}/internal/force_merge?authKey={vm.flush_key}", *login) in (400, 401)
    assert status(f"{vm.url}/internal/force_flush", *login) in (400, 401)
    assert status(f"{vm.url}/internal/force_flush?authKey={vm.flush_key}", *login) == 200
    assert vm.missing([rate(3.5)]) == []  # nothing was deleted
