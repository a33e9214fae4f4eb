"""The memory budget: the shipped limits fit the default instance type with room
for the OS, and a deployment refuses a host its limits do not fit."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import yaml

from harness.settings import INFRA_BIN, REPO

SETTINGS = yaml.safe_load((REPO / "ansible/group_vars/all/stack.yml").read_text())
# MemTotal of a t3.small (2 GiB) running Debian 12: what the kernel leaves of the 2048 MiB.
T3_SMALL_MEMTOTAL_MIB = 1900


def check(tmp_path: Path, limits: dict[str, int], reserved: int) -> subprocess.CompletedProcess:
    extra = tmp_path / "extra.json"
    extra.write_text(json.dumps({"stack_memory_limits": limits, "stack_memory_reserved_mib": reserved}))
    env = {**os.environ, "ANSIBLE_FORCE_COLOR": "0", "NO_COLOR": "1", "ANSIBLE_ROLES_PATH": str(REPO / "roles")}
    env.pop("VIRTUAL_ENV", None)
    return subprocess.run(
        [str(INFRA_BIN / "ansible-playbook"), "-i", "localhost,", "-e", f"@{extra}", "memory_check.yml"],
        cwd=Path(__file__).parent,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


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


def test_limits_that_fit_this_host_pass(tmp_path: Path):
    result = check(tmp_path, {"one": host_memtotal_mib() // 2}, 64)
    assert result.returncode == 0, result.stdout[-2000:]


def test_limits_past_this_hosts_memory_are_refused_naming_the_fix(tmp_path: Path):
    total = host_memtotal_mib()
    result = check(tmp_path, {"one": total - 100, "two": 64}, 64)
    assert result.returncode != 0
    assert f"add up to {total - 36} MiB" in result.stdout
    assert "Lower some limits or choose a larger instance_type" in result.stdout
