"""Topology "ha" on host containers: Debian hosts with sshd and their own Docker, on a
network created here, deployed by ansible/ha.yml over SSH as a user deploys VMs.

The hosts run with every capability but CAP_SYS_RESOURCE (which this machine's Docker
cannot grant, so --privileged fails) and a private cgroup namespace; tests/ha/host/host-init
makes their cgroups writable for the Docker inside. Traffic goes only to these hosts.
Used by tests/ha and by `make bench-ha`.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import threading
import time
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import yaml

from fakes.rate_apis import FakeRateAPI
from fakes.sinks import WebhookSink
from harness.airflow_api import AirflowAPI
from harness.docker import docker, docker_daemon_lock
from harness.replication import get
from harness.services import REPO, wait_until
from harness.settings import INFRA_BIN

HERE = REPO / "tests" / "ha"
NETWORK = "btc-usd-ha"
SUBNET, GATEWAY = "172.30.90.0/24", "172.30.90.1"
HOST_IMAGE = "btc-usd-ha/host:bookworm"
BASE_IMAGE = "btc-usd-stack/debian:bookworm"
VM_IMAGE, AM_IMAGE = "btc-usd-stack/victoriametrics:1.112", "btc-usd-stack/alertmanager:0.25"
AIRFLOW_IMAGE, MYSQL_IMAGE = "btc-usd-stack/airflow:3.3.2", "btc-usd-stack/mysql:9.7"
CADDY_IMAGE, NODE_IMAGE = "btc-usd-stack/caddy:2.6", "btc-usd-stack/node-exporter:1.5"
# name -> (inventory group, address, images it runs)
HOSTS = {
    "db-1": ("btc_usd_db", "172.30.90.41", [MYSQL_IMAGE, NODE_IMAGE]),
    "control-1": ("btc_usd_control", "172.30.90.31", [AIRFLOW_IMAGE, CADDY_IMAGE, VM_IMAGE, NODE_IMAGE]),
    "control-2": ("btc_usd_control", "172.30.90.32", [AIRFLOW_IMAGE, CADDY_IMAGE, VM_IMAGE, NODE_IMAGE]),
    "tsdb-1": ("btc_usd_tsdb", "172.30.90.11", [VM_IMAGE, AM_IMAGE, NODE_IMAGE]),
    "tsdb-2": ("btc_usd_tsdb", "172.30.90.12", [VM_IMAGE, AM_IMAGE, NODE_IMAGE]),
    "worker-1": ("btc_usd_workers", "172.30.90.21", [VM_IMAGE, AIRFLOW_IMAGE, NODE_IMAGE]),
    "worker-2": ("btc_usd_workers", "172.30.90.22", [VM_IMAGE, AIRFLOW_IMAGE, NODE_IMAGE]),
}
PROXY_ROOT = "/srv/btc-usd-stack/proxy/data/caddy/pki/authorities/local/root.crt"
INTERNAL_NAME = "control.btc-usd-stack.internal"  # stack_control_internal_name
WORKERS = [name for name, spec in HOSTS.items() if spec[0] == "btc_usd_workers"]
TSDB_HOSTS = [name for name, spec in HOSTS.items() if spec[0] == "btc_usd_tsdb"]
USER = "stack"  # stack_victoriametrics_username, stack_alertmanager_username
CAPABILITIES = ["--cap-add", "ALL", "--cap-drop", "SYS_RESOURCE", "--cgroupns", "private"]
UNCONFINED = ["--security-opt", "seccomp=unconfined", "--security-opt", "apparmor=unconfined"]
WEBHOOK_PORT = 18190
# The rate APIs' fakes, on the network's gateway: the workers' tasks fetch from them.
FAKE_PORTS = {"alphavantage": 18181, "coinbase": 18182, "kraken": 18183, "bitstamp": 18184}


def container(name: str) -> str:
    return f"{NETWORK}-{name}"


def remove_hosts() -> None:
    names = [container(name) for name in HOSTS]
    subprocess.run(["docker", "rm", "-f", "-v", *names], capture_output=True, timeout=120)
    subprocess.run(["docker", "network", "rm", NETWORK], capture_output=True, timeout=60)


def run_playbook(args: list[str], log: Path, timeout: float = 900) -> subprocess.CompletedProcess:
    """ansible-playbook from ansible/ (its ansible.cfg: Mitogen, the roles), output kept in ``log``."""
    # The hosts are new in every run: their host keys cannot be known beforehand.
    env = {**os.environ, "ANSIBLE_FORCE_COLOR": "0", "NO_COLOR": "1", "ANSIBLE_HOST_KEY_CHECKING": "False"}
    env.pop("VIRTUAL_ENV", None)
    result = subprocess.run(
        [str(INFRA_BIN / "ansible-playbook"), *args], cwd=REPO / "ansible", env=env,
        capture_output=True, text=True, timeout=timeout,
    )  # fmt: skip
    log.write_text(result.stdout + result.stderr)
    return result


@dataclass
class HA:
    base: Path
    inventory: Path
    secrets: Path
    sink: WebhookSink
    fakes: dict[str, FakeRateAPI]
    ready_s: float  # hosts up, images loaded
    converge_s: float = 0.0

    def address(self, name: str) -> str:
        return HOSTS[name][1]

    def secret(self, name: str) -> str:
        return (self.secrets / name).read_text().strip()

    def vm_auth(self) -> tuple[str, str]:
        """Basic auth of VictoriaMetrics and vmauth on every host."""
        return (USER, self.secret("victoriametrics_http_password"))

    def stored(self, series: str, slot: int) -> dict[str, int]:
        """How many points of ``series`` (a selector) each time-series host holds at ``slot``."""
        query = urllib.parse.urlencode({"match[]": series, "start": slot - 1, "end": slot + 1})
        return {
            host: sum(len(json.loads(line)["timestamps"]) for line in get(f"http://{self.address(host)}:8428/api/v1/export?{query}", self.vm_auth(), timeout=30).splitlines())
            for host in TSDB_HOSTS
        }  # fmt: skip

    def airflow(self, host: str = "control-1") -> AirflowAPI:
        """Airflow's REST API behind a control host's proxy, as the Admin user."""
        api = AirflowAPI(
            "admin", self.secret("airflow_admin_password"), f"https://{self.address(host)}", self.proxy_ca(host)
        )
        return api.login()

    def proxy_ca(self, host: str) -> str:
        """The root of the CA that signs the certificate of ``host``'s proxy (Caddy's own)."""
        path = self.base / f"{host}-proxy-root.crt"
        if not path.exists():
            path.write_text(docker("exec", container(host), "cat", PROXY_ROOT, timeout=60))
        return str(path)

    @property
    def tier_ca(self) -> str:
        """The deployment's CA, which signs the control hosts' internal listeners (stack_tls_dir)."""
        return str(self.secrets / "tls" / "ca.crt")

    def wait_healthy(self, name: str, timeout: float = 300) -> None:
        """Until every container of host ``name`` reports healthy (or has no healthcheck)."""

        def healthy() -> bool:
            states = docker("exec", container(name), "docker", "ps", "--format", "{{.Status}}", timeout=60)
            return bool(states.strip()) and all(
                line.startswith("Up") and "starting" not in line and "unhealthy" not in line
                for line in states.splitlines()
            )

        wait_until(healthy, timeout, f"{name}'s containers healthy")

    def playbook(self, name: str, *args: str) -> subprocess.CompletedProcess:
        return run_playbook(["-i", str(self.inventory), name, *args], self.base / f"{name}.log")

    def lose(self, name: str, fault: str) -> None:
        """``shutdown``: the host stops as a VM does; ``partition``: it is cut off the network."""
        if fault == "shutdown":
            docker("stop", "-t", "20", container(name), timeout=120)
        else:
            docker("network", "disconnect", NETWORK, container(name), timeout=120)

    def bring_back(self, name: str, fault: str) -> None:
        if fault == "shutdown":
            docker("start", container(name), timeout=120)
        else:
            docker("network", "connect", "--ip", self.address(name), NETWORK, container(name), timeout=120)
        wait_until(lambda: ssh_ready(self.base, name), 60, f"{name}'s sshd")


def ssh_ready(base: Path, name: str) -> bool:
    command = [
        "ssh", "-i", str(base / "id"), "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
        "-o", "LogLevel=ERROR", "-o", "ConnectTimeout=2", f"deploy@{HOSTS[name][1]}", "sudo docker info >/dev/null",
    ]  # fmt: skip
    return subprocess.run(command, capture_output=True, timeout=20).returncode == 0


def inventory(base: Path, secrets: Path) -> dict:
    """Every setting a host variable: those outrank ansible/group_vars, as a user's host_vars do."""
    common = {
        "ansible_host": None,
        "ansible_user": "deploy",
        "ansible_ssh_private_key_file": str(base / "id"),
        "ansible_ssh_common_args": "-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null",
        "ansible_python_interpreter": "/usr/bin/python3",
        "stack_image_source": "distro",
        "stack_ha_secrets_dir": str(secrets),
        # The hosts have no init system: host-init runs dockerd and sshd.
        "docker_install_from": "distro",
        "docker_service_manage": False,
        "base_ssh_service_manage": False,
        # chrony would set this machine's clock: the hosts share its kernel.
        "base_timesync_enabled": False,
        "firewall_persist": False,
        # Alerts go to a webhook of the test on the network's gateway, quickly.
        "alertmanager_webhook_urls": [f"http://{GATEWAY}:{WEBHOOK_PORT}/alerts"],
        "alertmanager_heartbeat_url": f"http://{GATEWAY}:{WEBHOOK_PORT}/heartbeat",
        "alertmanager_group_wait": "5s",
        "alertmanager_group_interval": "15s",
        "vmalert_extra_args": {"evaluationInterval": "15s"},
        # The test unpauses and triggers the DAG itself; the tasks ask the fakes.
        "airflow_dags_paused_at_creation": True,
        "airflow_alphavantage_api_key": "ha-test-key",
        "airflow_source_urls": {name: f"http://{GATEWAY}:{port}" for name, port in FAKE_PORTS.items()},
        "airflow_variables": {"exchange_rate_max_lateness_seconds": 7200},
    }
    # The test writes to the worker's vmagent and reads through its vmauth from outside.
    worker = {
        "vmagent_published_ports": ["2003:2003"],
        "vmauth_published_ports": ["8427:8427"],
        "firewall_docker_allowed_ports": [2003, 8427, 9100],
    }
    groups: dict[str, dict] = {}
    for name, (group, address, _images) in HOSTS.items():
        host = {**common, "ansible_host": address, **(worker if group == "btc_usd_workers" else {})}
        groups.setdefault(group, {"hosts": {}})["hosts"][name] = host
    return {"all": {"children": groups}}


