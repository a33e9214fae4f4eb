"""Housekeeping of the metadata database and the task logs, in Airflow's API server.

Airflow keeps every run, task instance, audit-log row and log file forever. A
thread of the API server runs `airflow db clean` (its function, without archive
tables) for what is older than the retention, and deletes the log files as old,
every [housekeeping] interval_seconds. The first pass runs a few minutes after
start. A MySQL lock lets one API server at a time do it. Each pass writes its
time, as btc_usd_housekeeping_last_success_timestamp_seconds or ..._failure_...,
to [housekeeping] metrics_file for node_exporter's textfile collector (the
HousekeepingFailing and HousekeepingTooOld alerts).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from datetime import UTC, datetime, timedelta
from typing import ClassVar

from airflow.plugins_manager import AirflowPlugin

log = logging.getLogger("btc_usd.housekeeping")

LOCK_NAME = "btc_usd_housekeeping"
FIRST_PASS_MAX_DELAY = 300  # seconds after start
STEP = timedelta(days=30)  # history cleaned at once


def prune_logs(root: str, cutoff: float) -> tuple[int, int]:
    """Delete the files under ``root`` last modified before ``cutoff`` (epoch
    seconds), then the directories that were as old and are left empty; the
    count and bytes of the files deleted."""
    old_dirs = {folder for folder, _dirs, _names in os.walk(root) if folder != root and _mtime(folder) < cutoff}
    files = size = 0
    for folder, _dirs, names in os.walk(root, topdown=False):
        for name in names:
            path = os.path.join(folder, name)
            try:
                info = os.lstat(path)
                if info.st_mtime < cutoff:
                    os.unlink(path)
                    files += 1
                    size += info.st_size
            except FileNotFoundError:
                continue
        if folder in old_dirs:
            try:
                os.rmdir(folder)  # fails while it still holds something
            except OSError:
                continue
    return files, size


def _mtime(path: str) -> float:
    try:
        return os.stat(path).st_mtime
    except FileNotFoundError:
        return float("inf")


def clean_database(before: datetime) -> bool:
    """``airflow db clean --skip-archive`` of the rows older than ``before``, a month
    of history at a time; False when another API server holds the lock."""
    from airflow import settings
    from sqlalchemy import text

    with settings.engine.connect() as lock:
        mysql = lock.dialect.name == "mysql"
        if mysql and lock.execute(text("SELECT GET_LOCK(:name, 0)"), {"name": LOCK_NAME}).scalar() != 1:
            return False
        try:
            oldest = lock.execute(text("SELECT MIN(start_date) FROM dag_run")).scalar()
            for cutoff in steps(oldest, before):
                clean_step(settings.SQL_ALCHEMY_CONN, cutoff)
        finally:
            if mysql:
                lock.execute(text("SELECT RELEASE_LOCK(:name)"), {"name": LOCK_NAME})
    return True


def steps(oldest: datetime | None, before: datetime) -> list[datetime]:
    """Cutoffs a month apart from the oldest run to ``before``: a backlog (the first
    pass on a database that was never cleaned) is cleaned a month at a time."""
    if oldest is None:
        return [before]
    if oldest.tzinfo is None:
        oldest = oldest.replace(tzinfo=UTC)
    cutoffs = []
    cutoff = oldest + STEP
    while cutoff < before:
        cutoffs.append(cutoff)
        cutoff += STEP
    return [*cutoffs, before]


def clean_step(url: str, before: datetime) -> None:
    """One run of ``airflow db clean`` on an engine of its own, without a statement cache,
    dropped afterwards: each step creates and reflects archive tables of new names,
    which would otherwise stay cached in the API server's memory."""
    from airflow.utils.db_cleanup import run_cleanup
    from sqlalchemy import create_engine
    from sqlalchemy.orm import Session
    from sqlalchemy.pool import NullPool

    engine = create_engine(url, poolclass=NullPool, query_cache_size=0)
    try:
        with Session(bind=engine) as session:
            run_cleanup(
                clean_before_timestamp=before,
                skip_archive=True,
                confirm=False,
                batch_size=1000,
                error_on_cleanup_failure=True,
                session=session,
            )
    finally:
        engine.dispose()


