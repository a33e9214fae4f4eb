"""make purge removes the stack's data but keeps its backups unless asked
(ansible/down.yml's data tasks, run on a directory of the test's own)."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.molecule import playbook
from harness.settings import REPO


def purge(data: Path, *, backups: bool) -> None:
    extra = {"stack_data_dir": str(data), "backup_dir": str(data / "backups"), "stack_purge": True,
             "stack_purge_backups": backups}  # fmt: skip
    result = playbook(
        REPO / "ansible/down.yml", extra, cwd=REPO / "ansible", inventory="inventories/local",
        args=("--start-at-task", "List the stack's data"),  # not the containers and networks of a deployed stack
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
