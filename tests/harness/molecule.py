"""Molecule and ansible-playbook, run the way a user runs them."""

from __future__ import annotations

import json
import os
import re
import subprocess
import tempfile
import time
from pathlib import Path

from harness.settings import DATA, INFRA_BIN, LABEL, REPO


def molecule(
    command: str, *, log: Path, side_effect: str = "down", restore_from: str = "local", generation: str = ""
) -> tuple[int, float]:
    """Run ``molecule COMMAND`` (default scenario); return its exit code and duration.
    ``side_effect`` names the playbook of ``molecule side-effect`` (ansible/NAME.yml),
    ``restore_from`` where the restore playbook takes the backup from, ``generation``
    which one (empty: the newest)."""
    env = {
        **os.environ,
        "PATH": f"{INFRA_BIN}:{os.environ['PATH']}",
        "ANSIBLE_FORCE_COLOR": "0",
        "NO_COLOR": "1",
        "MOLECULE_SIDE_EFFECT": side_effect,
        "MOLECULE_RESTORE_FROM": restore_from,
        "MOLECULE_RESTORE_GENERATION": generation,
    }
    env.pop("VIRTUAL_ENV", None)
    log.parent.mkdir(parents=True, exist_ok=True)
    start = time.monotonic()
    with log.open("w") as out:
        rc = subprocess.call([str(INFRA_BIN / "molecule"), command], cwd=REPO, env=env, stdout=out, stderr=out)
    return rc, time.monotonic() - start


def purge_leftover_stack(*, log: Path) -> None:
    """Remove a stack another checkout left on this machine (``make purge``).

    Molecule only destroys what its own state recorded, and that state lives per
    checkout; a leftover data directory would keep the other checkout's MySQL
    password. A machine that never ran the stack has nothing to purge.
    """
    leftover = subprocess.run(
        ["docker", "ps", "-aq", "--filter", f"label={LABEL}"], capture_output=True, text=True, check=True
    ).stdout.split()
    if not leftover and not DATA.exists():
        return
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("w") as out:
        rc = subprocess.call(["make", "--no-print-directory", "purge", "BACKUPS=1"], cwd=REPO, stdout=out, stderr=out)
    if rc != 0:
        raise RuntimeError(f"`make purge` of the stack left on this machine failed (rc={rc}); see {log}")


def render(playbook: Path, dest: Path, extra_vars: dict | None = None) -> None:
    """Run a test playbook that renders a role's templates into ``dest``."""
    extra = ["-e", json.dumps(extra_vars)] if extra_vars else []
    result = subprocess.run(
        [str(INFRA_BIN / "ansible-playbook"), str(playbook), "-e", f"dest={dest}", *extra],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout[-3000:]


def playbook(
    path: Path, extra: dict, *, cwd: Path, inventory: str = "localhost,", args: tuple[str, ...] = ()
) -> subprocess.CompletedProcess:
    """Run ansible-playbook as a user would, with ``extra`` as extra variables (a JSON file)."""
    env = {**os.environ, "ANSIBLE_FORCE_COLOR": "0", "NO_COLOR": "1", "ANSIBLE_ROLES_PATH": str(REPO / "roles")}
    env.pop("VIRTUAL_ENV", None)
    with tempfile.NamedTemporaryFile("w", suffix=".json") as variables:
        json.dump(extra, variables)
        variables.flush()
        return subprocess.run(
            [str(INFRA_BIN / "ansible-playbook"), "-i", inventory, "-e", f"@{variables.name}", *args, str(path)],
            cwd=cwd, env=env, capture_output=True, text=True, timeout=300,
        )  # fmt: skip


def role_seconds(log: Path) -> dict[str, float]:
    """Seconds per role from the ROLES RECAP that ansible.posix.profile_roles prints."""
    found = re.findall(r"^(\w+) -+ ([0-9.]+)s$", log.read_text(errors="replace"), flags=re.MULTILINE)
    return {role: float(seconds) for role, seconds in found}


def tail(path: Path, lines: int = 60) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
