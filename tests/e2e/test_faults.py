"""Fault injection in the deployed stack: each fault is caused for real and the
outcome is asserted: the slot filled exactly once, Airflow back without help,
nothing bogus written while the sources are down."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import threading
import time
import urllib.request
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import pytest

from fakes.rate_apis import FakeRateAPI
from harness.airflow_api import AirflowAPI, free_slots, quiet_window, trigger
from harness.docker import container_ip, docker, inspect, wait_healthy
from harness.services import wait_until
from harness.settings import BACKFILL_DAG, DATA, RATE_DAG, RATE_SERIES, SLOT
from harness.vm import rate_points, vm_open, vm_points

AIRFLOW = ["airflow-api-server", "airflow-scheduler", "airflow-dag-processor"]


@pytest.fixture(scope="module")
def slots(airflow_api, rate_dag) -> list[int]:
    return free_slots(airflow_api, 5)


def iso(ts: int) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat()


def record_tries(api: AirflowAPI, run_id: str) -> list[dict]:
    """Every try of the run's record task (one pair: map index 0)."""
    path = f"/api/v2/dags/{RATE_DAG}/dagRuns/{run_id}/taskInstances/record/0/tries"
    return api.request("GET", path)["task_instances"]


def first_failed_try(api: AirflowAPI, run_id: str, while_: str) -> dict:
    """Wait for the record task's first failed try (up for retry) and return it."""

    def failed() -> list[dict]:
        tries = record_tries(api, run_id)
        assert not [t for t in tries if t["state"] == "success"], f"the record task succeeded while {while_}"
        return [t for t in tries if t["state"] in ("up_for_retry", "failed")]

    return wait_until(failed, 120, f"a try to fail while {while_}", interval=1)[0]


def test_victoriametrics_killed_during_a_run_retry_fills_the_slot_once(airflow_api, slots, figures):
    slot = slots[0]
    quiet_window(airflow_api, 200)
    # Frozen, VictoriaMetrics accepts the Graphite connection but never stores
    # the line, so the run's read-back fails; then its process is killed -9.
    docker("pause", "victoriametrics")
    started = time.monotonic()
    run_id = trigger(airflow_api, slot)
    try:
        first_failed_try(airflow_api, run_id, "VictoriaMetrics is frozen")
        os.kill(inspect("victoriametrics")["State"]["Pid"], signal.SIGKILL)
    finally:
        docker("unpause", "victoriametrics")
    # The restart policy brings it back, the retry writes and verifies the point.
    wait_healthy(["victoriametrics"], timeout=120)
    run = airflow_api.wait_for_run(RATE_DAG, run_id, timeout=300)
    figures["fault_vm_killed_to_slot_filled_s"] = round(time.monotonic() - started, 1)
    assert run["state"] == "success"
    assert inspect("victoriametrics")["RestartCount"] >= 1, "VictoriaMetrics was not killed and restarted"
    assert len(record_tries(airflow_api, run_id)) >= 2, "the slot was filled without a retry"
    points = rate_points(slot)
    assert [p["timestamps"] for p in points] == [[slot * 1000]], points


def test_mysql_restart_airflow_recovers_by_itself(airflow_api, slots, figures):
    quiet_window(airflow_api, 150)
    started = time.monotonic()
    docker("restart", "mysql")
    wait_healthy(["mysql", *AIRFLOW], timeout=300)
    figures["fault_mysql_restart_to_airflow_healthy_s"] = round(time.monotonic() - started, 1)

    def healthy() -> dict:
        health = airflow_api.request("GET", "/api/v2/monitor/health")
        parts = ("metadatabase", "scheduler", "dag_processor")  # no triggerer is deployed
        return health if all(health[part]["status"] == "healthy" for part in parts) else {}

    wait_until(healthy, 180, "Airflow's health endpoint to report every part healthy", interval=2)
    airflow_api.login()
    run = airflow_api.wait_for_run(RATE_DAG, trigger(airflow_api, slots[1]), timeout=300)
    assert run["state"] == "success"
    assert [p["timestamps"] for p in rate_points(slots[1])] == [[slots[1] * 1000]]


