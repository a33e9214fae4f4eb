"""The memory budget: the shipped limits fit the default instance type with room
for the OS, and a deployment refuses a host its limits do not fit."""

from __future__ import annotations

import subprocess
from pathlib import Path

import yaml

from harness.molecule import playbook
from harness.settings import REPO

SETTINGS = yaml.safe_load((REPO / "ansible/group_vars/all/stack.yml").read_text())
# MemTotal of a t3.small (2 GiB) running Debian 12: what the kernel leaves of the 2048 MiB.
T3_SMALL_MEMTOTAL_MIB = 1900


def check(limits: dict[str, int], reserved: int) -> subprocess.CompletedProcess:
    extra = {"stack_check": "memory", "stack_memory_limits": limits, "stack_memory_reserved_mib": reserved}
    return playbook(Path(__file__).parent / "stack_check.yml", extra, cwd=REPO)


def host_memtotal_mib() -> int:
    line = next(line for line in Path("/proc/meminfo").read_text().splitlines() if line.startswith("MemTotal:"))
    return int(line.split()[1]) // 1024


def test_the_limits_fit_the_default_instance_type_with_room_for_the_os():
    limits = SETTINGS["stack_memory_limits"]
    reserved = SETTINGS["stack_memory_reserved_mib"]
    assert sum(limits.values()) + reserved <= T3_SMALL_MEMTOTAL_MIB, (
        f"the limits add up to {sum(limits.values())} MiB and the OS needs {reserved} MiB: "
        f"more than a t3.small's {T3_SMALL_MEMTOTAL_MIB} MiB"
    )
    assert reserved >= 192, "the OS, dockerd and containerd need more than that"


def test_limits_that_fit_this_host_pass():
    result = check({"one": host_memtotal_mib() // 2}, 64)
    assert result.returncode == 0, result.stdout[-2000:]


def test_limits_past_this_hosts_memory_are_refused_naming_the_fix():
    total = host_memtotal_mib()
    result = check({"one": total - 100, "two": 64}, 64)
    assert result.returncode != 0
    assert f"add up to {total - 36} MiB" in result.stdout
    assert "Lower some limits or choose a larger instance_type" in result.stdout
