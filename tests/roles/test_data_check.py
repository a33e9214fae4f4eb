"""A deployment stops when the data directories are empty but backups are there
(a data volume that did not mount, a purge), unless told to start empty."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from harness.settings import INFRA_BIN, REPO


def check(root: Path, allow: bool = False) -> subprocess.CompletedProcess:
    extra = root / "extra.json"
    extra.write_text(
        json.dumps(
            {
                "stack_data_dir": str(root),
                "stack_data_required_dirs": [str(root / "victoriametrics"), str(root / "mysql")],
                "stack_backups_dir": str(root / "backups"),
                "stack_allow_empty_data": allow,
            }
        )
    )
    env = {**os.environ, "ANSIBLE_FORCE_COLOR": "0", "NO_COLOR": "1", "ANSIBLE_ROLES_PATH": str(REPO / "roles")}
    env.pop("VIRTUAL_ENV", None)
    return subprocess.run(
        [str(INFRA_BIN / "ansible-playbook"), "-i", "localhost,", "-e", f"@{extra}", "data_check.yml"],
        cwd=Path(__file__).parent, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip


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