class Housekeeping:
    """One pass now and then: the database and the logs older than ``retention_days``."""

    def __init__(
        self,
        retention_days: int,
        interval: float,
        logs_dir: str,
        metrics_file: str = "",
        clean=clean_database,
        clock=time.time,
    ):
        if retention_days < 1:
            raise ValueError(f"[housekeeping] retention_days is {retention_days}: keep at least 1 day")
        self.retention = timedelta(days=retention_days)
        self.interval = interval
        self.logs_dir = logs_dir
        self.metrics_file = metrics_file
        self.clean = clean
        self.clock = clock
        self.last: dict[str, float] = {}  # outcome -> time of the last pass with it

    def run_once(self) -> bool:
        """One pass; True when both steps succeeded (each is tried)."""
        now = self.clock()
        before = datetime.fromtimestamp(now, tz=UTC) - self.retention
        ok = True
        try:
            started = time.monotonic()
            if self.clean(before):
                log.info(
                    "Metadata database cleaned of rows before %s in %.1f s",
                    before.isoformat(),
                    time.monotonic() - started,
                )
            else:
                log.info("Another API server is cleaning the metadata database: skipped")
        except Exception:
            log.exception("Cleaning the metadata database failed; the next pass tries again")
            ok = False
        try:
            files, size = prune_logs(self.logs_dir, before.timestamp())
            log.info("Deleted %d log files (%.1f MiB) older than %s", files, size / 2**20, before.isoformat())
        except Exception:
            log.exception("Deleting old task logs failed; the next pass tries again")
            ok = False
        self.last["success" if ok else "failure"] = now
        if self.metrics_file:
            try:
                write_metrics(self.metrics_file, self.last)
            except OSError:
                log.exception("Cannot write %s: the housekeeping alerts are blind", self.metrics_file)
        return ok

    def loop(self, stop: threading.Event) -> None:
        delay = min(self.interval, FIRST_PASS_MAX_DELAY)
        while not stop.wait(delay):
            self.run_once()
            delay = self.interval


def write_metrics(path: str, last: dict[str, float]) -> None:
    """The times of the last passes, in Prometheus' text format, replaced at once."""
    lines = []
    for outcome, when in sorted(last.items()):
        name = f"btc_usd_housekeeping_last_{outcome}_timestamp_seconds"
        lines += [
            f"# HELP {name} Time of the last Airflow housekeeping pass that ended in {outcome}.",
            f"# TYPE {name} gauge",
            f"{name} {when:.3f}",
        ]
    partial = f"{path}.tmp"
    with open(partial, "w") as out:
        out.write("\n".join(lines) + "\n")
    os.replace(partial, path)


def from_config() -> Housekeeping | None:
    """The housekeeping [housekeeping] asks for; None when interval_seconds is 0."""
    from airflow.configuration import conf

    interval = conf.getint("housekeeping", "interval_seconds", fallback=86400)
    if interval <= 0:
        return None
    return Housekeeping(
        retention_days=conf.getint("housekeeping", "retention_days", fallback=30),
        interval=interval,
        logs_dir=conf.get("logging", "base_log_folder"),
        metrics_file=conf.get("housekeeping", "metrics_file", fallback=""),
    )


class StartHousekeeping:
    """ASGI middleware that starts the housekeeping thread when the server starts
    (the lifespan startup), so a CLI that loads the plugins starts none."""

    def __init__(self, app, factory=from_config) -> None:
        self.app = app
        self.factory = factory
        self.stop = threading.Event()
        self.thread: threading.Thread | None = None

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "lifespan" and self.thread is None:
            housekeeping = self.factory()
            if housekeeping is not None:
                self.thread = threading.Thread(
                    target=housekeeping.loop, args=(self.stop,), name="housekeeping", daemon=True
                )
                self.thread.start()
                log.info("Housekeeping every %d s: keeps %d days", housekeeping.interval, housekeeping.retention.days)
        await self.app(scope, receive, send)


class HousekeepingPlugin(AirflowPlugin):
    name = "housekeeping"
    fastapi_root_middlewares: ClassVar[list[dict]] = [
        {"name": "housekeeping", "middleware": StartHousekeeping, "kwargs": {}}
    ]
