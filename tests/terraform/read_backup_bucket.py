"""Print, as JSON, what the (emulated) AWS API says about a backup bucket and the
VM role's inline and attached policies. Runs with the infra venv's boto3: python read_backup_bucket.py BUCKET ROLE."""

from __future__ import annotations

import json
import sys

import boto3


def main(bucket: str, role: str) -> None:
    s3, iam = boto3.client("s3"), boto3.client("iam")
    policies = {
        name: iam.get_role_policy(RoleName=role, PolicyName=name)["PolicyDocument"]
        for name in iam.list_role_policies(RoleName=role)["PolicyNames"]
    }
    attached = iam.list_attached_role_policies(RoleName=role)["AttachedPolicies"]
    facts = {
        "versioning": s3.get_bucket_versioning(Bucket=bucket).get("Status"),
        "encryption": s3.get_bucket_encryption(Bucket=bucket)["ServerSideEncryptionConfiguration"]["Rules"],
        "public_access_block": s3.get_public_access_block(Bucket=bucket)["PublicAccessBlockConfiguration"],
        "lifecycle": s3.get_bucket_lifecycle_configuration(Bucket=bucket)["Rules"],
        "policy": json.loads(s3.get_bucket_policy(Bucket=bucket)["Policy"]),
        "role_policies": {n: json.loads(p) if isinstance(p, str) else p for n, p in policies.items()},
        "attached_policies": [p["PolicyArn"] for p in attached],
    }
    print(json.dumps(facts, default=str))


if __name__ == "__main__":
    main(*sys.argv[1:])
