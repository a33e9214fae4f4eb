"""End to end in the deployed stack: a run triggered through Airflow's REST API
writes the point to VictoriaMetrics, and the history survives a restart of
the Docker daemon and every container with it."""

from __future__ import annotations

import time

import pytest

from fakes.rate_apis import PRICES
from harness.airflow_api import free_slots, trigger
from harness.docker import container_ip, inspect, restart_docker_daemon, stack_containers, wait_healthy
from harness.settings import RATE_DAG
from harness.vm import is_reachable, rate_points

DAG = RATE_DAG
# Each fake quotes BTC/USD with its own offset, so the point tells its source.
OFFSET = {"alphavantage": 0.0, "coinbase": 1.0, "kraken": 2.0, "bitstamp": 3.0}


@pytest.fixture(scope="module")
def slots(airflow_api, rate_dag, recorded_slot) -> list[int]:
    """Two free slots, taken after the recorded one, so that none is the same."""
    return free_slots(airflow_api, 2)


def test_triggered_run_writes_the_point(airflow_api, fakes, slots, figures):
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


def test_history_survives_a_docker_daemon_restart_and_next_run_succeeds(airflow_api, recorded_slot, slots, figures):
    before = rate_points(recorded_slot)
    assert before, "the recorded slot has no point to carry over"
    names = stack_containers()
    booted = {name: inspect(name)["State"]["StartedAt"] for name in names}
    started = time.monotonic()
    restart_docker_daemon()  # a reboot, as far as the stack can tell
    wait_healthy(names, timeout=300)
    figures["e2e_docker_restart_to_healthy_s"] = round(time.monotonic() - started, 1)
    assert [n for n in names if inspect(n)["State"]["StartedAt"] == booted[n]] == [], "containers not restarted"
    assert is_reachable(f"http://{container_ip('victoriametrics')}:8428/health")

    assert rate_points(recorded_slot) == before
    airflow_api.login()
    run = airflow_api.wait_for_run(DAG, trigger(airflow_api, slots[1]), timeout=300)
    assert run["state"] == "success"
    after = rate_points(slots[1])
    assert [p["timestamps"] for p in after] == [[slots[1] * 1000]]
