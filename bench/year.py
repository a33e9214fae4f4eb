"""make bench, a year of history: what a year of runs and points costs.

Airflow: a year of the rate DAG's runs (one per 10-minute slot) is written into
the deployed metadata database as rows, copies of the newest successful
scheduled run, its task instances and XComs, going back from the oldest run
there is. Then: the memory of the scheduler and the API server, the latency of
what the DAG page and the REST API ask for, how long the housekeeping's
`airflow db clean` takes (the API server is restarted: its first pass comes
within 5 minutes), and MySQL's disk before, with the year and after the clean.
The copies left (the last 30 days) are deleted at the end.

VictoriaMetrics: a year of the series one run writes, imported into a
throwaway VictoriaMetrics on this machine (not the stack's): its disk and the
main panel's query over the year.
"""

from __future__ import annotations

import json
import os
import random
import re
import statistics
import subprocess
import time
import urllib.parse
import urllib.request
from datetime import UTC, datetime
from pathlib import Path

from harness.airflow_api import AirflowAPI
from harness.docker import docker, memory_mib, memory_peak_mib, mysql_root, wait_healthy
from harness.services import VictoriaMetricsServer
from harness.settings import RATE_DAG, SLOT, secret

YEAR_SLOTS = 365 * 86400 // SLOT
PREFIX = "bench-year__"
BATCH = 4000
API_SERVER = "airflow-api-server"
LOCK = "btc_usd_housekeeping"  # roles/airflow/files/plugins/housekeeping.py
# What one run writes, per slot (dags/btc_usd/pipeline.py): the rate, bid, ask and
# quote age of the source that answered, each source's up, the last success.
RUN_SERIES = [
    'exchange_rate{base="BTC",quote="USD",source="coinbase"}',
    'exchange_rate_bid{base="BTC",quote="USD",source="coinbase"}',
    'exchange_rate_ask{base="BTC",quote="USD",source="coinbase"}',
    'exchange_rate_quote_age_seconds{base="BTC",quote="USD",source="coinbase"}',
    'exchange_rate_last_success_timestamp_seconds{base="BTC",quote="USD"}',
    *(
        f'exchange_rate_source_up{{base="BTC",quote="USD",source="{s}"}}'
        for s in ("alphavantage", "coinbase", "kraken", "bitstamp")
    ),
]
MAIN_PANEL = 'exchange_rate{base="BTC",quote="USD"}'


class Metadata:
    """SQL on the deployed metadata database, as MySQL's root inside its container."""

    def __init__(self, secrets: Path) -> None:
        self.secrets = secrets

    def sql(self, statement: str) -> list[list[str]]:
        out = mysql_root("-N", "-B", "airflow", "-e", f"SET time_zone = '+00:00'; {statement}", secrets=self.secrets)
        return [line.split("\t") for line in out.splitlines()]

    def value(self, statement: str) -> str:
        return self.sql(statement)[0][0]

    def columns(self, table: str) -> list[str]:
        rows = self.sql(
            "SELECT column_name FROM information_schema.columns WHERE table_schema = 'airflow'"
            f" AND table_name = '{table}' ORDER BY ordinal_position"
        )
        return [row[0] for row in rows]

    def size_mib(self) -> float:
        total = self.value(
            "SET SESSION information_schema_stats_expiry = 0;"
            " SELECT SUM(data_length + index_length) FROM information_schema.tables WHERE table_schema = 'airflow'"
        )
        return round(float(total) / 2**20, 1)


def copy_statement(table: str, columns: list[str], overrides: dict[str, str], where: str, first: int, last: int) -> str:
    """INSERT ... SELECT of ``table``'s rows matching ``where`` once per n in
    [first, last], with ``overrides`` (SQL over t.* and n) for some columns."""
    columns = [c for c in columns if c in overrides or c != "id"]
    values = ", ".join(overrides.get(c, f"t.`{c}`") for c in columns)
    names = ", ".join(f"`{c}`" for c in columns)
    return (
        "SET SESSION cte_max_recursion_depth = 100000;"
        f" INSERT INTO {table} ({names})"
        f" WITH RECURSIVE seq(n) AS (SELECT {first} UNION ALL SELECT n + 1 FROM seq WHERE n < {last})"
        f" SELECT {values} FROM {table} t JOIN seq WHERE {where}"
    )


