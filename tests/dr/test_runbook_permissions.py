"""The DR runbooks' IAM policy, as the stacks synthesize it for staging, against the AWS calls a
sandbox drill really makes (failover, failback, readiness, the audit anchor), read off the fault
proxy's ledger: every call is granted on its resource, and every grant is used or named here
with why the sandbox does not reach it."""
from __future__ import annotations

import json
from fnmatch import fnmatchcase

import pytest

from mlfleet.dr.drill import run_drill
from mlfleet.stacks.environment import naming
from mlfleet.stacks.review.synth import synthesize_for_review

from helpers.iam_actions import iam_action

pytestmark = pytest.mark.sandbox

NOT_REACHED_IN_THE_SANDBOX = {
    "eks:DescribeCluster": "the sandbox's Kubernetes endpoint is in its state file, not found through EKS",
    **{f"dynamodb:{item}": "the sandbox's run lock is a file" for item in ("GetItem", "PutItem", "UpdateItem",
                                                                           "DeleteItem")},
    "kms:Decrypt": "moto does not call KMS for SSE-KMS objects or tables",
    "kms:Encrypt": "moto does not call KMS for SSE-KMS objects or tables",
    "kms:GenerateDataKey": "moto does not call KMS for SSE-KMS objects or tables",
    "kms:DescribeKey": "moto does not call KMS for SSE-KMS objects or tables",
    "s3:PutObjectRetention": "the anchor's retention travels as headers of its PutObject",
    "cloudwatch:GetMetricData": "the lag is read with GetMetricStatistics",
    "route53:GetHealthCheckStatus": "the sandbox's resolver reads the verdicts; readiness asks the runtime",
    "route53-recovery-cluster:GetRoutingControlState": "the states are read by listing the controls",
    "route53-recovery-cluster:UpdateRoutingControlState": "the controls are turned in one batch call",
}


def _policy(env) -> list[dict]:
    stacks, _ = synthesize_for_review(env)
    policies = stacks[naming.global_stack_name(env.name)]["resource"]["aws_iam_policy"]
    (body,) = policies.values()
    return json.loads(body["policy"])["Statement"]


def _listed(value) -> list[str]:
    return value if isinstance(value, list) else [value]


def _granted(statements: list[dict], action: str, resource: str | None) -> bool:
    """Whether an Allow names the action and (for S3, where the ledger has the object) the resource."""
    for statement in statements:
        if statement["Effect"] != "Allow" or action not in _listed(statement["Action"]):
            continue
        if resource is None or any(fnmatchcase(resource, pattern) for pattern in _listed(statement["Resource"])):
            return True
    return False


def _s3_resource(action: str, path: str) -> str | None:
    bucket, _, key = path.lstrip("/").partition("/")
    if action in ("s3:ListBucket", "s3:GetBucketObjectLockConfiguration"):
        return f"arn:aws:s3:::{bucket}"
    return f"arn:aws:s3:::{bucket}/{key}"


def test_a_drill_calls_only_what_the_stacks_grant_and_uses_every_grant(sandbox, target):
    statements = _policy(sandbox.env)
    since = len(sandbox.ledger.since())
    outcome = run_drill(target, sandbox.env.primary.name)
    assert outcome["failback"].status == "completed"
    calls = {}
    for entry in sandbox.ledger.since(since):
        if entry["proxy"] != "aws" or "/drill/" in entry["path"]:  # the drill's writer stands for training
            continue
        action = iam_action(entry["service"], entry["action"], entry.get("query", ""))
        assert action is not None, f"no IAM action known for {entry['service']} {entry['action']}"
        resource = _s3_resource(action, entry["path"]) if entry["service"] == "s3" else None
        calls.setdefault(action, set()).add(resource)
    runtime_reads = {"s3:GetObject"}  # the sandbox's runtimes read their models through the same proxy
    denied = sorted(f"{a} on {r}" for a, resources in calls.items() for r in resources
                    if not _granted(statements, a, r))
    assert denied == [], "the runbooks call what the policy does not grant"
    granted = {a for s in statements for a in _listed(s["Action"])}
    unused = granted - set(calls) - set(NOT_REACHED_IN_THE_SANDBOX) - runtime_reads
    assert unused == set(), "granted but never called: remove it, or say here why the sandbox cannot reach it"
    assert {"rds:FailoverGlobalCluster", "rds:SwitchoverGlobalCluster", "eks:UpdateNodegroupConfig",
            "route53-recovery-cluster:UpdateRoutingControlStates", "s3:PutObject"} <= set(calls)
