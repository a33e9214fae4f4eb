"""Every role's interface: argument specs that ansible-lint's own schema accepts,
defaults that are all documented, and no variable of another role read."""

from __future__ import annotations

import json
import re
from pathlib import Path

import jsonschema
import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
ROLES = sorted(path.parent.parent for path in (REPO / "roles").glob("*/meta/main.yml"))
PREFIXES = {role.name: role.name + "_" for role in ROLES}
# The shared mechanisms: roles pass them container_* and packages_* variables.
SHARED = {"container", "packages"}


def role_arg_spec_schema() -> dict:
    found = sorted(REPO.glob(".venv-infra/lib/python3*/site-packages/ansiblelint/schemas/role-arg-spec.json"))
    if not found:
        pytest.fail("ansible-lint's role-arg-spec.json is not installed in .venv-infra: run `make deps`")
    return json.loads(found[0].read_text())


def load(path: Path) -> dict:
    return yaml.safe_load(path.read_text()) or {}


@pytest.mark.parametrize("role", ROLES, ids=[role.name for role in ROLES])
def test_argument_specs_follow_ansible_lint_schema(role: Path) -> None:
    spec_file = role / "meta/argument_specs.yml"
    assert spec_file.exists(), f"{role.name} has no meta/argument_specs.yml"
    spec = load(spec_file)
    jsonschema.validate(spec, role_arg_spec_schema())
    for entry, body in spec["argument_specs"].items():
        for name, option in body.get("options", {}).items():
            assert option.get("description"), f"{role.name}:{entry} {name} has no description"
            assert re.fullmatch(r"_{0,2}[a-z][a-z0-9_]*", name), f"{role.name}:{entry} has a malformed option {name!r}"


@pytest.mark.parametrize("role", ROLES, ids=[role.name for role in ROLES])
def test_every_default_is_documented(role: Path) -> None:
    defaults = role / "defaults/main.yml"
    names = set(load(defaults)) if defaults.exists() else set()
    specs = load(role / "meta/argument_specs.yml")["argument_specs"].values()
    options = {name for spec in specs for name in spec.get("options", {})}
    assert names - options == set(), f"{role.name}: defaults missing from meta/argument_specs.yml"
    for name in names:
        assert name.startswith(PREFIXES[role.name]), f"{role.name}: default {name} lacks the role's prefix"


def role_text(role: Path) -> str:
    parts = []
    for path in sorted(role.rglob("*")):
        if path.is_file() and path.suffix in {".yml", ".j2"} and "meta" not in path.parts and "files" not in path.parts:
            parts.extend(line for line in path.read_text().splitlines() if not line.lstrip().startswith("#"))
    return "\n".join(parts)


def foreign_variables(role: Path) -> list[str]:
    """Variables of other roles (by prefix) that ``role`` mentions, the shared mechanisms aside."""
    others = [prefix for name, prefix in PREFIXES.items() if name not in {role.name, *SHARED}]
    pattern = re.compile(r"(?<![\w./'-])(?:" + "|".join(map(re.escape, others)) + r")\w+")
    return sorted(set(pattern.findall(role_text(role))))


@pytest.mark.parametrize("role", ROLES, ids=[role.name for role in ROLES])
def test_role_reads_only_its_own_variables(role: Path) -> None:
    found = foreign_variables(role)
    assert found == [], f"{role.name} reads variables of other roles: {found}"


def test_the_check_catches_a_foreign_variable(tmp_path: Path) -> None:
    """The scan above can fail: a role reading stack_data_dir is reported."""
    role = tmp_path / "victoriametrics"
    (role / "defaults").mkdir(parents=True)
    (role / "defaults/main.yml").write_text('victoriametrics_data_dir: "{{ stack_data_dir }}/vm"\n')
    assert foreign_variables(role) == ["stack_data_dir"]