def synthesize_year(db: Metadata) -> dict[str, object]:
    """A year of copies of the newest successful scheduled run, going back from the oldest."""
    template = db.sql(
        f"SELECT id, run_id, UNIX_TIMESTAMP(end_date) - UNIX_TIMESTAMP(start_date) FROM dag_run"
        f" WHERE dag_id = '{RATE_DAG}' AND state = 'success' AND run_type = 'scheduled' ORDER BY id DESC LIMIT 1"
    )
    if not template:
        raise RuntimeError(f"no successful scheduled run of {RATE_DAG} to copy: let the DAG run a slot first")
    run_pk, run_id, seconds = template[0][0], template[0][1], max(1, round(float(template[0][2])))
    oldest = int(float(db.value(f"SELECT UNIX_TIMESTAMP(MIN(logical_date)) FROM dag_run WHERE dag_id = '{RATE_DAG}'")))
    slot = f"({oldest} - n * {SLOT})"
    at = {
        "slot": f"FROM_UNIXTIME({slot})",
        "start": f"FROM_UNIXTIME({slot} + {SLOT} + 1)",
        "end": f"FROM_UNIXTIME({slot} + {SLOT} + 1 + {seconds})",
    }
    new_run_id = f"CONCAT('{PREFIX}', n)"
    runs = {
        "run_id": new_run_id,
        "logical_date": at["slot"],
        "run_after": f"FROM_UNIXTIME({slot} + {SLOT})",
        "data_interval_start": at["slot"],
        "data_interval_end": f"FROM_UNIXTIME({slot} + {SLOT})",
        "queued_at": at["start"],
        "start_date": at["start"],
        "end_date": at["end"],
        "last_scheduling_decision": at["end"],
        "updated_at": at["end"],
    }
    instances = {
        "id": "REPLACE(UUID(), '-', '')",
        "run_id": new_run_id,
        "start_date": at["start"],
        "end_date": at["end"],
        "queued_dttm": at["start"],
        "scheduled_dttm": at["start"],
        "last_heartbeat_at": at["end"],
        "updated_at": at["end"],
    }
    xcoms = {
        "dag_run_id": f"(SELECT r.id FROM dag_run r WHERE r.dag_id = t.dag_id AND r.run_id = {new_run_id})",
        "run_id": new_run_id,
        "timestamp": at["end"],
    }
    same_run = f"t.dag_id = '{RATE_DAG}' AND t.run_id = '{run_id}'"
    copies = [("dag_run", runs, f"t.id = {run_pk}"), ("task_instance", instances, same_run), ("xcom", xcoms, same_run)]
    columns = {table: db.columns(table) for table, _, _ in copies}
    began = time.monotonic()
    for first in range(1, YEAR_SLOTS + 1, BATCH):
        last = min(YEAR_SLOTS, first + BATCH - 1)
        for table, overrides, where in copies:
            db.sql(copy_statement(table, columns[table], overrides, where, first, last))
        print(f"  {last} of {YEAR_SLOTS} runs", flush=True)
    return {"year_synthesize_s": round(time.monotonic() - began, 1)} | counts(db)


def counts(db: Metadata) -> dict[str, int]:
    return {
        "dag_runs": int(db.value(f"SELECT COUNT(*) FROM dag_run WHERE dag_id = '{RATE_DAG}'")),
        "task_instances": int(db.value(f"SELECT COUNT(*) FROM task_instance WHERE dag_id = '{RATE_DAG}'")),
    }


def remove_copies(db: Metadata) -> None:
    """Delete what is left of the copies, a batch at a time (task instances and XComs cascade)."""
    while int(db.value(f"DELETE FROM dag_run WHERE run_id LIKE '{PREFIX}%' LIMIT {BATCH}; SELECT ROW_COUNT()")):
        pass


