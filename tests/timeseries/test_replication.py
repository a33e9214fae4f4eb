"""Two VictoriaMetrics nodes as topology "ha" runs them (docs/scaling.md): vmagent writes
every point to both with the flags roles/vmagent renders, and vmauth reads from the first
node that answers with the auth.yml roles/vmauth renders. Real binaries throughout: Debian
trixie's VictoriaMetrics 1.112 (`make deps` unpacks it into .build/), auth on everywhere."""

from __future__ import annotations

import json
import socket
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from harness.molecule import render
from harness.replication import Reads, expected, get, points, write
from harness.services import REPO, STARTED, VictoriaMetricsServer, _stop, free_port, wait_until

TRIXIE = REPO / ".build/victoria-metrics-trixie/root/usr/bin"
NODE_AUTH = (VictoriaMetricsServer.USER, VictoriaMetricsServer.PASSWORD)
READER = ("reader", "ha-reader-password-0123456789")


@dataclass
class Pair:
    a: VictoriaMetricsServer
    b: VictoriaMetricsServer
    graphite: tuple[str, int]
    read_url: str
    procs: list[subprocess.Popen] = field(default_factory=list)


def _start(args: list[str], log: Path) -> subprocess.Popen:
    with log.open("ab") as out:
        proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT)
    STARTED.append(proc)
    return proc


def _node(path: Path) -> VictoriaMetricsServer:
    # As the deployment: auth on, dedup of repeated writes, a short latency offset.
    return VictoriaMetricsServer(
        path, auth=True, binary=TRIXIE / "victoria-metrics", args=("-search.latencyOffset=1s",)
    )


def _flags(rendered: dict, overrides: dict) -> list[str]:
    """The role's flags with host paths and loopback ports in place of the container's."""
    missing = sorted(set(overrides) - set(rendered))
    assert not missing, f"the role no longer renders {missing}; update the test"
    return [f"-{key}={value}" for key, value in sorted({**rendered, **overrides}.items())]


@pytest.fixture(scope="module")
def pair(tmp_path_factory) -> Iterator[Pair]:
    if not (TRIXIE / "vmauth").exists():
        pytest.fail(f"{TRIXIE}/vmauth is missing: run `make deps` (it unpacks Debian trixie's VictoriaMetrics)")
    base = tmp_path_factory.mktemp("pair")
    a, b = _node(base / "a").start(), _node(base / "b").start()
    render(
        Path(__file__).with_name("render_pair.yml"),
        base,
        {
            "vmagent_remote_write_urls": [a.url, b.url],
            "vmagent_remote_write_username": NODE_AUTH[0],
            "vmagent_remote_write_password": NODE_AUTH[1],
            "vmauth_backend_urls": [a.url, b.url],
            "vmauth_backend_username": NODE_AUTH[0],
            "vmauth_backend_password": NODE_AUTH[1],
            "vmauth_username": READER[0],
            "vmauth_password": READER[1],
        },
    )
    (base / "remote_write_password").write_text(NODE_AUTH[1])
    agent_flags = json.loads((base / "vmagent.json").read_text())
    agent_flags["remoteWrite.basicAuth.passwordFile"] = agent_flags["remoteWrite.basicAuth.passwordFile"].replace(
        "/run/secrets/remote_write_password", str(base / "remote_write_password")
    )
    agent_port, graphite_port, auth_port = free_port(), free_port(), free_port()
    pair = Pair(a, b, ("127.0.0.1", graphite_port), f"http://127.0.0.1:{auth_port}")
    agent = _flags(
        agent_flags,
        {
            "httpListenAddr": f"127.0.0.1:{agent_port}",
            "graphiteListenAddr": f"127.0.0.1:{graphite_port}",
            "remoteWrite.tmpDataPath": base / "queue",
        },
    )
    vmauth = _flags(
        json.loads((base / "vmauth.json").read_text()),
        {"httpListenAddr": f"127.0.0.1:{auth_port}", "auth.config": base / "auth.yml"},
    )
    pair.procs.append(_start([str(TRIXIE / "vmagent"), *agent], base / "vmagent.log"))
    pair.procs.append(_start([str(TRIXIE / "vmauth"), *vmauth], base / "vmauth.log"))
    try:
        wait_until(lambda: get(f"http://127.0.0.1:{agent_port}/health", None) == b"OK", 30, "vmagent")
        wait_until(lambda: get(f"{pair.read_url}/health", None) == b"OK", 30, "vmauth")
        wait_until(lambda: socket.create_connection(("127.0.0.1", graphite_port), 1).close() is None, 30, "Graphite")
        yield pair
    finally:
        for proc in pair.procs:
            _stop(proc)
        a.stop()
        b.stop()


