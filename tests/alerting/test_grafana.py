"""Grafana's provisioning: the dashboards are valid, and every panel query,
template variable and alert query returns series from a real VictoriaMetrics
holding representative data (two days of the pipeline, six hours of the stack)."""

from __future__ import annotations

import json
import math
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
import yaml

from harness.molecule import render
from harness.services import REPO, VictoriaMetricsServer, wait_until

DASHBOARDS = sorted((REPO / "roles/grafana/files/dashboards").glob("*.json"))
VARIABLES = {"$base": "BTC", "$quote": "USD"}
SLOT, MINUTE = 600, 60


def representative_lines(end: int) -> list[str]:
    """Prometheus text lines with millisecond timestamps, shaped like the real series."""
    lines = []
    for i in range(2 * 24 * 6):
        ts = end - end % SLOT - i * SLOT
        for base, quote, price in (("BTC", "USD", 64000.0), ("ETH", "USD", 3150.0)):
            pair = f'base="{base}",quote="{quote}"'
            rate = price * (1 + 0.01 * math.sin(i / 20))
            source = "alphavantage" if i % 6 == 0 else ("kraken" if i % 7 == 0 else "coinbase")
            ms = ts * 1000
            lines += [
                f'exchange_rate{{{pair},source="{source}"}} {rate} {ms}',
                f'exchange_rate_quote_age_seconds{{{pair},source="{source}"}} {5 + i % 50} {ms}',
                f"exchange_rate_last_success_timestamp_seconds{{{pair}}} {ts} {ms}",
                f'exchange_rate_source_up{{{pair},source="{source}"}} 1 {ms}',
            ]
            if source == "kraken":
                lines += [
                    f'exchange_rate_bid{{{pair},source="kraken"}} {rate - 1} {ms}',
                    f'exchange_rate_ask{{{pair},source="kraken"}} {rate + 1} {ms}',
                ]
            if source == "alphavantage":
                lines.append(f"exchange_rate_alphavantage_daily_budget 25 {ms}")
    jobs = {
        "victoriametrics": "victoriametrics:8428",
        "vmalert": "vmalert:8880",
        "node": "node-exporter:9100",
        "mysqld": "mysqld-exporter:9104",
    }
    for i in range(6 * 60):
        ts = end - i * MINUTE
        ms = ts * 1000
        for job, instance in jobs.items():
            target = f'job="{job}",instance="{instance}"'
            lines += [f"up{{{target}}} 1 {ms}", f"process_start_time_seconds{{{target}}} {end - 86400} {ms}"]
        for probe in ("airflow-api", "airflow-scheduler", "grafana"):
            lines.append(f'probe_success{{job="blackbox",probe="{probe}"}} 1 {ms}')
        node = 'job="node",instance="node-exporter:9100"'
        fs = f'{node},mountpoint="/srv/btc-usd-stack",fstype="ext4"'
        mysql = 'job="mysqld",instance="mysqld-exporter:9104"'
        vm = 'job="victoriametrics",instance="victoriametrics:8428"'
        lines += [
            f'node_cpu_seconds_total{{{node},cpu="0",mode="idle"}} {(end - i * MINUTE) * 0.8} {ms}',
            f"node_memory_MemAvailable_bytes{{{node}}} {1.2e9} {ms}",
            f"node_memory_MemTotal_bytes{{{node}}} {2e9} {ms}",
            f"node_filesystem_avail_bytes{{{fs}}} {15e9} {ms}",
            f"node_filesystem_size_bytes{{{fs}}} {20e9} {ms}",
            f"mysql_global_status_uptime{{{mysql}}} {86400 - i * MINUTE} {ms}",
            f"mysql_global_status_threads_connected{{{mysql}}} 7 {ms}",
            f"mysql_global_status_queries{{{mysql}}} {1e6 - i * 600} {ms}",
            f'vm_rows_inserted_total{{{vm},type="graphite"}} {1e5 - i} {ms}',
            f'vm_rows_inserted_total{{{vm},type="promscrape"}} {1e7 - i * 3000} {ms}',
            f'vm_data_size_bytes{{{vm},type="storage/big"}} {3e7} {ms}',
            f'vm_free_disk_space_bytes{{{vm},path="/storage"}} {15e9} {ms}',
        ]
        if i < 30:
            lines.append(
                f'ALERTS{{alertname="ExchangeRateJump",alertstate="firing",severity="warning",area="data"}} 1 {ms}'
            )
    return lines


