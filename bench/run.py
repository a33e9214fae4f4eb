"""make bench: measure the deployed stack on this machine and write bench/results.json.

Figures are medians over repeated measurements; year_* are a year of history
(bench/year.py). The stack must be up (`make up`,
or the tests' deployment kept with KEEP_STACK=1). With --fakes the rate sources
are the test fakes on ports 18081-18084 (the Molecule deployment points there).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path

import workers
import year

from btc_usd.backfill import backfill_pair
from btc_usd.model import Pair
from btc_usd.victoriametrics import VictoriaMetrics
from fakes.rate_apis import FakeRateAPI, synthetic_pairs
from harness.airflow_api import AirflowAPI, quiet_window, trigger
from harness.docker import memory_limits_mib, memory_mib, memory_peak_mib
from harness.molecule import molecule
from harness.services import VictoriaMetricsServer
from harness.settings import FAKE_PORTS, LOGS, RATE_DAG, REPO, SECRETS, SLOT, secret
from harness.vm import vm_open, vm_query

RESULTS = REPO / "bench" / "results.json"
# Where `make up` (this machine as localhost) keeps its generated secrets.
LOCAL_SECRETS = Path.home() / ".config/btc-usd-stack/localhost"
MAIN_PANEL = 'exchange_rate{base="BTC",quote="USD"}'  # btc-usd.json, "by source, with bid and ask"


def median(values: list[float]) -> float:
    return round(statistics.median(values), 3)


def p95(values: list[float]) -> float:
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(0.95 * len(ordered) + 0.5) - 1)], 3) if ordered else 0.0


def memory(samples: int, pause: float) -> tuple[float, dict[str, float]]:
    """Median total and per-container memory over ``samples`` `docker stats` readings."""
    readings = []
    for i in range(samples):
        readings.append(memory_mib())
        if i < samples - 1:
            time.sleep(pause)
    names = sorted(set().union(*readings))
    per = {name: median([r.get(name, 0.0) for r in readings]) for name in names}
    return median([sum(r.values()) for r in readings]), per


def visible(slot: int, secrets: Path) -> bool:
    """Whether a query (what Grafana sends, subject to -search.latencyOffset) returns the slot's point."""
    result = vm_query(f"max(timestamp({MAIN_PANEL}))", secrets=secrets)
    return bool(result) and float(result[0]["value"][1]) >= slot


