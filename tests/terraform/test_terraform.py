"""terraform fmt/validate/test, a real apply → Ansible inventory → destroy cycle, and checkov."""

from __future__ import annotations

import json
import re
import subprocess
import time
from pathlib import Path

from terraform.conftest import INFRA_BIN, REPO, TERRAFORM_DIR, terraform

SSH_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFU6OYgQo2vENSCqxSLBaXk8rx0b1LjC/KBS6CPli5SN ci@example"
MOTO_AMI = "ami-03cf127a"  # from moto's built-in catalogue, which has no Debian images


def test_formatted(aws_env) -> None:
    done = terraform(aws_env, "fmt", "-check", "-recursive", "-diff")
    assert done.returncode == 0, f"run `terraform fmt -recursive terraform/`:\n{done.stdout}"


def test_valid(aws_env) -> None:
    done = terraform(aws_env, "validate", "-no-color")
    assert done.returncode == 0, done.stdout + done.stderr


def test_terraform_test_files_pass(aws_env) -> None:
    done = terraform(aws_env, "test", "-no-color")
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-3000:]
    assert re.search(r"Success! (\d+) passed, 0 failed", done.stdout), done.stdout[-2000:]


def inventory(aws_env) -> dict:
    done = subprocess.run(
        [str(INFRA_BIN / "ansible-inventory"), "-i", str(REPO / "ansible/inventories/aws"), "--list"],
        env=aws_env | {"ANSIBLE_DEPRECATION_WARNINGS": "False"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def plain(value):
    """ansible-inventory marks template-unsafe strings as {"__ansible_unsafe": value}."""
    return value.get("__ansible_unsafe", value) if isinstance(value, dict) else value


def as_list(value) -> list:
    return [value] if isinstance(value, str) else value


def assert_backup_bucket_is_private_and_the_only_one_the_vm_can_use(aws_env: dict, bucket: str, role: str) -> None:
    """Read the bucket and the role back from the (emulated) API: the role may use
    this bucket and Session Manager, nothing else."""
    session = f"{role.removesuffix('-instance')}-session-manager"
    done = subprocess.run(
        [str(INFRA_BIN / "python"), str(Path(__file__).with_name("read_backup_bucket.py")), bucket, role],
        env=aws_env | {"AWS_DEFAULT_REGION": aws_env["AWS_REGION"]},  # boto3 reads this one
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    facts = json.loads(done.stdout)
    assert facts["versioning"] == "Enabled"
    (encryption,) = facts["encryption"]
    assert encryption["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"] == "aws:kms"
    assert all(facts["public_access_block"].values()), facts["public_access_block"]
    (rule,) = facts["lifecycle"]
    assert rule["Status"] == "Enabled"
    assert rule["NoncurrentVersionExpiration"]["NoncurrentDays"] == 90
    assert "Days" not in rule.get("Expiration", {}), "current backups must not expire: vmbackup reuses old parts"
    (deny,) = facts["policy"]["Statement"]
    assert deny["Effect"] == "Deny"
    assert deny["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}

    assert facts["attached_policies"] == []  # no managed policy, AmazonSSMManagedInstanceCore included
    assert sorted(facts["role_policies"]) == sorted([f"{role.removesuffix('-instance')}-backup-bucket", session])
    session_actions = {a for s in facts["role_policies"][session]["Statement"] for a in as_list(s["Action"])}
    assert session_actions == {
        "ssm:UpdateInstanceInformation",
        "ssmmessages:CreateControlChannel",
        "ssmmessages:CreateDataChannel",
        "ssmmessages:OpenControlChannel",
        "ssmmessages:OpenDataChannel",
    }
    statements = facts["role_policies"][f"{role.removesuffix('-instance')}-backup-bucket"]["Statement"]
    assert {r for s in statements for r in as_list(s["Resource"])} == {
        f"arn:aws:s3:::{bucket}",
        f"arn:aws:s3:::{bucket}/*",
    }
    actions = {a for s in statements for a in as_list(s["Action"])}
    assert all(s["Effect"] == "Allow" for s in statements)
    assert all(a.startswith("s3:") and "*" not in a for a in actions), actions


def apply_args(state: Path, name: str, *extra: str) -> list[str]:
    """The arguments of an unattended apply or destroy of stack ``name`` kept in ``state``."""
    return [
        f"-state={state}",
        "-no-color",
        "-auto-approve",
        f"-var=name={name}",
        f"-var=ami_id={MOTO_AMI}",
        '-var=admin_cidrs=["203.0.113.7/32"]',
        '-var=allowed_cidrs=["0.0.0.0/0"]',
        f"-var=ssh_public_key={SSH_KEY}",
        *extra,
    ]


def test_apply_then_inventory_resolves_the_vm_then_destroy(aws_env, tmp_path: Path, figures) -> None:
    state = tmp_path / "terraform.tfstate"
    args = apply_args(state, "inventory-check")
    began = time.monotonic()
    applied = terraform(aws_env, "apply", *args)
    figures["terraform_apply_moto_s"] = round(time.monotonic() - began, 1)
    assert applied.returncode == 0, applied.stdout[-4000:] + applied.stderr
    created = re.search(r"Apply complete! Resources: (\d+) added", applied.stdout)
    figures["terraform_resources_created"] = int(created.group(1))
    outputs = json.loads(terraform(aws_env, "output", f"-state={state}", "-json").stdout)

    listed = inventory(aws_env)
    assert listed["btc_usd_stack"]["hosts"] == ["inventory-check"]
    host = listed["_meta"]["hostvars"]["inventory-check"]
    assert plain(host["ansible_host"]) == outputs["public_ip"]["value"]
    assert plain(host["ansible_user"]) == outputs["ssh_user"]["value"] == "admin"
    assert "inventory-check" in listed["stack_inventory_check"]["hosts"]
    bucket = outputs["backup_bucket"]["value"]
    assert plain(host["backup_s3_bucket"]) == bucket
    assert_backup_bucket_is_private_and_the_only_one_the_vm_can_use(aws_env, bucket, "inventory-check-instance")

    began = time.monotonic()
    destroyed = terraform(aws_env, "destroy", *args)
    figures["terraform_destroy_moto_s"] = round(time.monotonic() - began, 1)
    assert destroyed.returncode == 0, destroyed.stdout[-4000:] + destroyed.stderr
    assert "btc_usd_stack" not in inventory(aws_env)


def test_checkov_finds_nothing_and_every_skip_has_a_reason(figures) -> None:
    done = subprocess.run(
        [
            str(INFRA_BIN / "checkov"),
            "-d",
            str(TERRAFORM_DIR),
            "--framework",
            "terraform",
            "--skip-download",
            "-o",
            "json",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    report = json.loads(done.stdout)
    results = report["results"]
    summary = report["summary"]
    figures["checkov"] = f"{summary['passed']} passed, {summary['failed']} failed, {summary['skipped']} skipped"
    failed = [f"{c['check_id']} {c['resource']}" for c in results["failed_checks"]]
    assert failed == []
    assert summary["passed"] > 40
    for skipped in results["skipped_checks"]:
        reason = skipped["check_result"].get("suppress_comment", "").strip()
        assert reason not in ("", "No comment provided"), f"{skipped['check_id']} is skipped without a reason"
        assert len(reason) > 20, f"{skipped['check_id']}: say why in the skip comment"


def test_ha_apply_then_inventory_groups_the_tiers_then_destroy(aws_env, tmp_path: Path, figures) -> None:
    """Topology "ha": the inventory finds every host in its tier's group, the single
    VM's group stays empty, and the private hosts are reached through a control host."""
    state = tmp_path / "terraform.tfstate"
    args = apply_args(
        state,
        "inventory-ha",
        "-var=topology=ha",
        "-var=ha_worker_count=3",
        "-var=ha_deletion_protection=false",
        "-var=backup_bucket_force_destroy=true",
    )
    began = time.monotonic()
    applied = terraform(aws_env, "apply", *args)
    figures["terraform_ha_apply_moto_s"] = round(time.monotonic() - began, 1)
    assert applied.returncode == 0, applied.stdout[-4000:] + applied.stderr
    figures["terraform_ha_resources_created"] = int(
        re.search(r"Apply complete! Resources: (\d+) added", applied.stdout).group(1)
    )
    hosts = json.loads(terraform(aws_env, "output", f"-state={state}", "-json").stdout)["hosts"]["value"]
    jump = f"admin@{hosts['control-1']['public_ip']}"

    listed = inventory(aws_env)
    assert "btc_usd_stack" not in listed or not listed["btc_usd_stack"].get("hosts")
    for group, tier, count in (
        ("btc_usd_control", "control", 2),
        ("btc_usd_workers", "worker", 3),
        ("btc_usd_tsdb", "tsdb", 2),
    ):
        members = listed[group]["hosts"]
        assert sorted(members) == sorted(f"inventory-ha-{name}" for name, h in hosts.items() if h["tier"] == tier)
        assert len(members) == count
        for name in members:
            host = listed["_meta"]["hostvars"][name]
            expected = hosts[name.removeprefix("inventory-ha-")]
            if tier == "control":
                assert plain(host["ansible_host"]) == expected["public_ip"]
                assert plain(host["ansible_ssh_common_args"]) == ""
            else:
                assert plain(host["ansible_host"]) == expected["private_ip"]
                assert plain(host["ansible_ssh_common_args"]) == f"-o ProxyJump={jump}"
            assert bool(plain(host["backup_s3_bucket"])) == (tier == "tsdb")

    began = time.monotonic()
    destroyed = terraform(aws_env, "destroy", *args)
    figures["terraform_ha_destroy_moto_s"] = round(time.monotonic() - began, 1)
    assert destroyed.returncode == 0, destroyed.stdout[-4000:] + destroyed.stderr
    assert "btc_usd_control" not in inventory(aws_env)
