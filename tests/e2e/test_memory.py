"""The memory budget in the deployed stack: every container runs with the limit
the settings give it, and memory taken past a limit is taken back inside that
container by the kernel, with an alert, while the rest of the stack goes on."""

from __future__ import annotations

import subprocess
import time
from datetime import datetime
from pathlib import Path

import yaml

from harness.docker import inspect, memory_limits_mib, memory_peak_mib, stack_containers, wait_healthy
from harness.services import wait_until
from harness.settings import REPO
from harness.vm import vm_open, vm_query

SETTINGS = yaml.safe_load((REPO / "ansible/group_vars/all/stack.yml").read_text())
BUDGET = SETTINGS["stack_memory_limits"]
# Each allocation touches its pages; 2 GiB is past every limit and bounded.
ALLOCATE_MIB = 2048


def allocate(container: str, *, first_to_go: bool) -> int:
    """Allocate ALLOCATE_MIB in a new process inside ``container``; its exit code.
    ``first_to_go`` makes it the process the kernel kills first (oom_score_adj)."""
    first = "open('/proc/self/oom_score_adj', 'w').write('1000')\n" if first_to_go else ""
    script = first + f"chunks = [b'x' * (1 << 20) for _ in range({ALLOCATE_MIB})]\n"
    return subprocess.run(["docker", "exec", container, "python", "-c", script], capture_output=True).returncode


def lives() -> dict[str, tuple[int, str]]:
    """Restart count and start time of every stack container."""
    return {name: (inspect(name)["RestartCount"], inspect(name)["State"]["StartedAt"]) for name in stack_containers()}


def oom_kills() -> float:
    """The kernel's OOM kill counter, as node_exporter reports it to VictoriaMetrics."""
    result = vm_query("node_vmstat_oom_kill")
    return float(result[0]["value"][1]) if result else -1.0


def main_process(container: str) -> int:
    """Host PID of the container's main process: the child of its init (tini)."""
    init = inspect(container)["State"]["Pid"]
    children = Path(f"/proc/{init}/task/{init}/children").read_text().split()
    return int(children[0]) if children else init


def test_every_container_runs_with_its_memory_limit(stack, figures):
    # What each took at most so far (before these tests push any to its limit).
    figures["memory_peak_mib"] = memory_peak_mib()
    limits = memory_limits_mib()
    assert limits == {name: BUDGET[name] for name in limits}


def test_victoriametrics_sizes_its_caches_from_its_limit(stack):
    with vm_open("/metrics") as reply:
        metrics = dict(line.rsplit(" ", 1) for line in reply.read().decode().splitlines() if line[:1] != "#")
    limit = BUDGET["victoriametrics"] << 20
    assert float(metrics["process_memory_limit_bytes"]) == limit, "VictoriaMetrics runs with another limit"
    logs = subprocess.run(["docker", "logs", "victoriametrics"], capture_output=True, text=True)
    percent = next(int(arg.split("=")[1]) for arg in inspect("victoriametrics")["Args"] if "allowedPercent=" in arg)
    assert f"limiting caches to {limit * percent // 100} bytes" in logs.stdout + logs.stderr


def test_a_runaway_process_is_killed_inside_its_container_and_alerts(sinks, figures):
    webhook, _ = sinks
    before, counted = lives(), oom_kills()
    started = time.time()
    # A task that runs away in the scheduler: the kernel kills it at the container's limit.
    assert allocate("airflow-scheduler", first_to_go=True) == 137, "the allocation was not killed (SIGKILL)"
    assert lives() == before, "a container restarted: only the runaway process should have gone"
    wait_healthy(list(before), timeout=120)
    wait_until(lambda: oom_kills() > counted, 120, "node_exporter's OOM kill counter to rise in VictoriaMetrics")

    def firing() -> list[dict]:
        return [
            alert
            for alert in webhook.alerts("firing", alertname="OutOfMemoryKill")
            if datetime.fromisoformat(alert["startsAt"]).timestamp() > started - 900  # the rule's window
        ]

    wait_until(firing, 240, "OutOfMemoryKill at the webhook")
    figures["alert_oom_kill_to_webhook_s"] = round(time.time() - started, 1)


def test_a_container_whose_main_process_goes_past_its_limit_is_restarted(stack, figures):
    name = "airflow-dag-processor"
    before = lives()
    # The kernel kills the process with the highest OOM score: make it the main one,
    # as when the component itself grows past its limit.
    Path(f"/proc/{main_process(name)}/oom_score_adj").write_text("1000")
    started = time.monotonic()
    assert allocate(name, first_to_go=False) == 137, "the allocation was not killed (SIGKILL)"
    wait_until(lambda: inspect(name)["RestartCount"] > before[name][0], 60, f"Docker to restart {name}")
    assert inspect(name)["State"]["OOMKilled"], f"{name} restarted, but not for memory"
    wait_healthy([name], timeout=240)
    figures["oom_killed_container_healthy_again_s"] = round(time.monotonic() - started, 1)
    others = {other: life for other, life in lives().items() if other != name}
    assert others == {other: life for other, life in before.items() if other != name}, "another container restarted"
