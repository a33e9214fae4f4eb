"""Terraform against moto: the emulated AWS is started and stopped here."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.services import REPO, free_port, moto_server

INFRA_BIN = REPO / ".venv-infra" / "bin"
TERRAFORM_DIR = REPO / "terraform"
MIRROR = Path("/opt/tf-plugins")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def moto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    log = tmp_path_factory.mktemp("moto") / "moto.log"
    env = os.environ | {"MOTO_IAM_LOAD_MANAGED_POLICIES": "true"}  # AmazonSSMManagedInstanceCore
    with moto_server("127.0.0.1", free_port(), log, env) as url:
        yield url


@pytest.fixture(scope="session")
def aws_env(moto: str, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """The environment a user's shell would have, pointed at moto instead of AWS."""
    if not shutil.which("terraform"):
        pytest.fail("terraform is not on PATH; install Terraform >= 1.9", pytrace=False)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "TF_"))}
    env |= {
        "AWS_ENDPOINT_URL": moto,
        "AWS_ACCESS_KEY_ID": "test",
        "AWS_SECRET_ACCESS_KEY": "test",
        "AWS_REGION": "eu-west-1",
        "TF_IN_AUTOMATION": "1",
        "TF_INPUT": "0",
        "TF_DATA_DIR": str(tmp_path_factory.mktemp("tf-data")),
        "PATH": f"{INFRA_BIN}:{os.environ['PATH']}",
    }
    if MIRROR.is_dir():
        env["TF_CLI_CONFIG_FILE"] = str(TERRAFORM_DIR / "mirror.tfrc")
    init = terraform(env, "init", "-lockfile=readonly", "-no-color")
    assert init.returncode == 0, init.stdout + init.stderr
    return env


def terraform(env: dict[str, str], *args: str, timeout: float = 900) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["terraform", f"-chdir={TERRAFORM_DIR}", *args], env=env, capture_output=True, text=True, timeout=timeout
    )
