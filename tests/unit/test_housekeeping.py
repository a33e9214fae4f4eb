"""The API server's housekeeping (roles/airflow/files/plugins): which log files go,
what a pass reports, and that only the server's start starts its thread."""

from __future__ import annotations

import asyncio
import importlib.util
import itertools
import os
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

PLUGIN = Path(__file__).parents[2] / "roles/airflow/files/plugins/housekeeping.py"
spec = importlib.util.spec_from_file_location("housekeeping", PLUGIN)
plugin = importlib.util.module_from_spec(spec)
spec.loader.exec_module(plugin)

NOW = 2_000_000_000.0
DAY = 86400


def write(path: Path, age_days: float, size: int = 10) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x" * size)
    stamp = NOW - age_days * DAY
    os.utime(path, (stamp, stamp))
    return path


def age(path: Path, days: float) -> None:
    os.utime(path, (NOW - days * DAY, NOW - days * DAY))


def test_old_log_files_and_their_emptied_folders_go_the_rest_stays(tmp_path):
    old_run = tmp_path / "dag_id=btc_usd/run_id=scheduled__2026-01-01"
    old = [write(old_run / "task_id=record/attempt=1.log", 40, 100), write(old_run / "task_id=plan/attempt=1.log", 31)]
    new = write(tmp_path / "dag_id=btc_usd/run_id=scheduled__2026-12-01/task_id=record/attempt=1.log", 1)
    fresh_empty = tmp_path / "dag_id=btc_usd/run_id=just-created"
    fresh_empty.mkdir()
    age(fresh_empty, 0)
    for folder in (old_run / "task_id=record", old_run / "task_id=plan", old_run):
        age(folder, 40)

    files, size = plugin.prune_logs(str(tmp_path), NOW - 30 * DAY)

    assert (files, size) == (2, 110)
    assert not any(path.exists() for path in old)
    assert not old_run.exists()
    assert new.exists()
    assert fresh_empty.exists()  # a task may be about to write there
    assert tmp_path.exists()


def test_a_folder_that_still_holds_a_recent_file_stays_even_when_old(tmp_path):
    folder = tmp_path / "dag_processor"
    write(folder / "old.log", 60)
    recent = write(folder / "today.log", 0)
    age(folder, 60)

    assert plugin.prune_logs(str(tmp_path), NOW - 30 * DAY) == (1, 10)
    assert recent.exists()


def metrics(path: Path) -> dict[str, float]:
    """The samples of a Prometheus text file, by name."""
    samples = [line.split() for line in path.read_text().splitlines() if not line.startswith("#")]
    return {name: float(value) for name, value in samples}


def test_a_pass_cleans_before_the_retention_and_reports_success(tmp_path):
    asked: list[datetime] = []
    logs, report = tmp_path / "logs", tmp_path / "housekeeping.prom"
    old = write(logs / "old.log", 8)
    housekeeping = plugin.Housekeeping(
        7, 86400, str(logs), str(report), clean=lambda before: asked.append(before) or True, clock=lambda: NOW
    )

    assert housekeeping.run_once() is True
    assert asked == [datetime.fromtimestamp(NOW, UTC) - timedelta(days=7)]
    assert not old.exists()
    assert metrics(report) == {"btc_usd_housekeeping_last_success_timestamp_seconds": NOW}
    assert "# TYPE btc_usd_housekeeping_last_success_timestamp_seconds gauge" in report.read_text()


def test_a_failing_database_step_still_prunes_the_logs_and_reports_failure(tmp_path, caplog):
    outcome = iter([True, RuntimeError("Lock wait timeout exceeded")])

    def clean(before):
        result = next(outcome)
        if isinstance(result, Exception):
            raise result
        return result

    logs, report = tmp_path / "logs", tmp_path / "housekeeping.prom"
    clock = iter([NOW, NOW + DAY])
    housekeeping = plugin.Housekeeping(30, 86400, str(logs), str(report), clean=clean, clock=lambda: next(clock))
    assert housekeeping.run_once() is True
    old = write(logs / "old.log", 40)

    assert housekeeping.run_once() is False
    assert not old.exists()
    assert metrics(report) == {
        "btc_usd_housekeeping_last_success_timestamp_seconds": NOW,
        "btc_usd_housekeeping_last_failure_timestamp_seconds": NOW + DAY,
    }
    assert "Cleaning the metadata database failed" in caplog.text
    assert "Lock wait timeout exceeded" in caplog.text


