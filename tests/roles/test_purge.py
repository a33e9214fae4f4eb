"""make purge removes the stack's data but keeps its backups unless asked
(ansible/down.yml's data tasks, run on a directory of the test's own)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from harness.settings import INFRA_BIN, REPO


def purge(data: Path, *, backups: bool) -> None:
    env = {**os.environ, "ANSIBLE_FORCE_COLOR": "0", "NO_COLOR": "1"}
    env.pop("VIRTUAL_ENV", None)
    result = subprocess.run(
        [
            str(INFRA_BIN / "ansible-playbook"), "-i", "inventories/local", "down.yml",
            "--start-at-task", "List the stack's data",  # not the containers and networks of a deployed stack
            "-e", f"stack_data_dir={data}", "-e", f"backup_dir={data}/backups",
            "-e", "stack_purge=true", "-e", f"stack_purge_backups={str(backups).lower()}",
        ],
        cwd=REPO / "ansible", env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-2000:]


@pytest.fixture
def data(tmp_path: Path) -> Path:
    root = tmp_path / "srv"
    for path in ("backups/mysql/airflow-20261201T000000Z.sql.gz", "mysql/ibdata1", "victoriametrics/flock.lock"):
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_text("x")
    (root / ".hidden").write_text("x")
    return root


def test_purge_keeps_the_backups(data: Path):
    purge(data, backups=False)
    assert sorted(p.relative_to(data).as_posix() for p in data.rglob("*")) == [
        "backups",
        "backups/mysql",
        "backups/mysql/airflow-20261201T000000Z.sql.gz",
    ]


def test_purge_with_backups_removes_everything(data: Path):
    purge(data, backups=True)
    assert list(data.iterdir()) == []
