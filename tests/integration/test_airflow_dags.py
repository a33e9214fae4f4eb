"""Both DAGs run by Airflow itself (`airflow dags test`, metadata on MariaDB), fakes → real VictoriaMetrics."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta

import pytest

from btc_usd.quota import uses_alphavantage
from btc_usd.victoriametrics import VictoriaMetrics, selector
from fakes.rate_apis import PRICES, FakeRateAPI, candle_open, price_of, synthetic_pairs
from harness.services import Airflow, VictoriaMetricsServer
from integration.conftest import API_KEY


def current_slot() -> datetime:
    return datetime.fromtimestamp(int(time.time()) // 600 * 600, UTC)


def environment(
    fakes: dict[str, FakeRateAPI], vm: VictoriaMetricsServer, key: str | None = API_KEY, **variables: str
) -> dict[str, str]:
    env = {
        f"AIRFLOW_CONN_{name.upper()}_DEFAULT": api.connection(key if name == "alphavantage" else None)
        for name, api in fakes.items()
    }
    env["AIRFLOW_CONN_VICTORIAMETRICS_DEFAULT"] = vm.connection()
    env |= {f"AIRFLOW_VAR_{name.upper()}": value for name, value in variables.items()}
    return env


def run_dag(airflow: Airflow, dag_id: str, logical_date: datetime, env: dict[str, str], conf: dict | None = None):
    args = ["dags", "test", dag_id, logical_date.isoformat()]
    if conf is not None:
        args += ["--conf", json.dumps(conf)]
    began = time.monotonic()
    done = airflow.run(*args, env=env)
    return done, time.monotonic() - began


def series_at(vm: VictoriaMetrics, ts: int, name: str = "exchange_rate") -> dict[tuple[str, str, str], list[float]]:
    """{(base, quote, source): [values at ts]} for one metric."""
    found = {}
    for key, points in vm.export(selector(name), ts - 600, ts + 600).items():
        labels = dict(key)
        assert set(points) <= {ts}, f"points outside the slot: {points}"
        found[(labels["base"], labels["quote"], labels.get("source"))] = list(points.values())
    return found


def output(done) -> str:
    return done.stdout + done.stderr


def test_scheduled_slot_records_two_pairs_once_even_when_rerun(airflow, vm_server, vm, fakes, figures) -> None:
    slot = current_slot()
    env = environment(
        fakes, vm_server, exchange_rate_pairs='["BTC/USD", "ETH/USD"]', alphavantage_daily_budget="100000"
    )
    done, seconds = run_dag(airflow, "btc_usd_exchange_rate", slot, env)
    assert done.returncode == 0, output(done)[-4000:]
    figures["dag_run_wall_seconds"] = round(seconds, 1)
    ts = int(slot.timestamp())
    assert series_at(vm, ts) == {
        ("BTC", "USD", "alphavantage"): [PRICES[("BTC", "USD")]],
        ("ETH", "USD", "alphavantage"): [PRICES[("ETH", "USD")]],
    }
    assert series_at(vm, ts, "exchange_rate_last_success_timestamp_seconds") == {
        ("BTC", "USD", None): [float(ts)],
        ("ETH", "USD", None): [float(ts)],
    }
    assert API_KEY not in output(done)

    again, _ = run_dag(airflow, "btc_usd_exchange_rate", slot, env)
    assert again.returncode == 0, output(again)[-4000:]
    assert "already recorded" in output(again)
    assert series_at(vm, ts) == {
        ("BTC", "USD", "alphavantage"): [PRICES[("BTC", "USD")]],
        ("ETH", "USD", "alphavantage"): [PRICES[("ETH", "USD")]],
    }


def test_throttled_alphavantage_is_replaced_by_coinbase(airflow, vm_server, vm, fakes) -> None:
    fakes["alphavantage"].mode = "throttled"
    slot = current_slot()
    done, _ = run_dag(
        airflow, "btc_usd_exchange_rate", slot, environment(fakes, vm_server, alphavantage_daily_budget="100000")
    )
    assert done.returncode == 0, output(done)[-4000:]
    ts = int(slot.timestamp())
    assert series_at(vm, ts) == {("BTC", "USD", "coinbase"): [PRICES[("BTC", "USD")] + 1]}
    assert series_at(vm, ts, "exchange_rate_source_up") == {
        ("BTC", "USD", "alphavantage"): [0.0],
        ("BTC", "USD", "coinbase"): [1.0],
    }
    assert "source alphavantage failed for BTC/USD: throttled" in output(done)
    assert API_KEY not in output(done)


def test_no_key_warns_once_and_keyless_sources_carry_the_series(airflow, vm_server, vm, fakes) -> None:
    slot = current_slot()
    done, _ = run_dag(airflow, "btc_usd_exchange_rate", slot, environment(fakes, vm_server, key=None))
    assert done.returncode == 0, output(done)[-4000:]
    assert output(done).count("alphavantage has no API key") == 1
    assert series_at(vm, int(slot.timestamp())) == {("BTC", "USD", "coinbase"): [PRICES[("BTC", "USD")] + 1]}
    assert fakes["alphavantage"].requests == []


def test_every_source_broken_fails_the_run_and_writes_no_rate(airflow, vm_server, vm, fakes) -> None:
    for api in fakes.values():
        api.mode = "http_500"
    slot = current_slot()
    # a free-tier budget that includes this slot: the retries must not spend it again
    budget = next(b for b in range(143, 0, -1) if uses_alphavantage(slot, daily_budget=b))
    done, _ = run_dag(
        airflow, "btc_usd_exchange_rate", slot, environment(fakes, vm_server, alphavantage_daily_budget=str(budget))
    )
    assert done.returncode != 0
    assert "every source failed for BTC/USD" in output(done)
    assert series_at(vm, int(slot.timestamp())) == {}
    assert series_at(vm, int(slot.timestamp()), "exchange_rate_last_success_timestamp_seconds") == {}
    assert len(fakes["alphavantage"].requests) == 1
    assert len(fakes["coinbase"].requests) == 4  # first try and three retries


def test_1000_pairs_run_in_batches_of_250_with_every_pair_recorded_once(airflow, vm_server, vm, fakes, figures) -> None:
    pairs = synthetic_pairs(1000)
    slot = current_slot()
    env = environment(
        fakes,
        vm_server,
        key=None,
        exchange_rate_pairs=json.dumps(pairs),
        exchange_rate_batch_size="250",
        exchange_rate_sources='["coinbase", "kraken"]',
    )
    done, seconds = run_dag(airflow, "btc_usd_exchange_rate", slot, env)
    assert done.returncode == 0, output(done)[-4000:]
    figures["dag_run_1000_pairs_wall_seconds"] = round(seconds, 1)
    ts = int(slot.timestamp())
    recorded = series_at(vm, ts)
    assert len(recorded) == 1000
    for text in pairs:
        base, quote = text.split("/")
        assert recorded[(base, quote, "coinbase")] == [pytest.approx(price_of(base, quote) + 1)]
    # One per base and batch: S0062 and S0187 straddle two batches.
    assert len(fakes["coinbase"].requests) == 252
    assert output(done).count("recorded 250 of 250 pairs") == 4  # four mapped tasks
    assert "S0000/USD +249" in output(done)  # each mapped task is named by its batch


def test_two_day_backfill_fills_288_slots_per_series(airflow, vm_server, vm, fakes, figures) -> None:
    end = current_slot() - timedelta(days=1)
    start = end - timedelta(days=2)
    env = environment(fakes, vm_server, exchange_rate_pairs='["BTC/USD", "ETH/USD"]')
    conf = {"start": start.isoformat(), "end": end.isoformat()}
    done, seconds = run_dag(airflow, "btc_usd_backfill", current_slot(), env, conf)
    assert done.returncode == 0, output(done)[-4000:]
    figures["backfill_dag_2_days_2_pairs_wall_seconds"] = round(seconds, 1)
    series = vm.export(selector("exchange_rate"), int(start.timestamp()), int(end.timestamp()) - 1)
    counts = {dict(key)["base"] + "/" + dict(key)["source"]: len(points) for key, points in series.items()}
    assert counts == {"BTC/bitstamp_ohlc": 288, "ETH/bitstamp_ohlc": 288}
    for points in series.values():
        assert all(value == candle_open(ts) for ts, value in points.items())


def test_backfill_rejects_a_bad_range_before_any_request(airflow, vm_server, fakes) -> None:
    conf = {"start": "2026-13-01", "end": ""}
    done, _ = run_dag(airflow, "btc_usd_backfill", current_slot(), environment(fakes, vm_server), conf)
    assert done.returncode != 0
    assert "param start='2026-13-01' is not an ISO date" in output(done)
    assert fakes["bitstamp"].requests == []
