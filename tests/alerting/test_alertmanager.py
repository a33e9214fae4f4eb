"""Alertmanager's configuration as the role renders it: valid for amtool, each
severity routed to its receiver, and readable notification templates."""

from __future__ import annotations

import json
import subprocess
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
import yaml

from fakes.sinks import WebhookSink
from harness.molecule import render
from harness.services import REPO, STARTED, VictoriaMetricsServer, free_port, wait_until

TEMPLATES = REPO / "roles/alertmanager/files/templates"


@pytest.fixture(scope="module")
def config(tmp_path_factory) -> Path:
    dest = tmp_path_factory.mktemp("alertmanager") / "alertmanager.yml"
    render(Path(__file__).with_name("render_alertmanager.yml"), dest)
    # The container mounts the templates at /etc/alertmanager/templates.
    text = dest.read_text().replace("/etc/alertmanager/templates/", f"{TEMPLATES}/")
    dest.write_text(text)
    return dest


def amtool(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["amtool", *args], capture_output=True, text=True)


def test_amtool_accepts_the_configuration(config):
    result = amtool("check-config", str(config))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


@pytest.mark.parametrize(
    ("labels", "receiver"),
    [
        (["severity=critical", "alertname=ExchangeRateStale"], "critical"),
        (["severity=warning", "alertname=ExchangeRateJump"], "warning"),
        (["severity=info", "alertname=Something"], "info"),
        (["alertname=NoSeverity"], "warning"),
        (["alertname=Watchdog", "severity=info", "area=meta"], "heartbeat"),
    ],
)
def test_each_severity_goes_to_its_receiver(config, labels, receiver):
    result = amtool("config", "routes", "test", f"--config.file={config}", *labels)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == receiver


def test_receivers_deliver_by_email_webhook_and_slack(config):
    receivers = {r["name"]: r for r in yaml.safe_load(config.read_text())["receivers"]}
    assert [c["to"] for c in receivers["critical"]["email_configs"]] == ["ops@example.org", "oncall@example.org"]
    assert receivers["critical"]["slack_configs"]
    assert "email_configs" not in receivers["info"]
    for name in ("critical", "warning", "info"):
        assert receivers[name]["webhook_configs"][0]["url"] == "http://sink.example:8080/hook"
        assert all(c["send_resolved"] for c in receivers[name]["webhook_configs"])
    # The dead-man's switch gets the Watchdog only, and never a "resolved".
    (heartbeat,) = receivers["heartbeat"]["webhook_configs"]
    assert heartbeat == {"url": "https://hc-ping.example/0b0c9c5e-0000-4000-8000-000000000000", "send_resolved": False}
    assert set(receivers["heartbeat"]) == {"name", "webhook_configs"}


