"""The deployed stack: Molecule deploys it on this machine, the tests talk to it.

One deployment serves every end-to-end test of a ``make test`` run (the
``stack`` fixture is session-scoped); the images built from Debian packages
stay in Docker between runs, so only the first run on a machine builds them.
"""

from __future__ import annotations

import json
import os
import re
import signal
import ssl
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from xml.etree import ElementTree

from harness.services import REPO, wait_until

INFRA_BIN = REPO / ".venv-infra" / "bin"
DATA = Path("/srv/btc-usd-stack")
SECRETS = REPO / ".build" / "molecule" / "secrets"
LOGS = REPO / ".build" / "molecule"
CA_FILE = DATA / "proxy/data/caddy/pki/authorities/local/root.crt"
BASE_URL = "https://127.0.0.1"
NETWORK = "btc-usd-stack"
LABEL = "org.btc-usd-stack.component"


def molecule(command: str, *, log: Path, side_effect: str = "down", restore_from: str = "local") -> tuple[int, float]:
    """Run ``molecule COMMAND`` (default scenario); return its exit code and duration.
    ``side_effect`` names the playbook of ``molecule side-effect`` (ansible/NAME.yml),
    ``restore_from`` where the restore playbook takes the backup from."""
    env = {
        **os.environ,
        "PATH": f"{INFRA_BIN}:{os.environ['PATH']}",
        "ANSIBLE_FORCE_COLOR": "0",
        "NO_COLOR": "1",
        "MOLECULE_SIDE_EFFECT": side_effect,
        "MOLECULE_RESTORE_FROM": restore_from,
    }
    env.pop("VIRTUAL_ENV", None)
    log.parent.mkdir(parents=True, exist_ok=True)
    start = time.monotonic()
    with log.open("w") as out:
        rc = subprocess.call([str(INFRA_BIN / "molecule"), command], cwd=REPO, env=env, stdout=out, stderr=out)
    return rc, time.monotonic() - start


