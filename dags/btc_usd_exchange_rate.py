"""
### BTC→USD exchange rate, every 10 minutes

Asks the sources in `exchange_rate_sources` order (Alpha Vantage only in the slots its
daily budget allows), records the first valid quote in VictoriaMetrics as Graphite
lines stamped with the run's logical date, then reads it back. A slot that already
holds a point is left alone, so clearing a run never rewrites history.

Pairs are recorded in batches (`exchange_rate_batch_size`, one mapped task each);
each source is asked for a whole batch in as few requests as it allows.

Settings (Airflow Variables): `exchange_rate_pairs`, `exchange_rate_batch_size`,
`exchange_rate_sources`, `alphavantage_daily_budget`, `exchange_rate_max_quote_age_seconds`,
`exchange_rate_max_lateness_seconds`. Connections: `alphavantage_default` (password =
API key), `coinbase_default`, `kraken_default`, `bitstamp_default`,
`victoriametrics_default`. See the README for the series written.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from airflow.sdk import dag, get_current_context, task


@task
def plan_pairs() -> list[dict[str, object]]:
    """Validate the settings once per run and split the pairs into batches of
    ``exchange_rate_batch_size``, one mapped task each."""
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
        "writing to %s (Graphite %s:%d)", victoriametrics.url, *victoriametrics.graphite_address
    )
    pairs, size = [str(pair) for pair in settings.pairs], settings.batch_size
    return [{"pairs": pairs[first : first + size], "first_index": first} for first in range(0, len(pairs), size)]


@task(map_index_template="{{ batch_label }}")
def record(batch: dict[str, object]) -> dict[str, object]:
    """Fetch every pair of the batch with failover, write to VictoriaMetrics and verify
    the points are stored; fails after writing if any pair could not be recorded."""
    from collections import Counter

    from btc_usd import airflow_io
    from btc_usd.model import ExchangeRateError, Pair
    from btc_usd.pipeline import record_slots

    context = get_current_context()
    pairs = [Pair.parse(text) for text in batch["pairs"]]
    context["batch_label"] = str(pairs[0]) + (f" +{len(pairs) - 1}" if len(pairs) > 1 else "")
    slot = context["logical_date"] or context["dag_run"].run_after
    with airflow_io.no_retry_for_permanent_errors():
        settings = airflow_io.load_settings()
        results = record_slots(
            pairs,
            slot.replace(microsecond=0),
            settings=settings,
            endpoints=airflow_io.load_endpoints(settings),
            vm=airflow_io.load_victoriametrics(),
            first_index=int(batch["first_index"]),
            first_try=context["ti"].try_number <= 1,
        )
    failed = [r for r in results if r.error is not None]
    if len(failed) == 1:
        raise failed[0].error
    if failed:
        shown = "; ".join(str(r.error) for r in failed[:3])
        raise ExchangeRateError(f"{len(failed)} of {len(results)} pairs are not recorded: {shown}")
    return {
        "pairs": len(results),
        "already_recorded": sum(r.already_recorded for r in results),
        "sources": dict(Counter(r.quote.source for r in results if r.quote is not None)),
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
    record.expand(batch=plan_pairs())


btc_usd_exchange_rate()
