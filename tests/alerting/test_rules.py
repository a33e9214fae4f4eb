"""The alerting rules: valid for vmalert and promtool, documented, and each
proven by promtool unit tests to fire when it should and stay silent otherwise."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from harness.services import REPO

RULES = sorted((REPO / "roles/vmalert/files/rules").glob("*.yml"))
TESTS = sorted((Path(__file__).parent / "promtool").glob("*_test.yml"))
RUNBOOKS = REPO / "docs/runbooks.md"
SEVERITIES = {"critical", "warning", "info"}


def tool(name: str) -> str:
    path = shutil.which(name) or f"/usr/bin/{name}"
    assert Path(path).exists(), (
        f"{name} is missing: `make deps` installs it (Debian package prometheus / victoria-metrics)"
    )
    return path


def alerts() -> list[dict]:
    return [rule for path in RULES for group in yaml.safe_load(path.read_text())["groups"] for rule in group["rules"]]


def anchors() -> set[str]:
    """GitHub-style anchors of the runbook's headings."""
    headings = re.findall(r"^#+ (.+)$", RUNBOOKS.read_text(), flags=re.MULTILINE)
    return {re.sub(r"[^a-z0-9 -]", "", h.strip().lower()).replace(" ", "-") for h in headings}


def test_rules_exist():
    assert len(RULES) >= 2
    assert len(alerts()) >= 20


@pytest.mark.parametrize("path", RULES, ids=lambda p: p.name)
def test_promtool_accepts_the_rules(path):
    result = subprocess.run([tool("promtool"), "check", "rules", str(path)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_vmalert_accepts_the_rules():
    args = [tool("vmalert"), "-dryRun", *(f"-rule={path}" for path in RULES)]
    result = subprocess.run(args, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]


@pytest.mark.parametrize("path", TESTS, ids=lambda p: p.name)
def test_promtool_unit_tests(path):
    result = subprocess.run(
        [tool("promtool"), "test", "rules", path.name], cwd=path.parent, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("rule", alerts(), ids=lambda r: r["alert"])
def test_rule_is_labelled_and_documented(rule):
    assert rule["labels"]["severity"] in SEVERITIES
    for key in ("summary", "description", "runbook_url"):
        assert rule["annotations"].get(key), f"{rule['alert']} has no {key}"
    anchor = rule["alert"].lower()
    assert rule["annotations"]["runbook_url"].endswith(f"/runbooks.md#{anchor}")
    assert anchor in anchors(), f"docs/runbooks.md has no section '{rule['alert']}'"


def test_every_alert_is_tested_firing(figures):
    firing, silent, cases = set(), set(), 0
    for path in TESTS:
        for test in yaml.safe_load(path.read_text())["tests"]:
            for case in test.get("alert_rule_test", []):
                cases += 1
                (firing if case["exp_alerts"] else silent).add(case["alertname"])
    names = {rule["alert"] for rule in alerts()}
    assert names <= firing, f"no promtool case shows these firing: {sorted(names - firing)}"
    figures["alert_rules"] = len(names)
    figures["alert_rule_test_cases"] = cases
    figures["alert_rules_with_silent_case"] = len(silent & names)
