"""What a compromised task or a stranger on the internet can reach on the deployed stack."""

from __future__ import annotations

import json
import secrets
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

import pytest

from harness.airflow_api import AirflowAPI
from harness.docker import container_ip, docker, inspect, mysql_root, stack_containers
from harness.settings import BASE_URL, CA_FILE, LABEL, RATE_DAG, SECRETS, VM_USER, secret
from harness.vm import vm_open

AIRFLOW_CONTAINERS = ["airflow-scheduler", "airflow-api-server", "airflow-dag-processor"]
# Where each stack service listens, for the reachability matrix.
PORTS = {
    "mysql": 3306,
    "victoriametrics": 8428,
    "airflow-api-server": 8080,
    "grafana": 3000,
    "alertmanager": 9093,
    "vmalert": 8880,
    "node-exporter": 9100,
    "mysqld-exporter": 9104,
    "blackbox-exporter": 9115,
    "statsd-exporter": 9102,
    "proxy": 443,
}

# Run inside an Airflow container with its own Python: every internal API a task
# could abuse, with the VictoriaMetrics login and flush key a task can read from its
# connection (argv 3 and 4), and MySQL as root with root's real password.
PROBE = """
import base64, json, sys, urllib.error, urllib.request
import MySQLdb

login = {"Authorization": "Basic " + base64.b64encode(sys.argv[3].encode()).decode()}
key = "authKey=" + sys.argv[4]

def status(method, url, body=None, auth=True):
    headers = {"Content-Type": "application/json", **(login if auth else {})}
    request = urllib.request.Request(url, data=body, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=5) as reply:
            return reply.status
    except urllib.error.HTTPError as exc:
        return exc.code
    except OSError:  # no such name on this container's networks, or no route
        return "unreachable"

def text(url):
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=login), timeout=10) as reply:
            return reply.read(400).decode(errors="replace")
    except urllib.error.HTTPError as exc:
        return exc.read(400).decode(errors="replace")
    except OSError:
        return ""

vm, am = "http://victoriametrics:8428", "http://alertmanager:9093"
am_by_ip = "http://" + sys.argv[2] + ":9093"
silence = json.dumps({"matchers": [{"name": "alertname", "value": ".+", "isRegex": True}],
                      "startsAt": "2026-01-01T00:00:00Z", "endsAt": "2099-01-01T00:00:00Z",
                      "createdBy": "task", "comment": "mute everything"}).encode()
found = {
    "query_anonymous": status("GET", vm + "/api/v1/query?query=up", auth=False),
    "query": status("GET", vm + "/api/v1/query?query=up"),
    "flush": status("GET", vm + "/internal/force_flush?" + key),
    "delete_series": status("GET", vm + "/api/v1/admin/tsdb/delete_series?match[]=%7B__name__%3D~%22.%2B%22%7D&" + key),
    "force_merge": status("GET", vm + "/internal/force_merge?" + key),
    "snapshot_create": status("GET", vm + "/snapshot/create?" + key),
    "snapshot_create_body": text(vm + "/snapshot/create?" + key),
    "snapshot_list": status("GET", vm + "/snapshot/list?" + key),
    "snapshot_list_body": text(vm + "/snapshot/list?" + key),
    "alertmanager_silences": status("GET", am + "/api/v2/silences"),
    "alertmanager_new_silence": status("POST", am + "/api/v2/silences", silence),
    "alertmanager_alerts": status("GET", am + "/api/v2/alerts"),
    "alertmanager_by_ip": status("GET", am_by_ip + "/api/v2/silences"),
}
try:
    MySQLdb.connect(host="mysql", user="root", passwd=sys.argv[1], connect_timeout=10).close()
    found["mysql_root"] = "connected"
except MySQLdb.OperationalError as exc:
    found["mysql_root"] = exc.args[0]
print(json.dumps(found))
"""


def series_count() -> int:
    query = urllib.parse.urlencode({"match[]": '{__name__=~".+"}'})
    with vm_open(f"/api/v1/series/count?{query}") as reply:
        return json.load(reply)["data"][0]


