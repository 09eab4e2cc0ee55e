"""The artifact audit trail: every object read and write of the region's artifact buckets is
recorded, in a private, KMS-encrypted, versioned, object-locked bucket of the same region."""
from __future__ import annotations

import json

import pytest

from mlfleet.constructs.aws.artifact_audit_trail import ArtifactAuditTrail, ArtifactAuditTrailProps
from mlfleet.constructs.policy import evaluate_terraform
from mlfleet.constructs.validation import PropsError

from helpers.iam import allowed
from helpers.template import only_resource

ACCOUNT = "333333333333"
ARTIFACTS = f"mlfleet-prod-{ACCOUNT}-us-west-2"
LOGS = f"{ARTIFACTS}-audit"
TRAIL_ARN = f"arn:aws:cloudtrail:us-west-2:{ACCOUNT}:trail/mlfleet-prod-us-west-2-artifacts"


def props(**overrides) -> ArtifactAuditTrailProps:
    return ArtifactAuditTrailProps(**{**dict(
        trail_name="mlfleet-prod-us-west-2-artifacts", account_id=ACCOUNT, audited_bucket_names=(ARTIFACTS,),
        log_bucket_name=LOGS, key_alias="mlfleet-prod-artifacts-audit"), **overrides})


@pytest.fixture(scope="module")
def trail_tf(tmp_path_factory) -> dict:
    from cdktn import TerraformStack, Testing
    from cdktn_provider_aws.provider import AwsProvider

    app = Testing.app(outdir=str(tmp_path_factory.mktemp("out")))
    stack = TerraformStack(app, "test")
    AwsProvider(stack, "aws", region="us-west-2", allowed_account_ids=[ACCOUNT])
    ArtifactAuditTrail(stack, "audit", props())
    return json.loads(Testing.synth(stack))


def test_trail_records_every_object_read_and_write_of_the_artifact_bucket(trail_tf):
    trail = only_resource(trail_tf, "aws_cloudtrail")
    assert trail["name"] == "mlfleet-prod-us-west-2-artifacts"
    assert trail["enable_log_file_validation"] is True
    assert trail["kms_key_id"].startswith("${aws_kms_key.")
    assert trail["is_multi_region_trail"] is False
    artifacts, log_reads = trail["advanced_event_selector"]
    fields = {f["field"]: f for f in artifacts["field_selector"]}
    assert fields["eventCategory"]["equals"] == ["Data"]
    assert fields["resources.type"]["equals"] == ["AWS::S3::Object"]
    assert fields["resources.ARN"]["starts_with"] == [f"arn:aws:s3:::{ARTIFACTS}/"]
    assert "readOnly" not in fields  # reads and writes
    log_fields = {f["field"]: f for f in log_reads["field_selector"]}
    assert log_fields["readOnly"]["equals"] == ["true"]  # its own deliveries are writes: no loop
    assert log_fields["resources.ARN"]["starts_with"] == [f"arn:aws:s3:::{LOGS}/"]


def test_log_bucket_is_private_encrypted_versioned_locked_and_never_force_destroyed(trail_tf):
    bucket = only_resource(trail_tf, "aws_s3_bucket")
    assert bucket["bucket"] == LOGS and bucket["force_destroy"] is False and bucket["object_lock_enabled"] is True
    assert only_resource(trail_tf, "aws_s3_bucket_versioning")["versioning_configuration"] == {"status": "Enabled"}
    (rule,) = only_resource(trail_tf, "aws_s3_bucket_server_side_encryption_configuration")["rule"]
    default = rule["apply_server_side_encryption_by_default"]
    assert default["sse_algorithm"] == "aws:kms" and default["kms_master_key_id"].startswith("${aws_kms_key.")
    lock = only_resource(trail_tf, "aws_s3_bucket_object_lock_configuration")["rule"]["default_retention"]
    assert lock == {"mode": "GOVERNANCE", "days": 365}
    (lifecycle,) = only_resource(trail_tf, "aws_s3_bucket_lifecycle_configuration")["rule"]
    assert lifecycle["expiration"] == [{"days": 365}]  # not before the lock ends
    # The policy pass finds nothing to say about it (encryption, public access, force_destroy, …).
    assert [f for f in evaluate_terraform("test", trail_tf) if f.rule != "MLF006"] == []


def test_only_this_trail_delivers_and_only_under_the_accounts_prefix(trail_tf):
    policy = only_resource(trail_tf, "aws_s3_bucket_policy")["policy"]
    trail = {"aws:SourceArn": TRAIL_ARN, "aws:SecureTransport": "true", "s3:TlsVersion": "1.2",
             "s3:x-amz-acl": "bucket-owner-full-control"}
    log_file = f"arn:aws:s3:::{LOGS}/AWSLogs/{ACCOUNT}/CloudTrail/us-west-2/2026/12/01/file.json.gz"
    statements = json.loads(policy)["Statement"]

    def delivers(resource: str, context: dict) -> bool:
        allows = [s for s in statements if s["Effect"] == "Allow"
                  and s.get("Principal") == {"Service": "cloudtrail.amazonaws.com"}]
        return allowed({"Statement": allows}, "s3:PutObject", resource, context, bucket_policy=policy)

    assert delivers(log_file, trail)
    assert not delivers(log_file, {**trail, "aws:SourceArn": f"{TRAIL_ARN}-other"})
    assert not delivers(f"arn:aws:s3:::{LOGS}/elsewhere/file.json.gz", trail)
    assert not delivers(log_file, {**trail, "aws:SecureTransport": "false"})
    key_policy = json.loads(only_resource(trail_tf, "aws_kms_key")["policy"])
    services = next(s for s in key_policy["Statement"] if s["Sid"] == "ServicesUseKey")
    assert services["Principal"] == {"Service": ["cloudtrail.amazonaws.com"]}


@pytest.mark.parametrize(("overrides", "prop", "reason"), [
    (dict(trail_name="a"), "trail_name", "not a CloudTrail trail name"),
    (dict(audited_bucket_names=()), "audited_bucket_names", "at least one bucket"),
    (dict(audited_bucket_names=("Bad_Bucket",)), r"audited_bucket_names\[0\]", "not a valid S3 bucket name"),
    (dict(log_bucket_name=ARTIFACTS), "log_bucket_name", "whose writes it records"),
    (dict(retention_days=0), "retention_days", "outside 1 to 36500"),
    (dict(lock_mode="LEGAL_HOLD"), "lock_mode", "not GOVERNANCE or COMPLIANCE"),
    (dict(account_id="12345"), "account_id", "not a 12-digit"),
])
def test_invalid_props_are_rejected_with_the_prop_and_the_reason(synth, overrides, prop, reason):
    with pytest.raises(PropsError, match=f"audit: {prop}: .*{reason}"):
        synth(lambda stack: ArtifactAuditTrail(stack, "audit", props(**overrides)))


def test_the_audit_names_fit_their_limits_for_the_longest_environment_and_region():
    from mlfleet.constructs.validation import CLOUDTRAIL_TRAIL_NAME, S3_BUCKET_NAME
    from mlfleet.stacks.environment import naming

    env, account = "e" * 20, "123456789012"  # environment names are at most 20 characters
    for region in ("us-east-1", "ap-southeast-4", "us-gov-west-1"):
        bucket = naming.artifact_audit_bucket(env, account, region)
        assert S3_BUCKET_NAME.fullmatch(bucket) and len(bucket) <= 63, bucket
        assert CLOUDTRAIL_TRAIL_NAME.fullmatch(naming.artifact_audit_trail(env, region))
