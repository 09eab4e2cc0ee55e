"""MLF036 (only review writes the approved model area) and MLF037 (the runtime verifies the signed
manifest), on small Terraform JSON documents: each rule passes the layout mlfleet writes and fails
the violation it is for."""
from __future__ import annotations

import json

import pytest

from mlfleet.constructs.policy import RULES, evaluate_terraform

BUCKET = "arn:aws:s3:::mlfleet-prod-333333333333-us-east-1"
APPROVED = f"{BUCKET}/models/approved/*"
CANDIDATES = f"{BUCKET}/models/candidates/*"
REVIEW = "arn:aws:iam::333333333333:role/mlfleet-prod-us-east-1-review"
PROVIDERS = {"aws": [{"region": "us-east-1", "default_tags": [{"tags": {"owner": "o", "cost-center": "c"}}]}]}


def _policy(*statements: dict) -> str:
    return json.dumps({"Version": "2012-10-17", "Statement": list(statements)})


def _aws(training: list[dict], guard_exempts: tuple[str, ...] = (REVIEW,)) -> dict:
    allow = {"Effect": "Allow", "Action": ["s3:AbortMultipartUpload", "s3:PutObject"]}
    roles = {"training": {"name": "mlfleet-prod-us-east-1-training"},
             "review": {"name": "mlfleet-prod-us-east-1-review"}}
    return {"provider": PROVIDERS, "resource": {
        "aws_iam_role": roles,
        "aws_iam_role_policy": {
            "training": {"role": "${aws_iam_role.training.id}", "policy": _policy(*training)},
            "review": {"role": "${aws_iam_role.review.id}", "policy": _policy({**allow, "Resource": APPROVED})}},
        "aws_s3_bucket_policy": {"guard": {"bucket": "b", "policy": _policy({
            "Effect": "Deny", "Principal": "*", "Action": ["s3:PutObject"], "Resource": APPROVED,
            "Condition": {"ArnNotEquals": {"aws:PrincipalArn": list(guard_exempts)}}})}}}}


def _findings(tf: dict, rule: str) -> list:
    return [f for f in evaluate_terraform("s", tf) if f.rule == rule]


GOOD_TRAINING = [{"Effect": "Allow", "Action": ["s3:AbortMultipartUpload", "s3:PutObject"], "Resource": CANDIDATES}]


def test_candidates_only_for_training_passes():
    assert _findings(_aws(GOOD_TRAINING), "MLF036") == []


@pytest.mark.parametrize("statement", [
    {"Effect": "Allow", "Action": ["s3:PutObject"], "Resource": f"{BUCKET}/models/*"},  # the old tag-based grant
    {"Effect": "Allow", "Action": "s3:*", "Resource": "*"},
    {"Effect": "Allow", "Action": "s3:Delete*", "Resource": f"{BUCKET}/*"},
    {"Effect": "Allow", "Action": "s3:PutObject", "Resource": f"{BUCKET}/models/approved/manifest.json"},
], ids=["models-prefix", "everything", "delete-wildcard", "the-manifest"])
def test_a_training_grant_that_reaches_the_approved_area_is_flagged(statement):
    [finding] = _findings(_aws([*GOOD_TRAINING, statement]), "MLF036")
    assert finding.address == "aws_iam_role_policy.training"
    assert "mlfleet-prod-us-east-1-training" in finding.message and APPROVED in finding.message


def test_an_explicit_deny_in_the_same_policy_closes_the_grant():
    deny = {"Effect": "Deny", "Action": ["s3:DeleteObject", "s3:DeleteObjectVersion", "s3:PutObject"],
            "Resource": APPROVED}
    wide = {"Effect": "Allow", "Action": "s3:PutObject", "Resource": f"{BUCKET}/*"}
    assert _findings(_aws([wide, deny]), "MLF036") == []


def test_a_guard_that_exempts_a_non_review_role_is_flagged():
    training = "arn:aws:iam::333333333333:role/mlfleet-prod-us-east-1-training"
    [finding] = _findings(_aws(GOOD_TRAINING, guard_exempts=(REVIEW, training)), "MLF036")
    assert finding.address == "aws_s3_bucket_policy.guard" and training in finding.message


OBJECTS = "projects/_/buckets/mlfleet-prod-models/objects/"


def _gcp(training_role: str, training_prefix: str | None) -> dict:
    accounts = {"training": {"account_id": "mlf-prod-training"}, "review": {"account_id": "mlf-prod-review"}}

    def grant(account: str, role: str, prefix: str | None) -> dict:
        body = {"bucket": "mlfleet-prod-models", "role": role,
                "member": f"serviceAccount:${{google_service_account.{account}.email}}"}
        if prefix is not None:
            body["condition"] = {"title": "t", "expression": f'resource.name.startsWith("{OBJECTS}{prefix}")'}
        return body

    return {"provider": {"google": [{"default_labels": {"owner": "o", "cost-center": "c"}}]}, "resource": {
        "google_service_account": accounts,
        "google_storage_bucket_iam_member": {
            "training": grant("training", training_role, training_prefix),
            "review": grant("review", "roles/storage.objectUser", "models/approved/")}}}


@pytest.mark.parametrize(("role", "prefix", "flagged"), [
    ("roles/storage.objectCreator", "models/candidates/", False),
    ("roles/storage.objectViewer", "models/", False),  # reading is not writing
    ("roles/storage.objectCreator", "models/", True),  # a prefix that holds the approved area
    ("roles/storage.objectUser", "models/approved/", True),
    ("roles/storage.objectCreator", "models/approved/manifest.json", True),  # a prefix inside it
    ("roles/storage.objectAdmin", None, True),  # the whole bucket
])
def test_google_write_grants_reaching_the_approved_area_are_flagged(role, prefix, flagged):
    found = _findings(_gcp(role, prefix), "MLF036")
    assert [f.address for f in found] == (["google_storage_bucket_iam_member.training"] if flagged else [])


def _runtime(args: list[str]) -> dict:
    return {"provider": PROVIDERS, "resource": {"kubernetes_deployment_v1": {"runtime": {"spec": {"template": {
        "spec": {"container": [{"name": "runtime", "args": args}]}}}}}}}


REPOSITORY = ["--model-repository", "s3://b/models/approved/"]


@pytest.mark.parametrize(("args", "flagged"), [
    ([*REPOSITORY, "--manifest-public-key", "/etc/mlfleet/manifest-key/public.pem"], False),
    ([*REPOSITORY, "--manifest-public-key=/etc/k.pem"], False),
    (REPOSITORY, True),
    ([*REPOSITORY, "--manifest-public-key", "/etc/k.pem", "--allow-unsigned"], True),
    (["--http-port", "8000"], False),  # not the runtime
])
def test_a_runtime_that_does_not_verify_the_manifest_is_flagged(args, flagged):
    found = _findings(_runtime(args), "MLF037")
    assert [f.address for f in found] == (["kubernetes_deployment_v1.runtime"] if flagged else [])


def test_an_unverified_manifest_is_a_high_severity_finding():
    assert RULES["MLF037"].severity == "high"  # review exits 1 on it unless acknowledged
