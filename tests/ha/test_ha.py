"""Topology "ha" deployed by ansible/ha.yml over SSH on host containers
(tests/ha/conftest.py): a database host, a control host, two time-series hosts and
two worker hosts."""

from __future__ import annotations

import http.client
import json
import socket
import ssl
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from datetime import datetime

import MySQLdb
import pytest
import yaml

from fakes.rate_apis import synthetic_pairs
from harness.airflow_api import AirflowAPI, run_slots, trigger
from harness.docker import docker
from harness.ha import AIRFLOW_IMAGE, HA, HOSTS, INTERNAL_NAME, TSDB_HOSTS, USER, WORKERS, container, recap
from harness.replication import Reads, expected, get, points, write
from harness.services import wait_until
from harness.settings import RATE_DAG, RATE_SERIES, SLOT


def test_a_second_run_changes_nothing(ha: HA, figures):
    started = time.monotonic()
    result = ha.playbook("ha.yml", "--skip-tags", "images")
    figures["ha_idempotent_s"] = round(time.monotonic() - started, 1)
    assert result.returncode == 0, result.stdout[-3000:]
    changed = {host: counts["changed"] for host, counts in recap(result.stdout).items()}
    assert set(changed) == set(HOSTS)
    assert set(changed.values()) == {0}, changed


def fetch(url: str, context: ssl.SSLContext) -> tuple[int, bytes]:
    """Status and body of a GET, an error status included."""
    try:
        with urllib.request.urlopen(url, timeout=30, context=context) as reply:  # noqa: S310 - the test's own hosts
            return reply.status, reply.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def fetch_internal(address: str, path: str, context: ssl.SSLContext, name: str = INTERNAL_NAME) -> tuple[int, bytes]:
    """A GET on a control host's internal listener, asking for ``name`` as the workers' vmauth does."""
    with (
        socket.create_connection((address, 8443), timeout=30) as raw,
        context.wrap_socket(raw, server_hostname=name) as tls,
    ):
        tls.sendall(f"GET {path} HTTP/1.1\r\nHost: {address}:8443\r\nConnection: close\r\n\r\n".encode())
        reply = http.client.HTTPResponse(tls)
        reply.begin()
        return reply.status, reply.read()


def test_the_workers_reach_the_api_servers_over_tls_and_nothing_else_does(ha: HA):
    """Airflow's API server is published on no control host; the proxy's internal listener
    serves the Edge workers' paths with a certificate of the deployment's CA, and nothing
    else; the public site refuses those paths and keeps its own certificate."""
    address = ha.address("control-1")
    with pytest.raises((ConnectionRefusedError, TimeoutError)):  # refused, or dropped by the firewall
        socket.create_connection((address, 8080), timeout=5).close()
    internal = ssl.create_default_context(cafile=ha.tier_ca)
    assert fetch_internal(address, "/airflow/execution/health", internal) == (200, b'{"status":"healthy"}')
    for path in ["/airflow/api/v2/monitor/health", "/airflow/", "/airflow/auth/token"]:
        assert fetch_internal(address, path, internal)[0] == 404, path
    with pytest.raises(ssl.SSLCertVerificationError):  # only the deployment's CA signs it, for that name only
        fetch_internal(address, "/airflow/execution/health", ssl.create_default_context())
    with pytest.raises(ssl.SSLCertVerificationError):
        fetch_internal(address, "/airflow/execution/health", internal, name="control-1")
    public = ssl.create_default_context(cafile=ha.proxy_ca("control-1"))
    assert fetch(f"https://{address}/airflow/api/v2/monitor/health", public)[0] == 200
    assert fetch(f"https://{address}/airflow/execution/health", public)[0] == 404


# In Airflow's scheduler: its database URL's TLS mode, the session's TLS version, and
# whether the same URL with the system's CAs in place of the deployment's connects.
AS_AIRFLOW = """
import sqlalchemy as sa
from airflow.configuration import conf
url = sa.engine.make_url(conf.get("database", "sql_alchemy_conn"))
print(url.query.get("ssl_mode"))
with sa.create_engine(url).connect() as db:
    print(db.exec_driver_sql("SHOW SESSION STATUS LIKE 'Ssl_version'").one()[1])
try:
    sa.create_engine(url.update_query_dict({"ssl_ca": "/etc/ssl/certs/ca-certificates.crt"})).connect().close()
    print("connected")
except sa.exc.OperationalError:
    print("refused")
"""


