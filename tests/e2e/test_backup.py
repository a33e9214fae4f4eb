"""Backups and the restore drill in the deployed stack: a backup is taken, the
time series and Airflow's database are destroyed, `make restore`'s playbook
brings them back, and every point and run is there again, unchanged."""

from __future__ import annotations

import gzip
import json
import shutil
import time
import urllib.parse
import urllib.request

import pytest

from harness.services import wait_until
from harness.stack import DATA, LOGS, container_ip, docker, molecule, secret, tail, vm_points, wait_healthy

DAG = "btc_usd_exchange_rate"
BACKUPS = DATA / "backups"
RATES = '{__name__=~"exchange_rate.*"}'


def all_rates() -> set[tuple]:
    now = int(time.time())
    return vm_points(RATES, now - 30 * 86400, now + 600)


def runs(api) -> list[tuple]:
    found = api.request("GET", f"/api/v2/dags/{DAG}/dagRuns?limit=100&order_by=logical_date")["dag_runs"]
    return [(r["dag_run_id"], r["logical_date"], r["state"]) for r in found]


def query(expr: str) -> list[dict]:
    url = f"http://{container_ip('victoriametrics')}:8428/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    with urllib.request.urlopen(url, timeout=10) as resp:
        return json.load(resp)["data"]["result"]


@pytest.fixture(scope="module")
def paused(airflow_api):
    """No run may write during the drill: the comparison is exact."""
    airflow_api.request("PATCH", f"/api/v2/dags/{DAG}", {"is_paused": True})
    yield
    airflow_api.login()
    airflow_api.request("PATCH", f"/api/v2/dags/{DAG}", {"is_paused": False})


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

    def reported() -> dict[str, float]:
        found = query("btc_usd_backup_last_success_timestamp_seconds")
        latest = {series["metric"]["target"]: float(series["value"][1]) for series in found}
        fresh = {target for target, value in latest.items() if value >= int(started)}
        # Both points are written a moment apart: wait for the second too.
        return latest if fresh == {"mysql", "victoriametrics"} else {}

    # VictoriaMetrics shows a point once it is older than -search.latencyOffset (5 s).
    wait_until(reported, 60, "both backup results in VictoriaMetrics")


def test_restore_drill_brings_back_every_point_and_run(airflow_api, paused, figures):
    points, history = all_rates(), runs(airflow_api)
    assert points, "no point to back up: run the pipeline tests first"
    assert history, "no DAG run to back up: run the pipeline tests first"
    docker("exec", "backup", "btc-usd-backup", "now")

    # Lose the data: the time series directory and Airflow's database.
    docker("stop", "victoriametrics")
    for child in (DATA / "victoriametrics").iterdir():
        shutil.rmtree(child) if child.is_dir() else child.unlink()
    docker("start", "victoriametrics")
    docker(
        "exec",
        "-e",
        f"MYSQL_PWD={secret('mysql_root_password')}",
        "mysql",
        "mysql",
        "-uroot",
        "-e",
        "DROP DATABASE airflow",
    )
    wait_healthy(["victoriametrics"], timeout=120)
    assert all_rates() == set(), "the series survived the wipe: the drill would prove nothing"

    started = time.monotonic()
    rc, _ = molecule("side-effect", log=LOGS / "restore.log", side_effect="restore")
    assert rc == 0, tail(LOGS / "restore.log")
    figures["restore_playbook_s"] = round(time.monotonic() - started, 1)

    restored = all_rates()
    assert restored == points, f"missing {sorted(points - restored)[:3]}, extra {sorted(restored - points)[:3]}"
    airflow_api.login()
    assert runs(airflow_api) == history
