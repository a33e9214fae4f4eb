"""Housekeeping in the deployed stack: the API server deletes the runs, task
instances and task logs older than the retention (30 days), keeps the rest, and
reports each pass. The scenario runs a pass every minute."""

from __future__ import annotations

import os
import time
import urllib.error

from harness.airflow_api import trigger
from harness.docker import mysql_root
from harness.services import wait_until
from harness.settings import DATA, SLOT
from harness.vm import vm_query

LOGS = DATA / "airflow/logs"
AGED_DAYS = 40


def run_exists(api, dag_id: str, run_id: str) -> bool:
    try:
        api.request("GET", f"/api/v2/dags/{dag_id}/dagRuns/{run_id}")
        return True
    except urllib.error.HTTPError as exc:
        if exc.code == 404:
            return False
        raise


# The SQL below is built from table names and run ids this module makes (e2e-<slot>-<ns>).


def rows(table: str, run_id: str) -> int:
    query = f"SELECT COUNT(*) FROM airflow.{table} WHERE run_id = '{run_id}'"  # noqa: S608
    return int(mysql_root("-N", "-e", query).strip())


def age(run_id: str, days: int) -> None:
    """Move a run and its task instances ``days`` into the past, as db clean sees time."""
    shift = f"INTERVAL {days} DAY"
    dates = {"dag_run": ("start_date", "end_date", "queued_at"), "task_instance": ("start_date", "end_date")}
    for table, columns in dates.items():
        moved = ", ".join(f"{column} = {column} - {shift}" for column in columns)
        mysql_root("-e", f"UPDATE airflow.{table} SET {moved} WHERE run_id = '{run_id}'")  # noqa: S608


def age_files(top, days: int) -> list:
    """Set the modification time of ``top`` and all below it ``days`` back; the files."""
    stamp = time.time() - days * 86400
    files = []
    for folder, _dirs, names in os.walk(top):
        for name in names:
            files.append(os.path.join(folder, name))
            os.utime(files[-1], (stamp, stamp))
        os.utime(folder, (stamp, stamp))
    return files


def test_runs_and_logs_past_the_retention_go_the_rest_stays(airflow_api, rate_dag):
    # Slots three days back: their runs fail at once (too late for a live quote) and
    # write no point, but leave rows and logs, and take none of the recent free slots.
    base = int(time.time()) // SLOT * SLOT - 3 * 86400
    old_run, new_run = (trigger(airflow_api, slot) for slot in (base, base + SLOT))
    for run_id in (old_run, new_run):
        assert airflow_api.wait_for_run(rate_dag, run_id, timeout=300)["state"] == "failed"
    old_logs, new_logs = (LOGS / f"dag_id={rate_dag}/run_id={run_id}" for run_id in (old_run, new_run))
    assert rows("task_instance", old_run) > 0
    assert any(new_logs.rglob("*.log")), f"no task log under {new_logs}"

    age(old_run, AGED_DAYS)
    aged_files = age_files(old_logs, AGED_DAYS)
    assert aged_files, f"no task log under {old_logs}"

    wait_until(lambda: not run_exists(airflow_api, rate_dag, old_run), 180, "the aged run to be cleaned", interval=5)
    wait_until(lambda: not old_logs.exists(), 60, f"{old_logs} to be deleted", interval=5)
    assert rows("task_instance", old_run) == 0
    assert run_exists(airflow_api, rate_dag, new_run)
    assert rows("task_instance", new_run) > 0
    assert any(new_logs.rglob("*.log"))


def test_each_pass_is_reported_as_a_metric(stack):
    def reported(outcome: str) -> float:
        result = vm_query(f"btc_usd_housekeeping_last_{outcome}_timestamp_seconds")
        return float(result[0]["value"][1]) if result else 0.0

    # A pass a minute, written for node_exporter, scraped every 30 s. A pass may have
    # failed earlier (another test restarting MySQL): the latest one succeeded.
    wait_until(
        lambda: reported("success") > max(time.time() - 300, reported("failure")),
        240,
        "a recent successful housekeeping pass in VictoriaMetrics",
        interval=10,
    )
