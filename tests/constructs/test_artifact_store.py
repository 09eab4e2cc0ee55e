from __future__ import annotations

import json

import pytest

from mlfleet.constructs.aws.s3_artifact_store import (
    ObjectLockProps,
    ReplicaTarget,
    S3ArtifactStore,
    S3ArtifactStoreProps,
)
from mlfleet.constructs.policy import evaluate_terraform
from mlfleet.constructs.validation import PropsError

from helpers.iam import allowed
from helpers.template import only_resource, resources

ACCOUNT = "333333333333"
MRK = "arn:aws:kms:us-east-1:333333333333:key/mrk-0123456789abcdef0123456789abcdef"


def bucket(region: str) -> str:
    return f"mlfleet-prod-{ACCOUNT}-{region}"


def props(**overrides) -> S3ArtifactStoreProps:
    base = dict(bucket_name=bucket("us-east-1"), account_id=ACCOUNT, region="us-east-1", role="primary",
                key_alias="mlfleet-prod-artifacts",
                replicate_to=(ReplicaTarget(region="us-west-2", bucket_name=bucket("us-west-2")),
                              ReplicaTarget(region="us-east-2", bucket_name=bucket("us-east-2"))))
    return S3ArtifactStoreProps(**{**base, **overrides})


def statements(policy_resource: dict) -> dict[str, dict]:
    return {s["Sid"]: s for s in json.loads(policy_resource["policy"])["Statement"]}


def findings(tf: dict) -> list:
    # Provider default tags (MLF006) belong to the stack, not to the construct.
    return [f for f in evaluate_terraform("test", tf) if f.rule != "MLF006"]


@pytest.fixture(scope="module")
def primary(tmp_path_factory):
    from cdktn import TerraformStack, Testing
    from cdktn_provider_aws.provider import AwsProvider

    app = Testing.app(outdir=str(tmp_path_factory.mktemp("out")))
    stack = TerraformStack(app, "test")
    AwsProvider(stack, "aws", region="us-east-1")
    store = S3ArtifactStore(stack, "artifacts", props(object_lock=ObjectLockProps(mode="COMPLIANCE", days=30)))
    return store, json.loads(Testing.synth(stack))


def test_primary_bucket_is_private_versioned_and_kms_encrypted_with_a_multi_region_key(primary):
    store, tf = primary
    assert findings(tf) == []
    b = only_resource(tf, "aws_s3_bucket")
    assert b["bucket"] == bucket("us-east-1") and b["force_destroy"] is False and b["object_lock_enabled"] is True
    assert only_resource(tf, "aws_kms_key")["multi_region"] is True
    assert only_resource(tf, "aws_kms_alias")["name"] == "alias/mlfleet-prod-artifacts"
    sse = only_resource(tf, "aws_s3_bucket_server_side_encryption_configuration")["rule"][0]
    assert sse["bucket_key_enabled"] is True
    assert sse["apply_server_side_encryption_by_default"]["sse_algorithm"] == "aws:kms"
    assert "aws_kms_key." in sse["apply_server_side_encryption_by_default"]["kms_master_key_id"]
    assert only_resource(tf, "aws_s3_bucket_versioning")["versioning_configuration"]["status"] == "Enabled"
    assert only_resource(tf, "aws_s3_bucket_ownership_controls")["rule"]["object_ownership"] == "BucketOwnerEnforced"
    lock = only_resource(tf, "aws_s3_bucket_object_lock_configuration")["rule"]["default_retention"]
    assert lock == {"mode": "COMPLIANCE", "days": 30}
    lifecycle = only_resource(tf, "aws_s3_bucket_lifecycle_configuration")["rule"][0]
    assert lifecycle["noncurrent_version_expiration"] == [{"noncurrent_days": 90}]
    assert tf["output"]["artifact_key_arn"]["value"].startswith("${aws_kms_key.")
    assert store.bucket_arn == f"arn:aws:s3:::{bucket('us-east-1')}"


