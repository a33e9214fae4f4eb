"""The stack's containers as Docker sees them."""

from __future__ import annotations

import fcntl
import json
import os
import re
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from harness.services import wait_until
from harness.settings import LABEL, REPO, SECRETS, secret


def docker(*args: str, timeout: float | None = None, stdin: object = None) -> str:
    """The docker CLI's output; a failure raises CalledProcessError."""
    done = subprocess.run(["docker", *args], check=True, capture_output=True, text=True, timeout=timeout, stdin=stdin)
    return done.stdout


def mysql_root(*args: str, secrets: Path = SECRETS) -> str:
    """The mysql client as root, inside the MySQL container (root exists only there);
    ``secrets``: where the deployment keeps its generated secrets."""
    env = {**os.environ, "MYSQL_PWD": secret("mysql_root_password", secrets)}  # not on a command line
    done = subprocess.run(
        ["docker", "exec", "-e", "MYSQL_PWD", "mysql", "mysql", "-uroot", *args],
        capture_output=True,
        text=True,
        env=env,
    )
    if done.returncode:
        raise RuntimeError(f"mysql as root failed (exit {done.returncode}): {done.stderr.strip()[-2000:]}")
    return done.stdout


def inspect(name: str) -> dict:
    return json.loads(docker("inspect", name))[0]


def container_ip(name: str) -> str:
    """The address of ``name`` on its first network; the host reaches every stack network."""
    networks = inspect(name)["NetworkSettings"]["Networks"]
    return next(iter(networks.values()))["IPAddress"]


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


def memory_limits_mib() -> dict[str, int]:
    """Memory limit of each stack container, in MiB (0: none)."""
    return {name: inspect(name)["HostConfig"]["Memory"] >> 20 for name in stack_containers()}


def memory_peak_mib() -> dict[str, float]:
    """Highest memory use of each stack container since it started, in MiB, from
    its cgroup (v1: memory.max_usage_in_bytes, v2: memory.peak)."""
    peaks = {}
    for name in stack_containers():
        cid = inspect(name)["Id"]
        candidates = [
            Path(f"/sys/fs/cgroup/memory/docker/{cid}/memory.max_usage_in_bytes"),
            Path(f"/sys/fs/cgroup/docker/{cid}/memory.peak"),
            Path(f"/sys/fs/cgroup/system.slice/docker-{cid}.scope/memory.peak"),
        ]
        found = next((path for path in candidates if path.exists()), None)
        if found is not None:
            peaks[name] = round(int(found.read_text()) / 2**20, 1)
    return peaks


def container_pids(name: str) -> list[int]:
    """Host process ids of every process in ``name`` now, from its cgroup."""
    cid = inspect(name)["Id"]
    candidates = [
        Path(f"/sys/fs/cgroup/pids/docker/{cid}/cgroup.procs"),
        Path(f"/sys/fs/cgroup/docker/{cid}/cgroup.procs"),
        Path(f"/sys/fs/cgroup/system.slice/docker-{cid}.scope/cgroup.procs"),
    ]
    found = next((path for path in candidates if path.exists()), None)
    if found is None:
        raise FileNotFoundError(f"no cgroup.procs of {name} among {[str(path) for path in candidates]}")
    return [int(pid) for pid in found.read_text().split()]


def wait_healthy(names: list[str], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        states = {n: inspect(n)["State"].get("Health", {}).get("Status") for n in names}
        if all(s == "healthy" for s in states.values()):
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"not healthy after {timeout} s: {states}")
        time.sleep(2)


# Held shared while tests/ha's hosts live on this machine's daemon and network, and
# exclusively by what they would upset: a restart of the daemon, Chromium's pages.
DAEMON_LOCK = Path("/tmp/btc-usd-stack-dockerd.lock")  # one per machine, like the daemon


@contextmanager
def docker_daemon_lock(*, exclusive: bool, timeout: float) -> Iterator[None]:
    """Hold DAEMON_LOCK; waits at most ``timeout`` seconds for the other holders."""
    with DAEMON_LOCK.open("a") as lock:
        mode = (fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH) | fcntl.LOCK_NB
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(lock, mode)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise TimeoutError(
                        f"{DAEMON_LOCK} stayed locked for {timeout:.0f} s: another test holds this machine's Docker "
                        "daemon (tests/ha's hosts, or its restart drill); wait for it or stop it"
                    ) from None
                time.sleep(2)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def restart_docker_daemon() -> None:
    """Restart the Docker daemon as a reboot would: it stops every container, and
    their restart policies bring them back when it starts again. Waits while tests/ha's
    hosts run on this daemon (DAEMON_LOCK)."""
    with docker_daemon_lock(exclusive=True, timeout=1800):
        if Path("/run/systemd/system").is_dir():
            subprocess.run(["systemctl", "restart", "docker"], check=True)
            return
        # This machine's daemon by its pid file: `pidof` also finds the daemons of tests/ha's hosts.
        pid = int(Path("/var/run/docker.pid").read_text())
        os.kill(pid, signal.SIGTERM)

        def stopped() -> bool:  # gone, or a zombie nobody reaps (no init system)
            try:
                return Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z"
            except FileNotFoundError:
                return True

        wait_until(stopped, 120, "dockerd to stop", interval=0.5)
        # Started the same way as on a fresh machine (make deps-docker).
        subprocess.run(["make", "-s", "-C", str(REPO), "deps-docker"], check=True)
