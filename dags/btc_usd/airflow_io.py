"""Variables and Connections: the one module of the package that talks to Airflow."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

from airflow.sdk import Connection, Variable
from airflow.sdk.exceptions import AirflowFailException, AirflowNotFoundException

from btc_usd.fetch import base_url
from btc_usd.model import ConfigError, PermanentError
from btc_usd.pipeline import VARIABLES, Endpoint, Settings, parse_settings
from btc_usd.sources import SOURCES
from btc_usd.victoriametrics import VictoriaMetrics

log = logging.getLogger(__name__)

VICTORIAMETRICS_CONN_ID = "victoriametrics_default"
VICTORIAMETRICS_DEFAULT_URL = "http://localhost:8428"


@contextmanager
def no_retry_for_permanent_errors() -> Iterator[None]:
    """Fail the task without retries when retrying cannot help (bad settings, a late slot)."""
    try:
        yield
    except PermanentError as exc:
        raise AirflowFailException(str(exc)) from exc


def _connection(conn_id: str) -> Connection | None:
    try:
        return Connection.get(conn_id)
    except AirflowNotFoundException:
        return None


def load_settings() -> Settings:
    """Settings from the Variables, with defaults for the unset ones."""
    return parse_settings({name: Variable.get(name, default=None) for name in VARIABLES})


def load_endpoints(settings: Settings) -> dict[str, Endpoint]:
    """Base URL (and key) of each configured source, from ``<source>_default`` connections."""
    endpoints = {}
    for name in settings.sources:
        source = SOURCES[name]
        conn = _connection(f"{name}_default")
        if conn is None:
            endpoints[name] = Endpoint(source.default_url)
            continue
        key = (conn.password or None) if source.needs_key else None
        endpoints[name] = Endpoint(base_url(conn.host, conn.schema, conn.port, source.default_url), key)
    return endpoints


def load_victoriametrics() -> VictoriaMetrics:
    """VictoriaMetrics from ``victoriametrics_default``: HTTP at host:port with its basic
    auth as login and password; in extra the Graphite port, the Graphite host when it is
    not the HTTP one (a vmagent), and the flush key (for /internal/force_flush)."""
    conn = _connection(VICTORIAMETRICS_CONN_ID)
    if conn is None:
        log.info("connection %s is not set; using %s", VICTORIAMETRICS_CONN_ID, VICTORIAMETRICS_DEFAULT_URL)
        return VictoriaMetrics(VICTORIAMETRICS_DEFAULT_URL)
    port = conn.extra_dejson.get("graphite_port", 2003)
    if isinstance(port, str) and port.isdigit():
        port = int(port)
    if not isinstance(port, int) or isinstance(port, bool) or not 0 < port < 65536:
        raise ConfigError(
            f"connection {VICTORIAMETRICS_CONN_ID}: extra graphite_port={port!r} must be a TCP port "
            'such as {"graphite_port": 2003}'
        )
    url = base_url(conn.host, conn.schema, conn.port or 8428, VICTORIAMETRICS_DEFAULT_URL)
    return VictoriaMetrics(
        url,
        graphite_port=port,
        graphite_host=conn.extra_dejson.get("graphite_host") or None,
        flush_key=conn.extra_dejson.get("flush_key") or None,
        username=conn.login or None,
        password=conn.password or None,
    )
