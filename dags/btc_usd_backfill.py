"""
### BTC→USD history backfill (trigger by hand)

Fills past 10-minute slots of every pair in `exchange_rate_pairs` from Bitstamp's
5-minute OHLC candles (connection `bitstamp_default`), labelled
`source="bitstamp_ohlc"`. Slots that already hold a point are skipped, so reruns
are harmless. Params: `start` and `end` as ISO dates or times (UTC unless given);
empty `end` = this run's time, empty `start` = 30 days before `end`. VictoriaMetrics
keeps only what its `-retentionPeriod` covers.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from airflow.sdk import Param, dag, get_current_context, task


def _range() -> tuple[datetime, datetime]:
    from btc_usd.backfill import parse_range

    context = get_current_context()
    params = context["params"]
    run_time = context["logical_date"] or context["dag_run"].run_after
    return parse_range(params.get("start"), params.get("end"), run_time)


@task
def plan_pairs() -> list[str]:
    """Check the range and settings before any request; list the pairs."""
    from btc_usd import airflow_io

    with airflow_io.no_retry_for_permanent_errors():
        _range()
        return [str(pair) for pair in airflow_io.load_settings().pairs]


@task(map_index_template="{{ pair }}")
def fill(pair: str) -> dict[str, object]:
    """Backfill one pair over the whole range, batch by batch."""
    from btc_usd import airflow_io
    from btc_usd.backfill import backfill_pair
    from btc_usd.model import Pair
    from btc_usd.pipeline import Settings

    with airflow_io.no_retry_for_permanent_errors():
        start, end = _range()
        endpoint = airflow_io.load_endpoints(Settings(sources=("bitstamp",)))["bitstamp"]
        vm = airflow_io.load_victoriametrics()
    report = backfill_pair(Pair.parse(pair), start, end, base_url=endpoint.base_url, vm=vm)
    return {
        "pair": pair,
        "slots": report.slots,
        "written": report.written,
        "already_present": report.already_present,
        "without_trades": report.without_trades,
    }


@dag(
    dag_id="btc_usd_backfill",
    schedule=None,
    start_date=datetime(2026, 1, 1, tzinfo=UTC),
    catchup=False,
    max_active_runs=1,
    tags=["btc-usd", "exchange-rate", "backfill"],
    doc_md=__doc__,
    params={
        "start": Param("", type="string", description="First slot, ISO date or time (UTC); empty = 30 days before end"),
        "end": Param("", type="string", description="End of the range (excluded), ISO date or time; empty = now"),
    },
    default_args={
        "owner": "btc-usd-stack",
        "retries": 2,
        "retry_delay": timedelta(minutes=1),
        "retry_exponential_backoff": True,
        "execution_timeout": timedelta(hours=1),
    },
)
def btc_usd_backfill() -> None:
    fill.expand(pair=plan_pairs())


btc_usd_backfill()
