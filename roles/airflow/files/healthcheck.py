"""Docker healthcheck of an Airflow process, without importing Airflow: the CLI
costs ~150 MiB and seconds of CPU per check, inside the container's memory limit.

SchedulerJob, DagProcessorJob: healthy when the job of this type running on this
host heartbeated in the last THRESHOLD seconds, the test `airflow jobs check
--local` makes, read from the metadata database.

EdgeWorker: healthy when the worker process of its pid file runs and the Edge API
it polls (AIRFLOW__EDGE__API_URL) answers its health check.

Usage: python healthcheck.py SchedulerJob|DagProcessorJob|EdgeWorker [THRESHOLD]
"""

from __future__ import annotations

import os
import socket
import sys
import urllib.request
from pathlib import Path
from urllib.parse import parse_qsl, unquote, urljoin, urlsplit

CONN_FILE = Path("/run/secrets/sql_alchemy_conn")
QUERY = (
    "SELECT TIMESTAMPDIFF(SECOND, MAX(latest_heartbeat), UTC_TIMESTAMP(6)) FROM job"
    " WHERE job_type = %s AND state = 'running' AND hostname = %s"
)


EDGE_PID_FILE = Path("/opt/airflow/airflow-edge-worker.pid")


def edge_worker() -> int:
    try:
        os.kill(int(EDGE_PID_FILE.read_text().strip()), 0)
    except (OSError, ValueError) as exc:
        print(f"no Edge worker process ({EDGE_PID_FILE}: {exc})")
        return 1
    health = urljoin(os.environ["AIRFLOW__EDGE__API_URL"], "health")
    try:
        with urllib.request.urlopen(health, timeout=5) as response:  # noqa: S310 - URL of the config
            response.read()
    except OSError as exc:
        print(f"the Edge API {health} does not answer: {exc}")
        return 1
    return 0


def tls(query: dict[str, str]) -> dict:
    """The URL's TLS options as SQLAlchemy's MySQLdb dialect passes them: ssl_mode as it
    is, ssl_ca, ssl_cert and ssl_key in the ``ssl`` argument."""
    files = {key[4:]: query[key] for key in ("ssl_ca", "ssl_cert", "ssl_key") if key in query}
    return ({"ssl_mode": query["ssl_mode"]} if "ssl_mode" in query else {}) | ({"ssl": files} if files else {})


def main(job_type: str, threshold: int) -> int:
    if job_type == "EdgeWorker":
        return edge_worker()
    import MySQLdb  # here: the Edge worker has no database

    url = urlsplit(CONN_FILE.read_text().strip())
    db = MySQLdb.connect(
        host=url.hostname,
        port=url.port or 3306,
        user=unquote(url.username or ""),
        password=unquote(url.password or ""),
        database=url.path.lstrip("/"),
        connect_timeout=5,
        **tls(dict(parse_qsl(url.query))),
    )
    try:
        cursor = db.cursor()
        cursor.execute("SET time_zone = '+00:00'")  # Airflow's sessions store UTC
        cursor.execute(QUERY, (job_type, socket.getfqdn()))  # Airflow's default hostname_callable
        (age,) = cursor.fetchone()
    finally:
        db.close()
    if age is None:
        print(f"no running {job_type} on {socket.getfqdn()}")
        return 1
    if age > threshold:
        print(f"{job_type} last heartbeat {age} s ago (more than {threshold} s)")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 60))