def render(playbook: Path, dest: Path) -> None:
    """Run a test playbook that renders a role's templates into ``dest``."""
    result = subprocess.run(
        [str(INFRA_BIN / "ansible-playbook"), str(playbook), "-e", f"dest={dest}"], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout[-3000:]


def role_seconds(log: Path) -> dict[str, float]:
    """Seconds per role from the ROLES RECAP that ansible.posix.profile_roles prints."""
    found = re.findall(r"^(\w+) -+ ([0-9.]+)s$", log.read_text(errors="replace"), flags=re.MULTILINE)
    return {role: float(seconds) for role, seconds in found}


def tail(path: Path, lines: int = 60) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def docker(*args: str) -> str:
    return subprocess.run(["docker", *args], check=True, capture_output=True, text=True).stdout


def inspect(name: str) -> dict:
    return json.loads(docker("inspect", name))[0]


def container_ip(name: str) -> str:
    return inspect(name)["NetworkSettings"]["Networks"][NETWORK]["IPAddress"]


def stack_containers() -> list[str]:
    return docker("ps", "-a", "--filter", f"label={LABEL}", "--format", "{{.Names}}").split()


def memory_mib() -> dict[str, float]:
    """Memory of each stack container now (`docker stats`), in MiB."""
    out = docker("stats", "--no-stream", "--format", "{{.Name}} {{.MemUsage}}", *stack_containers())
    units = {"B": 1 / 2**20, "KiB": 1 / 1024, "MiB": 1, "GiB": 1024}
    usage = {}
    for line in out.splitlines():
        name, used = line.split()[0], line.split()[1]
        number = re.match(r"[0-9.]+", used).group()
        usage[name] = round(float(number) * units[used[len(number) :]], 1)
    return usage


def wait_healthy(names: list[str], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        states = {n: inspect(n)["State"].get("Health", {}).get("Status") for n in names}
        if all(s == "healthy" for s in states.values()):
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"not healthy after {timeout} s: {states}")
        time.sleep(2)


def restart_docker_daemon() -> None:
    """Restart the Docker daemon as a reboot would: it stops every container, and
    their restart policies bring them back when it starts again."""
    if Path("/run/systemd/system").is_dir():
        subprocess.run(["systemctl", "restart", "docker"], check=True)
        return
    pid = int(subprocess.run(["pidof", "dockerd"], check=True, capture_output=True, text=True).stdout.split()[0])
    os.kill(pid, signal.SIGTERM)

    def stopped() -> bool:  # gone, or a zombie nobody reaps (no init system)
        try:
            return Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z"
        except FileNotFoundError:
            return True

    wait_until(stopped, 120, "dockerd to stop", interval=0.5)
    # Started the same way as on a fresh machine (make deps-docker).
    subprocess.run(["make", "-s", "-C", str(REPO), "deps-docker"], check=True)


@dataclass
class AirflowAPI:
    """Airflow's REST API through the proxy, authenticated as the admin."""

    username: str
    password: str = field(repr=False)
    context: ssl.SSLContext = field(default_factory=lambda: ssl.create_default_context(cafile=str(CA_FILE)), repr=False)
    token: str = field(default="", repr=False)

    def request(self, method: str, path: str, body: dict | None = None) -> dict:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(f"{BASE_URL}/airflow{path}", data=data, method=method)  # noqa: S310 - the proxy on this machine
        req.add_header("Content-Type", "application/json")
        if self.token:
            req.add_header("Authorization", f"Bearer {self.token}")
        with urllib.request.urlopen(req, timeout=30, context=self.context) as resp:  # noqa: S310 - the proxy on this machine
            return json.loads(resp.read() or b"{}")

    def login(self) -> None:
        self.token = ""
        self.token = self.request("POST", "/auth/token", {"username": self.username, "password": self.password})[
            "access_token"
        ]

    def wait_for_run(self, dag_id: str, run_id: str, timeout: float) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            run = self.request("GET", f"/api/v2/dags/{dag_id}/dagRuns/{urllib.parse.quote(run_id)}")
            if run["state"] in ("success", "failed"):
                return run
            if time.monotonic() > deadline:
                raise TimeoutError(f"run {run_id} still {run['state']} after {timeout} s")
            time.sleep(2)


RATE_DAG = "btc_usd_exchange_rate"
SLOT = 600
RATE_SERIES = 'exchange_rate{base="BTC",quote="USD"}'


def free_slots(api: AirflowAPI, count: int) -> list[int]:
    """The latest ``count`` past slots with no run (Airflow allows one run per
    logical date) and no point yet, within the lateness the scenario allows (2 h)."""
    runs = api.request("GET", f"/api/v2/dags/{RATE_DAG}/dagRuns?limit=100")["dag_runs"]
    taken = {int(datetime.fromisoformat(run["logical_date"]).timestamp()) for run in runs if run["logical_date"]}
    now = int(time.time()) // SLOT * SLOT
    stored = {ts // 1000 for series in vm_export(RATE_SERIES, now - 11 * SLOT, now) for ts in series["timestamps"]}
    free = [slot for slot in range(now - 11 * SLOT, now, SLOT) if slot not in taken | stored]
    assert len(free) >= count, f"not {count} free slots in the last 110 minutes: {sorted(taken)}"
    return free[-count:]


def quiet_window(api: AirflowAPI, seconds: float) -> None:
    """Wait until no run of the rate DAG is active and the scheduler's next slot is at
    least ``seconds`` away (and the last one 30 s past), so a scheduled run cannot
    take the one active run (max_active_runs=1) during a test."""
    while True:
        since = time.time() % SLOT
        runs = api.request("GET", f"/api/v2/dags/{RATE_DAG}/dagRuns?limit=20&order_by=-run_after")["dag_runs"]
        if not any(run["state"] in ("queued", "running") for run in runs) and 30 < since < SLOT - seconds:
            return
        time.sleep(5)


def trigger(api: AirflowAPI, slot: int, dag_id: str = RATE_DAG, conf: dict | None = None) -> str:
    """Trigger a run for ``slot`` (with ``conf``, the DAG's params); return its run id."""
    run_id = f"e2e-{slot}-{time.time_ns()}"
    body = {"dag_run_id": run_id, "logical_date": datetime.fromtimestamp(slot, UTC).isoformat()}
    api.request("POST", f"/api/v2/dags/{dag_id}/dagRuns", body | ({"conf": conf} if conf else {}))
    return run_id


def rate_points(slot: int) -> list[dict]:
    return vm_export(RATE_SERIES, slot - 1, slot + 1)


# molecule/default/molecule.yml sends the backups to this bucket of moto on the host.
S3_PORT, S3_BUCKET, S3_PREFIX = 18095, "btc-usd-stack-e2e", "stack-host"


def s3_keys(prefix: str) -> list[str]:
    """The keys under ``prefix`` in the e2e bucket (S3's ListObjectsV2, unsigned: moto)."""
    query = urllib.parse.urlencode({"list-type": "2", "prefix": f"{S3_PREFIX}/{prefix}"})
    with urllib.request.urlopen(f"http://127.0.0.1:{S3_PORT}/{S3_BUCKET}?{query}", timeout=10) as reply:
        listing = ElementTree.fromstring(reply.read())  # noqa: S314 - our own moto on loopback
    ns = {"s3": "http://s3.amazonaws.com/doc/2006-03-01/"}
    assert listing.findtext("s3:IsTruncated", namespaces=ns) == "false", "more keys than one page"
    return [key.text for key in listing.findall("s3:Contents/s3:Key", ns)]


def secret(name: str) -> str:
    return (SECRETS / name).read_text().strip()


def vm_export(match: str, start: int, end: int) -> list[dict]:
    """Points of VictoriaMetrics' /api/v1/export, read from the host over the Docker network."""
    query = urllib.parse.urlencode({"match[]": match, "start": start, "end": end})
    url = f"http://{container_ip('victoriametrics')}:8428/api/v1/export?{query}"
    with urllib.request.urlopen(url, timeout=10) as resp:
        return [json.loads(line) for line in resp.read().decode().splitlines() if line]


def vm_query(expr: str) -> list[dict]:
    """An instant query, as Grafana sends it (subject to -search.latencyOffset)."""
    url = f"http://{container_ip('victoriametrics')}:8428/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    with urllib.request.urlopen(url, timeout=10) as reply:
        return json.load(reply)["data"]["result"]


def vm_points(match: str, start: int, end: int) -> set[tuple]:
    """Every point as (labels, timestamp ms, value): sets compare series point by point."""
    return {
        (tuple(sorted(series["metric"].items())), ts, value)
        for series in vm_export(match, start, end)
        for ts, value in zip(series["timestamps"], series["values"], strict=True)
    }


def is_reachable(url: str) -> bool:
    try:
        urllib.request.urlopen(url, timeout=2).close()  # noqa: S310 - a container of the stack
    except urllib.error.HTTPError:
        return True
    except OSError:
        return False
    return True
