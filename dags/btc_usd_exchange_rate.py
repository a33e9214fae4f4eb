"""
### BTC→USD exchange rate, every 10 minutes

Asks the sources in `exchange_rate_sources` order (Alpha Vantage only in the slots its
daily budget allows), records the first valid quote in VictoriaMetrics as Graphite
lines stamped with the run's logical date, then reads it back. A slot that already
holds a point is left alone, so clearing a run never rewrites history.

Settings (Airflow Variables): `exchange_rate_pairs`, `exchange_rate_sources`,
`alphavantage_daily_budget`, `exchange_rate_max_quote_age_seconds`,
`exchange_rate_max_lateness_seconds`. Connections: `alphavantage_default` (password =
API key), `coinbase_default`, `kraken_default`, `bitstamp_default`,
`victoriametrics_default`. See the README for the series written.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from airflow.sdk import dag, get_current_context, task


@task
def plan_pairs() -> list[dict[str, object]]:
    """Validate the settings once per run and list the pairs to record."""
    import logging

    from btc_usd import airflow_io
    from btc_usd.sources import SOURCES

    with airflow_io.no_retry_for_permanent_errors():
        settings = airflow_io.load_settings()
        endpoints = airflow_io.load_endpoints(settings)
        victoriametrics = airflow_io.load_victoriametrics()
    for name, endpoint in endpoints.items():
        if SOURCES[name].needs_key and not endpoint.api_key:
            logging.getLogger(__name__).warning(
                "%s has no API key (set the password of connection %s_default); the keyless sources carry the series",
                name,
                name,
            )
    logging.getLogger(__name__).info(
        "writing to %s (Graphite port %d)", victoriametrics.url, victoriametrics.graphite_port
    )
    return [{"pair": str(pair), "index": index} for index, pair in enumerate(settings.pairs)]


@task(map_index_template="{{ job['pair'] }}")
def record(job: dict[str, object]) -> dict[str, object]:
    """Fetch with failover, write to VictoriaMetrics and verify the point is stored."""
    from btc_usd import airflow_io
    from btc_usd.model import Pair
    from btc_usd.pipeline import record_slot

    context = get_current_context()
    slot = context["logical_date"] or context["dag_run"].run_after
    with airflow_io.no_retry_for_permanent_errors():
        settings = airflow_io.load_settings()
        result = record_slot(
            Pair.parse(job["pair"]),
            slot.replace(microsecond=0),
            settings=settings,
            endpoints=airflow_io.load_endpoints(settings),
            vm=airflow_io.load_victoriametrics(),
            pair_index=int(job["index"]),
            first_try=context["ti"].try_number <= 1,
        )
    quote = result.quote
    return {
        "pair": job["pair"],
        "timestamp": result.timestamp,
        "already_recorded": result.already_recorded,
        "source": quote.source if quote else None,
        "rate": quote.rate if quote else None,
    }


@dag(
    dag_id="btc_usd_exchange_rate",
    schedule="*/10 * * * *",
    start_date=datetime(2026, 1, 1, tzinfo=UTC),
    catchup=False,
    max_active_runs=1,
    tags=["btc-usd", "exchange-rate", "victoriametrics"],
    doc_md=__doc__,
    default_args={
        "owner": "btc-usd-stack",
        "retries": 3,
        "retry_delay": timedelta(seconds=20),
        "retry_exponential_backoff": True,
        "max_retry_delay": timedelta(minutes=2),
        "execution_timeout": timedelta(minutes=3),
    },
)
def btc_usd_exchange_rate() -> None:
    record.expand(job=plan_pairs())


btc_usd_exchange_rate()
