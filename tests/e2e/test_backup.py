"""Backups and the restore drill in the deployed stack: each backup is a dated
generation, a store that shrank is not backed up, and after the time series and
Airflow's database are destroyed, `make restore`'s playbook brings back the
generation asked for, every point and run unchanged: from the local backups, then
from the copy in S3 (moto) after the local ones are lost too."""

from __future__ import annotations

import gzip
import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from harness.docker import container_pids, docker, inspect, mysql_root, wait_healthy
from harness.molecule import molecule, tail
from harness.s3 import s3_keys
from harness.services import wait_until
from harness.settings import DATA, LOGS, RATE_DAG, S3_PREFIX, SECRETS
from harness.vm import vm_open, vm_points, vm_query

DAG = RATE_DAG
BACKUPS = DATA / "backups"
RATES = '{__name__=~"exchange_rate.*"}'
AIRFLOW = ["airflow-api-server", "airflow-scheduler", "airflow-dag-processor"]
GENERATION = re.compile(r"^\d{8}T\d{6}Z$")


def generations() -> list[Path]:
    """The complete VictoriaMetrics generations on disk, oldest first."""
    found = (BACKUPS / "victoriametrics").iterdir()
    return sorted(p for p in found if GENERATION.match(p.name) and (p / "backup_complete.ignore").is_file())


BUSY = "another backup is running"


def backup_now(**env: str) -> subprocess.CompletedProcess:
    """``btc-usd-backup now``; while the backup the container started on its own still
    runs (it refuses a second one), asked again every 2 s for up to 5 minutes."""
    options = [arg for key, value in env.items() for arg in ("-e", f"{key}={value}")]
    deadline = time.monotonic() + 300
    while True:
        result = subprocess.run(
            ["docker", "exec", *options, "backup", "btc-usd-backup", "now"], capture_output=True, text=True, timeout=600
        )
        if BUSY not in result.stderr + result.stdout or time.monotonic() > deadline:
            return result
        time.sleep(2)


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
    result = backup_now()
    assert result.returncode == 0, result.stderr
    figures["backup_now_s"] = round(time.time() - started, 1)

    # One generation: the dump and the VictoriaMetrics backup share its name.
    generation = generations()[-1].name
    dump = BACKUPS / "mysql" / f"airflow-{generation}.sql.gz"
    text = gzip.decompress(dump.read_bytes()).decode()  # --hex-blob: text only
    assert "CREATE TABLE `dag_run`" in text
    assert text.rstrip().splitlines()[-1].startswith("-- Dump completed")
    figures["backup_mysql_dump_kib"] = round(dump.stat().st_size / 1024, 1)
    # The copy in S3 (moto): the same dump, and a complete VictoriaMetrics backup.
    assert f"{S3_PREFIX}/mysql/{dump.name}" in s3_keys("mysql/")
    assert f"{S3_PREFIX}/victoriametrics/{generation}/backup_complete.ignore" in s3_keys(
        f"victoriametrics/{generation}/"
    )

    def reported() -> dict[str, float]:
        found = vm_query("btc_usd_backup_last_success_timestamp_seconds")
        latest = {series["metric"]["target"]: float(series["value"][1]) for series in found}
        fresh = {target for target, value in latest.items() if value >= int(started)}
        # Both points are written a moment apart: wait for the second too.
        return latest if fresh == {"mysql", "victoriametrics"} else {}

    # VictoriaMetrics shows a point once it is older than -search.latencyOffset (5 s).
    wait_until(reported, 60, "both backup results in VictoriaMetrics")


def test_a_new_generation_links_what_the_previous_one_holds(stack):
    before = generations()
    assert backup_now().returncode == 0
    older, newer = generations()[-2:]
    assert newer not in before
    files = [path for path in newer.rglob("*") if path.is_file() and path.name != "backup_complete.ignore"]
    shared = [path for path in files if path.stat().st_nlink > 1]
    assert shared, f"{newer.name} shares no file with {older.name}: each generation would be a full copy"
    assert f"{S3_PREFIX}/victoriametrics/{newer.name}/backup_complete.ignore" in s3_keys(
        f"victoriametrics/{newer.name}/"
    )


