"""Alertmanager's configuration as the role renders it: valid for amtool, each
severity routed to its receiver, and readable notification templates."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml

from harness.molecule import render
from harness.services import REPO

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
    for receiver in receivers.values():
        assert receiver["webhook_configs"][0]["url"] == "http://sink.example:8080/hook"
        assert all(c["send_resolved"] for c in receiver["webhook_configs"])


def test_data_alerts_inhibited_by_broken_components(config):
    rules = yaml.safe_load(config.read_text())["inhibit_rules"]
    data = next(r for r in rules if r["target_matchers"] == ['area="data"'])
    assert "TargetDown" in data["source_matchers"][0]
    assert "MySQLDown" in data["source_matchers"][0]


def test_templates_render():
    text = '{{ template "btc_usd.subject" . }}|{{ template "btc_usd.text" . }}|{{ template "btc_usd.html" . }}'
    result = amtool("template", "render", f"--template.glob={TEMPLATES}/*.tmpl", f"--template.text={text}")
    assert result.returncode == 0, result.stderr
    subject, body, html = result.stdout.split("|", 2)
    assert subject.startswith("[")
    assert "Runbook:" in body
    assert "Since:" in body
    assert html.strip().startswith("<html>")
