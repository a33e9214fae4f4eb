"""Topology "ha" deployed by ansible/ha.yml over SSH on three host containers
(tests/ha/conftest.py): two time-series hosts and a worker host."""

from __future__ import annotations

import json
import time
import uuid

import pytest

from harness.replication import Reads, expected, get, points, write
from harness.services import wait_until

from .conftest import HA, recap

USER = "stack"  # stack_victoriametrics_username, stack_alertmanager_username


def vm_auth(ha: HA) -> tuple[str, str]:
    return (USER, ha.secret("victoriametrics_http_password"))


def test_a_second_run_changes_nothing(ha: HA, figures):
    started = time.monotonic()
    result = ha.playbook("ha.yml", "--skip-tags", "images")
    figures["ha_idempotent_s"] = round(time.monotonic() - started, 1)
    assert result.returncode == 0, result.stdout[-3000:]
    changed = {host: counts["changed"] for host, counts in recap(result.stdout).items()}
    assert set(changed) == {"tsdb-1", "tsdb-2", "worker-1"}
    assert set(changed.values()) == {0}, changed


@pytest.mark.parametrize("host", ["tsdb-1", "tsdb-2"])
def test_each_alertmanager_reports_two_peers(ha: HA, host):
    auth = (USER, ha.secret("alertmanager_web_password"))
    status = json.loads(get(f"http://{ha.address(host)}:9093/api/v2/status", auth))
    assert status["cluster"]["status"] == "ready"
    peers = sorted(peer["address"] for peer in status["cluster"]["peers"])
    assert peers == [f"{ha.address('tsdb-1')}:9094", f"{ha.address('tsdb-2')}:9094"]


@pytest.mark.parametrize("host", ["tsdb-1", "tsdb-2"])
def test_every_target_a_tsdb_host_scrapes_is_up(ha: HA, host):
    """A time-series host scrapes what runs on it, so no TargetDown is raised for a service
    of another tier."""
    url = f"http://{ha.address(host)}:8428/api/v1/query?query=up"

    def targets() -> dict[str, str] | None:
        found = {r["metric"]["job"]: r["value"][1] for r in json.loads(get(url, vm_auth(ha)))["data"]["result"]}
        return found if {"victoriametrics", "vmalert", "alertmanager"} <= found.keys() else None

    assert wait_until(targets, 120, f"{host}'s scrapes") == {
        "victoriametrics": "1",
        "vmalert": "1",
        "alertmanager": "1",
    }


def test_an_alert_from_both_vmalerts_is_delivered_once(ha: HA):
    """Both vmalerts send the always-firing Watchdog to both Alertmanagers; the heartbeat
    receiver gets it once (unclustered, each Alertmanager would deliver it)."""
    first = wait_until(lambda: ha.sink.first_arrival("firing", alertname="Watchdog"), 180, "the Watchdog")
    # Longer than group_wait (5 s) and group_interval (15 s): a second delivery would be in.
    time.sleep(max(0.0, 35 - (time.monotonic() - first)))
    watchdogs = ha.sink.alerts("firing", alertname="Watchdog")
    assert len(watchdogs) == 1, watchdogs
    assert watchdogs[0]["labels"]["stack"] == "btc-usd-stack"


@pytest.mark.parametrize("fault", ["shutdown", "partition"])
def test_a_lost_tsdb_host_loses_no_point_and_reads_go_on(ha: HA, figures, fault):
    """tsdb-1 shuts down as a VM does (its VictoriaMetrics refuses connections, then the
    host is gone), or is cut off the network (connections time out); the worker's vmagent
    queues the writes for it and vmauth reads from tsdb-2; when tsdb-1 is back, its gap is filled."""
    run, auth = uuid.uuid4().hex[:12], vm_auth(ha)
    graphite, read_url = (ha.address("worker-1"), 2003), f"http://{ha.address('worker-1')}:8427"
    nodes = {host: f"http://{ha.address(host)}:8428" for host in ("tsdb-1", "tsdb-2")}
    write(graphite, run, range(20))
    for url in nodes.values():
        wait_until(lambda u=url: len(points(u, run, auth)) >= 20, 60, "the first points on both hosts")
    with Reads(read_url, run, auth) as reads:
        time.sleep(0.5)
        lost = time.monotonic()
        ha.lose("tsdb-1", fault)
        write(graphite, run, range(20, 70), interval=0.2)
        back = time.monotonic()
        ha.bring_back("tsdb-1", fault)
        wait_until(lambda: get(f"{nodes['tsdb-1']}/health", None) == b"OK", 120, "tsdb-1's VictoriaMetrics")
        healthy = time.monotonic()
        write(graphite, run, range(70, 90), interval=0.05)
        wait_until(lambda: len(points(nodes["tsdb-1"], run, auth)) >= 90, 120, "tsdb-1's gap filled")
        filled = time.monotonic()
        wait_until(lambda: len(points(nodes["tsdb-2"], run, auth)) >= 90, 60, "tsdb-2's last points")
    for host, url in nodes.items():
        assert points(url, run, auth) == expected(range(90)), f"{host} lacks points"
    assert not reads.failed(lost), f"reads through vmauth failed (s after the loss, error): {reads.failed(lost)}"
    outage = reads.counts(lost, back)
    assert outage, "no read happened while tsdb-1 was away"
    assert max(outage) > 20, f"no read during the outage saw the points written meanwhile: {outage}"
    figures[f"ha_{fault}_tsdb_away_s"] = round(back - lost, 1)
    figures[f"ha_{fault}_reads_while_away"] = len(outage)
    # vmauth learns of a host that does not refuse connections only when a connection times out.
    figures[f"ha_{fault}_slowest_read_while_away_s"] = reads.slowest(lost, back)
    figures[f"ha_{fault}_points_lost"] = 90 - len(points(nodes["tsdb-1"], run, auth))
    figures[f"ha_{fault}_back_to_healthy_s"] = round(healthy - back, 1)
    figures[f"ha_{fault}_gap_filled_after_healthy_s"] = round(filled - healthy, 1)
    figures[f"ha_{fault}_short_reads_after_return_s"] = reads.short_until(back, 70)
