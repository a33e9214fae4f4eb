"""site.yml refuses missing, short and placeholder secrets before it changes anything."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
import yaml

from harness.settings import INFRA_BIN, REPO

# A host no test can reach (TEST-NET-1): if the check let a run through, the next
# play would fail on the connection, not on the secret, and the tests would see it.
INVENTORY = {"btc_usd_stack": {"hosts": {"target": {"ansible_host": "192.0.2.1", "ansible_ssh_timeout": 2}}}}
GOOD = {
    "mysql_root_password": "Wq3vJ8pLr2Xz6TbN9mKc",
    "airflow_db_password": "Hs5gT1yUe8Rw4QaZ2xVb",
    "airflow_admin_password": "Lp7Dk2Mn9Bv4Cx",
    "airflow_jwt_secret": "a" * 8 + "Zq4Rt7Yu1Io3Pa6Sd9Fg2Hj5Kl8",
    "airflow_api_secret_key": "Nb3Vc6Xz9Lk2Jh5Gf8Ds1Ap4Oi7Uy0Tr",
    "airflow_fernet_key": "xk3HnbE4m6Cw2tG7s1QAVu0pJZ9yR5dLfT8oWqKcM-I=",
    "grafana_admin_password": "Qe4Rt6Yu8Io2Pa",
    "mysql_exporter_password": "Zx1Cv3Bn5Mm7Lk9Jh2Gf",
    "victoriametrics_admin_key": "Pq9Wo8Ei7Ru6Ty5Yu4Ui3Oi2Pa1Sd0Fg",
    "alertmanager_web_password": "Mn8Bv7Cx6Zl5Kj4Hg3Fd2Sa1Qw0Er9Ty",
    "victoriametrics_http_password": "Tg5Yh6Uj7Ik8Ol9Pm0Nb1Vc2Xz3As4Df",
    "victoriametrics_flush_key": "Rf4Tg5Yh6Uj7Ik8Ol9Pm0Nb1Vc2Xz3As",
}


def run(tmp_path: Path, vault: dict, playbook: Path = REPO / "ansible" / "site.yml") -> subprocess.CompletedProcess:
    group_vars = tmp_path / "inventory" / "group_vars" / "btc_usd_stack"
    group_vars.mkdir(parents=True)
    (tmp_path / "inventory" / "hosts.yml").write_text(yaml.safe_dump(INVENTORY))
    (group_vars / "vault.yml").write_text(yaml.safe_dump(vault))
    env = {**os.environ, "HOME": str(tmp_path), "ANSIBLE_FORCE_COLOR": "0", "NO_COLOR": "1"}
    env.pop("VIRTUAL_ENV", None)
    return subprocess.run(
        [str(INFRA_BIN / "ansible-playbook"), "-i", str(tmp_path / "inventory"), str(playbook)],
        cwd=REPO / "ansible",
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_the_example_vault_file_fails_before_any_change(tmp_path: Path) -> None:
    example = yaml.safe_load((REPO / "ansible" / "vault.yml.example").read_text())
    result = run(tmp_path, example)
    assert result.returncode != 0
    assert "mysql_root_password is a placeholder" in result.stdout
    assert "PLAY [Prepare the host]" not in result.stdout  # nothing ran on the host
    assert "CHANGE-ME" not in result.stdout  # names the variable, never echoes the value


@pytest.mark.parametrize(
    ("name", "value", "reason"),
    [
        ("airflow_jwt_secret", "Short-but-random-9f2K", "airflow_jwt_secret is shorter than 32 characters"),
        ("grafana_admin_password", "", "grafana_admin_password is not set"),
        ("airflow_admin_password", "your-password-here", "airflow_admin_password is a placeholder"),
        ("airflow_fernet_key", "N" * 44, "airflow_fernet_key is not a Fernet key"),
        ("airflow_alphavantage_api_key", "CHANGE-ME", "airflow_alphavantage_api_key is a placeholder"),
    ],
)
def test_a_bad_secret_is_named(tmp_path: Path, name: str, value: str, reason: str) -> None:
    result = run(tmp_path, {**GOOD, name: value})
    assert result.returncode != 0
    assert reason in result.stdout
    assert "PLAY [Prepare the host]" not in result.stdout
    if value:
        assert value not in result.stdout


def test_good_secrets_pass_the_check(tmp_path: Path) -> None:
    """The same check with good values lets the run go on, to the host it cannot reach."""
    result = run(tmp_path, GOOD)
    assert "Refuse missing, short and placeholder secrets" in result.stdout
    assert "PLAY [Prepare the host]" in result.stdout, result.stdout[-2000:]
    assert "UNREACHABLE" in result.stdout


def test_generated_secrets_pass_the_check(tmp_path: Path) -> None:
    """What group_vars generates when the vault is empty meets its own rules."""
    result = run(tmp_path, {})
    assert "PLAY [Prepare the host]" in result.stdout, result.stdout[-2000:]
    generated = tmp_path / ".config" / "btc-usd-stack" / "target"
    assert sorted(p.name for p in generated.iterdir()) == sorted(GOOD)
