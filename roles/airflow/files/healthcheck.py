"""Docker healthcheck of an Airflow job process (scheduler, dag-processor).

Healthy when the job of this type running on this host heartbeated in the last
THRESHOLD seconds, the test `airflow jobs check --local` makes, read from the
metadata database without importing Airflow: the CLI costs ~150 MiB and seconds
of CPU per check, inside the container's memory limit.

Usage: python healthcheck.py SchedulerJob|DagProcessorJob [THRESHOLD]
"""

from __future__ import annotations

import socket
import sys
from pathlib import Path
from urllib.parse import unquote, urlsplit

import MySQLdb

CONN_FILE = Path("/run/secrets/sql_alchemy_conn")
QUERY = (
    "SELECT TIMESTAMPDIFF(SECOND, MAX(latest_heartbeat), UTC_TIMESTAMP(6)) FROM job"
    " WHERE job_type = %s AND state = 'running' AND hostname = %s"
)


def main(job_type: str, threshold: int) -> int:
    url = urlsplit(CONN_FILE.read_text().strip())
    db = MySQLdb.connect(
        host=url.hostname,
        port=url.port or 3306,
        user=unquote(url.username or ""),
        password=unquote(url.password or ""),
        database=url.path.lstrip("/"),
        connect_timeout=5,
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