@pytest.fixture(scope="module")
def vm(tmp_path_factory) -> str:
    server = VictoriaMetricsServer(tmp_path_factory.mktemp("vm") / "data").start()
    end = int(time.time()) - 2 * MINUTE
    body = "\n".join(representative_lines(end)).encode() + b"\n"
    url = f"{server.url}/api/v1/import/prometheus"
    urllib.request.urlopen(urllib.request.Request(url, data=body, method="POST"), timeout=60).close()  # noqa: S310
    wait_until(lambda: query(server.url, "count(up)", instant=True), 60, "imported series")
    yield server.url
    server.stop()


def query(url: str, expr: str, *, instant: bool) -> list[dict]:
    now = int(time.time())
    if instant:
        params = {"query": expr, "time": now}
        path = "/api/v1/query"
    else:
        params = {"query": expr, "start": now - 86400, "end": now, "step": "10m"}
        path = "/api/v1/query_range"
    with urllib.request.urlopen(f"{url}{path}?{urllib.parse.urlencode(params)}", timeout=30) as reply:  # noqa: S310 - loopback
        body = json.load(reply)
    assert body["status"] == "success", body
    return body["data"]["result"]


def substitute(expr: str) -> str:
    for name, value in VARIABLES.items():
        expr = expr.replace(name, value)
    return expr


def panel_targets() -> list[tuple[str, str, bool]]:
    found = []
    for path in DASHBOARDS:
        for panel in json.loads(path.read_text())["panels"]:
            for target in panel["targets"]:
                found.append(
                    (f"{path.stem}: {panel['title']} [{target['refId']}]", target["expr"], target.get("instant", False))
                )
    return found


@pytest.fixture(scope="module")
def provisioning(tmp_path_factory) -> Path:
    dest = tmp_path_factory.mktemp("grafana")
    render(Path(__file__).with_name("render_grafana.yml"), dest)
    return dest


def test_dashboards_are_valid_for_provisioning(provisioning):
    datasource_uids = {d["uid"] for d in yaml.safe_load((provisioning / "datasources.yml").read_text())["datasources"]}
    uids = [json.loads(path.read_text())["uid"] for path in DASHBOARDS]
    assert len(uids) == len(set(uids)) == 3
    for path in DASHBOARDS:
        dashboard = json.loads(path.read_text())
        ids = [panel["id"] for panel in dashboard["panels"]]
        assert len(ids) == len(set(ids)), f"{path.name}: duplicate panel ids"
        defined = {f"${v['name']}" for v in dashboard["templating"]["list"]}
        for panel in dashboard["panels"]:
            assert panel["datasource"]["uid"] in datasource_uids, f"{path.name}: {panel['title']}"
            for target in panel["targets"]:
                assert target["datasource"]["uid"] in datasource_uids
                used = {word for word in target["expr"].split('"') if word.startswith("$")}
                assert used <= defined, f"{path.name}: {panel['title']} uses undefined {used - defined}"


@pytest.mark.parametrize(("where", "expr", "instant"), panel_targets(), ids=[t[0] for t in panel_targets()])
def test_panel_query_returns_series(vm, where, expr, instant):
    assert query(vm, substitute(expr), instant=instant), f"{where}: no series for {expr}"


def test_template_variables_return_values(vm):
    for path in DASHBOARDS:
        for variable in json.loads(path.read_text())["templating"]["list"]:
            # label_values(SELECTOR, LABEL)
            selector, label = substitute(variable["query"]["query"])[len("label_values(") : -1].rsplit(", ", 1)
            params = urllib.parse.urlencode({"match[]": selector})
            with urllib.request.urlopen(f"{vm}/api/v1/label/{label}/values?{params}", timeout=10) as reply:  # noqa: S310
                assert json.load(reply)["data"], f"{path.name}: ${variable['name']} has no values"


def test_alert_queries_return_series(vm, provisioning, figures):
    alerting = yaml.safe_load((provisioning / "alerting.yml").read_text())
    assert alerting["contactPoints"][0]["receivers"][0]["settings"]["url"] == "http://alertmanager:9093"
    rules = [rule for group in alerting["groups"] for rule in group["rules"]]
    assert len(rules) == 2
    for rule in rules:
        queries = [d for d in rule["data"] if d["datasourceUid"] == "victoriametrics"]
        assert queries
        for data in queries:
            assert query(vm, data["model"]["expr"], instant=True), f"{rule['title']}: no series"
        threshold = next(d for d in rule["data"] if d["refId"] == rule["condition"])
        assert threshold["model"]["conditions"][0]["evaluator"]["params"] == [3]
    figures["grafana_alert_rules"] = len(rules)
    figures["grafana_panel_queries"] = len(panel_targets())
