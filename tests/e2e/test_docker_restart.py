"""A restart of the Docker daemon, as a reboot does: every container comes back,
the history is kept and the next run succeeds. While tests/ha's hosts live on this
daemon, it waits for them (harness.docker.DAEMON_LOCK)."""

from __future__ import annotations

import time

from harness.airflow_api import free_slots, trigger
from harness.docker import container_ip, inspect, restart_docker_daemon, stack_containers, wait_healthy
from harness.settings import RATE_DAG
from harness.vm import is_reachable, rate_points


def test_history_survives_a_docker_daemon_restart_and_next_run_succeeds(airflow_api, rate_dag, recorded_slot, figures):
    before = rate_points(recorded_slot)
    assert before, "the recorded slot has no point to carry over"
    slot = free_slots(airflow_api, 1)[0]
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
    run = airflow_api.wait_for_run(RATE_DAG, trigger(airflow_api, slot), timeout=300)
    assert run["state"] == "success"
    assert [p["timestamps"] for p in rate_points(slot)] == [[slot * 1000]]
