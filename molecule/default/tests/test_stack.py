"""What a user relies on after converge: containers healthy, nothing exposed but
the proxy, TLS, health through the proxy, least privilege, firewall, SSH."""

from __future__ import annotations

import json
import os
import re
import time
import urllib.parse
from pathlib import Path

import pytest
import yaml

DATA = "/srv/btc-usd-stack"
SECRETS = Path(os.environ["MOLECULE_PROJECT_DIRECTORY"]) / ".build/molecule/secrets"
CA = f"{DATA}/proxy/data/caddy/pki/authorities/local/root.crt"
RUNNING = [
    "mysql",
    "victoriametrics",
    "airflow-api-server",
    "airflow-scheduler",
    "airflow-dag-processor",
    "proxy",
    "alertmanager",
    "vmalert",
    "node-exporter",
    "mysqld-exporter",
    "blackbox-exporter",
    "backup",
]
INTERNAL = {"mysql": 3306, "victoriametrics": 8428, "airflow-api-server": 8080, "alertmanager": 9093, "vmalert": 8880}
PROBE_IMAGE = "btc-usd-stack/victoriametrics:1.112"


def inspect(host, name: str) -> dict:
    with host.sudo():
        return json.loads(host.check_output(f"docker inspect {name}"))[0]


def first_network(host, name: str) -> tuple[str, str]:
    """The name of the first network ``name`` is on, and its address there."""
    network, settings = next(iter(inspect(host, name)["NetworkSettings"]["Networks"].items()))
    return network, settings["IPAddress"]


def run_probe(host, network: str, url: str, attempts: int = 1):
    """wget ``url`` from a throwaway container on ``network``, up to ``attempts`` times
    until something answers (wget's 4 is no answer: no name, no connection, or a timeout)."""
    with host.sudo():
        for _ in range(attempts):
            result = host.run(
                f"docker run --rm --network {network} --entrypoint wget {PROBE_IMAGE} -q -T 5 -t 1 -O /dev/null {url}"
            )
            if result.rc != 4:
                break
        return result


@pytest.mark.parametrize("name", RUNNING)
def test_container_running_and_healthy(host, name):
    state = inspect(host, name)["State"]
    assert state["Running"], f"{name} is not running: {state}"
    assert state["Health"]["Status"] == "healthy", f"{name}: {state['Health']}"
    assert inspect(host, name)["HostConfig"]["RestartPolicy"]["Name"] == "unless-stopped"


def test_only_the_proxy_publishes_ports(host):
    with host.sudo():
        names = host.check_output("docker ps --format '{{.Names}}'").split()
    assert set(RUNNING) <= set(names)
    published = {}
    for name in names:
        bindings = inspect(host, name)["HostConfig"]["PortBindings"] or {}
        if bindings:
            published[name] = sorted(bindings)
    assert published == {"proxy": ["443/tcp", "80/tcp"]}


@pytest.mark.parametrize(("name", "port"), INTERNAL.items())
def test_internal_services_not_reachable_from_outside_the_network(host, name, port):
    # Positive control: the stack's own network reaches the service.
    network, ip = first_network(host, name)
    # Retried: on a host busy with other tests one probe can miss its deadline.
    inside = run_probe(host, network, f"http://{name}:{port}/", attempts=3)
    # wget: 8 = an HTTP error, 6 = an authentication challenge (Alertmanager); both are answers.
    assert inside.rc in (0, 6, 8), f"{name}:{port} unreachable even inside the network: {inside.stderr}"
    # Another Docker network cannot, even by IP.
    outside = run_probe(host, "bridge", f"http://{ip}:{port}/")
    assert outside.rc not in (0, 8), f"{name} answered a container outside the stack network"
    # Nothing listens for it on the host.
    assert not host.socket(f"tcp://0.0.0.0:{port}").is_listening
    assert not host.socket(f"tcp://:::{port}").is_listening


def test_graphite_not_published(host):
    assert not host.socket("tcp://0.0.0.0:2003").is_listening


def test_http_redirects_to_https(host):
    out = host.check_output("curl -s -o /dev/null -w '%{http_code} %{redirect_url}' http://127.0.0.1/airflow/")
    assert out == "308 https://127.0.0.1/airflow/"


def test_tls_certificate_from_the_internal_ca(host):
    with host.sudo():
        issuer = host.check_output(
            "openssl s_client -connect 127.0.0.1:443 -verify_return_error -CAfile %s </dev/null 2>/dev/null"
            " | openssl x509 -noout -issuer -ext subjectAltName",
            CA,
        )
    assert "Caddy Local Authority" in issuer
    assert "IP Address:127.0.0.1" in issuer


def test_airflow_health_through_the_proxy(host):
    with host.sudo():
        body = host.check_output(f"curl -fsS --cacert {CA} https://127.0.0.1/airflow/api/v2/monitor/health")
    health = json.loads(body)
    assert health["metadatabase"]["status"] == "healthy"
    assert health["scheduler"]["status"] == "healthy"
    assert health["dag_processor"]["status"] == "healthy"


