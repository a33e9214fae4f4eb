"""One deployment of the whole stack on this machine for the end-to-end tests.

The deployment is Molecule's default scenario (molecule/default): this machine
is the target host, reached over SSH as a non-root sudo user, with the images
built from Debian packages. It needs root (it installs packages, a user and
sshd) and a running Docker daemon, which ``make test`` starts.

Every module asks for what it needs through these fixtures, so each one runs
by itself (``pytest tests/e2e/test_ui.py``) as well as with the others.
"""

from __future__ import annotations

import os
import shutil
import time
import urllib.request
from datetime import datetime

import pytest

from fakes.rate_apis import FakeRateAPI
from fakes.sinks import SMTPSink, WebhookSink
from harness.airflow_api import AirflowAPI, free_slots, trigger
from harness.docker import memory_mib
from harness.molecule import molecule, purge_leftover_stack, role_seconds, tail
from harness.services import moto_server, wait_until
from harness.settings import FAKE_PORTS, LOGS, RATE_DAG, S3_BUCKET, S3_PORT, SLOT, SMTP_PORT, WEBHOOK_PORT, secret
from harness.vm import rate_points


@pytest.fixture(scope="package")
def s3(tmp_path_factory):
    """moto's S3 on every address, with the bucket the backups are copied to: it
    must be there before the converge, whose backup container backs up at start."""
    region = (
        b"<CreateBucketConfiguration><LocationConstraint>eu-west-1</LocationConstraint></CreateBucketConfiguration>"
    )
    with moto_server("0.0.0.0", S3_PORT, tmp_path_factory.mktemp("s3") / "moto.log") as url:
        create = urllib.request.Request(f"{url}/{S3_BUCKET}", data=region, method="PUT")  # noqa: S310 - moto on loopback
        urllib.request.urlopen(create, timeout=10).close()  # noqa: S310 - moto on loopback
        yield url


@pytest.fixture(scope="package")
def stack(figures, s3):
    """Deploy the stack with Molecule (create + converge); remove it when the
    end-to-end tests are done, so the rest of the run has the machine to itself."""
    if os.geteuid() != 0:
        pytest.fail("the end-to-end tests provision this machine and must run as root (make test does)")
    if shutil.which("docker") is None:
        pytest.fail("docker is not installed: run `make deps` (it installs docker.io and starts dockerd)")
    keep = os.environ.get("KEEP_STACK") == "1"  # development: reuse a running stack, keep it afterwards
    if not keep:
        molecule("destroy", log=LOGS / "destroy-before.log")
        purge_leftover_stack(log=LOGS / "purge-before.log")
    # Molecule's state outlives sshd (a reboot, a new session): without a reset,
    # `create` would trust it, skip, and leave nothing listening on port 22.
    if molecule("reset", log=LOGS / "reset.log")[0] != 0:
        pytest.fail(f"molecule reset failed; see {LOGS / 'reset.log'}")
    for step in ("create", "converge"):
        rc, seconds = molecule(step, log=LOGS / f"{step}.log")
        if rc != 0:
            pytest.fail(
                f"molecule {step} failed (rc={rc}); end of {LOGS / f'{step}.log'}:\n{tail(LOGS / f'{step}.log')}"
            )
        figures[f"molecule_{step}_s"] = round(seconds, 1)
    converged = time.monotonic()
    # Building the distro images is part of the first converge on a machine.
    figures["converge_distro_images_s"] = role_seconds(LOGS / "converge.log").get("distro_images")
    yield
    # What the stack uses after the end-to-end tests ran on it.
    figures["memory_minutes_after_converge"] = round((time.monotonic() - converged) / 60, 1)
    figures["memory_mib"] = memory_mib()
    figures["memory_mib_total"] = round(sum(figures["memory_mib"].values()), 1)
    if not keep:
        molecule("destroy", log=LOGS / "destroy.log")


@pytest.fixture(scope="package")
def fakes(stack) -> dict[str, FakeRateAPI]:
    """The rate APIs, on every address: the containers reach the host through its Docker gateway."""
    apis = {name: FakeRateAPI(name, host="0.0.0.0", port=port).start() for name, port in FAKE_PORTS.items()}
    yield apis
    for api in apis.values():
        api.stop()


@pytest.fixture(scope="package")
def sinks(stack) -> tuple[WebhookSink, SMTPSink]:
    """The webhook and SMTP server Alertmanager sends to (molecule.yml points it at them)."""
    webhook = WebhookSink("0.0.0.0", WEBHOOK_PORT).start()
    smtp = SMTPSink("0.0.0.0", SMTP_PORT).start()
    yield webhook, smtp
    webhook.stop()
    smtp.stop()


@pytest.fixture(scope="package")
def airflow_api(stack) -> AirflowAPI:
    return AirflowAPI("admin", secret("airflow_admin_password")).login()


@pytest.fixture(scope="package")
def rate_dag(airflow_api, fakes) -> str:
    """The rate DAG unpaused (the scenario deploys it paused), with its sources up.
    Unpaused, the scheduler takes the latest slots at once: wait for it, so that a
    test triggering a free slot cannot race it (409 Conflict)."""
    airflow_api.set_paused(RATE_DAG, False)
    latest = int(time.time()) // SLOT * SLOT - SLOT

    def scheduled() -> list[dict]:
        runs = airflow_api.request("GET", f"/api/v2/dags/{RATE_DAG}/dagRuns?limit=5&order_by=-logical_date")
        dates = [
            datetime.fromisoformat(run["logical_date"]).timestamp() for run in runs["dag_runs"] if run["logical_date"]
        ]
        return [date for date in dates if date >= latest]

    wait_until(scheduled, 180, "the scheduler's runs after unpausing the rate DAG", interval=2)
    return RATE_DAG


@pytest.fixture(scope="package")
def recorded_slot(airflow_api, rate_dag) -> int:
    """A slot the pipeline recorded through a triggered run: history for the tests
    that keep, restore or show it."""
    slot = free_slots(airflow_api, 1)[0]
    run = airflow_api.wait_for_run(rate_dag, trigger(airflow_api, slot), timeout=300)
    assert run["state"] == "success", run
    assert rate_points(slot), f"the run for {slot} succeeded but wrote no point"
    return slot