def latencies_ms(api: AirflowAPI, repeat: int = 5) -> dict[str, float]:
    """Median time of what the DAG page asks for (the grid, its structure, the latest
    run, the details), of its calendar over a year, and of the REST API's lists."""
    year_ago = datetime.fromtimestamp(time.time() - 365 * 86400, UTC).isoformat()
    pages = {
        "dag_page": [
            f"/ui/grid/runs/{RATE_DAG}?limit=25&order_by=-run_after",
            f"/ui/grid/structure/{RATE_DAG}?limit=25&order_by=-run_after",
            f"/ui/dags/{RATE_DAG}/latest_run",
            f"/api/v2/dags/{RATE_DAG}/details",
        ],
        "calendar": [f"/ui/calendar/{RATE_DAG}?granularity=daily&logical_date_gte={urllib.parse.quote(year_ago)}"],
        "rest_dag_runs": [f"/api/v2/dags/{RATE_DAG}/dagRuns?limit=100&order_by=-logical_date"],
        "rest_task_instances": [f"/api/v2/dags/{RATE_DAG}/dagRuns/~/taskInstances?limit=100&order_by=-start_date"],
    }
    api.login()
    found = {}
    for name, paths in pages.items():
        times = []
        for _ in range(repeat):
            began = time.monotonic()
            for path in paths:
                api.request("GET", path)
            times.append(time.monotonic() - began)
        found[name] = round(statistics.median(times) * 1000, 1)
    return found


def airflow_memory() -> dict[str, float]:
    now = memory_mib()
    return {name: now[name] for name in ("airflow-scheduler", "airflow-api-server", "mysql")}