@pytest.mark.parametrize("container", AIRFLOW_CONTAINERS)
def test_a_task_container_cannot_rewrite_history_mute_alerts_or_be_root(stack, container) -> None:
    before = series_count()
    what_a_task_reads = [f"{VM_USER}:{secret('victoriametrics_http_password')}", secret("victoriametrics_flush_key")]
    out = docker(
        "exec", container, "python3", "-c", PROBE, secret("mysql_root_password"), container_ip("alertmanager"),
        *what_a_task_reads,
    )  # fmt: skip
    found = json.loads(out.splitlines()[-1])
    if container == "airflow-scheduler":  # it runs the tasks, which write there
        assert found["query_anonymous"] == 401, found  # -httpAuth.*
        assert (found["query"], found["flush"]) == (200, 200), found  # what the DAG needs works
        assert found["delete_series"] in (400, 401), found  # -deleteAuthKey, not the flush key
        assert found["force_merge"] in (400, 401), found  # -forceMergeAuthKey
        # -snapshotAuthKey: VictoriaMetrics answers 200 with the refusal in the body.
        assert found["snapshot_create"] != 200 or "invalid authKey" in found["snapshot_create_body"], found
        assert found["snapshot_list"] != 200 or "invalid authKey" in found["snapshot_list_body"], found
    else:  # not on the time-series network at all
        assert {found[k] for k in ("query", "delete_series", "force_merge", "snapshot_list")} == {"unreachable"}, found
    # Alertmanager is on the monitoring network only (and needs --web.config.file's login).
    for key in ("alertmanager_silences", "alertmanager_new_silence", "alertmanager_alerts", "alertmanager_by_ip"):
        assert found[key] == "unreachable", found
    assert found["mysql_root"] == 1045, found  # root exists only at localhost, inside the MySQL container
    assert series_count() >= before > 0


# TCP connect from inside a container to each address given as host:port; prints {address: reachable}.
CONNECT = """
import json, socket, sys
found = {}
for address in sys.argv[1:]:
    host, port = address.rsplit(":", 1)
    try:
        socket.create_connection((host, int(port)), timeout=2).close()
        found[address] = True
    except OSError:
        found[address] = False
print(json.dumps(found))
"""


def test_the_task_container_reaches_only_what_the_dag_uses(stack) -> None:
    """The scheduler runs the tasks on internet replies: it reaches MySQL, Airflow's API
    and VictoriaMetrics, and no other service on any of its addresses. The exporters that
    share the database network (mysqld reads MySQL, statsd receives Airflow's metrics)
    answer it too: they serve metrics and need no login."""
    needed = {"mysql", "airflow-api-server", "victoriametrics"}
    shared = {"mysqld-exporter", "statsd-exporter"}
    addresses = {}
    for name in stack_containers():
        if name not in PORTS:
            continue
        for network in inspect(name)["NetworkSettings"]["Networks"].values():
            addresses[f"{network['IPAddress']}:{PORTS[name]}"] = name
    assert needed | {"alertmanager", "vmalert", "proxy"} <= set(addresses.values())
    out = docker("exec", "airflow-scheduler", "python3", "-c", CONNECT, *addresses)
    found = json.loads(out.splitlines()[-1])
    reached = {addresses[a] for a, ok in found.items() if ok}
    assert needed <= reached <= needed | shared, {a: (addresses[a], ok) for a, ok in found.items()}


METADATA = "169.254.169.254"
METADATA_NS = "btc-usd-fake-imds"
# GET the metadata service from inside a container; prints the status or "unreachable".
GET_METADATA = f"""
import urllib.request
try:
    with urllib.request.urlopen("http://{METADATA}/latest/", timeout=3) as reply:
        print(reply.status)
except OSError:
    print("unreachable")
"""


def ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=30)


# Answers every GET with 200 (socketserver's TCPServer: no reverse DNS lookup at bind).
METADATA_SERVER = f"""
import http.server, socketserver

class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b"ami-id\\n")

    def log_message(self, *args):
        pass

socketserver.TCPServer(("{METADATA}", 80), Handler).serve_forever()
"""


