"""Backups and the restore drill in the deployed stack: a backup is taken, the
time series and Airflow's database are destroyed, `make restore`'s playbook
brings them back, and every point and run is there again, unchanged: from the
local backups, then from the copy in S3 (moto) after the local ones are lost too."""

from __future__ import annotations

import gzip
import shutil
import time

import pytest

from harness.docker import docker, mysql_root, wait_healthy
from harness.molecule import molecule, tail
from harness.s3 import s3_keys
from harness.services import wait_until
from harness.settings import DATA, LOGS, RATE_DAG, S3_PREFIX
from harness.vm import vm_points, vm_query

DAG = RATE_DAG
BACKUPS = DATA / "backups"
RATES = '{__name__=~"exchange_rate.*"}'


def all_rates() -> set[tuple]:
    now = int(time.time())
    return vm_points(RATES, now - 30 * 86400, now + 600)


def runs(api) -> list[tuple]:
    found = api.request("GET", f"/api/v2/dags/{DAG}/dagRuns?limit=100&order_by=logical_date")["dag_runs"]
    return [(r["dag_run_id"], r["logical_date"], r["state"]) for r in found]


@pytest.fixture(scope="module")
def paused(airflow_api, recorded_slot):
    """History to back up, and no run writing during the drill: the comparison is exact."""
    airflow_api.set_paused(DAG, True)
    yield
    airflow_api.login().set_paused(DAG, False)


def test_backup_writes_both_parts_and_reports_them(stack, figures):
    started = time.time()
    docker("exec", "backup", "btc-usd-backup", "now")
    figures["backup_now_s"] = round(time.time() - started, 1)

    dump = max((BACKUPS / "mysql").glob("airflow-*.sql.gz"))
    text = gzip.decompress(dump.read_bytes()).decode()  # --hex-blob: text only
    assert "CREATE TABLE `dag_run`" in text
    assert text.rstrip().splitlines()[-1].startswith("-- Dump completed")
    assert (BACKUPS / "victoriametrics/latest/backup_complete.ignore").is_file()
    figures["backup_mysql_dump_kib"] = round(dump.stat().st_size / 1024, 1)
    # The copy in S3 (moto): the same dump, and a complete VictoriaMetrics backup.
    assert f"{S3_PREFIX}/mysql/{dump.name}" in s3_keys("mysql/")
    assert f"{S3_PREFIX}/victoriametrics/latest/backup_complete.ignore" in s3_keys("victoriametrics/latest/")

    def reported() -> dict[str, float]:
        found = vm_query("btc_usd_backup_last_success_timestamp_seconds")
        latest = {series["metric"]["target"]: float(series["value"][1]) for series in found}
        fresh = {target for target, value in latest.items() if value >= int(started)}
        # Both points are written a moment apart: wait for the second too.
        return latest if fresh == {"mysql", "victoriametrics"} else {}

    # VictoriaMetrics shows a point once it is older than -search.latencyOffset (5 s).
    wait_until(reported, 60, "both backup results in VictoriaMetrics")


@pytest.mark.parametrize("source", ["local", "s3"])
def test_restore_drill_brings_back_every_point_and_run(airflow_api, paused, figures, source):
    points, history = all_rates(), runs(airflow_api)
    assert points, "no point to back up"
    assert history, "no DAG run to back up"
    docker("exec", "backup", "btc-usd-backup", "now")
    if source == "s3":
        # The disk is lost with its local backups: only the copy in S3 is left.
        for part in ("mysql", "victoriametrics"):
            shutil.rmtree(BACKUPS / part)

    # Lose the data: the time series directory and Airflow's database.
    docker("stop", "victoriametrics")
    for child in (DATA / "victoriametrics").iterdir():
        shutil.rmtree(child) if child.is_dir() else child.unlink()
    docker("start", "victoriametrics")
    mysql_root("-e", "DROP DATABASE airflow")
    wait_healthy(["victoriametrics"], timeout=120)
    assert all_rates() == set(), "the series survived the wipe: the drill would prove nothing"

    started = time.monotonic()
    log = LOGS / f"restore-{source}.log"
    rc, _ = molecule("side-effect", log=log, side_effect="restore", restore_from=source)
    assert rc == 0, tail(log)
    figures[f"restore_playbook_s[{source}]"] = round(time.monotonic() - started, 1)

    restored = all_rates()
    assert restored == points, f"missing {sorted(points - restored)[:3]}, extra {sorted(restored - points)[:3]}"
    airflow_api.login()
    assert runs(airflow_api) == history
    if source == "s3":
        # As an operator would after a lost disk: back up again, so local copies exist.
        docker("exec", "backup", "btc-usd-backup", "now")
        assert (BACKUPS / "victoriametrics/latest/backup_complete.ignore").is_file()
        assert list((BACKUPS / "mysql").glob("airflow-*.sql.gz"))