def test_another_server_holding_the_lock_is_not_a_failure(tmp_path, caplog):
    caplog.set_level("INFO")
    housekeeping = plugin.Housekeeping(30, 86400, str(tmp_path), clean=lambda before: False, clock=lambda: NOW)

    assert housekeeping.run_once() is True
    assert "Another API server is cleaning" in caplog.text


def test_a_retention_under_a_day_is_refused():
    with pytest.raises(ValueError, match="retention_days is 0: keep at least 1 day"):
        plugin.Housekeeping(0, 86400, "/nonexistent")


def test_the_loop_waits_then_passes_every_interval_until_stopped(tmp_path):
    passes = threading.Semaphore(0)
    housekeeping = plugin.Housekeeping(30, 0.05, str(tmp_path), clean=lambda before: passes.release() or True)
    stop = threading.Event()
    thread = threading.Thread(target=housekeeping.loop, args=(stop,))
    thread.start()
    try:
        assert all(passes.acquire(timeout=5) for _ in range(3))
    finally:
        stop.set()
        thread.join(timeout=5)
    assert not thread.is_alive()


async def downstream(scope, receive, send) -> None:
    await send({"type": "done", "scope": scope["type"]})


def call(app, scope_type: str) -> list[dict]:
    sent: list[dict] = []

    async def send(message) -> None:
        sent.append(message)

    scope = {"type": scope_type, "method": "GET", "path": "/"}
    asyncio.run(app(scope, None, send))
    return sent


def test_the_server_start_starts_one_thread_and_requests_start_none(tmp_path):
    made: list[object] = []

    def factory():
        made.append(plugin.Housekeeping(30, 3600, str(tmp_path)))
        return made[-1]

    app = plugin.StartHousekeeping(downstream, factory=factory)
    try:
        assert call(app, "http") == [{"type": "done", "scope": "http"}]
        assert app.thread is None
        assert call(app, "lifespan") == [{"type": "done", "scope": "lifespan"}]
        call(app, "lifespan")
        assert len(made) == 1
        assert app.thread.name == "housekeeping"
        assert app.thread.is_alive()
        assert app.thread.daemon
    finally:
        app.stop.set()
        if app.thread:
            app.thread.join(timeout=5)


def test_an_interval_of_zero_starts_nothing():
    app = plugin.StartHousekeeping(downstream, factory=lambda: None)
    call(app, "lifespan")
    assert app.thread is None


def test_the_settings_come_from_the_housekeeping_section(monkeypatch):
    monkeypatch.setenv("AIRFLOW__HOUSEKEEPING__RETENTION_DAYS", "12")
    monkeypatch.setenv("AIRFLOW__HOUSEKEEPING__INTERVAL_SECONDS", "600")
    monkeypatch.setenv("AIRFLOW__LOGGING__BASE_LOG_FOLDER", "/opt/airflow/logs")
    monkeypatch.setenv("AIRFLOW__HOUSEKEEPING__METRICS_FILE", "/opt/airflow/metrics/housekeeping.prom")
    housekeeping = plugin.from_config()
    assert (housekeeping.retention, housekeeping.interval, housekeeping.logs_dir, housekeeping.metrics_file) == (
        timedelta(days=12),
        600,
        "/opt/airflow/logs",
        "/opt/airflow/metrics/housekeeping.prom",
    )
    monkeypatch.setenv("AIRFLOW__HOUSEKEEPING__INTERVAL_SECONDS", "0")
    assert plugin.from_config() is None


def test_the_first_pass_comes_within_five_minutes_of_start(tmp_path):
    waits: list[float] = []

    class Stop:
        def wait(self, seconds: float) -> bool:
            waits.append(seconds)
            return len(waits) > 2

    plugin.Housekeeping(30, 86400, str(tmp_path), clean=lambda before: True, clock=time.time).loop(Stop())
    assert waits == [300, 86400, 86400]


def test_a_backlog_is_cleaned_a_month_at_a_time():
    before = datetime(2026, 12, 1, tzinfo=UTC)
    assert plugin.steps(None, before) == [before]
    assert plugin.steps(datetime(2026, 11, 20, tzinfo=UTC), before) == [before]
    year_ago = datetime(2025, 12, 1)  # MySQL's DATETIME comes back naive, in UTC
    cutoffs = plugin.steps(year_ago, before)
    assert cutoffs[-1] == before
    assert len(cutoffs) == 13
    assert cutoffs[0] == datetime(2025, 12, 31, tzinfo=UTC)
    assert all(b - a == timedelta(days=30) for a, b in itertools.pairwise(cutoffs[:-1]))