def test_airflow_reaches_mysql_over_verified_tls_only(ha: HA):
    """db-1's MySQL refuses connections without TLS and shows a certificate of the deployment's
    CA for its address; Airflow's driver, in its image, verifies it and refuses another CA's."""
    login = {
        "host": ha.address("db-1"), "user": "airflow", "password": ha.secret("airflow_db_password"),
        "database": "airflow", "connect_timeout": 10,
    }  # fmt: skip
    with pytest.raises(MySQLdb.OperationalError, match="insecure transport"):
        MySQLdb.connect(**login, ssl_mode="DISABLED")
    with pytest.raises(MySQLdb.OperationalError):
        MySQLdb.connect(**login, ssl={"ca": "/etc/ssl/certs/ca-certificates.crt"}, ssl_mode="VERIFY_IDENTITY")
    verified = MySQLdb.connect(**login, ssl={"ca": ha.tier_ca}, ssl_mode="VERIFY_IDENTITY")
    try:
        cursor = verified.cursor()
        cursor.execute("SHOW SESSION STATUS LIKE 'Ssl_version'")
        assert cursor.fetchone()[1].startswith("TLSv1."), "the session is not encrypted"
    finally:
        verified.close()
    command = ["exec", container("control-1"), "docker", "exec", "airflow-scheduler", "python", "-c", AS_AIRFLOW]
    mode, version, other_ca = docker(*command, timeout=120).split()[-3:]
    assert (mode, other_ca) == ("VERIFY_IDENTITY", "refused")
    assert version.startswith("TLSv1."), version


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
    of another tier, and every host's node_exporter."""
    url = f"http://{ha.address(host)}:8428/api/v1/query?query=up"
    nodes = {f"{ha.address(name)}:9100" for name in HOSTS}

    def targets() -> dict[tuple[str, str], str] | None:
        results = json.loads(get(url, ha.vm_auth()))["data"]["result"]
        found = {(r["metric"]["job"], r["metric"]["instance"]): r["value"][1] for r in results}
        jobs = {job for job, _instance in found}
        scraped = {instance for job, instance in found if job == "node"}
        complete = {"victoriametrics", "vmalert", "alertmanager"} <= jobs and nodes <= scraped
        return found if complete and set(found.values()) == {"1"} else None  # a target starting is 0 once

    found = wait_until(targets, 180, f"{host}'s scrapes")
    assert {job for job, _instance in found} == {"victoriametrics", "vmalert", "alertmanager", "node"}
    assert {instance for job, instance in found if job == "node"} == nodes
    assert set(found.values()) == {"1"}, {target: up for target, up in found.items() if up != "1"}


def test_an_alert_from_both_vmalerts_is_delivered_once(ha: HA):
    """Both vmalerts send the always-firing Watchdog to both Alertmanagers; the heartbeat
    receiver gets it once (unclustered, each Alertmanager would deliver it)."""
    first = wait_until(lambda: ha.sink.first_arrival("firing", alertname="Watchdog"), 180, "the Watchdog")
    # Longer than group_wait (5 s) and group_interval (15 s): a second delivery would be in;
    # shorter than alertmanager_heartbeat_interval (5 minutes), when the heartbeat repeats it.
    time.sleep(max(0.0, 35 - (time.monotonic() - first)))
    watchdogs = ha.sink.alerts("firing", before=first + 35, alertname="Watchdog")
    assert len(watchdogs) == 1, watchdogs
    assert watchdogs[0]["labels"]["stack"] == "btc-usd-stack"


# What Grafana is provisioned with on a control host; Grafana cannot run here (no Debian package).
GRAFANA_PROVISIONING = "/srv/btc-usd-stack/grafana/provisioning"
# Each request of stdin's list, from the control host's monitoring network, as Grafana makes it.
AS_GRAFANA = """
import base64, json, sys, urllib.error, urllib.request
answers = []
for url, user, password, body in json.load(sys.stdin):
    request = urllib.request.Request(url, data=body.encode() if body else None, method="POST" if body else "GET")
    request.add_header("Authorization", "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode())
    request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=30) as reply:
            answers.append([reply.status, reply.read().decode()])
    except urllib.error.HTTPError as error:
        answers.append([error.code, ""])
print(json.dumps(answers))
"""