def test_bucket_policy_denies_plain_http_and_old_tls(primary):
    _, tf = primary
    denies = statements(only_resource(tf, "aws_s3_bucket_policy"))
    assert denies["DenyInsecureTransport"]["Effect"] == "Deny"
    assert denies["DenyInsecureTransport"]["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
    assert denies["DenyOutdatedTls"]["Condition"] == {"NumericLessThan": {"s3:TlsVersion": "1.2"}}


def test_bucket_policy_refuses_uploads_that_bypass_the_artifact_key(primary):
    _, tf = primary
    bucket_policy = only_resource(tf, "aws_s3_bucket_policy")["policy"]
    key_arn = statements(only_resource(tf, "aws_s3_bucket_policy"))["DenyOtherKmsKeys"]["Condition"][
        "StringNotEquals"]["s3:x-amz-server-side-encryption-aws-kms-key-id"]
    assert key_arn.startswith("${aws_kms_key.") and key_arn.endswith(".arn}")
    writer = {"Statement": [{"Effect": "Allow", "Action": "s3:PutObject", "Resource": "*"}]}
    candidate = f"arn:aws:s3:::{bucket('us-east-1')}/models/candidates/m/1/model.pt"
    other_key = f"arn:aws:kms:us-east-1:{ACCOUNT}:key/0b1c2d3e-4f50-6172-8394-a5b6c7d8e9f0"

    def put(**headers) -> bool:
        context = {"aws:SecureTransport": "true", "s3:TlsVersion": "1.3", **{
            f"s3:x-amz-server-side-encryption{'-aws-kms-key-id' if k == 'key' else ''}": v for k, v in headers.items()}}
        return allowed(writer, "s3:PutObject", candidate, context, bucket_policy=bucket_policy)

    assert put()  # no header: the bucket's default encryption, the artifact key
    assert put(sse="aws:kms") and put(sse="aws:kms", key=key_arn)
    assert not put(sse="AES256")
    assert not put(sse="aws:kms:dsse")
    assert not put(sse="aws:kms", key=other_key)
    assert not put(key=other_key)


def test_replicas_pass_the_destination_bucket_policy(synth):
    # The standby's own guard names its own key: S3 writes replicas with ReplicateObject, never PutObject.
    tf = synth(lambda stack: S3ArtifactStore(stack, "artifacts", props(
        bucket_name=bucket("us-west-2"), region="us-west-2", role="standby", replicate_to=())), region="us-west-2")
    standby_policy = only_resource(tf, "aws_s3_bucket_policy")["policy"]
    replication = {"Statement": [{"Effect": "Allow", "Action": ["s3:ReplicateObject", "s3:ReplicateTags"],
                                  "Resource": f"arn:aws:s3:::{bucket('us-west-2')}/*"}]}
    replica = f"arn:aws:s3:::{bucket('us-west-2')}/models/approved/manifest.json"
    context = {"aws:SecureTransport": "true", "s3:TlsVersion": "1.3",
               "aws:PrincipalArn": f"arn:aws:iam::{ACCOUNT}:role/{bucket('us-east-1')}-replication",
               "s3:x-amz-server-side-encryption": "aws:kms",
               "s3:x-amz-server-side-encryption-aws-kms-key-id": f"arn:aws:kms:us-west-2:{ACCOUNT}:key/mrk-1"}
    for action in ("s3:ReplicateObject", "s3:ReplicateTags"):
        assert allowed(replication, action, replica, context, bucket_policy=standby_policy)


def test_replicates_to_every_standby_with_rtc_metrics_delete_markers_and_destination_key(primary):
    store, tf = primary
    config = only_resource(tf, "aws_s3_bucket_replication_configuration")
    assert config["depends_on"] == [f"aws_s3_bucket_versioning.{next(iter(resources(tf, 'aws_s3_bucket_versioning')))}"]
    rules = {r["id"]: r for r in config["rule"]}
    assert set(rules) == {"replicate-to-us-west-2", "replicate-to-us-east-2"}
    assert store.replication_rule_ids == {"us-west-2": "replicate-to-us-west-2",
                                          "us-east-2": "replicate-to-us-east-2"}
    assert [t.region for t in store.replicate_to] == ["us-west-2", "us-east-2"]
    assert len({r["priority"] for r in rules.values()}) == 2
    west = rules["replicate-to-us-west-2"]
    assert west["delete_marker_replication"] == {"status": "Enabled"}
    assert west["source_selection_criteria"] == {"sse_kms_encrypted_objects": {"status": "Enabled"}}
    dest = west["destination"]
    assert dest["bucket"] == f"arn:aws:s3:::{bucket('us-west-2')}"
    assert dest["encryption_configuration"]["replica_kms_key_id"] == \
        f"arn:aws:kms:us-west-2:{ACCOUNT}:alias/mlfleet-prod-artifacts"
    assert dest["replication_time"] == {"status": "Enabled", "time": {"minutes": 15}}
    assert dest["metrics"] == {"status": "Enabled", "event_threshold": {"minutes": 15}}


def test_replication_role_is_least_privilege(primary):
    _, tf = primary
    role = only_resource(tf, "aws_iam_role")
    assert role["name"] == f"{bucket('us-east-1')}-replication"
    trust = json.loads(role["assume_role_policy"])["Statement"][0]
    assert trust["Principal"] == {"Service": "s3.amazonaws.com"}
    assert trust["Condition"]["StringEquals"] == {"aws:SourceAccount": ACCOUNT}
    s = statements(only_resource(tf, "aws_iam_role_policy"))
    src = f"arn:aws:s3:::{bucket('us-east-1')}"
    assert s["ReadReplicationConfiguration"]["Resource"] == src
    assert s["ReadSourceVersions"]["Resource"] == f"{src}/*"
    assert set(s["ReadSourceVersions"]["Action"]) == {
        "s3:GetObjectVersionForReplication", "s3:GetObjectVersionAcl", "s3:GetObjectVersionTagging",
        "s3:GetObjectRetention", "s3:GetObjectLegalHold"}  # object lock is on
    assert s["WriteReplicas"]["Action"] == ["s3:ReplicateDelete", "s3:ReplicateObject", "s3:ReplicateTags"]
    assert sorted(s["WriteReplicas"]["Resource"]) == sorted(
        f"arn:aws:s3:::{bucket(r)}/*" for r in ("us-west-2", "us-east-2"))
    assert s["DecryptSourceObjects"]["Action"] == "kms:Decrypt"
    assert s["DecryptSourceObjects"]["Resource"].startswith("${aws_kms_key.")
    assert s["DecryptSourceObjects"]["Condition"] == {"StringEquals": {"kms:ViaService": "s3.us-east-1.amazonaws.com"}}
    west = s["EncryptReplicasUsWest2"]
    assert west["Action"] == "kms:Encrypt"
    assert west["Resource"] == f"arn:aws:kms:us-west-2:{ACCOUNT}:key/*"
    assert west["Condition"]["ForAnyValue:StringEquals"] == {"kms:ResourceAliases": "alias/mlfleet-prod-artifacts"}
    assert west["Condition"]["StringEquals"] == {"kms:ViaService": "s3.us-west-2.amazonaws.com"}


def test_standby_with_the_primary_key_arn_makes_a_replica_key_and_does_not_replicate(synth):
    tf = synth(lambda stack: S3ArtifactStore(stack, "artifacts", props(
        bucket_name=bucket("us-west-2"), region="us-west-2", role="standby", replicate_to=(),
        multi_region_key_arn=MRK)), region="us-west-2")
    assert findings(tf) == []
    assert only_resource(tf, "aws_kms_replica_key")["primary_key_arn"] == MRK
    assert only_resource(tf, "aws_kms_alias")["name"] == "alias/mlfleet-prod-artifacts"
    assert not resources(tf, "aws_kms_key")
    assert not resources(tf, "aws_s3_bucket_replication_configuration")
    assert not resources(tf, "aws_iam_role")
    assert not resources(tf, "aws_s3_bucket_object_lock_configuration")


def test_standby_without_the_primary_key_arn_gets_a_regional_key_under_the_same_alias(synth):
    tf = synth(lambda stack: S3ArtifactStore(stack, "artifacts", props(
        bucket_name=bucket("us-west-2"), region="us-west-2", role="standby", replicate_to=())))
    key = only_resource(tf, "aws_kms_key")
    assert "multi_region" not in key and key["enable_key_rotation"] is True
    assert only_resource(tf, "aws_kms_alias")["name"] == "alias/mlfleet-prod-artifacts"


def test_replication_without_rtc_keeps_metrics_but_no_time_control(synth):
    tf = synth(lambda stack: S3ArtifactStore(stack, "artifacts", props(replication_time_control=False)))
    dest = only_resource(tf, "aws_s3_bucket_replication_configuration")["rule"][0]["destination"]
    assert "replication_time" not in dest
    assert dest["metrics"] == {"status": "Enabled"}


@pytest.mark.parametrize(("overrides", "prop", "reason"), [
    (dict(bucket_name="Bad_Bucket"), "bucket_name", "not a valid S3 bucket name"),
    (dict(region="mars-1"), "region", "not an AWS region"),
    (dict(role="standby"), "replicate_to", "only the primary replicates"),
    (dict(multi_region_key_arn=MRK), "multi_region_key_arn", "only a standby"),
    (dict(replicate_to=(ReplicaTarget(region="us-east-1", bucket_name=bucket("x")),)),
     r"replicate_to\[0\].region", "own region"),
    (dict(replicate_to=(ReplicaTarget(region="us-west-2", bucket_name=bucket("a")),
                        ReplicaTarget(region="us-west-2", bucket_name=bucket("b")))),
     r"replicate_to\[1\].region", "listed twice"),
    (dict(noncurrent_version_expiration_days=0), "noncurrent_version_expiration_days", "at least 1"),
    (dict(models_prefix="/models"), "models_prefix", "ending in '/'"),
    (dict(object_lock=ObjectLockProps(days=120)), "noncurrent_version_expiration_days",
     "shorter than the object lock retention"),
    (dict(object_lock=ObjectLockProps(mode="LEGAL", days=1)), "object_lock.mode", "GOVERNANCE or COMPLIANCE"),
    (dict(bucket_name="mlfleet-" + "x" * 54), "replication_role_name", "at most 64 characters"),
])
def test_invalid_props_are_rejected_with_the_prop_and_the_reason(synth, overrides, prop, reason):
    with pytest.raises(PropsError, match=f"artifacts: {prop}: .*{reason}"):
        synth(lambda stack: S3ArtifactStore(stack, "artifacts", props(**overrides)))


def test_synth_is_reproducible(synth):
    build = lambda stack: S3ArtifactStore(stack, "artifacts", props(object_lock=ObjectLockProps(days=30)))  # noqa: E731
    assert json.dumps(synth(build), sort_keys=True) == json.dumps(synth(build), sort_keys=True)