def test_sources_unreachable_nothing_is_written_then_points_resume_and_backfill_fills_the_gap(
    airflow_api, fakes, slots, figures
):
    gap, resumed = slots[2], slots[3]
    quiet_window(airflow_api, 120)
    ports = {name: api.port for name, api in fakes.items()}
    for api in fakes.values():
        api.stop()
    try:
        run_id = trigger(airflow_api, gap)
        assert first_failed_try(airflow_api, run_id, "every source is unreachable")["try_number"] == 1
        assert rate_points(gap) == [], "a point was written with every source down"
        # An outage longer than the retries (minutes) fails the run for good; the
        # test gives it up as the last retry would, to keep CI short.
        run_path = f"/api/v2/dags/{RATE_DAG}/dagRuns/{run_id}"
        assert airflow_api.request("PATCH", run_path, {"state": "failed"})["state"] == "failed"
    finally:
        # The sources come back on the same ports.
        for name, port in ports.items():
            fakes[name] = FakeRateAPI(name, host="0.0.0.0", port=port).start()
    assert rate_points(gap) == [], "a point was written for the abandoned slot"

    # Points resume with the next run.
    started = time.monotonic()
    run = airflow_api.wait_for_run(RATE_DAG, trigger(airflow_api, resumed), timeout=300)
    figures["fault_sources_back_to_slot_filled_s"] = round(time.monotonic() - started, 1)
    assert run["state"] == "success"
    before = rate_points(resumed)
    assert [p["timestamps"] for p in before] == [[resumed * 1000]]

    # The backfill DAG fills the gap from Bitstamp's candles and leaves the rest alone.
    airflow_api.request("PATCH", f"/api/v2/dags/{BACKFILL_DAG}", {"is_paused": False})
    started = time.monotonic()
    end = resumed + SLOT  # excluded; not after the run's logical date
    run_id = trigger(airflow_api, end, BACKFILL_DAG, {"start": iso(gap), "end": iso(end)})
    run = airflow_api.wait_for_run(BACKFILL_DAG, run_id, timeout=300)
    figures["fault_gap_backfilled_s"] = round(time.monotonic() - started, 1)
    assert run["state"] == "success"
    filled = rate_points(gap)
    assert [(p["metric"]["source"], p["timestamps"]) for p in filled] == [("bitstamp_ohlc", [gap * 1000])], filled
    assert rate_points(resumed) == before, "the backfill touched a slot that held a point"


@pytest.fixture
def small_vm_disk(tmp_path):
    """VictoriaMetrics' data directory moved onto a 128 MiB filesystem, and back afterwards."""
    data, image, saved = DATA / "victoriametrics", tmp_path / "disk.img", tmp_path / "saved"

    def move(src: Path, dst: Path) -> None:
        for child in src.iterdir():
            if child.name != "lost+found":  # ext4's own
                subprocess.run(["cp", "-a", str(child), str(dst)], check=True)
                shutil.rmtree(child) if child.is_dir() else child.unlink()

    docker("stop", "victoriametrics")
    saved.mkdir()
    move(data, saved)
    subprocess.run(["truncate", "-s", "128M", str(image)], check=True)
    subprocess.run(["mkfs.ext4", "-q", "-F", str(image)], check=True)
    subprocess.run(["mount", "-o", "loop", str(image), str(data)], check=True)
    try:
        move(saved, data)
        docker("start", "victoriametrics")
        wait_healthy(["victoriametrics"], timeout=120)
        yield data
    finally:
        docker("stop", "victoriametrics")
        move(data, saved)
        subprocess.run(["umount", str(data)], check=True)
        move(saved, data)
        docker("start", "victoriametrics")
        wait_healthy(["victoriametrics"], timeout=120)


@contextmanager
def kept_full(path: Path):
    """Leave 4 MiB free on ``path``'s filesystem (VictoriaMetrics turns read-only below
    10 MB) and keep it so while VictoriaMetrics' merges free space; empty it afterwards."""
    stop, fillers = threading.Event(), []

    def top_up() -> None:
        while not stop.is_set():
            free = shutil.disk_usage(path).free
            if free > 6 * 2**20:
                fillers.append(path / f"filler-{len(fillers)}")
                subprocess.run(["fallocate", "-l", str(free - 4 * 2**20), str(fillers[-1])], check=True)
            stop.wait(0.5)

    thread = threading.Thread(target=top_up, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
        for filler in fillers:
            filler.unlink()


def vm_read_only() -> bool:
    with vm_open("/metrics") as reply:
        return any(
            line.startswith("vm_storage_is_read_only{") and line.endswith(" 1")
            for line in reply.read().decode().splitlines()
        )


def vmalert_states(alertname: str) -> set[str]:
    with urllib.request.urlopen(f"http://{container_ip('vmalert')}:8880/api/v1/alerts", timeout=10) as reply:
        alerts = json.load(reply)["data"]["alerts"]
    return {alert["state"] for alert in alerts if alert["name"] == alertname}


def test_disk_full_refuses_cleanly_alerts_and_recovers(airflow_api, slots, small_vm_disk, figures):
    before = vm_points(RATE_SERIES, int(time.time()) - 7 * 86400, int(time.time()))
    slot = slots[4]
    restarts = inspect("victoriametrics")["RestartCount"]
    quiet_window(airflow_api, 200)
    with kept_full(small_vm_disk):
        wait_until(vm_read_only, 30, "VictoriaMetrics in read-only mode on the full disk")
        run_id = trigger(airflow_api, slot)
        assert first_failed_try(airflow_api, run_id, "VictoriaMetrics' disk is full")["try_number"] == 1
        assert rate_points(slot) == [], "a point was stored on a full disk"
        # The alert's `for` is 10 minutes; it must at least be pending.
        wait_until(lambda: vmalert_states("VictoriaMetricsDiskLow"), 120, "VictoriaMetricsDiskLow pending", interval=2)
    assert inspect("victoriametrics")["RestartCount"] == restarts, "VictoriaMetrics crashed on the full disk"
    started = time.monotonic()
    run = airflow_api.wait_for_run(RATE_DAG, run_id, timeout=300)
    figures["fault_disk_freed_to_slot_filled_s"] = round(time.monotonic() - started, 1)
    assert run["state"] == "success"
    assert [p["timestamps"] for p in rate_points(slot)] == [[slot * 1000]]
    assert before <= vm_points(RATE_SERIES, int(time.time()) - 7 * 86400, int(time.time())), "points were lost"