def as_grafana(host: str, requests: list[list[str]]) -> list[list]:
    command = [
        "docker", "exec", "-i", container(host), "docker", "run", "--rm", "-i", "--network", "btc-usd-monitoring",
        "--entrypoint", "python3", AIRFLOW_IMAGE, "-c", AS_GRAFANA,
    ]  # fmt: skip
    done = subprocess.run(command, input=json.dumps(requests), capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout)


def test_grafana_reads_through_vmauth_and_alerts_every_alertmanager(ha: HA):
    """On each control host, Grafana's data source is the host's vmauth, which answers a query
    from the time-series hosts; its contact point lists every Alertmanager peer, and each takes
    an alert with its credentials; the cluster delivers that alert once."""
    alertname = f"GrafanaProbe{uuid.uuid4().hex[:8]}"
    alert = json.dumps([{"labels": {"alertname": alertname, "severity": "warning", "stack": "btc-usd-stack"}}])
    for host in ("control-1", "control-2"):
        provisioned = {
            kind: yaml.safe_load(docker("exec", container(host), "cat", f"{GRAFANA_PROVISIONING}/{kind}/stack.yml"))
            for kind in ("datasources", "alerting")
        }
        source = provisioned["datasources"]["datasources"][0]
        contact = provisioned["alerting"]["contactPoints"][0]["receivers"][0]["settings"]
        assert source["url"] == "http://vmauth:8427"
        peers = contact["url"].split(",")
        assert peers == [f"http://{ha.address(tsdb)}:9093" for tsdb in TSDB_HOSTS]
        requests = [[f"{source['url']}/api/v1/query?query=vm_app_uptime_seconds", source["basicAuthUser"],
                     source["secureJsonData"]["basicAuthPassword"], ""]]  # fmt: skip
        requests += [
            [f"{peer}/api/v2/alerts", contact["basicAuthUser"], contact["basicAuthPassword"], alert] for peer in peers
        ]
        query, *alerts = as_grafana(host, requests)
        assert query[0] == 200, query
        assert json.loads(query[1])["data"]["result"], query
        assert [status for status, _ in alerts] == [200, 200], alerts
    first = wait_until(lambda: ha.sink.first_arrival("firing", alertname=alertname), 120, "Grafana's probe alert")
    time.sleep(max(0.0, 35 - (time.monotonic() - first)))  # past group_wait and group_interval
    assert len(ha.sink.alerts("firing", alertname=alertname)) == 1


def older_free_slots(api: AirflowAPI, count: int) -> list[int]:
    """``count`` past slots with no run, older than the latest two, which the scheduler
    of the unpaused DAG may take meanwhile (the tests run at no fixed pace)."""
    taken = run_slots(api)
    latest = int(time.time()) // SLOT * SLOT
    free = [slot for slot in range(latest - 3 * SLOT, latest - 12 * SLOT, -SLOT) if slot not in taken]
    assert len(free) >= count, f"not {count} free slots in the last 2 hours: {sorted(taken)}"
    return free[:count]


def run_and_locate(api: AirflowAPI, slot: int) -> dict[str, str]:
    """Trigger a run of the rate DAG for ``slot``; once it succeeded, the host each of its
    tasks ran on: a task's hostname is the name of the Edge worker that ran it, its host's."""
    run_id = trigger(api, slot)
    run = api.wait_for_run(RATE_DAG, run_id, timeout=300)
    path = f"/api/v2/dags/{RATE_DAG}/dagRuns/{urllib.parse.quote(run_id)}/taskInstances"
    tasks = api.request("GET", path)["task_instances"]
    assert run["state"] == "success", [(t["task_id"], t["map_index"], t["state"], t["hostname"]) for t in tasks]
    return {f"{t['task_id']}[{t['map_index']}]": t["hostname"] for t in tasks}


def most_at_once(tasks: list[dict]) -> int:
    """The most of ``tasks`` (task instances) that were running at the same moment."""
    edges = [(datetime.fromisoformat(t["start_date"]), 1) for t in tasks]
    edges += [(datetime.fromisoformat(t["end_date"]), -1) for t in tasks]
    running, most = 0, 0
    for _moment, step in sorted(edges):  # an end sorts before a start at the same moment
        running += step
        most = max(most, running)
    return most


