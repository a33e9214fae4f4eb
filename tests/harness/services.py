"""Real programs for the integration tests: VictoriaMetrics, MariaDB and Airflow.

Each runs from the Debian package or the project's venv, on free loopback ports,
with its data in a temporary folder, and is stopped by the test that started it.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent
# Every server the harness starts, so the session can prove none outlives it.
STARTED: list[subprocess.Popen] = []


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def moto_server(host: str, port: int, log: Path, env: dict[str, str] | None = None) -> Iterator[str]:
    """moto's server (emulated AWS) from the infra venv, for the block; yields its local URL."""
    server = REPO / ".venv-infra" / "bin" / "moto_server"
    if not server.exists():
        raise FileNotFoundError(f"{server} is missing; run `make deps` first")
    with log.open("ab") as out:
        proc = subprocess.Popen(
            [str(server), "-H", host, "-p", str(port)], stdout=out, stderr=subprocess.STDOUT, env=env
        )
    STARTED.append(proc)
    try:
        url = f"http://127.0.0.1:{port}"
        wait_until(lambda: urllib.request.urlopen(f"{url}/moto-api/", timeout=2).status == 200, 60, "moto")  # noqa: S310 - loopback
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def wait_until(check, timeout: float, what: str, interval: float = 0.2):
    """Call ``check`` until it returns something truthy, and return that."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if found := check():
                return found
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} not ready after {timeout} s")
        time.sleep(interval)


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


class VictoriaMetricsServer:
    """``victoria-metrics`` with the flags the DAG relies on (docs/pipeline.md), its admin
    APIs behind ``ADMIN_KEY`` and its flush behind ``FLUSH_KEY``; with ``auth``, its HTTP
    API behind basic auth, as the deployment sets them."""

    BINARY = shutil.which("victoria-metrics") or "/usr/bin/victoria-metrics"
    ADMIN_KEY = "integration-admin-key-0123456789abcdef"
    FLUSH_KEY = "integration-flush-key-0123456789abcdef"
    USER, PASSWORD = "stack", "integration-http-password-0123456789"

    def __init__(self, data_dir: Path, auth: bool = False, binary: Path | None = None, args: tuple = ()) -> None:
        self.data_dir = data_dir
        self.auth = auth
        self.binary = str(binary or self.BINARY)
        self.extra_args = list(args)
        self.http_port, self.graphite_port = free_port(), free_port()
        self.url = f"http://127.0.0.1:{self.http_port}"
        self.log = data_dir.parent / f"{data_dir.name}.log"
        self.proc: subprocess.Popen | None = None

    def start(self) -> VictoriaMetricsServer:
        args = [
            self.binary,
            f"-storageDataPath={self.data_dir}",
            f"-httpListenAddr=127.0.0.1:{self.http_port}",
            f"-graphiteListenAddr=127.0.0.1:{self.graphite_port}",
            "-retentionPeriod=100y",
            "-dedup.minScrapeInterval=1s",
            f"-deleteAuthKey={self.ADMIN_KEY}",
            f"-forceMergeAuthKey={self.ADMIN_KEY}",
            f"-forceFlushAuthKey={self.FLUSH_KEY}",
        ]
        if self.auth:
            args += [f"-httpAuth.username={self.USER}", f"-httpAuth.password={self.PASSWORD}"]
        args += self.extra_args
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
        STARTED.append(self.proc)
        wait_until(self._healthy, 30, "VictoriaMetrics")
        # The Graphite listener starts after /health answers.
        wait_until(
            lambda: socket.create_connection(("127.0.0.1", self.graphite_port), 1).close() is None, 30, "Graphite"
        )
        return self

    def _healthy(self) -> bool:
        with urllib.request.urlopen(f"{self.url}/health", timeout=2) as reply:  # noqa: S310 - our own loopback URL
            return reply.status == 200

    def connection(self) -> str:
        return json.dumps(
            {
                "conn_type": "http",
                "host": "127.0.0.1",
                "port": self.http_port,
                "schema": "http",
                **({"login": self.USER, "password": self.PASSWORD} if self.auth else {}),
                "extra": {"graphite_port": self.graphite_port, "flush_key": self.FLUSH_KEY},
            }
        )

    def stop(self) -> None:
        if self.proc:
            _stop(self.proc)


class MariaDBServer:
    """A throwaway ``mariadbd`` holding Airflow's metadata database."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.port = free_port()
        self.password = secrets.token_urlsafe(18)
        self.proc: subprocess.Popen | None = None

    @property
    def sql_alchemy_conn(self) -> str:
        return f"mysql+mysqldb://airflow:{self.password}@127.0.0.1:{self.port}/airflow"

    def start(self) -> MariaDBServer:
        data = self.base / "data"
        data.mkdir(parents=True)
        # The tests run as root in private temporary folders, so mariadbd runs as root too.
        subprocess.run(
            ["mariadb-install-db", "--user=root", f"--datadir={data}", "--auth-root-authentication-method=socket"],
            check=True,
            capture_output=True,
        )
        self.socket = self.base / "mysqld.sock"
        args = [
            "mariadbd",
            "--no-defaults",
            "--user=root",
            f"--datadir={data}",
            f"--socket={self.socket}",
            f"--pid-file={self.base / 'mysqld.pid'}",
            f"--port={self.port}",
            "--bind-address=127.0.0.1",
            "--skip-log-bin",
            "--character-set-server=utf8mb4",
            "--collation-server=utf8mb4_unicode_ci",
            "--explicit-defaults-for-timestamp=1",
            "--innodb-buffer-pool-size=64M",
        ]
        with (self.base / "mysqld.log").open("ab") as log:
            self.proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
        STARTED.append(self.proc)
        wait_until(lambda: self.sql("SELECT 1").returncode == 0, 60, "MariaDB")
        created = self.sql(
            "CREATE DATABASE airflow CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci;"
            f"CREATE USER 'airflow'@'127.0.0.1' IDENTIFIED BY '{self.password}';"
            "GRANT ALL PRIVILEGES ON airflow.* TO 'airflow'@'127.0.0.1';"
        )
        if created.returncode:
            raise RuntimeError(f"cannot create Airflow's database: {created.stderr}")
        return self

    def sql(self, statement: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            ["mariadb", f"--socket={self.socket}", "-uroot", "-e", statement], capture_output=True, text=True
        )

    def stop(self) -> None:
        if self.proc:
            _stop(self.proc)


class Airflow:
    """The project's Airflow (the venv running pytest), pointed at MariaDB and ``dags/``."""

    def __init__(self, home: Path, sql_alchemy_conn: str) -> None:
        self.home = home
        self.env = {
            key: value for key, value in os.environ.items() if not key.startswith(("AIRFLOW_", "AIRFLOW__", "PYTEST_"))
        }
        self.env |= {
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": sql_alchemy_conn,
            "AIRFLOW__CORE__FERNET_KEY": "",
            "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",
            "PATH": f"{VENV_BIN}:{os.environ.get('PATH', '')}",
        }

    def run(self, *args: str, env: dict[str, str] | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
        return subprocess.run(
            [str(VENV_BIN / "airflow"), *args],
            env=self.env | (env or {}),
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=self.home,
        )

    def migrate(self) -> None:
        done = self.run("db", "migrate")
        if done.returncode:
            raise RuntimeError(f"airflow db migrate failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
