"""What a compromised task or a stranger on the internet can reach on the deployed stack."""

from __future__ import annotations

import json
import ssl
import subprocess
import urllib.error
import urllib.parse
import urllib.request

import pytest

from harness.docker import container_ip, docker, mysql_root
from harness.settings import BASE_URL, CA_FILE, SECRETS, secret

AIRFLOW_CONTAINERS = ["airflow-scheduler", "airflow-api-server", "airflow-dag-processor"]

# Run inside an Airflow container with its own Python: every internal API a task
# could abuse, without credentials, and MySQL as root with root's real password.
PROBE = """
import json, sys, urllib.error, urllib.request
import MySQLdb

def status(method, url, body=None):
    request = urllib.request.Request(url, data=body, method=method, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=10) as reply:
            return reply.status
    except urllib.error.HTTPError as exc:
        return exc.code

def text(url):
    try:
        with urllib.request.urlopen(url, timeout=10) as reply:
            return reply.read(400).decode(errors="replace")
    except urllib.error.HTTPError as exc:
        return exc.read(400).decode(errors="replace")

vm, am = "http://victoriametrics:8428", "http://alertmanager:9093"
silence = json.dumps({"matchers": [{"name": "alertname", "value": ".+", "isRegex": True}],
                      "startsAt": "2026-01-01T00:00:00Z", "endsAt": "2099-01-01T00:00:00Z",
                      "createdBy": "task", "comment": "mute everything"}).encode()
found = {
    "delete_series": status("GET", vm + "/api/v1/admin/tsdb/delete_series?match[]=%7B__name__%3D~%22.%2B%22%7D"),
    "force_merge": status("GET", vm + "/internal/force_merge"),
    "snapshot_create": status("GET", vm + "/snapshot/create"),
    "snapshot_create_body": text(vm + "/snapshot/create"),
    "snapshot_list": status("GET", vm + "/snapshot/list"),
    "snapshot_list_body": text(vm + "/snapshot/list"),
    "alertmanager_silences": status("GET", am + "/api/v2/silences"),
    "alertmanager_new_silence": status("POST", am + "/api/v2/silences", silence),
    "alertmanager_alerts": status("GET", am + "/api/v2/alerts"),
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
    url = f"http://{container_ip('victoriametrics')}:8428/api/v1/series/count?{query}"
    with urllib.request.urlopen(url, timeout=10) as reply:
        return json.load(reply)["data"][0]


@pytest.mark.parametrize("container", AIRFLOW_CONTAINERS)
def test_a_task_container_cannot_rewrite_history_mute_alerts_or_be_root(stack, container) -> None:
    before = series_count()
    out = docker("exec", container, "python3", "-c", PROBE, secret("mysql_root_password"))
    found = json.loads(out.splitlines()[-1])
    assert found["delete_series"] in (400, 401), found  # -deleteAuthKey
    assert found["force_merge"] in (400, 401), found  # -forceMergeAuthKey
    # -snapshotAuthKey: VictoriaMetrics answers 200 with the refusal in the body.
    assert found["snapshot_create"] != 200 or "invalid authKey" in found["snapshot_create_body"], found
    assert found["snapshot_list"] != 200 or "invalid authKey" in found["snapshot_list_body"], found
    assert found["alertmanager_silences"] == 401, found  # --web.config.file
    assert found["alertmanager_new_silence"] == 401, found
    assert found["alertmanager_alerts"] == 401, found
    assert found["mysql_root"] == 1045, found  # root exists only at localhost, inside the MySQL container
    assert series_count() >= before > 0


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


def test_every_container_runs_with_least_privilege(stack) -> None:
    names = docker("ps", "--format", "{{.Names}}").split()
    assert len(names) >= 10
    for name in names:
        host = json.loads(docker("inspect", name))[0]["HostConfig"]
        assert host["CapDrop"] == ["ALL"], name
        assert set(host["CapAdd"] or []) <= {"CHOWN", "DAC_OVERRIDE", "FOWNER", "SETGID", "SETUID", "NET_BIND_SERVICE"}
        assert "no-new-privileges:true" in host["SecurityOpt"], name
        assert 0 < host["PidsLimit"] <= 1024, name
        assert not host["Privileged"], name


def test_a_read_only_root_refuses_writes(stack) -> None:
    result = subprocess.run(
        ["docker", "exec", "victoriametrics", "touch", "/planted"], capture_output=True, text=True, check=False
    )
    assert result.returncode != 0
    assert "Read-only file system" in result.stderr


def test_docker_inspect_shows_no_secret(stack) -> None:
    """Secrets reach the containers as files in /run/secrets, never in their environment,
    command or labels. One exception, stated: Debian's VictoriaMetrics 1.79 takes its
    admin key on the command line only (the official image reads it from a file)."""
    secrets = {path.name: path.read_text().strip() for path in SECRETS.iterdir() if path.is_file()}
    secrets["alphavantage_api_key"] = "e2e-test-key"  # molecule.yml
    secrets["s3_secret_access_key"] = "moto-e2e"  # noqa: S105 - molecule.yml's value, looked for
    assert len(secrets) >= 11
    leaks = []
    for name in docker("ps", "-a", "--format", "{{.Names}}").split():
        config = json.loads(docker("inspect", name))[0]
        if name == "victoriametrics":
            config["Args"] = [arg for arg in config["Args"] if "AuthKey=" not in arg]
            config["Config"]["Cmd"] = config["Args"]
        text = json.dumps(config)
        leaks += [f"{name}: {secret}" for secret, value in secrets.items() if value in text]
    assert leaks == []
