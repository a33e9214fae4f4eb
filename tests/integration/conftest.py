"""Real VictoriaMetrics, MariaDB and Airflow, plus fake rate APIs, for the integration tests."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from btc_usd.victoriametrics import VictoriaMetrics
from fakes.rate_apis import FakeRateAPI
from harness.services import Airflow, MariaDBServer, VictoriaMetricsServer

SOURCE_NAMES = ("alphavantage", "coinbase", "kraken", "bitstamp")
API_KEY = "AVKEY-not-a-real-one-7731"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        item.add_marker(pytest.mark.integration)


def require(program: str) -> None:
    if not shutil.which(program):
        pytest.fail(f"{program} is not installed; run `make deps` (Debian packages) first", pytrace=False)


@pytest.fixture
def vm_server(tmp_path: Path) -> Iterator[VictoriaMetricsServer]:
    require("victoria-metrics")
    server = VictoriaMetricsServer(tmp_path / "vm", auth=True).start()
    yield server
    server.stop()


@pytest.fixture
def vm(vm_server: VictoriaMetricsServer) -> VictoriaMetrics:
    return VictoriaMetrics(
        vm_server.url,
        graphite_port=vm_server.graphite_port,
        flush_key=vm_server.FLUSH_KEY,
        username=vm_server.USER,
        password=vm_server.PASSWORD,
    )


@pytest.fixture
def fakes() -> Iterator[dict[str, FakeRateAPI]]:
    apis = {name: FakeRateAPI(name, delay=3.0).start() for name in SOURCE_NAMES}
    yield apis
    for api in apis.values():
        api.stop()


@pytest.fixture(scope="session")
def mariadb(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MariaDBServer]:
    require("mariadbd")
    server = MariaDBServer(tmp_path_factory.mktemp("mariadb")).start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def airflow(mariadb: MariaDBServer, tmp_path_factory: pytest.TempPathFactory) -> Airflow:
    instance = Airflow(tmp_path_factory.mktemp("airflow"), mariadb.sql_alchemy_conn)
    instance.migrate()
    return instance