def freshness(api: AirflowAPI, slots: int, secrets: Path) -> dict[str, object]:
    """For the next ``slots`` scheduled slots: seconds from the slot until a query
    returns its point; memory while the run is on; the run's task durations."""
    api.request("PATCH", f"/api/v2/dags/{RATE_DAG}", {"is_paused": False})
    delays, during, tasks = [], [], {}
    for _ in range(slots):
        slot = (int(time.time()) // SLOT + 1) * SLOT
        print(f"  waiting for the slot at {datetime.fromtimestamp(slot, UTC):%H:%M} ...", flush=True)
        time.sleep(max(0.0, slot - time.time()))
        sampled = False
        while not visible(slot, secrets):
            if not sampled and time.time() > slot + 1:
                during.append(sum(memory_mib().values()))
                sampled = True
            if time.time() > slot + 300:
                raise TimeoutError(f"no point for the slot {slot} after 300 s: is the DAG running?")
            time.sleep(0.25)
        delays.append(time.time() - slot)
        api.login()
        run_id = f"scheduled__{datetime.fromtimestamp(slot, UTC).isoformat()}"
        run = api.wait_for_run(RATE_DAG, run_id, timeout=300)
        found = api.request("GET", f"/api/v2/dags/{RATE_DAG}/dagRuns/{urllib.parse.quote(run_id)}/taskInstances")
        for ti in found["task_instances"]:
            tasks.setdefault(ti["task_id"], []).append(ti["duration"] or 0.0)
        print(f"  slot visible after {delays[-1]:.1f} s (run {run['state']})", flush=True)
    return {
        "freshness_p50_s": median(delays),
        "freshness_p95_s": p95(delays),
        "freshness_samples_s": [round(d, 2) for d in delays],
        "stack_run_memory_mib": median(during) if during else None,
        "task_duration_s": {task: median(values) for task, values in tasks.items()},
    }


# Loads tried by pairs_per_slot, smallest first; it stops at the first that misses the goal.
PAIR_LOADS = (250, 500, 1000, 2000, 4000, 8000, 16000)
FRESHNESS_GOAL_S = 60.0
SYNTHETIC = 'exchange_rate{base=~"S[0-9]{4}"}'


def visible_since(slot: int, secrets: Path) -> set[tuple[str, str]]:
    """The synthetic pairs whose point at ``slot`` (or later) a query returns now."""
    found = vm_query(f"timestamp({SYNTHETIC}) >= {slot}", secrets=secrets)
    return {(series["metric"]["base"], series["metric"]["quote"]) for series in found}


def one_load(api: AirflowAPI, count: int, secrets: Path) -> dict[str, object]:
    """A triggered run of the rate DAG for ``count`` synthetic pairs (Coinbase, then Kraken,
    both fakes): each pair's delay from the run's logical date until a query returns it."""
    api.set_variable("exchange_rate_pairs", json.dumps(synthetic_pairs(count)))
    quiet_window(api, 180)
    slot = int(time.time())
    run_id = trigger(api, slot)
    seen: dict[tuple[str, str], float] = {}
    refused = None
    while len(seen) < count and time.time() < slot + 240:
        now = time.time()
        try:
            fresh = visible_since(slot, secrets)
        except urllib.error.HTTPError as exc:  # VictoriaMetrics refuses a query it has no memory for
            refused = f"HTTP {exc.code}: {exc.read()[:300].decode('utf-8', 'replace')}"
            break
        for pair in fresh - set(seen):
            seen[pair] = now - slot
        time.sleep(0.5)
    try:
        state = api.wait_for_run(RATE_DAG, run_id, timeout=300)["state"]
    except TimeoutError:
        state = "not done after 300 s"
    found = api.request("GET", f"/api/v2/dags/{RATE_DAG}/dagRuns/{urllib.parse.quote(run_id)}/taskInstances")
    records = [ti for ti in found["task_instances"] if ti["task_id"] == "record"]
    delays = sorted(seen.values())
    return {
        "pairs": count,
        "recorded": len(seen),
        "run_state": state,
        "freshness_p50_s": median(delays) if delays else None,
        "freshness_p95_s": p95(delays) if len(seen) == count else None,
        "record_tasks": len(records),
        "record_task_tries": sum(ti["try_number"] or 0 for ti in records),
        "record_task_s_total": round(sum(ti["duration"] or 0.0 for ti in records), 1),
        **({"query_refused": refused} if refused else {}),
    }


def sustained(load: dict[str, object]) -> bool:
    """A load is sustained when its run succeeds with every task on its first try (a retry
    means something gave way: a task killed for memory, a refused query) and freshness p95
    is within the goal."""
    first_tries = load["record_task_tries"] == load["record_tasks"]
    fresh = (load["freshness_p95_s"] or math.inf) <= FRESHNESS_GOAL_S
    return load["run_state"] == "success" and first_tries and fresh


def pairs_per_slot(api: AirflowAPI, secrets: Path) -> dict[str, object]:
    """The most synthetic pairs one run records within the goal (``sustained``), trying
    PAIR_LOADS in turn. The Variables it sets (pairs; Coinbase and Kraken as the sources)
    are removed afterwards, and so are the synthetic series, so the stack goes back to
    its own settings and history."""
    api.request("PATCH", f"/api/v2/dags/{RATE_DAG}", {"is_paused": False})
    api.set_variable("exchange_rate_sources", '["coinbase", "kraken"]')
    loads, best = [], 0
    try:
        for count in PAIR_LOADS:
            print(f"  {count} pairs ...", flush=True)
            load = one_load(api, count, secrets)
            loads.append(load)
            print(f"  {load}", flush=True)
            if not sustained(load):
                break
            best = count
    finally:
        for key in ("exchange_rate_sources", "exchange_rate_pairs"):
            api.set_variable(key, None)
        query = urllib.parse.urlencode(
            {"match[]": '{base=~"S[0-9]{4}"}', "authKey": secret("victoriametrics_admin_key", secrets)}
        )
        vm_open(f"/api/v1/admin/tsdb/delete_series?{query}", secrets=secrets).close()
    at_best = next((load for load in loads if load["pairs"] == best), {})
    return {
        "pairs_per_slot": best,
        "pairs_per_slot_freshness_p95_s": at_best.get("freshness_p95_s"),
        "pairs_per_slot_loads": loads,
    }


def dag_parse() -> float:
    """The dag-processor's own measure of the rate DAG file, median of 7 parses."""
    code = (
        "import statistics; from airflow.models.dagbag import DagBag; d=[]\n"
        "for _ in range(7):\n"
        "    d += [s.duration.total_seconds() for s in DagBag(dag_folder='dags').dagbag_stats"
        " if s.file.endswith('btc_usd_exchange_rate.py')]\n"
        "print(statistics.median(d))"
    )
    env = {**os.environ, "AIRFLOW_HOME": tempfile.mkdtemp(), "AIRFLOW__CORE__LOAD_EXAMPLES": "False"}
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True, check=True)
    return round(float(done.stdout.split()[-1]), 4)


def converge(how: str) -> float:
    if how == "molecule":
        rc, seconds = molecule("converge", log=LOGS / "bench-converge.log")
    else:
        began = time.monotonic()
        rc = subprocess.call(["make", "up"], cwd=REPO, stdout=subprocess.DEVNULL)
        seconds = time.monotonic() - began
    if rc != 0:
        raise RuntimeError(f"converge ({how}) failed with exit code {rc}")
    return round(seconds, 1)


