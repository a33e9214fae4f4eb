"""The Molecule scenario and the test harness agree on every port and name
the deployed stack and the fakes on the host share."""

from __future__ import annotations

from urllib.parse import urlsplit

import yaml

from harness.settings import BASE_URL, FAKE_PORTS, REPO, S3_BUCKET, S3_PORT, SMTP_PORT, WEBHOOK_PORT

SCENARIO = yaml.safe_load((REPO / "molecule/default/molecule.yml").read_text())
GROUP_VARS = SCENARIO["provisioner"]["inventory"]["group_vars"]["btc_usd_stack"]


def test_sources_point_at_the_fake_ports():
    ports = {name: urlsplit(url).port for name, url in GROUP_VARS["airflow_source_urls"].items()}
    assert ports == FAKE_PORTS


def test_alerts_go_to_the_sinks():
    assert [urlsplit(url).port for url in GROUP_VARS["alertmanager_webhook_urls"]] == [WEBHOOK_PORT]
    assert GROUP_VARS["alertmanager_smtp_smarthost"].endswith(f":{SMTP_PORT}")


def test_backups_go_to_the_bucket():
    assert urlsplit(GROUP_VARS["backup_s3_endpoint"]).port == S3_PORT
    assert GROUP_VARS["backup_s3_bucket"] == S3_BUCKET


def test_the_public_address_is_the_base_url():
    assert f"https://{GROUP_VARS['stack_public_address']}" == BASE_URL
