"""The base every mlfleet S3 bucket shares: objects owned by the bucket owner (no ACLs), every
public access blocked, versioned, SSE-KMS with a customer key (and a bucket key), never
force-destroyed. The artifact store and the audit trail's log bucket add their own policy and
lifecycle on top."""
from __future__ import annotations

from dataclasses import dataclass

from cdktn_provider_aws.s3_bucket import S3Bucket
from cdktn_provider_aws.s3_bucket_ownership_controls import S3BucketOwnershipControls, S3BucketOwnershipControlsRule
from cdktn_provider_aws.s3_bucket_public_access_block import S3BucketPublicAccessBlock
from cdktn_provider_aws.s3_bucket_server_side_encryption_configuration import (
    S3BucketServerSideEncryptionConfigurationA,
    S3BucketServerSideEncryptionConfigurationRuleA,
    S3BucketServerSideEncryptionConfigurationRuleApplyServerSideEncryptionByDefaultA,
)
from cdktn_provider_aws.s3_bucket_versioning import S3BucketVersioningA, S3BucketVersioningVersioningConfiguration
from constructs import Construct


@dataclass(frozen=True)
class PrivateBucket:
    bucket: S3Bucket
    versioning: S3BucketVersioningA
    """What lifecycle rules, Object Lock and replication must depend on (S3 refuses them before)."""


def private_bucket(scope: Construct, id_: str, *, name: str, key_arn: str, object_lock: bool,
                   tags: dict[str, str] | None) -> PrivateBucket:
    """The bucket `name` as construct `id_` of `scope`, its settings beside it in `scope`."""
    bucket = S3Bucket(scope, id_, bucket=name, force_destroy=False,
                      object_lock_enabled=True if object_lock else None, tags=tags or None)
    S3BucketOwnershipControls(scope, "ownership", bucket=bucket.id, rule=S3BucketOwnershipControlsRule(
        object_ownership="BucketOwnerEnforced"))
    S3BucketPublicAccessBlock(scope, "public-access-block", bucket=bucket.id, block_public_acls=True,
                              block_public_policy=True, ignore_public_acls=True, restrict_public_buckets=True)
    versioning = S3BucketVersioningA(
        scope, "versioning", bucket=bucket.id,
        versioning_configuration=S3BucketVersioningVersioningConfiguration(status="Enabled"))
    S3BucketServerSideEncryptionConfigurationA(
        scope, "encryption", bucket=bucket.id, rule=[S3BucketServerSideEncryptionConfigurationRuleA(
            # A bucket key cuts KMS requests (and their cost) by orders of magnitude.
            bucket_key_enabled=True,
            apply_server_side_encryption_by_default=(
                S3BucketServerSideEncryptionConfigurationRuleApplyServerSideEncryptionByDefaultA(
                    sse_algorithm="aws:kms", kms_master_key_id=key_arn)))])
    return PrivateBucket(bucket, versioning)
