"""A deployment stops when the data directories are empty but backups are there
(a data volume that did not mount, a purge), unless told to start empty."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from harness.molecule import playbook
from harness.settings import REPO


def check(root: Path, allow: bool = False) -> subprocess.CompletedProcess:
    extra = {
        "stack_check": "data",
        "stack_data_dir": str(root),
        "stack_data_required_dirs": [str(root / "victoriametrics"), str(root / "mysql")],
        "stack_backups_dir": str(root / "backups"),
        "stack_allow_empty_data": allow,
    }
    return playbook(Path(__file__).parent / "stack_check.yml", extra, cwd=REPO)


def put(root: Path, *paths: str) -> None:
    for path in paths:
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_text("x")


@pytest.mark.parametrize(
    ("files", "allow"),
    [
        ([], False),  # a first deployment: nothing yet
        (["victoriametrics/flock.lock", "mysql/ibdata1", "backups/mysql/airflow-20261201T000000Z.sql.gz"], False),
        (["backups/mysql/airflow-20261201T000000Z.sql.gz"], True),  # told to start empty
        (["victoriametrics/flock.lock", "mysql/ibdata1"], False),  # no backup yet
    ],
    ids=["first-deployment", "data-and-backups", "allowed", "data-no-backups"],
)
def test_goes_ahead(tmp_path: Path, files: list[str], allow: bool):
    put(tmp_path, *files)
    result = check(tmp_path, allow)
    assert result.returncode == 0, result.stdout[-2000:]


def test_stops_on_empty_data_next_to_backups_naming_the_way_out(tmp_path: Path):
    put(tmp_path, "mysql/ibdata1", "backups/mysql/airflow-20261201T000000Z.sql.gz")
    (tmp_path / "victoriametrics").mkdir()
    result = check(tmp_path)
    assert result.returncode != 0
    assert f"{tmp_path}/victoriametrics is empty, but {tmp_path}/backups holds 1 backups" in result.stdout
    assert "stack_allow_empty_data=true, then make restore" in result.stdout
