"""Airflow's REST API of the deployed stack, through the proxy."""

from __future__ import annotations

import json
import ssl
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from datetime import UTC, datetime

from harness.settings import BASE_URL, CA_FILE, RATE_DAG, RATE_SERIES, SLOT
from harness.vm import vm_export


@dataclass
class AirflowAPI:
    """Airflow's REST API, authenticated as ``username``."""

    username: str
    password: str = field(repr=False)
    base_url: str = BASE_URL
    ca_file: str = str(CA_FILE)
    token: str = field(default="", repr=False)

    def request(self, method: str, path: str, body: dict | None = None) -> dict:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(f"{self.base_url}/airflow{path}", data=data, method=method)  # noqa: S310 - the proxy
        req.add_header("Content-Type", "application/json")
        if self.token:
            req.add_header("Authorization", f"Bearer {self.token}")
        context = ssl.create_default_context(cafile=self.ca_file) if self.base_url.startswith("https:") else None
        with urllib.request.urlopen(req, timeout=30, context=context) as resp:  # noqa: S310 - the proxy
            return json.loads(resp.read() or b"{}")

    def login(self) -> AirflowAPI:
        """Get a token; when the API server's login rate limit answers 429, wait as
        long as its Retry-After says (at most 3 times), like any well-behaved client."""
        self.token = ""
        body = {"username": self.username, "password": self.password}
        for _ in range(3):
            try:
                self.token = self.request("POST", "/auth/token", body)["access_token"]
                return self
            except urllib.error.HTTPError as exc:
                if exc.code != 429:
                    raise
                time.sleep(min(int(exc.headers.get("Retry-After", "10")), 60))
        self.token = self.request("POST", "/auth/token", body)["access_token"]
        return self

    def set_paused(self, dag_id: str, paused: bool) -> None:
        dag = self.request("PATCH", f"/api/v2/dags/{dag_id}", {"is_paused": paused})
        assert dag["is_paused"] is paused, dag

    def set_variable(self, key: str, value: str | None) -> None:
        """Set an Airflow Variable in the metadata database (None: delete it)."""
        try:
            self.request("DELETE", f"/api/v2/variables/{key}")
        except urllib.error.HTTPError as exc:
            if exc.code != 404:
                raise
        if value is not None:
            self.request("POST", "/api/v2/variables", {"key": key, "value": value})

    def wait_for_run(self, dag_id: str, run_id: str, timeout: float) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            run = self.request("GET", f"/api/v2/dags/{dag_id}/dagRuns/{urllib.parse.quote(run_id)}")
            if run["state"] in ("success", "failed"):
                return run
            if time.monotonic() > deadline:
                raise TimeoutError(f"run {run_id} still {run['state']} after {timeout} s")
            time.sleep(2)


def run_slots(api: AirflowAPI) -> set[int]:
    """The slots the rate DAG has a run for (Airflow allows one run per logical date)."""
    runs = api.request("GET", f"/api/v2/dags/{RATE_DAG}/dagRuns?limit=100")["dag_runs"]
    return {int(datetime.fromisoformat(run["logical_date"]).timestamp()) for run in runs if run["logical_date"]}


def free_slots(api: AirflowAPI, count: int) -> list[int]:
    """The latest ``count`` past slots with no run and no point yet, within the
    lateness the scenario allows (2 h)."""
    taken = run_slots(api)
    now = int(time.time()) // SLOT * SLOT
    stored = {ts // 1000 for series in vm_export(RATE_SERIES, now - 11 * SLOT, now) for ts in series["timestamps"]}
    free = [slot for slot in range(now - 11 * SLOT, now, SLOT) if slot not in taken | stored]
    assert len(free) >= count, f"not {count} free slots in the last 110 minutes: {sorted(taken)}"
    return free[-count:]


def quiet_window(api: AirflowAPI, seconds: float) -> None:
    """Wait until no run of the rate DAG is active and the scheduler's next slot is at
    least ``seconds`` away (and the last one 30 s past), so a scheduled run cannot
    take the one active run (max_active_runs=1) during a test."""
    while True:
        since = time.time() % SLOT
        runs = api.request("GET", f"/api/v2/dags/{RATE_DAG}/dagRuns?limit=20&order_by=-run_after")["dag_runs"]
        if not any(run["state"] in ("queued", "running") for run in runs) and 30 < since < SLOT - seconds:
            return
        time.sleep(5)


def trigger(api: AirflowAPI, slot: int, dag_id: str = RATE_DAG, conf: dict | None = None) -> str:
    """Trigger a run for ``slot`` (with ``conf``, the DAG's params); return its run id."""
    run_id = f"e2e-{slot}-{time.time_ns()}"
    body = {"dag_run_id": run_id, "logical_date": datetime.fromtimestamp(slot, UTC).isoformat()}
    api.request("POST", f"/api/v2/dags/{dag_id}/dagRuns", body | ({"conf": conf} if conf else {}))
    return run_id