def test_airflow_ui_requires_login(host):
    with host.sudo():
        status = host.check_output(
            f"curl -s -o /dev/null -w '%{{http_code}}' --cacert {CA} https://127.0.0.1/airflow/api/v2/dags"
        )
    assert status == "401"


def test_unknown_path_is_not_proxied(host):
    with host.sudo():
        status = host.check_output(f"curl -s -o /dev/null -w '%{{http_code}}' --cacert {CA} https://127.0.0.1/nope")
    assert status == "404"


def mysql_as_airflow(host, sql: str):
    password = (SECRETS / "airflow_db_password").read_text().strip()
    with host.sudo():
        return host.run("docker exec -e MYSQL_PWD=%s mysql mysql -h 127.0.0.1 -u airflow -N -e %s", password, sql)


def test_airflow_db_user_owns_its_schema(host):
    ok = mysql_as_airflow(host, "SELECT COUNT(*) FROM airflow.dag")
    assert ok.rc == 0, ok.stderr
    assert int(ok.stdout.strip()) >= 1


@pytest.mark.parametrize(
    "sql",
    [
        "CREATE DATABASE intruder",
        "SELECT user FROM mysql.user",
        "CREATE USER 'x'@'%' IDENTIFIED BY 'y'",
        "SELECT * FROM sys.version",
    ],
)
def test_airflow_db_user_cannot_touch_other_schemas(host, sql):
    denied = mysql_as_airflow(host, sql)
    assert denied.rc != 0
    assert "denied" in denied.stderr.lower()


def test_mysql_settings_for_airflow(host):
    out = mysql_as_airflow(
        host, "SELECT @@character_set_server, @@explicit_defaults_for_timestamp, @@binlog_expire_logs_seconds"
    )
    assert out.stdout.split() == ["utf8mb4", "1", "86400"]


def test_victoriametrics_flags(host):
    args = inspect(host, "victoriametrics")["Args"]
    assert "-retentionPeriod=2y" in args
    assert "-graphiteListenAddr=:2003" in args
    assert "-dedup.minScrapeInterval=1s" in args


@pytest.mark.parametrize(
    ("path", "owner", "mode"),
    [
        (f"{DATA}/airflow/airflow.env", "root", 0o600),
        (f"{DATA}/mysql/mysql.env", "root", 0o600),
        (f"{DATA}/backup/backup.env", "root", 0o600),
        (f"{DATA}/airflow/admin-login.sha256", "root", 0o600),
        (f"{DATA}/secrets/airflow-admin/admin_password", "50000", 0o400),
        (f"{DATA}/secrets/mysql/mysql_root_password", "root", 0o400),
        (f"{DATA}/secrets/airflow-scheduler/sql_alchemy_conn", "50000", 0o400),
        (f"{DATA}/secrets/mysqld-exporter/my.cnf", "nobody", 0o400),
        (f"{DATA}/secrets/alertmanager/web.yml", "nobody", 0o400),
    ],
)
def test_secret_files_are_private(host, path, owner, mode):
    with host.sudo():
        f = host.file(path)
        assert f.exists
        assert owner in (f.user, str(f.uid))
        assert f.mode == mode


def test_docker_waits_for_the_data_volume(host):
    dropin = host.file("/etc/systemd/system/docker.service.d/requires-mounts.conf")
    assert dropin.exists
    assert f"RequiresMountsFor={DATA}\n" in dropin.content_string


def test_backups_are_private_and_taken_at_start(host):
    with host.sudo():
        assert host.file(f"{DATA}/backups").mode == 0o700
        # The first backup runs when the container starts (none was taken yet).
        assert host.run(f"ls {DATA}/backups/victoriametrics/*/backup_complete.ignore").rc == 0
        assert host.run(f"ls {DATA}/backups/mysql/airflow-*.sql.gz").rc == 0
        assert host.run("docker exec backup btc-usd-backup check").rc == 0


def test_secrets_not_in_container_logs(host):
    password = (SECRETS / "airflow_admin_password").read_text().strip()
    with host.sudo():
        logs = host.run("docker logs airflow-api-server 2>&1").stdout
    assert password not in logs


def test_grafana_provisioning_written(host):
    # Grafana has no Debian package: in distro mode without an archive it is
    # skipped, but its provisioning is in place for when it runs.
    with host.sudo():
        datasource = host.file(f"{DATA}/grafana/provisioning/datasources/stack.yml").content_string
        dashboard = json.loads(host.file(f"{DATA}/grafana/dashboards/btc-usd.json").content_string)
    assert "url: http://victoriametrics:8428" in datasource
    assert 'basicAuthUser: "stack"' in datasource
    assert dashboard["uid"] == "btc-usd"