def test_no_backup_process_shows_a_credential(stack):
    """vmbackup, mysqldump and curl get their credentials from files and standard
    input: sampled while a backup runs, no command line holds a secret, and the
    snapshot the backup took is deleted after it."""
    secrets = {path.read_text().strip() for path in SECRETS.iterdir() if path.is_file()}
    assert len(secrets) >= 10
    command_lines = set()
    # Once the container's own backup is done (backup_now waits for it): a second one refuses.
    assert backup_now().returncode == 0
    backup = subprocess.Popen(
        ["docker", "exec", "backup", "btc-usd-backup", "now"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    deadline = time.monotonic() + 300
    while backup.poll() is None and time.monotonic() < deadline:
        for pid in container_pids("backup"):
            try:
                command_lines.add(Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode())
            except OSError:  # the process ended
                continue
        time.sleep(0.02)
    output = backup.communicate(timeout=60)[0]
    assert backup.returncode == 0, output[-2000:]
    programs = {Path(line.split(" ")[0]).name for line in command_lines if line}
    assert {"vmbackup", "mysqldump"} <= programs, programs  # the sampling saw the programs that log in
    assert [line for line in command_lines if any(secret in line for secret in secrets)] == []
    assert list((DATA / "victoriametrics" / "snapshots").iterdir()) == []


def test_an_emptied_store_is_not_backed_up_and_is_reported(stack, paused):
    """VictoriaMetrics started on an empty directory (its volume not mounted): the
    backup refuses to take it, keeps the generations, and reports the failure."""
    data = DATA / "victoriametrics"
    aside = data.with_name("victoriametrics.aside")
    kept = generations()
    docker("stop", "victoriametrics")
    try:
        data.rename(aside)
        data.mkdir()
        shutil.copystat(aside, data)
        os.chown(data, aside.stat().st_uid, aside.stat().st_gid)
        docker("start", "victoriametrics")
        wait_healthy(["victoriametrics"], timeout=120)
        started = time.time()
        result = backup_now()
        assert result.returncode != 0, "the empty store was backed up"
        assert "not backed up, the earlier generations stay as they are" in result.stderr
        assert "BACKUP_ALLOW_SHRINK=1" in result.stderr
        assert generations() == kept

        def failure_reported() -> list[dict]:
            found = vm_query('btc_usd_backup_last_failure_timestamp_seconds{target="victoriametrics"}')
            return [series for series in found if float(series["value"][1]) >= int(started)]

        # Reported to the running (empty) VictoriaMetrics, where BackupFailing reads it.
        wait_until(failure_reported, 60, "the refused backup reported as a failure")
    finally:
        docker("stop", "victoriametrics")
        if aside.exists():
            shutil.rmtree(data)
            aside.rename(data)
        docker("start", "victoriametrics")
        wait_healthy(["victoriametrics"], timeout=120)
    assert inspect("victoriametrics")["State"]["Running"]


def mark(name: str) -> None:
    """Write one point of a series of the test's own, stamped now."""
    line = f"{name} 1 {int(time.time() * 1000)}\n".encode()
    vm_open("/api/v1/import/prometheus", data=line).close()


def marked(name: str) -> bool:
    now = int(time.time())
    return bool(vm_points(name, now - 86400, now + 600))


@pytest.mark.parametrize("source", ["local", "s3"])
def test_restore_drill_brings_back_every_point_and_run(airflow_api, paused, figures, source):
    points, history = all_rates(), runs(airflow_api)
    assert points, "no point to back up"
    assert history, "no DAG run to back up"
    assert backup_now().returncode == 0
    generation = ""
    if source == "local":
        # A point newer than the generation restored: a restore of an older generation drops it.
        generation = generations()[-1].name
        mark("btc_usd_restore_drill_marker")
        wait_until(lambda: marked("btc_usd_restore_drill_marker"), 30, "the marker point")
        time.sleep(1)  # generations are named by the second
        assert backup_now().returncode == 0
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
    rc, _ = molecule("side-effect", log=log, side_effect="restore", restore_from=source, generation=generation)
    assert rc == 0, tail(log)
    figures[f"restore_playbook_s[{source}]"] = round(time.monotonic() - started, 1)

    if source == "local":
        assert not marked("btc_usd_restore_drill_marker"), f"the generation restored was not {generation}"
    restored = all_rates()
    assert restored == points, f"missing {sorted(points - restored)[:3]}, extra {sorted(restored - points)[:3]}"
    airflow_api.login()
    assert runs(airflow_api) == history
    if source == "s3":
        # As an operator would after a lost disk: back up again, so local copies exist.
        assert backup_now().returncode == 0
        assert generations()
        assert list((BACKUPS / "mysql").glob("airflow-*.sql.gz"))


def test_a_failed_restore_puts_the_data_back_as_it_was(airflow_api, paused, figures):
    """A generation whose dump breaks half-way through loading, after its time series
    were restored: the playbook fails and says so, and both stores are as they were."""
    assert backup_now().returncode == 0
    good = generations()[-1]
    time.sleep(1)
    bad = good.with_name(time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()))
    shutil.copytree(good, bad, copy_function=os.link)
    text = gzip.decompress((BACKUPS / "mysql" / f"airflow-{good.name}.sql.gz").read_bytes())
    bad_dump = BACKUPS / "mysql" / f"airflow-{bad.name}.sql.gz"
    bad_dump.write_bytes(gzip.compress(text[: len(text) // 2] + b"\nTHIS IS NOT SQL;\n"))
    try:
        # Newer than the generation: kept only if the time series are put back.
        mark("btc_usd_failed_restore_marker")
        wait_until(lambda: marked("btc_usd_failed_restore_marker"), 30, "the marker point")
        points, history = all_rates(), runs(airflow_api)
        log = LOGS / "restore-failing.log"
        started = time.monotonic()
        rc, _ = molecule("side-effect", log=log, side_effect="restore", generation=bad.name)
        assert rc != 0, "the restore of a broken dump succeeded"
        assert "The restore failed, and the data is back as it was before it" in log.read_text()
        wait_healthy(["victoriametrics", "backup", "vmalert", *AIRFLOW], timeout=300)
        figures["restore_failed_back_as_before_s"] = round(time.monotonic() - started, 1)
        assert marked("btc_usd_failed_restore_marker"), "the time series are the restored ones, not the old"
        assert all_rates() == points
        airflow_api.login()
        assert runs(airflow_api) == history
    finally:
        shutil.rmtree(bad, ignore_errors=True)
        bad_dump.unlink(missing_ok=True)
