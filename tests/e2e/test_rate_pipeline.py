"""End to end in the deployed stack: a run triggered through Airflow's REST API
writes the point to VictoriaMetrics."""

from __future__ import annotations

import time

import pytest

from fakes.rate_apis import PRICES
from harness.airflow_api import free_slots, trigger
from harness.settings import RATE_DAG
from harness.vm import rate_points

DAG = RATE_DAG
# Each fake quotes BTC/USD with its own offset, so the point tells its source.
OFFSET = {"alphavantage": 0.0, "coinbase": 1.0, "kraken": 2.0, "bitstamp": 3.0}


@pytest.fixture(scope="module")
def slots(airflow_api, rate_dag, recorded_slot) -> list[int]:
    """A free slot, taken after the recorded one, so that they differ."""
    return free_slots(airflow_api, 1)


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
