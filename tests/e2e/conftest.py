"""One deployment of the whole stack on this machine for every end-to-end test.

The deployment is Molecule's default scenario (molecule/default): this machine
is the target host, reached over SSH as a non-root sudo user, with the images
built from Debian packages. It needs root (it installs packages, a user and
sshd) and a running Docker daemon, which ``make test`` starts.
"""

from __future__ import annotations

import os
import shutil
import time
import urllib.request
from pathlib import Path

import pytest

from fakes.rate_apis import FakeRateAPI
from harness.services import moto_server
from harness.stack import LOGS, S3_BUCKET, S3_PORT, AirflowAPI, memory_mib, molecule, role_seconds, secret, tail

HERE = Path(__file__).parent
# molecule/default/molecule.yml points the sources' connections at these ports.
FAKE_PORTS = {"alphavantage": 18081, "coinbase": 18082, "kraken": 18083, "bitstamp": 18084}
# The tests share one deployment and build on each other's state: the pipeline
# writes points that the restart, alerting and down/up tests then rely on.
ORDER = [
    "test_deploy",
    "test_rate_pipeline",
    "test_stack_alerts",
    "test_faults",
    "test_backup",
    "test_down_up",
    "test_ui",
]


def pytest_collection_modifyitems(items):
    slots = [i for i, item in enumerate(items) if item.path.parent == HERE]
    ordered = sorted((items[i] for i in slots), key=lambda item: ORDER.index(item.path.stem))
    for i, item in zip(slots, ordered, strict=True):
        items[i] = item


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
def airflow_api(stack) -> AirflowAPI:
    api = AirflowAPI("admin", secret("airflow_admin_password"))
    api.login()
    return api
