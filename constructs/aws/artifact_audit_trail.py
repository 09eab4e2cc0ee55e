"""Object-level audit of a region's artifact buckets: a CloudTrail trail of S3 data events.

Every read and write of an artifact (a training upload, a champion's approval into `approved/`, a
manifest signature, serving's and the transfer job's reads, replicas arriving) is recorded with who
made it, from where and when. Management events (bucket policy changes and the like) are left to
the account's own trail; this trail records data events only.

One trail per region, in the regional stack, audits that region's buckets and delivers to a log
bucket in the same region (principle 1): a trail in one region for the whole environment would
stop delivering the other regions' records when its region is lost, which is when they matter.

The log bucket is the audit record: private, versioned, encrypted with its own customer key,
never force-destroyed, and under S3 Object Lock, so no version can be deleted or overwritten
before its retention ends (GOVERNANCE by default: only a principal allowed
`s3:BypassGovernanceRetention` can shorten it; COMPLIANCE: nobody). CloudTrail signs a digest of
every log file (log file validation), so a removed or altered file is detected. The trail also
records who reads the log bucket (reads only: recording its own deliveries would loop).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from cdktn_provider_aws.cloudtrail import (
    Cloudtrail,
    CloudtrailAdvancedEventSelector,
    CloudtrailAdvancedEventSelectorFieldSelector,
)
from cdktn_provider_aws.s3_bucket_lifecycle_configuration import (
    S3BucketLifecycleConfiguration,
    S3BucketLifecycleConfigurationRule,
    S3BucketLifecycleConfigurationRuleAbortIncompleteMultipartUpload,
    S3BucketLifecycleConfigurationRuleExpiration,
    S3BucketLifecycleConfigurationRuleFilter,
    S3BucketLifecycleConfigurationRuleNoncurrentVersionExpiration,
)
from cdktn_provider_aws.s3_bucket_object_lock_configuration import (
    S3BucketObjectLockConfigurationA,
    S3BucketObjectLockConfigurationRuleA,
    S3BucketObjectLockConfigurationRuleDefaultRetentionA,
)
from cdktn_provider_aws.s3_bucket_policy import S3BucketPolicy
from constructs import Construct

from mlfleet.constructs.aws.iam_policy import policy_document, tls_only_statements
from mlfleet.constructs.aws.kms_key import KmsKey, KmsKeyProps
from mlfleet.constructs.aws.private_bucket import private_bucket
from mlfleet.constructs.aws.provider_region import provider_region
from mlfleet.constructs.validation import ACCOUNT_ID, CLOUDTRAIL_TRAIL_NAME, S3_BUCKET_NAME, require

CLOUDTRAIL = "cloudtrail.amazonaws.com"


@dataclass(frozen=True, kw_only=True)
class ArtifactAuditTrailProps:
    trail_name: str
    account_id: str
    audited_bucket_names: tuple[str, ...]
    """The region's artifact buckets: every object read and write in them is recorded."""
    log_bucket_name: str
    """The bucket the trail delivers to (created here, in the stack's region)."""
    key_alias: str
    """Alias of the key the log files and the log bucket are encrypted with (created here)."""
    retention_days: int = 365
    """Days each log file is locked (and kept; lifecycle removes it afterwards), 1 to 36500. Default: `365`."""
    lock_mode: Literal["GOVERNANCE", "COMPLIANCE"] = "GOVERNANCE"
    """Object Lock mode of the log files; default `GOVERNANCE` (see the module docstring)."""
    tags: dict[str, str] = field(default_factory=dict)
    """AWS tags on the construct's resources; default none."""


