"""Topology "ha" on seven host containers (harness/ha.py), deployed by ansible/ha.yml."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from harness.ha import HA, topology


# Module scope: the hosts (and their Docker daemons) are gone as soon as the drills end.
@pytest.fixture(scope="module")
def ha(tmp_path_factory, figures) -> Iterator[HA]:
    with topology(tmp_path_factory.mktemp("ha")) as deployed:
        figures["ha_hosts_ready_s"] = deployed.ready_s
        figures["ha_converge_s"] = deployed.converge_s
        yield deployed