@pytest.fixture
def fake_metadata_service():
    """169.254.169.254 in a network namespace of its own, routed from the host through a
    veth pair: containers' traffic to it is forwarded, as to the real service on AWS, so
    it passes Docker's DOCKER-USER chain."""
    ip("netns", "add", METADATA_NS)
    try:
        ip("link", "add", "btc-imds-h", "type", "veth", "peer", "name", "btc-imds-n")
        ip("link", "set", "btc-imds-n", "netns", METADATA_NS)
        ip("addr", "add", "169.254.169.1/32", "dev", "btc-imds-h")
        ip("link", "set", "btc-imds-h", "up")
        ip("route", "add", f"{METADATA}/32", "dev", "btc-imds-h")
        inside = ["netns", "exec", METADATA_NS, "ip"]
        ip(*inside, "addr", "add", f"{METADATA}/32", "dev", "btc-imds-n")
        ip(*inside, "link", "set", "btc-imds-n", "up")
        ip(*inside, "route", "add", "169.254.169.1/32", "dev", "btc-imds-n")
        ip(*inside, "route", "add", "default", "via", "169.254.169.1")
        server = subprocess.Popen(
            ["ip", "netns", "exec", METADATA_NS, sys.executable, "-c", METADATA_SERVER],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            for _ in range(50):  # the control: the host itself reaches it (not forwarded)
                try:
                    with urllib.request.urlopen(f"http://{METADATA}/latest/", timeout=1) as reply:
                        assert reply.status == 200
                    break
                except OSError:
                    time.sleep(0.1)
            else:
                pytest.fail("the fake metadata service did not answer the host within 5 s")
            yield
        finally:
            server.terminate()
            server.wait(timeout=10)
    finally:
        subprocess.run(["ip", "netns", "del", METADATA_NS], check=False, timeout=30)


def test_only_the_backup_reaches_the_instance_metadata_service(stack, fake_metadata_service) -> None:
    """The instance role's credentials are for the backup's S3 uploads; the firewall's
    DOCKER-USER rule drops every other container's traffic to the metadata service."""
    found = {
        name: docker("exec", name, "python3", "-c", GET_METADATA).strip() for name in ("backup", *AIRFLOW_CONTAINERS)
    }
    assert found == {"backup": "200"} | dict.fromkeys(AIRFLOW_CONTAINERS, "unreachable"), found


def test_mysql_root_still_works_inside_its_container(stack) -> None:
    """The control for the refusal above: the password is right, the host is not."""
    out = mysql_root("-N", "-e", "SELECT host FROM mysql.user WHERE user = 'root'")
    assert out.split() == ["localhost"]


def proxy_status(method: str, path: str) -> tuple[int, str]:
    context = ssl.create_default_context(cafile=str(CA_FILE))
    body = b"{}" if method != "GET" else None
    request = urllib.request.Request(f"{BASE_URL}{path}", method=method, data=body)  # noqa: S310 - the stack's proxy
    try:
        with urllib.request.urlopen(request, timeout=10, context=context) as reply:  # noqa: S310 - the stack's proxy
            return reply.status, reply.read(200).decode(errors="replace")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read(200).decode(errors="replace")


def token_request(password: str) -> tuple[int, dict]:
    """POST /airflow/auth/token through the proxy as admin: the status and the headers."""
    context = ssl.create_default_context(cafile=str(CA_FILE))
    body = json.dumps({"username": "admin", "password": password}).encode()
    request = urllib.request.Request(  # noqa: S310 - the stack's proxy
        f"{BASE_URL}/airflow/auth/token", data=body, method="POST", headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=30, context=context) as reply:  # noqa: S310 - the stack's proxy
            return reply.status, dict(reply.headers)
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers)


def test_logins_are_rate_limited_per_client(stack) -> None:
    """A client gets 5 login attempts per 40 s (airflow_login_rate_limit): wrong passwords
    are 401 until the attempts are used up, then even the right one is 429, unread, until
    Retry-After has passed."""
    statuses = []
    for _ in range(6):  # earlier logins of this run may already count in the window
        statuses.append(token_request("not-the-password")[0])
        if statuses[-1] == 429:
            break
    assert statuses[-1] == 429, statuses
    assert set(statuses[:-1]) <= {401}, statuses
    status, headers = token_request(secret("airflow_admin_password"))
    assert status == 429, status
    wait = int(headers["Retry-After"])
    assert 0 < wait <= 40, headers
    time.sleep(wait + 1)
    assert token_request(secret("airflow_admin_password"))[0] == 201


@pytest.fixture
def viewer(airflow_api):
    """An Airflow user with the Viewer role, made by the admin through the FAB auth
    manager's REST API (the CLI inside the API server would cost ~150 MiB of its
    memory limit), removed afterwards."""
    name, password = "e2e-viewer", secrets.token_urlsafe(24)
    users = "/auth/fab/v1/users"
    admin = airflow_api.login()
    try:
        admin.request("DELETE", f"{users}/{name}")  # left behind by an interrupted run
    except urllib.error.HTTPError as exc:
        if exc.code != 404:
            raise
    user = {"username": name, "password": password, "email": "viewer@localhost", "first_name": "E2E",
            "last_name": "Viewer", "roles": [{"name": "Viewer"}]}  # fmt: skip
    admin.request("POST", users, user)
    yield AirflowAPI(name, password)
    airflow_api.login().request("DELETE", f"{users}/{name}")