class ArtifactAuditTrail(Construct):
    """A regional CloudTrail trail of the artifact buckets' object reads and writes (see module docstring)."""

    def __init__(self, scope: Construct, id_: str, props: ArtifactAuditTrailProps):
        super().__init__(scope, id_)
        _validate(self, props)
        region = provider_region(self)
        tags = dict(props.tags) or None
        trail_arn = f"arn:aws:cloudtrail:{region}:{props.account_id}:trail/{props.trail_name}"
        bucket_arn = f"arn:aws:s3:::{props.log_bucket_name}"

        self.key = KmsKey(self, "key", KmsKeyProps(
            alias=props.key_alias, account_id=props.account_id, service_principals=(CLOUDTRAIL,),
            description=f"mlfleet artifact audit trail {props.trail_name}", tags=props.tags))
        created = private_bucket(self, "log-bucket", name=props.log_bucket_name, key_arn=self.key.key_arn,
                                 object_lock=True, tags=tags)
        self.log_bucket, versioning = created.bucket, created.versioning
        bucket_id = self.log_bucket.id
        S3BucketObjectLockConfigurationA(
            self, "object-lock", bucket=bucket_id, depends_on=[versioning],
            rule=S3BucketObjectLockConfigurationRuleA(
                default_retention=S3BucketObjectLockConfigurationRuleDefaultRetentionA(
                    mode=props.lock_mode, days=props.retention_days)))
        # A log file's lock ends `retention_days` after delivery: then it is marked deleted, and
        # removed a day later (S3 cannot remove a version that is still locked).
        S3BucketLifecycleConfiguration(
            self, "lifecycle", bucket=bucket_id, depends_on=[versioning], rule=[S3BucketLifecycleConfigurationRule(
                id="expire-after-retention", status="Enabled", filter=[S3BucketLifecycleConfigurationRuleFilter()],
                expiration=[S3BucketLifecycleConfigurationRuleExpiration(days=props.retention_days)],
                noncurrent_version_expiration=[S3BucketLifecycleConfigurationRuleNoncurrentVersionExpiration(
                    noncurrent_days=1)],
                abort_incomplete_multipart_upload=[
                    S3BucketLifecycleConfigurationRuleAbortIncompleteMultipartUpload(days_after_initiation=7)])])
        # CloudTrail delivers for this trail only (aws:SourceArn), and only under the account's prefix.
        from_this_trail = {"StringEquals": {"aws:SourceArn": trail_arn}}
        policy = S3BucketPolicy(self, "policy", bucket=bucket_id, policy=policy_document([
            *tls_only_statements(bucket_arn), {
                "Sid": "CloudTrailChecksAcl", "Effect": "Allow", "Principal": {"Service": CLOUDTRAIL},
                "Action": "s3:GetBucketAcl", "Resource": bucket_arn, "Condition": from_this_trail,
            }, {
                "Sid": "CloudTrailDelivers", "Effect": "Allow", "Principal": {"Service": CLOUDTRAIL},
                "Action": "s3:PutObject", "Resource": f"{bucket_arn}/AWSLogs/{props.account_id}/*",
                "Condition": {"StringEquals": {"aws:SourceArn": trail_arn,
                                               "s3:x-amz-acl": "bucket-owner-full-control"}},
            }]))

        def data_events(*selectors: CloudtrailAdvancedEventSelectorFieldSelector) -> list:
            return [CloudtrailAdvancedEventSelectorFieldSelector(field="eventCategory", equal_to=["Data"]),
                    CloudtrailAdvancedEventSelectorFieldSelector(field="resources.type", equal_to=["AWS::S3::Object"]),
                    *selectors]

        self.trail = Cloudtrail(
            self, "trail", name=props.trail_name, s3_bucket_name=bucket_id, kms_key_id=self.key.key_arn,
            enable_log_file_validation=True, is_multi_region_trail=False, include_global_service_events=False,
            advanced_event_selector=[
                CloudtrailAdvancedEventSelector(name="Artifact object reads and writes", field_selector=data_events(
                    CloudtrailAdvancedEventSelectorFieldSelector(
                        field="resources.ARN",
                        starts_with=[f"arn:aws:s3:::{b}/" for b in sorted(props.audited_bucket_names)]))),
                CloudtrailAdvancedEventSelector(name="Audit log reads", field_selector=data_events(
                    CloudtrailAdvancedEventSelectorFieldSelector(field="readOnly", equal_to=["true"]),
                    CloudtrailAdvancedEventSelectorFieldSelector(
                        field="resources.ARN", starts_with=[f"{bucket_arn}/"]))),
            ],
            # CloudTrail checks that it may deliver when the trail is created.
            depends_on=[policy], tags=tags)
        self.trail_arn = trail_arn


def _validate(scope: Construct, props: ArtifactAuditTrailProps) -> None:
    require(bool(CLOUDTRAIL_TRAIL_NAME.fullmatch(props.trail_name)), scope, "trail_name",
            f"{props.trail_name!r} is not a CloudTrail trail name (3 to 128 letters, digits, '.', '_', '-')")
    require(bool(ACCOUNT_ID.fullmatch(props.account_id)), scope, "account_id",
            f"{props.account_id!r} is not a 12-digit AWS account id")
    require(len(props.audited_bucket_names) >= 1, scope, "audited_bucket_names", "name at least one bucket to audit")
    for i, name in enumerate(props.audited_bucket_names):
        require(bool(S3_BUCKET_NAME.fullmatch(name)), scope, f"audited_bucket_names[{i}]",
                f"{name!r} is not a valid S3 bucket name")
    require(bool(S3_BUCKET_NAME.fullmatch(props.log_bucket_name)) and ".." not in props.log_bucket_name, scope,
            "log_bucket_name", f"{props.log_bucket_name!r} is not a valid S3 bucket name")
    require(props.log_bucket_name not in props.audited_bucket_names, scope, "log_bucket_name",
            "the trail cannot deliver into a bucket whose writes it records (each delivery would be recorded)")
    require(props.lock_mode in ("GOVERNANCE", "COMPLIANCE"), scope, "lock_mode",
            f"{props.lock_mode!r} is not GOVERNANCE or COMPLIANCE")
    require(1 <= props.retention_days <= 36500, scope, "retention_days",
            f"{props.retention_days} is outside 1 to 36500 days")
