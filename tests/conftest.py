"""Shared fixtures: measured figures are printed at the end of the run (never asserted)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

FIGURES: dict[str, object] = {}
# One file per suite when suites run side by side (make test sets FIGURES_NAME).
FIGURES_FILE = (
    Path(__file__).resolve().parents[1] / ".build" / "figures" / f"{os.environ.get('FIGURES_NAME', 'all')}.json"
)


@pytest.fixture(scope="session")
def figures() -> dict[str, object]:
    """Record a measurement: ``figures["name"] = value``."""
    return FIGURES


def pytest_sessionfinish(session: pytest.Session) -> None:
    """``make test`` leaves no process running: stop and report any server a test left behind."""
    from harness.services import STARTED

    left = [proc for proc in STARTED if proc.poll() is None]
    for proc in left:
        proc.kill()
        proc.wait()
    if left:
        print(f"\nFAILED: {len(left)} test server(s) were still running: {[p.args[0] for p in left]}")
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not FIGURES:
        return
    terminalreporter.section("measured figures")
    for name, value in sorted(FIGURES.items()):
        terminalreporter.write_line(f"{name}: {value}")
    FIGURES_FILE.parent.mkdir(parents=True, exist_ok=True)
    FIGURES_FILE.write_text(json.dumps(FIGURES, indent=2, sort_keys=True) + "\n")
