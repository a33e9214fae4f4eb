"""Both DAGs import cleanly, follow the policy, and do no I/O at parse time."""

from __future__ import annotations

import socket
import statistics
import urllib.request
from datetime import timedelta
from pathlib import Path

import pytest
from airflow.dag_processing.dagbag import DagBag

DAGS = Path(__file__).resolve().parents[2] / "dags"


class ParseTimeIO(AssertionError):
    pass


def forbid(*_args: object, **_kwargs: object) -> None:
    raise ParseTimeIO("I/O at DAG parse time")


@pytest.fixture(scope="module")
def dagbag() -> DagBag:
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(socket.socket, "connect", forbid)
        patch.setattr(urllib.request, "urlopen", forbid)
        patch.setattr("airflow.sdk.Variable.get", forbid)
        patch.setattr("airflow.sdk.Connection.get", forbid)
        return DagBag(dag_folder=DAGS)


def test_no_import_errors_and_no_parse_time_io(dagbag: DagBag) -> None:
    assert dagbag.import_errors == {}
    assert set(dagbag.dags) == {"btc_usd_exchange_rate", "btc_usd_backfill"}


def test_the_logic_package_is_not_parsed_as_dags(dagbag: DagBag) -> None:
    parsed = {Path(stat.file).name for stat in dagbag.dagbag_stats}
    assert parsed == {"btc_usd_exchange_rate.py", "btc_usd_backfill.py"}


@pytest.mark.parametrize("dag_id", ["btc_usd_exchange_rate", "btc_usd_backfill"])
def test_common_policy(dagbag: DagBag, dag_id: str) -> None:
    dag = dagbag.dags[dag_id]
    assert dag.catchup is False
    assert dag.max_active_runs == 1
    assert dag.start_date.utcoffset() == timedelta(0)
    assert dag.tags
    assert "btc-usd" in dag.tags
    assert dag.doc_md
    assert len(dag.doc_md) > 200
    for task in dag.tasks:
        assert task.retries >= 2, task.task_id
        assert task.retry_exponential_backoff, task.task_id
        assert task.execution_timeout is not None, task.task_id


def test_rate_dag_runs_every_10_minutes_on_the_clock(dagbag: DagBag) -> None:
    dag = dagbag.dags["btc_usd_exchange_rate"]
    assert type(dag.timetable).__name__ == "CronTriggerTimetable"  # logical date = the slot itself
    assert dag.timetable.expression == "*/10 * * * *"
    assert {t.task_id for t in dag.tasks} == {"plan_pairs", "record"}
    assert dag.get_task("record").upstream_task_ids == {"plan_pairs"}
    assert dag.get_task("record").execution_timeout <= timedelta(minutes=5)  # a slot must not overlap the next


def test_backfill_dag_is_manual_with_range_params(dagbag: DagBag) -> None:
    dag = dagbag.dags["btc_usd_backfill"]
    assert type(dag.timetable).__name__ == "NullTimetable"  # triggered by hand only
    assert set(dag.params) == {"start", "end"}
    assert {t.task_id for t in dag.tasks} == {"plan_pairs", "fill"}


def test_parse_time(figures: dict) -> None:
    """The dag-processor's own measure (FileLoadStat.duration), median of 7 parses per file."""
    durations: dict[str, list[float]] = {}
    for _ in range(7):
        for stat in DagBag(dag_folder=DAGS).dagbag_stats:
            durations.setdefault(Path(stat.file).name, []).append(stat.duration.total_seconds())
    for name, values in durations.items():
        figures[f"dag_parse_s[{name}]"] = round(statistics.median(values), 4)
    assert set(durations) == {"btc_usd_exchange_rate.py", "btc_usd_backfill.py"}
