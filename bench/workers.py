"""make bench-ha: the rate DAG's throughput on topology "ha" (harness/ha.py), with two
worker hosts and then with one, under the same load.

The load is LOAD_PAIRS synthetic pairs in batches of LOAD_BATCH (one record task each),
fetched from the Kraken fake on the hosts' gateway. Throughput is the pairs recorded per
second of the run's record phase (first record start to last record end); each task's
host is the Edge worker that ran it.
"""

from __future__ import annotations

import json
import time
import urllib.parse
from collections import Counter
from datetime import datetime
from pathlib import Path

from fakes.rate_apis import synthetic_pairs
from harness.airflow_api import AirflowAPI, trigger
from harness.ha import HA, WORKERS, topology
from harness.services import wait_until
from harness.settings import RATE_DAG

LOAD_PAIRS = 2000
LOAD_BATCH = 50
# How long the Kraken fake takes to answer: at once, where starting the tasks' processes
# bounds the throughput, and as a distant or busy exchange does, where waiting on it does.
LATENCIES_S = (0.0, 2.0)
SYNTHETIC = 'exchange_rate{base=~"S[0-9]{4}"}'


def active_runs(api: AirflowAPI) -> list[str]:
    runs = api.request("GET", f"/api/v2/dags/{RATE_DAG}/dagRuns?limit=20&order_by=-run_after")["dag_runs"]
    return [run["dag_run_id"] for run in runs if run["state"] in ("queued", "running")]


def one_run(ha: HA, api: AirflowAPI) -> dict[str, object]:
    """A triggered run of the load: its record phase, throughput, where its tasks ran and
    how many pairs each time-series host stored."""
    # One run at a time (max_active_runs=1): a scheduled run, which records the same load, ends first.
    wait_until(lambda: not active_runs(api), 900, "no active run of the rate DAG")
    started, slot = time.monotonic(), int(time.time())
    run_id = trigger(api, slot)
    run = api.wait_for_run(RATE_DAG, run_id, timeout=900)
    took = time.monotonic() - started
    path = f"/api/v2/dags/{RATE_DAG}/dagRuns/{urllib.parse.quote(run_id)}/taskInstances?limit=1000"
    records = [ti for ti in api.request("GET", path)["task_instances"] if ti["task_id"] == "record"]
    done = [ti for ti in records if ti["state"] == "success"]
    first = min(datetime.fromisoformat(ti["start_date"]) for ti in done)
    last = max(datetime.fromisoformat(ti["end_date"]) for ti in done)
    phase = (last - first).total_seconds()
    time.sleep(5)  # vmagent's flush to both hosts
    recorded = ha.stored(SYNTHETIC, slot)
    return {
        "run_state": run["state"],
        "trigger_to_done_s": round(took, 1),
        "record_tasks": len(records),
        "record_tasks_succeeded": len(done),
        "record_task_tries": sum(ti["try_number"] or 0 for ti in records),
        "record_phase_s": round(phase, 1),
        "pairs_stored": recorded,
        "pairs_per_s": round(min(recorded.values()) / phase, 1) if phase else None,
        "record_task_s_median": sorted(ti["duration"] for ti in done)[len(done) // 2],
        "tasks_per_host": dict(Counter(ti["hostname"] for ti in done)),
    }


def measure(tmp: Path) -> dict[str, object]:
    """Deploy the seven hosts, run the load with both worker hosts, then with worker-2 shut down."""
    with topology(tmp) as ha:
        api = ha.airflow()
        api.set_variable("exchange_rate_pairs", json.dumps(synthetic_pairs(LOAD_PAIRS)))
        api.set_variable("exchange_rate_batch_size", str(LOAD_BATCH))
        api.set_variable("exchange_rate_sources", '["kraken"]')
        api.set_paused(RATE_DAG, False)
        runs = {}
        for hosts in (len(WORKERS), 1):
            if hosts < len(WORKERS):
                lose_all_but(ha, hosts)
            for latency in LATENCIES_S:
                ha.fakes["kraken"].answer_after(latency)
                name = f"{hosts}_worker_hosts_latency_{latency:g}_s"
                print(f"  {name} ...", flush=True)
                runs[name] = one_run(ha, api.login())
                print(f"  {runs[name]}", flush=True)
    return {
        "workers_load": {"pairs": LOAD_PAIRS, "batch_size": LOAD_BATCH, "source": "kraken (fake)"},
        "workers_runs": runs,
        "workers_hosts_ready_s": ha.ready_s,
        "workers_converge_s": ha.converge_s,
    }


def lose_all_but(ha: HA, count: int) -> None:
    for name in WORKERS[count:]:
        ha.lose(name, "shutdown")
