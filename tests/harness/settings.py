"""Every port, path and name the tests share with molecule/default/molecule.yml
(tests/roles/test_scenario.py checks that the two agree)."""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
INFRA_BIN = REPO / ".venv-infra" / "bin"

# The deployment of molecule/default on this machine.
DATA = Path("/srv/btc-usd-stack")
LOGS = REPO / ".build" / "molecule"
SECRETS = LOGS / "secrets"
CA_FILE = DATA / "proxy/data/caddy/pki/authorities/local/root.crt"
BASE_URL = "https://127.0.0.1"
LABEL = "org.btc-usd-stack.component"
VM_USER = "stack"  # stack_victoriametrics_username

# Fakes on the host the deployed containers reach through host.docker.internal.
FAKE_PORTS = {"alphavantage": 18081, "coinbase": 18082, "kraken": 18083, "bitstamp": 18084}
WEBHOOK_PORT = 18090
SMTP_PORT = 18025
S3_PORT = 18095
S3_BUCKET = "btc-usd-stack-e2e"
S3_PREFIX = "stack-host"

# The rate DAG and its 10-minute slots.
RATE_DAG = "btc_usd_exchange_rate"
BACKFILL_DAG = "btc_usd_backfill"
SLOT = 600
RATE_SERIES = 'exchange_rate{base="BTC",quote="USD"}'


def secret(name: str, directory: Path = SECRETS) -> str:
    """A secret the deployment generated on the control machine."""
    return (directory / name).read_text().strip()
