"""End to end in the deployed stack: a run triggered through Airflow's REST API
writes the point to VictoriaMetrics, and the history survives a restart of
every container."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import pytest

from fakes.rate_apis import PRICES, FakeRateAPI
from harness.stack import (
    AirflowAPI,
    container_ip,
    docker,
    is_reachable,
    stack_containers,
    vm_export,
    wait_healthy,
)

DAG = "btc_usd_exchange_rate"
# molecule/default/molecule.yml points the sources' connections at these ports.
FAKE_PORTS = {"alphavantage": 18081, "coinbase": 18082, "kraken": 18083, "bitstamp": 18084}
SLOT = 600
# Each fake quotes BTC/USD with its own offset, so the point tells its source.
OFFSET = {"alphavantage": 0.0, "coinbase": 1.0, "kraken": 2.0, "bitstamp": 3.0}


@pytest.fixture(scope="module")
def fakes(stack):
    # On every address: the containers reach the host through its Docker gateway.
    apis = {name: FakeRateAPI(name, host="0.0.0.0", port=port).start() for name, port in FAKE_PORTS.items()}
    yield apis
    for api in apis.values():
        api.stop()


@pytest.fixture(scope="module")
def slots(airflow_api) -> list[int]:
    """Two past slots with no run yet (Airflow allows one run per logical date),
    within the lateness the scenario allows (2 h)."""
    runs = airflow_api.request("GET", f"/api/v2/dags/{DAG}/dagRuns?limit=100")["dag_runs"]
    taken = {int(datetime.fromisoformat(run["logical_date"]).timestamp()) for run in runs if run["logical_date"]}
    now = int(time.time()) // SLOT * SLOT
    free = [slot for slot in range(now - 10 * SLOT, now, SLOT) if slot not in taken]
    assert len(free) >= 2, f"no two free slots in the last 100 minutes: {sorted(taken)}"
    return free[-2:]


def trigger(api: AirflowAPI, slot: int) -> str:
    """Trigger a run for ``slot``; return its run id."""
    run_id = f"e2e-{slot}-{time.time_ns()}"
    logical = datetime.fromtimestamp(slot, UTC).isoformat()
    api.request("POST", f"/api/v2/dags/{DAG}/dagRuns", {"dag_run_id": run_id, "logical_date": logical})
    return run_id


def rate_points(slot: int) -> list[dict]:
    return vm_export('exchange_rate{base="BTC",quote="USD"}', slot - 1, slot + 1)


def test_triggered_run_writes_the_point(airflow_api, fakes, slots, figures):
    dag = airflow_api.request("PATCH", f"/api/v2/dags/{DAG}", {"is_paused": False})
    assert dag["is_paused"] is False
    slot = slots[0]
    started = time.monotonic()
    run_id = trigger(airflow_api, slot)
    run = airflow_api.wait_for_run(DAG, run_id, timeout=300)
    figures["e2e_triggered_run_s"] = round(time.monotonic() - started, 1)
    assert run["state"] == "success"
    asked = {name for name, api in fakes.items() if api.requests}
    assert asked, "the run succeeded without asking any fake source"

    points = rate_points(slot)
    assert len(points) == 1, points
    point = points[0]
    assert point["metric"]["__name__"] == "exchange_rate"
    assert point["metric"]["source"] in asked
    assert point["timestamps"] == [slot * 1000]
    assert point["values"] == [PRICES[("BTC", "USD")] + OFFSET[point["metric"]["source"]]]


def test_history_survives_restart_and_next_run_succeeds(airflow_api, fakes, slots, figures):
    before = rate_points(slots[0])
    assert before, "no point to carry over; the previous test did not write one"
    names = stack_containers()
    started = time.monotonic()
    docker("restart", *names)
    wait_healthy(names, timeout=300)
    figures["e2e_restart_to_healthy_s"] = round(time.monotonic() - started, 1)
    assert is_reachable(f"http://{container_ip('victoriametrics')}:8428/health")

    assert rate_points(slots[0]) == before
    airflow_api.login()
    run = airflow_api.wait_for_run(DAG, trigger(airflow_api, slots[1]), timeout=300)
    assert run["state"] == "success"
    after = rate_points(slots[1])
    assert [p["timestamps"] for p in after] == [[slots[1] * 1000]]