def test_a_viewer_reads_but_cannot_change(stack, viewer) -> None:
    """Users and roles are real: the FAB auth manager lets a Viewer read a DAG, not pause it."""
    api = viewer.login()
    assert api.request("GET", f"/api/v2/dags/{RATE_DAG}")["dag_id"] == RATE_DAG
    with pytest.raises(urllib.error.HTTPError) as refused:
        api.request("PATCH", f"/api/v2/dags/{RATE_DAG}", {"is_paused": True})
    assert refused.value.code == 403


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("PUT", "/airflow/execution/task-instances/0190f1b0-0000-7000-8000-000000000000/heartbeat"),
        ("PATCH", "/airflow/execution/task-instances/0190f1b0-0000-7000-8000-000000000000/state"),
        ("GET", "/airflow/execution/health"),
    ],
)
def test_the_proxy_refuses_the_task_execution_api(stack, method, path) -> None:
    assert proxy_status(method, path) == (404, "Not found")


def test_the_proxy_still_serves_airflow(stack) -> None:
    """The control: the refusal is specific to the execution API."""
    status, body = proxy_status("GET", "/airflow/api/v2/monitor/health")
    assert status == 200, body


def test_the_proxy_refuses_grafana_metrics_before_any_upstream(stack) -> None:
    """Grafana does not run here, so read Caddy's loaded configuration instead:
    /grafana/metrics is answered 404 by a route of its own."""
    config = json.loads(docker("exec", "proxy", "wget", "-qO-", "http://127.0.0.1:2019/config/"))
    routes = json.dumps(config["apps"]["http"]["servers"])
    assert '"/grafana/metrics"' in routes
    assert '"/airflow/execution/*"' in routes


# MySQL's entrypoint starts as root to own its data directory, then drops to the mysql user.
STARTS_AS_ROOT = {"mysql"}


def test_every_container_runs_with_least_privilege(stack) -> None:
    names = docker("ps", "--filter", f"label={LABEL}", "--format", "{{.Names}}").split()  # not tests/ha's hosts
    assert len(names) >= 10
    for name in names:
        config = json.loads(docker("inspect", name))[0]
        host = config["HostConfig"]
        assert host["CapDrop"] == ["ALL"], name
        assert set(host["CapAdd"] or []) <= {"CHOWN", "DAC_OVERRIDE", "FOWNER", "SETGID", "SETUID", "NET_BIND_SERVICE"}
        assert "no-new-privileges:true" in host["SecurityOpt"], name
        assert 0 < host["PidsLimit"] <= 1024, name
        assert not host["Privileged"], name
        if name not in STARTS_AS_ROOT:
            assert host["ReadonlyRootfs"], name
            assert docker("exec", name, "id", "-u").strip() != "0", name


def test_mysql_serves_as_the_mysql_user(stack) -> None:
    """The one container that starts as root: its server, process 1, runs as mysql."""
    assert docker("exec", "mysql", "sh", "-c", "stat -c %U /proc/1").strip() == "mysql"


def test_a_read_only_root_refuses_writes(stack) -> None:
    result = subprocess.run(
        ["docker", "exec", "victoriametrics", "touch", "/planted"], capture_output=True, text=True, check=False
    )
    assert result.returncode != 0
    assert "Read-only file system" in result.stderr


def test_docker_inspect_shows_no_secret(stack) -> None:
    """Secrets reach the containers as files in /run/secrets, never in their environment,
    command or labels (VictoriaMetrics' flags name them as file:// URLs)."""
    known = {path.name: path.read_text().strip() for path in SECRETS.iterdir() if path.is_file()}
    known["alphavantage_api_key"] = "e2e-test-key"  # molecule.yml
    known["s3_secret_access_key"] = "moto-e2e"  # noqa: S105 - molecule.yml's value, looked for
    assert len(known) >= 11
    leaks = []
    for name in stack_containers():
        config = json.loads(docker("inspect", name))[0]
        text = json.dumps(config)
        leaks += [f"{name}: {secret}" for secret, value in known.items() if value in text]
    assert leaks == []
