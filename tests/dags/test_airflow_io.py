"""Connections and Variables as a deployment sets them: AIRFLOW_CONN_* (URI or JSON) and AIRFLOW_VAR_*."""

from __future__ import annotations

import json

import pytest

from btc_usd import airflow_io
from btc_usd.model import ConfigError, Pair


def test_unset_connections_and_variables_mean_the_public_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("ALPHAVANTAGE", "COINBASE", "KRAKEN", "BITSTAMP", "VICTORIAMETRICS"):
        monkeypatch.delenv(f"AIRFLOW_CONN_{name}_DEFAULT", raising=False)
    settings = airflow_io.load_settings()
    assert settings.pairs == (Pair("BTC", "USD"),)
    endpoints = airflow_io.load_endpoints(settings)
    assert endpoints["alphavantage"].base_url == "https://www.alphavantage.co"
    assert endpoints["alphavantage"].api_key is None
    assert endpoints["coinbase"].base_url == "https://api.coinbase.com"
    vm = airflow_io.load_victoriametrics()
    assert (vm.url, vm.graphite_port) == ("http://localhost:8428", 2003)


def test_uri_form(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_ALPHAVANTAGE_DEFAULT", "http://:S3CR3T-KEY@www.alphavantage.co/https")
    monkeypatch.setenv("AIRFLOW_CONN_KRAKEN_DEFAULT", "http://127.0.0.1:8001/http")
    monkeypatch.setenv("AIRFLOW_CONN_VICTORIAMETRICS_DEFAULT", "http://victoriametrics:8428/?graphite_port=2004")
    endpoints = airflow_io.load_endpoints(airflow_io.load_settings())
    assert endpoints["alphavantage"].base_url == "https://www.alphavantage.co"
    assert endpoints["alphavantage"].api_key == "S3CR3T-KEY"
    assert "S3CR3T" not in repr(endpoints)
    assert endpoints["kraken"].base_url == "http://127.0.0.1:8001"
    vm = airflow_io.load_victoriametrics()
    assert (vm.url, vm.graphite_port) == ("http://victoriametrics:8428", 2004)


def test_json_form_and_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    conn = {"conn_type": "http", "host": "vm.internal", "port": 9428, "extra": {"graphite_port": 2103}}
    monkeypatch.setenv("AIRFLOW_CONN_VICTORIAMETRICS_DEFAULT", json.dumps(conn))
    monkeypatch.setenv("AIRFLOW_VAR_EXCHANGE_RATE_PAIRS", '["BTC/USD", "ETH/EUR"]')
    monkeypatch.setenv("AIRFLOW_VAR_EXCHANGE_RATE_SOURCES", '["bitstamp"]')
    settings = airflow_io.load_settings()
    assert settings.pairs == (Pair("BTC", "USD"), Pair("ETH", "EUR"))
    assert list(airflow_io.load_endpoints(settings)) == ["bitstamp"]
    vm = airflow_io.load_victoriametrics()
    assert (vm.url, vm.graphite_address) == ("http://vm.internal:9428", ("vm.internal", 2103))


def test_graphite_on_another_host(monkeypatch: pytest.MonkeyPatch) -> None:
    conn = {"conn_type": "http", "host": "vmauth", "port": 8427, "extra": {"graphite_host": "vmagent"}}
    monkeypatch.setenv("AIRFLOW_CONN_VICTORIAMETRICS_DEFAULT", json.dumps(conn))
    vm = airflow_io.load_victoriametrics()
    assert (vm.url, vm.graphite_address) == ("http://vmauth:8427", ("vmagent", 2003))


@pytest.mark.parametrize("port", ["graphite", 0, 70000, True])
def test_a_bad_graphite_port_names_the_connection(monkeypatch: pytest.MonkeyPatch, port: object) -> None:
    conn = {"conn_type": "http", "host": "vm", "extra": {"graphite_port": port}}
    monkeypatch.setenv("AIRFLOW_CONN_VICTORIAMETRICS_DEFAULT", json.dumps(conn))
    with pytest.raises(ConfigError, match="connection victoriametrics_default: extra graphite_port"):
        airflow_io.load_victoriametrics()


def test_a_bad_variable_fails_with_its_name(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRFLOW_VAR_ALPHAVANTAGE_DAILY_BUDGET", "twenty-five")
    with pytest.raises(ConfigError, match="Variable alphavantage_daily_budget must be a whole number"):
        airflow_io.load_settings()