class HousekeepingLock:
    """Hold the housekeeping's MySQL lock (a session kept open), so no pass cleans the
    year before it is measured; closing the session lets the passes run again."""

    def __init__(self, secrets: Path) -> None:
        self.secrets = secrets
        self.session: subprocess.Popen | None = None

    def __enter__(self) -> HousekeepingLock:
        password = secret("mysql_root_password", self.secrets)
        self.session = subprocess.Popen(
            ["docker", "exec", "-i", "-e", "MYSQL_PWD", "mysql", "mysql", "-uroot", "-N", "-B", "--unbuffered"],
            env={**os.environ, "MYSQL_PWD": password},
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        self.session.stdin.write(f"SELECT GET_LOCK('{LOCK}', 60);\n")
        self.session.stdin.flush()
        if self.session.stdout.readline().strip() != "1":
            raise RuntimeError("cannot take the housekeeping lock: a pass is running for over 60 s")
        return self

    def __exit__(self, *exc) -> None:
        self.session.stdin.close()
        self.session.wait(timeout=30)


def housekeeping_pass(timeout: float = 600) -> tuple[float, float]:
    """Restart the API server and wait for its first housekeeping pass: the seconds
    its `airflow db clean` took, and the API server's peak memory (MiB) meanwhile."""
    since = datetime.now(UTC).isoformat()
    docker("restart", API_SERVER)
    wait_healthy([API_SERVER], 300)
    deadline = time.monotonic() + timeout
    pattern = re.compile(r"Metadata database cleaned of rows before \S+ in ([0-9.]+) s")
    while time.monotonic() < deadline:
        logs = subprocess.run(["docker", "logs", "--since", since, API_SERVER], capture_output=True, text=True)
        if match := pattern.search(logs.stdout + logs.stderr):
            return float(match[1]), memory_peak_mib()[API_SERVER]
        if "Cleaning the metadata database failed" in logs.stdout + logs.stderr:
            raise RuntimeError("the housekeeping's db clean failed: docker logs airflow-api-server")
        time.sleep(5)
    raise TimeoutError(f"no housekeeping pass within {timeout} s of the API server's restart")


def victoriametrics_year(tmp: Path) -> dict[str, float]:
    """A year of one run's series in a throwaway VictoriaMetrics: disk and the main panel over the year."""
    server = VictoriaMetricsServer(tmp / "vm").start()
    try:
        end = int(time.time()) // SLOT * SLOT
        start = end - YEAR_SLOTS * SLOT
        rng = random.Random(7)  # noqa: S311 - a price walk, not a secret
        price, lines = 97_000.0, []
        for ts in range(start, end, SLOT):
            price *= 1 + rng.gauss(0, 0.002)
            values = [round(price, 2), round(price - 0.5, 2), round(price + 0.5, 2), rng.randint(1, 30), ts, 1, 1, 1, 1]
            lines += [f"{series} {value} {ts * 1000}" for series, value in zip(RUN_SERIES, values, strict=True)]
        for chunk in range(0, len(lines), 100_000):
            body = ("\n".join(lines[chunk : chunk + 100_000]) + "\n").encode()
            urllib.request.urlopen(f"{server.url}/api/v1/import/prometheus", data=body, timeout=60).close()  # noqa: S310 - loopback
        for path in (
            f"/internal/force_flush?authKey={server.FLUSH_KEY}",
            f"/internal/force_merge?authKey={server.ADMIN_KEY}",
        ):
            urllib.request.urlopen(f"{server.url}{path}", timeout=120).close()  # noqa: S310 - loopback
        time.sleep(5)  # the merge runs in the background
        disk = sum(f.stat().st_size for f in (tmp / "vm").rglob("*") if f.is_file())
        query = urllib.parse.urlencode({"query": MAIN_PANEL, "start": start, "end": end, "step": 6 * 3600})
        times = []
        for _ in range(10):
            began = time.monotonic()
            with urllib.request.urlopen(f"{server.url}/api/v1/query_range?{query}", timeout=30) as reply:  # noqa: S310
                body = json.load(reply)
            times.append(time.monotonic() - began)
        assert body["data"]["result"], "the year's main panel query returned nothing"
        return {
            "year_victoriametrics_points": len(lines),
            "year_victoriametrics_disk_mib": round(disk / 2**20, 2),
            "year_victoriametrics_bytes_per_point": round(disk / len(lines), 2),
            "year_query_main_panel_ms": round(statistics.median(times) * 1000, 2),
        }
    finally:
        server.stop()


def measure(api: AirflowAPI, secrets: Path, tmp: Path, save) -> dict[str, object]:
    """Every year_* figure; ``save`` is called with the figures so far after each step."""
    db = Metadata(secrets)
    found: dict[str, object] = {}
    remove_copies(db)  # a bench that stopped half-way
    found["year_mysql_mib"] = {"before": db.size_mib()}
    found["year_latency_ms"] = {"before": latencies_ms(api)}
    save(found)
    print("  a year of runs into the metadata database ...", flush=True)
    try:
        with HousekeepingLock(secrets):
            made = synthesize_year(db)
            found["year_synthesize_s"] = made.pop("year_synthesize_s")
            found["year_rows"] = {"with_year": made}
            found["year_mysql_mib"]["with_year"] = db.size_mib()
            print("  the scheduler and the API server with a year of runs ...", flush=True)
            time.sleep(60)  # scheduler loops over the new rows
            found["year_latency_ms"]["with_year"] = latencies_ms(api)
            found["year_memory_mib"] = {"with_year": airflow_memory()}
            save(found)
        print("  the housekeeping's db clean (API server restarted) ...", flush=True)
        found["year_db_clean_s"], found["year_api_server_peak_during_clean_mib"] = housekeeping_pass()
        found["year_rows"]["after_clean"] = counts(db)
        found["year_mysql_mib"]["after_clean"] = db.size_mib()
        found["year_latency_ms"]["after_clean"] = latencies_ms(api)
        found["year_memory_mib"]["after_clean"] = airflow_memory()
        found["year_memory_peak_mib"] = {
            name: peak
            for name, peak in memory_peak_mib().items()
            if name in ("airflow-scheduler", "airflow-api-server", "mysql")
        }
        save(found)
    finally:
        remove_copies(db)
    print("  a year of points in a throwaway VictoriaMetrics ...", flush=True)
    found |= victoriametrics_year(tmp)
    save(found)
    return found