def test_a_run_uses_the_slots_of_every_worker_host(ha: HA, figures):
    """A run with more batches than one Edge worker has slots (airflow_edge_worker_concurrency,
    2) runs more of them at once than one worker can: the control tier queues enough for all
    (AIRFLOW__CORE__MAX_ACTIVE_TASKS_PER_DAG) and both worker hosts take them. The Kraken fake
    answers after 3 s, so each task runs long enough to overlap the others."""
    api = ha.airflow()
    api.set_paused(RATE_DAG, False)
    (slot,) = older_free_slots(api, 1)
    settings = {
        "exchange_rate_pairs": json.dumps(synthetic_pairs(8)),
        "exchange_rate_batch_size": "1",
        "exchange_rate_sources": '["kraken"]',
    }
    kraken = ha.fakes["kraken"]
    try:
        for key, value in settings.items():
            api.set_variable(key, value)
        kraken.answer_after(3.0)
        run_id = trigger(api, slot)
        assert api.wait_for_run(RATE_DAG, run_id, timeout=300)["state"] == "success"
    finally:
        kraken.answer_after(0)
        for key in settings:
            api.set_variable(key, None)
    path = f"/api/v2/dags/{RATE_DAG}/dagRuns/{urllib.parse.quote(run_id)}/taskInstances"
    records = [t for t in api.request("GET", path)["task_instances"] if t["task_id"] == "record"]
    assert len(records) == 8, records
    figures["ha_record_tasks_at_once"] = most_at_once(records)
    assert most_at_once(records) > 2, [(t["hostname"], t["start_date"], t["end_date"]) for t in records]
    assert {t["hostname"] for t in records} == set(WORKERS)


def test_runs_execute_on_the_worker_hosts_and_fail_over(ha: HA, figures):
    """Every task of a run executes on a worker host's Edge worker and its point reaches both
    time-series hosts; with the host that ran them shut down, the next run goes to the other."""
    api = ha.airflow()
    api.set_paused(RATE_DAG, False)
    first_slot, second_slot = older_free_slots(api, 2)
    started = time.monotonic()
    first = run_and_locate(api, first_slot)
    figures["ha_run_on_workers_s"] = round(time.monotonic() - started, 1)
    assert set(first.values()) <= set(WORKERS), first
    wait_until(lambda: set(ha.stored(RATE_SERIES, first_slot).values()) == {1}, 60, "the point on both hosts")

    busiest = max(WORKERS, key=list(first.values()).count)
    (other,) = set(WORKERS) - {busiest}
    ha.lose(busiest, "shutdown")
    try:
        lost = time.monotonic()
        second = run_and_locate(api, second_slot)
        figures["ha_run_after_worker_lost_s"] = round(time.monotonic() - lost, 1)
        assert set(second.values()) == {other}, second
    finally:
        ha.bring_back(busiest, "shutdown")
        ha.wait_healthy(busiest)


def test_with_a_control_host_shut_down_the_other_schedules_and_serves_the_workers(ha: HA, figures):
    """control-1 shuts down; control-2's scheduler (each control host runs one) schedules a run
    triggered on its API server, and the workers' vmauth sends them to that API server."""
    api = ha.airflow("control-2")
    api.set_paused(RATE_DAG, False)
    (slot,) = older_free_slots(api, 1)
    ha.lose("control-1", "shutdown")
    try:
        lost = time.monotonic()
        ran_on = run_and_locate(api, slot)
        figures["ha_run_after_control_lost_s"] = round(time.monotonic() - lost, 1)
        assert set(ran_on.values()) <= set(WORKERS), ran_on
        wait_until(lambda: set(ha.stored(RATE_SERIES, slot).values()) == {1}, 60, "the point on both hosts")
    finally:
        ha.bring_back("control-1", "shutdown")
        ha.wait_healthy("control-1")


@pytest.mark.parametrize("fault", ["shutdown", "partition"])
def test_a_lost_tsdb_host_loses_no_point_and_reads_go_on(ha: HA, figures, fault):
    """tsdb-1 shuts down as a VM does (its VictoriaMetrics refuses connections, then the
    host is gone), or is cut off the network (connections time out); the worker's vmagent
    queues the writes for it and vmauth reads from tsdb-2; when tsdb-1 is back, its gap is filled."""
    run, auth = uuid.uuid4().hex[:12], ha.vm_auth()
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
