"""The deployment itself: a second converge changes nothing, and testinfra
(molecule/default/tests) checks what a user relies on."""

from __future__ import annotations

from harness.molecule import molecule, tail
from harness.settings import LOGS


def test_second_converge_changes_nothing(stack, figures):
    rc, seconds = molecule("idempotence", log=LOGS / "idempotence.log")
    assert rc == 0, f"the second converge changed something:\n{tail(LOGS / 'idempotence.log')}"
    figures["molecule_idempotence_s"] = round(seconds, 1)


def test_testinfra_verify(stack):
    rc, _ = molecule("verify", log=LOGS / "verify.log")
    assert rc == 0, f"testinfra failed:\n{tail(LOGS / 'verify.log', 120)}"