def test_firewall_drops_inbound_by_default(host):
    with host.sudo():
        for tool in ("iptables", "ip6tables"):
            rules = host.check_output(f"{tool} -S INPUT")
            assert "-P INPUT DROP" in rules
            for port in (22, 80, 443):
                assert f"--dport {port} " in rules
        docker_user = host.check_output("iptables -S DOCKER-USER").splitlines()
    drops = [r for r in docker_user if r.endswith("-j DROP") and "unpublished" in r]
    assert len(drops) == 1
    # The DROP comes after the published ports' RETURNs and before Docker's final RETURN.
    assert docker_user.index(drops[0]) == len(docker_user) - 2
    # Containers' traffic to the metadata service is dropped, but from the backup's network.
    metadata = [r for r in docker_user if "-d 169.254.169.254/32" in r]
    assert [r.split(" -j ")[-1] for r in metadata] == ["RETURN", "DROP"], metadata
    assert "-s 10.255.254.0/28" in metadata[0]


def test_ssh_hardened(host):
    with host.sudo():
        config = host.check_output("sshd -T -C user=nobody,host=x,addr=127.0.0.1")
    assert "passwordauthentication no" in config
    assert "permitrootlogin no" in config


def test_docker_logs_rotated(host):
    daemon = json.loads(host.file("/etc/docker/daemon.json").content_string)
    assert daemon["log-opts"]["max-size"]


def test_security_updates_and_time_sync(host):
    assert host.package("unattended-upgrades").is_installed
    assert 'Unattended-Upgrade "1"' in host.file("/etc/apt/apt.conf.d/20auto-upgrades").content_string
    assert host.package("chrony").is_installed


def vm_user() -> str:
    """VictoriaMetrics' basic auth, user:password."""
    return "stack:" + (SECRETS / "victoriametrics_http_password").read_text().strip()


def query_json(host, container: str, port: int, path: str, user: str = "") -> dict:
    """GET a JSON API of a stack container from the host, over the Docker network
    (``user`` is ``name:password`` for basic auth)."""
    _, ip = first_network(host, container)
    auth = f"-u '{user}' " if user else ""
    return json.loads(host.check_output(f"curl -fsS {auth}'http://{ip}:{port}{path}'"))


def test_every_scrape_target_up(host):
    # Scraped every 10 s in this scenario; give a fresh deployment a moment.
    for _ in range(30):
        result = query_json(host, "victoriametrics", 8428, "/api/v1/query?query=up", vm_user())["data"]["result"]
        jobs = {r["metric"]["job"]: r["value"][1] for r in result}
        if len(jobs) >= 6 and set(jobs.values()) == {"1"}:
            break
        time.sleep(2)
    assert jobs == dict.fromkeys(
        ["alertmanager", "blackbox", "mysqld", "node", "proxy", "victoriametrics", "vmalert"], "1"
    )


def scraped_names_the_rules_read() -> set[str]:
    """Metric names (or name patterns) of the scraped components' own metrics that an
    alert reads: they change between releases, and a rule on a name no longer
    exposed never fires."""
    rules = Path(os.environ["MOLECULE_PROJECT_DIRECTORY"]) / "roles/vmalert/files/rules"
    exprs = [
        rule["expr"]
        for path in rules.glob("*.yml")
        for group in yaml.safe_load(path.read_text())["groups"]
        for rule in group["rules"]
    ]
    names = {
        name for expr in exprs for name in re.findall(r"\b(?:vm|vmalert|alertmanager|mysql|node)_[a-zA-Z_]+\b", expr)
    }
    return names | {pattern for expr in exprs for pattern in re.findall(r'__name__=~"([^"]+)"', expr)}


def test_every_stack_metric_a_rule_reads_is_exposed(host):
    names = scraped_names_the_rules_read()
    assert {"vm_free_disk_space_bytes", "node_vmstat_oom_kill"} <= names
    missing = []
    for name in sorted(names):
        query = urllib.parse.quote(f'count({{__name__=~"{name}"}})')
        if not query_json(host, "victoriametrics", 8428, f"/api/v1/query?query={query}", vm_user())["data"]["result"]:
            missing.append(name)
    assert missing == []


def test_health_probes_succeed(host):
    result = query_json(host, "victoriametrics", 8428, "/api/v1/query?query=probe_success", vm_user())["data"]["result"]
    probes = {r["metric"]["probe"]: r["value"][1] for r in result}
    assert probes == dict.fromkeys(
        ["airflow-api", "airflow-scheduler", "airflow-dag-processor", "airflow-metadatabase"], "1"
    )


def test_vmalert_loaded_every_rule(host):
    groups = query_json(host, "vmalert", 8880, "/api/v1/rules")["data"]["groups"]
    alerts = [rule["name"] for group in groups for rule in group["rules"]]
    assert len(alerts) >= 22
    assert "ExchangeRateStale" in alerts
    stale = next(r for g in groups for r in g["rules"] if r["name"] == "ExchangeRateStale")
    assert stale["duration"] == 30  # the scenario's `for:` override


def test_alertmanager_config_loaded(host):
    password = (SECRETS / "alertmanager_web_password").read_text().strip()
    status = query_json(host, "alertmanager", 9093, "/api/v2/status", user=f"stack:{password}")
    assert "oncall@example.test" in status["config"]["original"]