def dockerd_ready(name: str) -> bool:
    check = subprocess.run(["docker", "exec", container(name), "docker", "info"], capture_output=True, timeout=30)
    return check.returncode == 0


def load_images(name: str, images: list[str], errors: list[str]) -> None:
    """docker save | docker load into the host's own Docker."""
    try:
        wait_until(lambda: dockerd_ready(name), 60, f"{name}'s dockerd")
        save = subprocess.Popen(["docker", "save", *images], stdout=subprocess.PIPE)
        docker("exec", "-i", container(name), "docker", "load", "-q", stdin=save.stdout, timeout=300)
        save.wait(timeout=60)
    except (subprocess.SubprocessError, TimeoutError) as exc:
        errors.append(f"{name}: {exc}")


@contextlib.contextmanager
def topology(base: Path) -> Iterator[HA]:
    """The seven hosts, deployed by ansible/ha.yml, in ``base``; removed on exit (unless
    KEEP_HA=1). The rate APIs' fakes and the webhook sink serve on the gateway meanwhile.
    This machine's Docker daemon is not restarted while they live (tests/e2e's drill waits)."""
    with docker_daemon_lock(exclusive=False, timeout=600):
        yield from _deploy(base)


def _deploy(base: Path) -> Iterator[HA]:
    started = time.monotonic()
    images = run_playbook([str(HERE / "images.yml")], base / "images.log", timeout=1200)
    assert images.returncode == 0, f"building the images failed; see {base / 'images.log'}"
    docker("build", "-q", "-t", HOST_IMAGE, "--build-arg", f"BASE_IMAGE={BASE_IMAGE}", str(HERE / "host"), timeout=600)
    remove_hosts()
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(base / "id")], check=True)
    docker("network", "create", "--subnet", SUBNET, "--gateway", GATEWAY, NETWORK, timeout=120)
    sink = WebhookSink(GATEWAY, WEBHOOK_PORT).start()
    fakes = {name: FakeRateAPI(name, host=GATEWAY, port=port).start() for name, port in FAKE_PORTS.items()}
    try:
        for name, (_group, address, _images) in HOSTS.items():
            docker(
                "run", "-d", "--name", container(name), "--hostname", name, *CAPABILITIES, *UNCONFINED,
                "--network", NETWORK, "--ip", address, "-v", f"{base / 'id.pub'}:/run/host/authorized_keys:ro",
                "-v", "/var/lib/docker", HOST_IMAGE, timeout=120,
            )  # fmt: skip
        errors: list[str] = []
        loaders = [threading.Thread(target=load_images, args=(n, spec[2], errors)) for n, spec in HOSTS.items()]
        for loader in loaders:
            loader.start()
        for loader in loaders:
            loader.join(timeout=600)
        assert not errors, f"loading the images into the hosts failed: {errors}"
        for name in HOSTS:
            wait_until(lambda n=name: ssh_ready(base, n), 60, f"{name}'s sshd")
        secrets = base / "secrets"
        (base / "inventory.yml").write_text(yaml.safe_dump(inventory(base, secrets)))
        ready = time.monotonic()
        ha = HA(base, base / "inventory.yml", secrets, sink, fakes, ready_s=round(ready - started, 1))
        # The images were loaded above; the hosts have no mirror to build them from.
        result = ha.playbook("ha.yml", "--skip-tags", "images")
        assert result.returncode == 0, f"ansible/ha.yml failed:\n{result.stdout[-4000:]}"
        ha.converge_s = round(time.monotonic() - ready, 1)
        yield ha
    finally:
        sink.stop()
        for fake in fakes.values():
            fake.stop()
        if os.environ.get("KEEP_HA") != "1":
            remove_hosts()


def recap(output: str) -> dict[str, dict[str, int]]:
    """PLAY RECAP counts per host."""
    found = {}
    for line in output.splitlines():
        parts = line.split()
        if len(parts) > 2 and parts[1] == ":" and "ok=" in line:
            found[parts[0]] = {k: int(v) for k, v in (item.split("=") for item in parts[2:])}
    return found
