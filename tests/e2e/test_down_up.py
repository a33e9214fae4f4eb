"""`make down` removes the containers and keeps the data: after it and a new
converge, the series and Airflow's run history are all still there."""

from __future__ import annotations

import time

from harness.docker import stack_containers
from harness.molecule import molecule, tail
from harness.settings import DATA, LOGS
from harness.vm import vm_points


def all_rate_points() -> set[tuple]:
    now = int(time.time())
    return vm_points('{__name__=~"exchange_rate.*"}', now - 7 * 86400, now + 600)


def test_down_keeps_the_data_and_up_restores_the_stack(airflow_api, recorded_slot, figures):
    before = all_rate_points()
    runs_before = airflow_api.request("GET", "/api/v2/dags/btc_usd_exchange_rate/dagRuns?limit=100")["total_entries"]
    assert before, "the recorded slot is missing"

    rc, _ = molecule("side-effect", log=LOGS / "down.log")
    assert rc == 0, tail(LOGS / "down.log")
    assert stack_containers() == []
    assert (DATA / "victoriametrics").is_dir()
    assert (DATA / "mysql/data").is_dir()

    rc, seconds = molecule("converge", log=LOGS / "up-again.log")
    assert rc == 0, tail(LOGS / "up-again.log")
    figures["converge_after_down_s"] = round(seconds, 1)
    # The scheduler may have added a slot meanwhile; nothing may be lost.
    after = all_rate_points()
    assert before <= after, f"points lost: {sorted(before - after)[:5]}"
    airflow_api.login()
    runs_after = airflow_api.request("GET", "/api/v2/dags/btc_usd_exchange_rate/dagRuns?limit=100")["total_entries"]
    assert runs_after >= runs_before