def backfill_and_query(tmp: Path) -> dict[str, float]:
    """30 days of 10-minute history into a throwaway VictoriaMetrics, then the main
    panel's query over those 30 days (Grafana's step for ~1500 px: 30 min)."""
    server = VictoriaMetricsServer(tmp / "vm").start()
    bitstamp = FakeRateAPI("bitstamp", delay=0).start()
    try:
        vm = VictoriaMetrics(server.url, graphite_port=server.graphite_port, flush_key=server.FLUSH_KEY)
        end = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
        began = time.monotonic()
        report = backfill_pair(Pair("BTC", "USD"), end - timedelta(days=30), end, base_url=bitstamp.url, vm=vm)
        rate = report.written / (time.monotonic() - began)
        query = urllib.parse.urlencode(
            {"query": MAIN_PANEL, "start": int(end.timestamp()) - 30 * 86400, "end": int(end.timestamp()), "step": 1800}
        )
        latencies = []
        for _ in range(20):
            began = time.monotonic()
            url = f"{server.url}/api/v1/query_range?{query}"
            with urllib.request.urlopen(url, timeout=10) as reply:  # noqa: S310 - our own loopback server
                body = json.load(reply)
            latencies.append(time.monotonic() - began)
        assert body["data"]["result"], "the main panel's query returned nothing"
        return {"backfill_points_per_s": round(rate, 1), "query_30d_main_panel_ms": round(median(latencies) * 1000, 2)}
    finally:
        bitstamp.stop()
        server.stop()


def save(results: dict[str, object]) -> None:
    """Write the figures so far: a step that fails later loses none of them."""
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")


STEPS = ("converge", "memory", "parse", "backfill", "freshness", "year", "pairs")
# Not a step of the deployed stack: it deploys topology "ha" on host containers of its own.
HA_STEPS = ("workers",)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slots", type=int, default=int(os.environ.get("BENCH_SLOTS", "3")))
    parser.add_argument("--fakes", action="store_true", help="serve the fake rate APIs on 18081-18084")
    parser.add_argument("--converge", choices=["molecule", "local"], default=None)
    parser.add_argument("--only", nargs="+", choices=STEPS + HA_STEPS, default=STEPS, help="measure only these steps")
    args = parser.parse_args()
    steps = set(args.only)
    how = args.converge or ("molecule" if SECRETS.is_dir() else "local")
    secrets, base_url = (SECRETS, "https://127.0.0.1") if how == "molecule" else (LOCAL_SECRETS, "https://localhost")

    # Figures this run does not measure (the before/after record of `speed`) are kept.
    results: dict[str, object] = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    results["measured_at"] = datetime.now(UTC).isoformat(timespec="seconds")
    if "workers" in steps:
        print(f"topology ha: {workers.LOAD_PAIRS} pairs with 2 worker hosts, then 1 ...", flush=True)
        with tempfile.TemporaryDirectory() as tmp:
            results |= workers.measure(Path(tmp))
        save(results)
    if "converge" in steps:
        print("converge (idempotent) ...", flush=True)
        results["converge_idempotent_s"] = median([converge(how) for _ in range(2)])
        save(results)
    if "memory" in steps:
        print("idle memory (5 readings, 10 s apart) ...", flush=True)
        results["stack_idle_memory_mib"], results["container_idle_memory_mib"] = memory(5, 10)
        results["container_memory_peak_mib"] = memory_peak_mib()
        results["container_memory_limit_mib"] = memory_limits_mib()
        results["stack_memory_limit_mib"] = sum(results["container_memory_limit_mib"].values())
        save(results)
    if "parse" in steps:
        print("DAG parse ...", flush=True)
        results["dag_parse_s"] = dag_parse()
        save(results)
    if "backfill" in steps:
        print("backfill and the 30-day query ...", flush=True)
        with tempfile.TemporaryDirectory() as tmp:
            results |= backfill_and_query(Path(tmp))
            save(results)
    # On every address: the containers reach the host through its Docker gateway.
    everywhere = "0.0.0.0"  # noqa: S104
    fakes = (
        [FakeRateAPI(n, host=everywhere, port=p, delay=0).start() for n, p in FAKE_PORTS.items()] if args.fakes else []
    )
    try:
        needs_api = steps & {"pairs", "freshness", "year"}
        api = (
            AirflowAPI("admin", secret("airflow_admin_password", secrets), base_url=base_url).login()
            if needs_api
            else None
        )
        if "pairs" in steps and not args.fakes:
            print("pairs per slot: skipped, it needs --fakes (the synthetic pairs exist only there)", flush=True)
        elif "pairs" in steps:
            print(f"pairs per slot (loads {PAIR_LOADS}, freshness goal {FRESHNESS_GOAL_S:g} s) ...", flush=True)
            results |= pairs_per_slot(api, secrets)
            save(results)
        if "freshness" in steps:
            print(f"freshness over {args.slots} scheduled slots ...", flush=True)
            results |= freshness(api, args.slots, secrets)
            save(results)
        if "year" in steps:
            print("a year of history ...", flush=True)
            with tempfile.TemporaryDirectory() as tmp:
                results |= year.measure(api, secrets, Path(tmp), lambda found: save(results | found))
    finally:
        for fake in fakes:
            fake.stop()

    save(results)
    width = max(len(k) for k in results)
    print()
    for key, value in results.items():
        print(f"{key:<{width}}  {value}")
    print(f"\nwritten to {RESULTS.relative_to(REPO)}")


if __name__ == "__main__":
    main()
