"""The container role writes a container's secret files once: a converge that
changes nothing writes nothing, and a changed value or a loosened mode is put right."""

from __future__ import annotations

import re
import stat
import subprocess
from pathlib import Path

from harness.molecule import playbook
from harness.settings import REPO

FIRST = {"db_password": "Wq3vJ8pLr2Xz6TbN9mKc", "jwt_secret": "Hs5gT1yUe8Rw4QaZ2xVbLp7Dk2Mn9Bv4"}


def write(directory: Path, secrets: dict[str, str]) -> subprocess.CompletedProcess:
    extra = {"container_name": "svc", "container_secrets_dir": str(directory), "container_secrets": secrets}
    result = playbook(Path(__file__).parent / "container_secrets.yml", extra, cwd=REPO)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    for value in secrets.values():
        assert value not in result.stdout, "a secret value is in the output"
    return result


def changed(result: subprocess.CompletedProcess) -> int:
    return int(re.search(r"changed=(\d+)", result.stdout).group(1))


def files(directory: Path) -> dict[str, tuple[str, int]]:
    return {p.name: (p.read_text(), stat.S_IMODE(p.stat().st_mode)) for p in (directory / "svc").iterdir()}


def test_secret_files_are_written_once_then_only_what_differs(tmp_path: Path) -> None:
    first = write(tmp_path, FIRST)
    assert files(tmp_path) == {name: (value, 0o400) for name, value in FIRST.items()}
    assert stat.S_IMODE((tmp_path / "svc").stat().st_mode) == 0o500
    assert changed(first) == 2  # the directory, and the files in one task

    second = write(tmp_path, FIRST)
    assert changed(second) == 0
    assert "(item=" not in second.stdout, "files that match were copied again: " + second.stdout[-3000:]

    (tmp_path / "svc" / "jwt_secret").chmod(0o644)
    rotated = {**FIRST, "db_password": "Zx1Cv3Bn5Mm7Lk9Jh2Gf"}
    third = write(tmp_path, rotated)
    assert files(tmp_path) == {name: (value, 0o400) for name, value in rotated.items()}
    assert changed(third) == 1  # one task: the two files that differ, the other left alone
    assert third.stdout.count("changed: [localhost] => (item=") == 2, third.stdout[-3000:]
