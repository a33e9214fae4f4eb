"""Alerts that actually arrive: in the deployed stack, vmalert evaluates the
rules, Alertmanager routes them, and a local webhook and SMTP server receive
them. The molecule scenario shortens `for:` and the grouping waits. Both faults
start together (fixture ``faults``), so their waits for `for:` overlap."""

from __future__ import annotations

import ssl
import time
import urllib.request
from collections.abc import Iterator

import pytest

from harness.docker import docker, wait_healthy
from harness.services import wait_until
from harness.settings import BASE_URL, CA_FILE
from harness.vm import vm_open

# A pair of its own, so the real one is untouched, and new in every run: the stale rule
# looks back 3 h, so a pair an earlier run made fresh would not go stale again.
PAIR = {"base": "BTC", "quote": f"E2E{int(time.time()) % 100000:05d}"}


def last_success(value: float) -> None:
    """Write the pipeline's last-success series for PAIR, stamped now."""
    labels = ",".join(f'{name}="{label}"' for name, label in PAIR.items())
    line = f"exchange_rate_last_success_timestamp_seconds{{{labels}}} {value} {int(time.time() * 1000)}\n"
    vm_open("/api/v1/import/prometheus", data=line.encode()).close()


@pytest.fixture(scope="module")
def faults(sinks) -> Iterator[float]:
    """The pipeline's last success for PAIR 27 minutes ago (the data stopped) and
    node-exporter stopped, from the same moment (returned, monotonic); node-exporter
    runs again when the module is done."""
    stopped = time.monotonic()
    last_success(time.time() - 1620)
    docker("stop", "node-exporter")
    try:
        yield stopped
    finally:
        docker("start", "node-exporter")
        wait_healthy(["node-exporter"], timeout=60)


def test_stale_data_alerts_by_webhook_and_email_then_resolves(sinks, faults, figures):
    webhook, smtp = sinks
    stopped = faults
    firing = wait_until(lambda: webhook.alerts("firing", alertname="ExchangeRateStale", **PAIR), 240, "firing webhook")
    figures["alert_stale_to_webhook_s"] = round(time.monotonic() - stopped, 1)
    alert = firing[0]
    assert alert["labels"]["severity"] == "critical"
    assert alert["annotations"]["summary"].startswith(f"No new BTC→{PAIR['quote']} rate for")
    assert alert["annotations"]["runbook_url"] == "https://127.0.0.1/runbooks.md#exchangeratestale"

    mails = wait_until(
        lambda: [
            m for m in smtp.messages if "ExchangeRateStale" in str(m["Subject"]) and "FIRING" in str(m["Subject"])
        ],
        120,
        "firing email",
    )
    figures["alert_stale_to_email_s"] = round(time.monotonic() - stopped, 1)
    body = smtp.text(mails[0])
    assert f"BTC→{PAIR['quote']}" in body
    assert "Runbook: https://127.0.0.1/runbooks.md#exchangeratestale" in body
    assert mails[0]["To"] == "oncall@example.test"

    # Data flows again: a fresh last success.
    restored = time.monotonic()
    last_success(time.time())
    wait_until(lambda: webhook.alerts("resolved", alertname="ExchangeRateStale", **PAIR), 240, "resolved webhook")
    figures["alert_restore_to_resolved_s"] = round(time.monotonic() - restored, 1)
    wait_until(
        lambda: [
            m for m in smtp.messages if "RESOLVED" in str(m["Subject"]) and "ExchangeRateStale" in str(m["Subject"])
        ],
        120,
        "resolved email",
    )


def test_stopped_target_alerts(sinks, faults, figures):
    webhook, _ = sinks
    alerts = wait_until(lambda: webhook.alerts("firing", alertname="TargetDown", job="node"), 240, "TargetDown")
    figures["alert_target_down_s"] = round(webhook.first_arrival("firing", alertname="TargetDown") - faults, 1)
    assert alerts[0]["labels"]["instance"] == "node-exporter:9100"


def test_runbooks_served_by_the_proxy(stack):
    context = ssl.create_default_context(cafile=str(CA_FILE))
    with urllib.request.urlopen(f"{BASE_URL}/runbooks.md", context=context, timeout=10) as page:  # noqa: S310 - the proxy
        assert "### ExchangeRateStale" in page.read().decode()