def test_vmauth_admits_only_its_readers(pair):
    query = f"{pair.read_url}/api/v1/query?query=1"
    for auth in (None, (READER[0], "wrong-password")):
        with pytest.raises(urllib.error.HTTPError) as refused:
            get(query, auth)
        assert refused.value.code == 401
    # Through to a node, which itself demands the credentials vmauth adds.
    assert json.loads(get(query, READER))["status"] == "success"
    with pytest.raises(urllib.error.HTTPError) as node_refused:
        get(f"{pair.a.url}/api/v1/query?query=1", None)
    assert node_refused.value.code == 401


def test_every_point_reaches_both_nodes(pair):
    run = uuid.uuid4().hex[:12]
    write(pair.graphite, run, range(20))
    for node in (pair.a, pair.b):
        wait_until(lambda n=node: len(points(n.url, run, NODE_AUTH)) >= 20, 30, f"20 points in {node.url}")
        assert points(node.url, run, NODE_AUTH) == expected(range(20)), node.url
    assert points(pair.read_url, run, READER) == expected(range(20))


def test_a_stopped_node_loses_no_point_reads_go_on_and_its_gap_is_filled(pair, figures):
    run = uuid.uuid4().hex[:12]
    before, during, after = range(20), range(20, 70), range(70, 90)
    write(pair.graphite, run, before)
    for node in (pair.a, pair.b):
        wait_until(lambda n=node: len(points(n.url, run, NODE_AUTH)) >= 20, 30, "the first points")
    with Reads(pair.read_url, run, READER) as reads:
        time.sleep(0.5)
        stopped = time.monotonic()
        pair.a.stop()
        with pytest.raises(urllib.error.URLError, match="Connection refused"):
            get(f"{pair.a.url}/health", None)
        write(pair.graphite, run, during, interval=0.1)
        time.sleep(max(0.0, 6 - (time.monotonic() - stopped)))
        restarted = time.monotonic()
        pair.a.start()
        write(pair.graphite, run, after, interval=0.05)
        wait_until(lambda: len(points(pair.a.url, run, NODE_AUTH)) >= 90, 90, "node a's gap filled")
        filled = time.monotonic()
        wait_until(lambda: len(points(pair.b.url, run, NODE_AUTH)) >= 90, 30, "node b's last points")
    assert points(pair.b.url, run, NODE_AUTH) == expected(range(90))
    assert points(pair.a.url, run, NODE_AUTH) == expected(range(90)), "node a did not get the points it missed"
    assert not reads.failed(stopped), f"reads through vmauth failed (s after the stop, error): {reads.failed(stopped)}"
    outage = reads.counts(stopped, restarted)
    assert outage, "no read happened while node a was down"
    assert max(outage) > 20, f"no read during the outage saw the points written meanwhile: {outage}"
    figures["tsdb_node_down_s"] = round(restarted - stopped, 1)
    figures["tsdb_reads_while_down"] = len(outage)
    figures["tsdb_slowest_read_while_down_s"] = reads.slowest(stopped, restarted)
    figures["tsdb_points_lost"] = 90 - len(points(pair.a.url, run, NODE_AUTH))
    figures["tsdb_gap_filled_after_return_s"] = round(filled - restarted, 1)
    # After node a returns, vmauth asks it first again; until its queue is sent, reads miss the gap.
    figures["tsdb_short_reads_after_return_s"] = reads.short_until(restarted, 70)