@pytest.fixture(scope="module")
def alertmanager(config, tmp_path_factory):
    """Debian's Alertmanager on loopback with the rendered routes and inhibit rules;
    every receiver posts to a local webhook, and groups are sent and updated after 1 s."""
    work = tmp_path_factory.mktemp("alertmanager-run")
    settings = yaml.safe_load(config.read_text())
    sink = WebhookSink().start()
    for receiver in settings["receivers"]:
        receiver.pop("email_configs", None)
        receiver.pop("slack_configs", None)
        receiver["webhook_configs"] = [
            {"url": f"http://127.0.0.1:{sink.server.server_address[1]}/", "send_resolved": True}
        ]
    for route in [settings["route"], *settings["route"]["routes"]]:
        route["group_wait"] = route["group_interval"] = "1s"
    (work / "alertmanager.yml").write_text(yaml.safe_dump(settings))
    port = free_port()
    with (work / "alertmanager.log").open("wb") as log:
        proc = subprocess.Popen(
            [
                "prometheus-alertmanager",
                f"--config.file={work / 'alertmanager.yml'}",
                f"--storage.path={work / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}",
                "--cluster.listen-address=",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    STARTED.append(proc)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: urllib.request.urlopen(f"{url}/-/ready", timeout=2).status == 200, 30, "alertmanager")  # noqa: S310 - loopback
        yield url, sink
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        sink.stop()


def post_alerts(url: str, *alerts: dict[str, str]) -> None:
    body = json.dumps([{"labels": labels, "annotations": {"summary": "test"}} for labels in alerts]).encode()
    request = urllib.request.Request(f"{url}/api/v2/alerts", data=body, method="POST")  # noqa: S310 - loopback
    request.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(request, timeout=10) as reply:  # noqa: S310 - loopback
        assert reply.status == 200


def inhibited_by(url: str, alertname: str, pair: str) -> list[str]:
    query = urllib.parse.urlencode({"filter": [f'alertname="{alertname}"', f'pair="{pair}"']}, doseq=True)
    with urllib.request.urlopen(f"{url}/api/v2/alerts?{query}", timeout=10) as reply:  # noqa: S310 - loopback
        (alert,) = json.load(reply)
    return alert["status"]["inhibitedBy"]


# Each test uses stacks of its own: alerts stay active in the shared Alertmanager.
def data_alert(alertname: str, pair: str, stack: str) -> dict[str, str]:
    return {"alertname": alertname, "area": "data", "pair": pair, "stack": stack, "severity": "critical"}


def target_down(job: str, stack: str) -> dict[str, str]:
    labels = {"alertname": "TargetDown", "area": "stack", "job": job, "instance": f"{job}:1"}
    return labels | {"stack": stack, "severity": "critical"}


def test_a_target_off_the_data_path_mutes_no_data_alert(alertmanager) -> None:
    """Grafana's scrape failing explains no missing rate: ExchangeRateStale is still delivered."""
    url, sink = alertmanager
    post_alerts(url, target_down("grafana", "stack-a"), target_down("node", "stack-a"))
    time.sleep(1)  # the inhibitor sees the source alerts first, as with vmalert's steady resends
    post_alerts(url, data_alert("ExchangeRateStale", "BTC/USD", "stack-a"))
    delivered = wait_until(lambda: sink.alerts("firing", alertname="ExchangeRateStale", pair="BTC/USD"), 30, "delivery")
    assert delivered[0]["labels"]["stack"] == "stack-a"
    assert inhibited_by(url, "ExchangeRateStale", "BTC/USD") == []


def test_victoriametrics_down_holds_back_the_data_alerts_it_causes(alertmanager) -> None:
    url, sink = alertmanager
    post_alerts(url, target_down("victoriametrics", "stack-b"))
    time.sleep(1)
    post_alerts(url, data_alert("ExchangeRateMissing", "ETH/USD", "stack-b"))
    assert wait_until(lambda: inhibited_by(url, "ExchangeRateMissing", "ETH/USD"), 30, "inhibition")
    time.sleep(3)  # longer than group_wait: nothing may have been sent for it
    assert sink.alerts("firing", alertname="ExchangeRateMissing") == []


def test_another_stacks_outage_mutes_nothing_here(alertmanager) -> None:
    url, sink = alertmanager
    post_alerts(url, target_down("victoriametrics", "stack-c-elsewhere"))
    time.sleep(1)
    post_alerts(url, data_alert("ExchangeRateStale", "BTC/EUR", "stack-c"))
    wait_until(lambda: sink.alerts("firing", alertname="ExchangeRateStale", pair="BTC/EUR"), 30, "delivery")


def test_the_watchdog_reaches_the_heartbeat_receiver(alertmanager) -> None:
    url, sink = alertmanager
    post_alerts(url, {"alertname": "Watchdog", "severity": "info", "area": "meta", "stack": "stack-d"})
    wait_until(lambda: sink.alerts("firing", alertname="Watchdog"), 30, "the heartbeat")
    receivers = {p["receiver"] for p in sink.payloads for a in p["alerts"] if a["labels"]["alertname"] == "Watchdog"}
    assert receivers == {"heartbeat"}


def test_templates_render():
    text = '{{ template "btc_usd.subject" . }}|{{ template "btc_usd.text" . }}|{{ template "btc_usd.html" . }}'
    result = amtool("template", "render", f"--template.glob={TEMPLATES}/*.tmpl", f"--template.text={text}")
    assert result.returncode == 0, result.stderr
    subject, body, html = result.stdout.split("|", 2)
    assert subject.startswith("[")
    assert "Runbook:" in body
    assert "Since:" in body
    assert html.strip().startswith("<html>")


# -- two peers -------------------------------------------------------------------


def cluster_flags(tmp: Path, port: int, peer_port: int) -> dict:
    """The gossip flags and published ports the role gives a peer on 127.0.0.1:``port``."""
    dest = tmp / f"peer-{port}.yml"
    render(
        Path(__file__).with_name("render_alertmanager.yml"),
        dest,
        {
            "alertmanager_cluster_port": port,
            "alertmanager_cluster_advertise_address": f"127.0.0.1:{port}",
            "alertmanager_cluster_peers": [f"127.0.0.1:{peer_port}"],
        },
    )
    return json.loads(Path(f"{dest}.cluster.json").read_text())


def test_without_peers_there_is_no_gossip_port(config) -> None:
    flags = json.loads(Path(f"{config}.cluster.json").read_text())
    assert flags == {"args": ["--cluster.listen-address="], "ports": []}


def status(url: str) -> dict:
    with urllib.request.urlopen(f"{url}/api/v2/status", timeout=5) as reply:  # noqa: S310 - loopback
        return json.load(reply)["cluster"]


def vmalert_command(tmp: Path, alertmanagers: list[str], vm_url: str, rules: Path) -> list[str]:
    """vmalert's flags as the role renders them for ``alertmanagers`` (with basic auth),
    its container paths and listen address swapped for local ones."""
    dest = tmp / "vmalert.json"
    render(
        Path(__file__).with_name("render_vmalert.yml"),
        dest,
        {
            "vmalert_alertmanager_urls": alertmanagers,
            "vmalert_alertmanager_username": "stack",
            "vmalert_alertmanager_password": "not-checked-here",
            "vmalert_victoriametrics_url": vm_url,
        },
    )
    flags = json.loads(dest.read_text())
    password = tmp / "alertmanager_password"
    password.write_text("not-checked-here")
    flags |= {"rule": str(rules), "httpListenAddr": f"127.0.0.1:{free_port()}"}
    del flags["rule.evalDelay"]  # the image's vmalert (1.112) has it; this host's (bookworm, 1.79) does not
    flags["notifier.basicAuth.passwordFile"] = flags["notifier.basicAuth.passwordFile"].replace(
        "/run/secrets/alertmanager_password", str(password)
    )
    return ["vmalert", *(f"-{key}={value}" for key, value in sorted(flags.items()))]


def test_two_peers_deliver_once_what_vmalert_sends_to_both(config, tmp_path) -> None:
    """vmalert notifies every peer; the peers' shared notification log sends the alert once."""
    settings = yaml.safe_load(config.read_text())
    sink = WebhookSink().start()
    for receiver in settings["receivers"]:
        receiver.pop("email_configs", None)
        receiver.pop("slack_configs", None)
        receiver["webhook_configs"] = [{"url": f"http://127.0.0.1:{sink.server.server_address[1]}/"}]
    for route in [settings["route"], *settings["route"]["routes"]]:
        route["group_wait"] = "1s"
    (tmp_path / "alertmanager.yml").write_text(yaml.safe_dump(settings))
    rule = {"alert": "ExchangeRateStale", "expr": "vector(1)", "labels": {"severity": "critical", "pair": "BTC/USD"}}
    rules = tmp_path / "rules.yml"
    rules.write_text(yaml.safe_dump({"groups": [{"name": "probe", "interval": "2s", "rules": [rule]}]}))
    gossip = [free_port(), free_port()]
    urls, procs = [], []
    vm = VictoriaMetricsServer(tmp_path / "vm").start()
    try:
        for me, other in ((0, 1), (1, 0)):
            flags = cluster_flags(tmp_path, gossip[me], gossip[other])
            assert flags["ports"] == [f"{gossip[me]}:{gossip[me]}/tcp", f"{gossip[me]}:{gossip[me]}/udp"]
            # In its container a peer listens on every address; here only on loopback.
            args = [a.replace("=0.0.0.0:", "=127.0.0.1:") for a in flags["args"]]
            web = free_port()
            command = [
                "prometheus-alertmanager",
                f"--config.file={tmp_path / 'alertmanager.yml'}",
                f"--storage.path={tmp_path / f'data-{me}'}",
                f"--web.listen-address=127.0.0.1:{web}",
                *args,
            ]
            procs.append(start(command, tmp_path / f"peer-{me}.log"))
            urls.append(f"http://127.0.0.1:{web}")
        for url in urls:
            wait_until(lambda url=url: len(status(url)["peers"]) == 2 and status(url)["status"] == "ready", 60, "peers")
        procs.append(start(vmalert_command(tmp_path, urls, vm.url, rules), tmp_path / "vmalert.log"))
        wait_until(lambda: sink.alerts("firing", alertname="ExchangeRateStale"), 60, "delivery")
        time.sleep(20)  # past the second peer's turn (--cluster.peer-timeout, 15 s)
        deliveries = [a for p in sink.payloads for a in p["alerts"] if a["labels"]["alertname"] == "ExchangeRateStale"]
        assert len(deliveries) == 1, deliveries
        for url in urls:  # both peers got it from vmalert
            with urllib.request.urlopen(f"{url}/api/v2/alerts?filter=alertname%3D%22ExchangeRateStale%22") as reply:  # noqa: S310 - loopback
                assert len(json.load(reply)) == 1
    finally:
        for proc in procs:
            proc.terminate()
            proc.wait(timeout=30)
        vm.stop()
        sink.stop()


def start(command: list[str], log: Path) -> subprocess.Popen:
    with log.open("wb") as out:
        proc = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
    STARTED.append(proc)
    return proc
