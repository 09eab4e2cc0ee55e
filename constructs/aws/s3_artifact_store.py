"""The replicated artifact store: one versioned, SSE-KMS S3 bucket per region.

The primary region's bucket replicates every object version, tag and delete marker to each
standby's bucket, with Replication Time Control (99.99 % of objects within 15 minutes) and
replication metrics, which the monitoring construct alarms on.

Keys. Every region encrypts its bucket with a key under the same alias, so the primary can name
each destination key as `arn:aws:kms:<dest>:<account>:alias/<alias>` from config alone. The
primary's key is a multi-Region primary key. A standby makes a replica of it only when it is
given `multi_region_key_arn`: a replica key needs the primary key's ARN, whose `mrk-` id is
random and known only after the primary region is deployed, and reading it from the primary
region's Terraform state would couple the standby's plan to the primary region (principle 1:
a standby must plan while the primary is down). Until then a standby gets a regional key under
the same alias, which is enough for replication: S3 re-encrypts every replica with the
destination bucket's key, so the replicas never depend on the primary's key material.

The approved area. The bucket policy denies `PutObject`/`DeleteObject`/`DeleteObjectVersion` under
`<models_prefix>approved/` (the runtime's model repository, see artifact_grants) to every principal
but `approved_writer_arns` (the region's review role), whatever their identity policies say.
Replication into a standby's approved area still works: S3 writes replicas as the primary's
replication role with `s3:ReplicateObject`, `ReplicateDelete` and `ReplicateTags`, which the guard
does not deny, so that role needs no exception (and gets none: it never calls `PutObject`).

The key. The policy also denies a `PutObject` that asks for another encryption than SSE-KMS or
another key than the bucket's (`encryption_guard`): an upload cannot opt out of the artifact key.
An upload that names no encryption gets the bucket's default, the same key. Replicas are written
with the destination's key by `s3:ReplicateObject`, which the guard does not name either.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from cdktn import TerraformOutput
from cdktn_provider_aws.iam_role import IamRole
from cdktn_provider_aws.iam_role_policy import IamRolePolicy
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
from cdktn_provider_aws.s3_bucket_replication_configuration import (
    S3BucketReplicationConfigurationA,
    S3BucketReplicationConfigurationRule,
    S3BucketReplicationConfigurationRuleDeleteMarkerReplication,
    S3BucketReplicationConfigurationRuleDestination,
    S3BucketReplicationConfigurationRuleDestinationEncryptionConfiguration,
    S3BucketReplicationConfigurationRuleDestinationMetrics,
    S3BucketReplicationConfigurationRuleDestinationMetricsEventThreshold,
    S3BucketReplicationConfigurationRuleDestinationReplicationTime,
    S3BucketReplicationConfigurationRuleDestinationReplicationTimeTime,
    S3BucketReplicationConfigurationRuleFilter,
    S3BucketReplicationConfigurationRuleSourceSelectionCriteria,
    S3BucketReplicationConfigurationRuleSourceSelectionCriteriaSseKmsEncryptedObjects,
)
from cdktn_provider_aws.s3_bucket_versioning import S3BucketVersioningA
from constructs import Construct

from mlfleet.constructs.aws.artifact_grants import DEFAULT_MODELS_PREFIX, ArtifactBucket, PolicyStatements
from mlfleet.constructs.aws.iam_policy import policy_document, tls_only_statements
from mlfleet.constructs.aws.kms_key import KmsKey, KmsKeyProps, alias_arn
from mlfleet.constructs.aws.private_bucket import private_bucket
from mlfleet.constructs.validation import IAM_ROLE_ARN, IAM_ROLE_NAME, OBJECT_PREFIX, REGION, S3_BUCKET_NAME, require

# S3 Replication Time Control's commitment, and the threshold its metrics report against.
RTC_MINUTES = 15


@dataclass(frozen=True, kw_only=True)
class ReplicaTarget:
    """A standby region's artifact bucket (created by that region's stack)."""
    region: str
    bucket_name: str


@dataclass(frozen=True, kw_only=True)
class ObjectLockProps:
    """Default retention applied to every new object version (write once, read many)."""
    mode: Literal["GOVERNANCE", "COMPLIANCE"] = "GOVERNANCE"
    """GOVERNANCE (privileged users may shorten it) or COMPLIANCE (nobody can); default `GOVERNANCE`."""
    days: int


@dataclass(frozen=True, kw_only=True)
class S3ArtifactStoreProps:
    bucket_name: str
    """Deterministic, globally unique bucket name for this region."""
    account_id: str
    region: str
    """The region this stack deploys to (names the key in IAM conditions)."""
    role: Literal["primary", "standby"]
    """The primary owns the multi-Region key and replicates; a standby receives replicas."""
    key_alias: str
    """Alias of the artifact key, without `alias/`: the same name in every region."""
    models_prefix: str = DEFAULT_MODELS_PREFIX
    """Where the candidates and approved areas live in the bucket: what the store's grants cover. Default
    `models/`."""
    approved_writer_arns: tuple[str, ...] = ()
    """IAM role ARNs that may write the approved area (the review roles); the bucket policy denies it to
    every other principal. Default: none, so nobody writes it until a role is named."""
    replicate_to: tuple[ReplicaTarget, ...] = ()
    """Standby buckets to replicate to (primary only). Each must exist, versioned, before apply. Default: none."""
    replication_time_control: bool = True
    """S3 Replication Time Control: 99.99 % of objects within 15 minutes; default on."""
    noncurrent_version_expiration_days: int = 90
    """Days an overwritten or deleted version is kept (a rollback window for artifacts). Default: `90`."""
    object_lock: ObjectLockProps | None = None
    """Default retention of every new version (write once, read many); default none."""
    multi_region_key_arn: str | None = None
    """Standby only: the primary's multi-Region key ARN (`…:key/mrk-…`), to make a replica of it. Default: none."""
    replication_role_name: str | None = None
    """IAM role name for replication; default `<bucket_name>-replication` (IAM names are global)."""
    tags: dict[str, str] = field(default_factory=dict)
    """AWS tags on the construct's resources; default none."""


class S3ArtifactStore(Construct):
    """A regional artifact bucket; on the primary, with replication to every standby.

    It grants on its bucket (`grant_read_approved`, `grant_write_candidates`, `grant_approve`),
    through `artifact_bucket`: pass the store to an identity.
    """

    def __init__(self, scope: Construct, id_: str, props: S3ArtifactStoreProps):
        super().__init__(scope, id_)
        _validate(self, props)
        self.bucket_name = props.bucket_name
        self.bucket_arn = f"arn:aws:s3:::{props.bucket_name}"

        self.key = KmsKey(self, "key", KmsKeyProps(
            alias=props.key_alias, account_id=props.account_id,
            description=f"mlfleet artifacts in {props.bucket_name}",
            multi_region=props.role == "primary", replica_of_arn=props.multi_region_key_arn,
            tags=props.tags))

        created = private_bucket(self, "bucket", name=props.bucket_name, key_arn=self.key.key_arn,
                                 object_lock=props.object_lock is not None, tags=props.tags)
        self.bucket, versioning = created.bucket, created.versioning
        bucket_id = self.bucket.id
        S3BucketLifecycleConfiguration(
            self, "lifecycle", bucket=bucket_id, depends_on=[versioning], rule=[S3BucketLifecycleConfigurationRule(
                id="expire-noncurrent-versions", status="Enabled",
                filter=[S3BucketLifecycleConfigurationRuleFilter()],
                noncurrent_version_expiration=[S3BucketLifecycleConfigurationRuleNoncurrentVersionExpiration(
                    noncurrent_days=props.noncurrent_version_expiration_days)],
                # Delete markers left with no versions behind them only slow down listings.
                expiration=[S3BucketLifecycleConfigurationRuleExpiration(expired_object_delete_marker=True)],
                abort_incomplete_multipart_upload=[
                    S3BucketLifecycleConfigurationRuleAbortIncompleteMultipartUpload(days_after_initiation=7)])])
        if props.object_lock:
            S3BucketObjectLockConfigurationA(
                self, "object-lock", bucket=bucket_id, depends_on=[versioning],
                rule=S3BucketObjectLockConfigurationRuleA(
                    default_retention=S3BucketObjectLockConfigurationRuleDefaultRetentionA(
                        mode=props.object_lock.mode, days=props.object_lock.days)))

        self.models_prefix = props.models_prefix
        self.artifact_bucket = ArtifactBucket(bucket_name=props.bucket_name, key_arn=self.key.key_arn,
                                              region=props.region, models_prefix=props.models_prefix)
        """The bucket, key and models prefix the store's grants name (see artifact_grants)."""
        S3BucketPolicy(self, "policy", bucket=bucket_id, policy=policy_document(
            [*tls_only_statements(self.bucket_arn), *self.artifact_bucket.encryption_guard(),
             self.artifact_bucket.approved_area_guard(props.approved_writer_arns)]))

        self.replicate_to = props.replicate_to
        # Rule id per destination region (monitoring alarms on each rule's metrics).
        self.replication_rule_ids: dict[str, str] = {
            target.region: f"replicate-to-{target.region}" for target in props.replicate_to}
        self.replication_role: IamRole | None = None
        if props.replicate_to:
            self._replicate(props, versioning)

        output = TerraformOutput(self, "key-arn", value=self.key.key_arn,
                                 description="Artifact key ARN (the primary's is a standby's multi_region_key_arn)")
        output.override_logical_id("artifact_key_arn")

    @property
    def candidates_prefix(self) -> str:
        """`<models_prefix>candidates/`: training's uploads."""
        return self.artifact_bucket.candidates_prefix

    @property
    def approved_prefix(self) -> str:
        """`<models_prefix>approved/`: the runtime's model repository, written by review only."""
        return self.artifact_bucket.approved_prefix

    @property
    def manifest_key(self) -> str:
        """The manifest's object key, `<approved_prefix>manifest.json`."""
        return self.artifact_bucket.manifest_key

    def grant_read_approved(self, grantee: PolicyStatements) -> None:
        """Read the approved area and nothing else (serving)."""
        self.artifact_bucket.grant_read_approved(grantee)

    def grant_write_candidates(self, grantee: PolicyStatements) -> None:
        """Upload, read and list candidates only; never touch the approved area (training)."""
        self.artifact_bucket.grant_write_candidates(grantee)

    def grant_approve(self, grantee: PolicyStatements) -> None:
        """Read candidates, write the approved area, list both (review)."""
        self.artifact_bucket.grant_approve(grantee)

    def _replicate(self, props: S3ArtifactStoreProps, versioning: S3BucketVersioningA) -> None:
        role_name = props.replication_role_name or f"{props.bucket_name}-replication"
        self.replication_role = IamRole(
            self, "replication-role", name=role_name, description=f"S3 replication from {props.bucket_name}",
            assume_role_policy=policy_document([{
                "Effect": "Allow", "Principal": {"Service": "s3.amazonaws.com"}, "Action": "sts:AssumeRole",
                "Condition": {"StringEquals": {"aws:SourceAccount": props.account_id},
                              "ArnLike": {"aws:SourceArn": self.bucket_arn}}}]),
            tags=props.tags or None)
        IamRolePolicy(self, "replication-policy", name="replicate-artifacts", role=self.replication_role.id,
                      policy=policy_document(_replication_statements(props, self.bucket_arn, self.key.key_arn)))

        rules = []
        for priority, target in enumerate(props.replicate_to):
            rtc = props.replication_time_control
            rules.append(S3BucketReplicationConfigurationRule(
                id=self.replication_rule_ids[target.region], status="Enabled", priority=priority,
                filter=S3BucketReplicationConfigurationRuleFilter(),
                delete_marker_replication=S3BucketReplicationConfigurationRuleDeleteMarkerReplication(
                    status="Enabled"),
                source_selection_criteria=S3BucketReplicationConfigurationRuleSourceSelectionCriteria(
                    sse_kms_encrypted_objects=(
                        S3BucketReplicationConfigurationRuleSourceSelectionCriteriaSseKmsEncryptedObjects(
                            status="Enabled"))),
                destination=S3BucketReplicationConfigurationRuleDestination(
                    bucket=f"arn:aws:s3:::{target.bucket_name}",
                    encryption_configuration=(
                        S3BucketReplicationConfigurationRuleDestinationEncryptionConfiguration(
                            replica_kms_key_id=alias_arn(target.region, props.account_id, props.key_alias))),
                    # Metrics feed the ReplicationLatency / OperationsFailedReplication alarms.
                    metrics=S3BucketReplicationConfigurationRuleDestinationMetrics(
                        status="Enabled",
                        event_threshold=S3BucketReplicationConfigurationRuleDestinationMetricsEventThreshold(
                            minutes=RTC_MINUTES) if rtc else None),
                    replication_time=S3BucketReplicationConfigurationRuleDestinationReplicationTime(
                        status="Enabled",
                        time=S3BucketReplicationConfigurationRuleDestinationReplicationTimeTime(
                            minutes=RTC_MINUTES)) if rtc else None)))
        # S3 refuses a replication configuration on a bucket whose versioning is not yet on.
        S3BucketReplicationConfigurationA(self, "replication", bucket=self.bucket.id,
                                          role=self.replication_role.arn, rule=rules, depends_on=[versioning])


def _validate(scope: Construct, props: S3ArtifactStoreProps) -> None:
    require(bool(S3_BUCKET_NAME.fullmatch(props.bucket_name)) and ".." not in props.bucket_name, scope,
            "bucket_name", f"{props.bucket_name!r} is not a valid S3 bucket name")
    require(bool(REGION.fullmatch(props.region)), scope, "region", f"{props.region!r} is not an AWS region name")
    require(props.role in ("primary", "standby"), scope, "role", f"{props.role!r} is not 'primary' or 'standby'")
    require(not (props.replicate_to and props.role != "primary"), scope, "replicate_to",
            "only the primary replicates; a standby receives replicas")
    require(not (props.multi_region_key_arn and props.role != "standby"), scope, "multi_region_key_arn",
            "only a standby replicates the primary's key; the primary creates it")
    require(props.noncurrent_version_expiration_days >= 1, scope, "noncurrent_version_expiration_days",
            "must be at least 1 day")
    require(bool(OBJECT_PREFIX.fullmatch(props.models_prefix)), scope, "models_prefix",
            f"{props.models_prefix!r} must be a relative key prefix ending in '/', e.g. 'models/'")
    for i, arn in enumerate(props.approved_writer_arns):
        require(bool(IAM_ROLE_ARN.fullmatch(arn)), scope, f"approved_writer_arns[{i}]",
                f"{arn!r} is not an IAM role ARN (wildcards are not allowed)")
    seen: set[str] = set()
    for i, target in enumerate(props.replicate_to):
        where = f"replicate_to[{i}]"
        require(bool(REGION.fullmatch(target.region)), scope, f"{where}.region",
                f"{target.region!r} is not an AWS region name")
        require(target.region != props.region, scope, f"{where}.region",
                f"{target.region} is this bucket's own region")
        require(target.region not in seen, scope, f"{where}.region", f"{target.region} is listed twice")
        require(bool(S3_BUCKET_NAME.fullmatch(target.bucket_name)), scope, f"{where}.bucket_name",
                f"{target.bucket_name!r} is not a valid S3 bucket name")
        require(target.bucket_name != props.bucket_name, scope, f"{where}.bucket_name",
                "a bucket cannot replicate to itself")
        seen.add(target.region)
    if props.object_lock:
        require(props.object_lock.mode in ("GOVERNANCE", "COMPLIANCE"), scope, "object_lock.mode",
                f"{props.object_lock.mode!r} is not GOVERNANCE or COMPLIANCE")
        require(1 <= props.object_lock.days <= 36500, scope, "object_lock.days", "must be 1 to 36500 days")
        # Lifecycle cannot expire a version that is still locked: it would silently keep it.
        require(props.noncurrent_version_expiration_days >= props.object_lock.days, scope,
                "noncurrent_version_expiration_days",
                f"{props.noncurrent_version_expiration_days} is shorter than the object lock "
                f"retention ({props.object_lock.days} days), so lifecycle could not expire locked versions")
    role_name = props.replication_role_name or f"{props.bucket_name}-replication"
    if props.replicate_to:
        require(bool(IAM_ROLE_NAME.fullmatch(role_name)), scope, "replication_role_name",
                f"{role_name!r} is not a valid IAM role name (at most 64 characters); set one explicitly")


def _replication_statements(props: S3ArtifactStoreProps, bucket_arn: str, key_arn: str) -> list[dict]:
    destinations = sorted(props.replicate_to, key=lambda t: t.region)
    source_object_actions = ["s3:GetObjectVersionAcl", "s3:GetObjectVersionForReplication",
                             "s3:GetObjectVersionTagging"]
    if props.object_lock:
        # Replicas carry the source version's retention and legal hold.
        source_object_actions += ["s3:GetObjectLegalHold", "s3:GetObjectRetention"]
    statements: list[dict] = [{
        "Sid": "ReadReplicationConfiguration", "Effect": "Allow",
        "Action": ["s3:GetReplicationConfiguration", "s3:ListBucket"], "Resource": bucket_arn,
    }, {
        "Sid": "ReadSourceVersions", "Effect": "Allow",
        "Action": sorted(source_object_actions), "Resource": f"{bucket_arn}/*",
    }, {
        "Sid": "WriteReplicas", "Effect": "Allow",
        "Action": ["s3:ReplicateDelete", "s3:ReplicateObject", "s3:ReplicateTags"],
        "Resource": [f"arn:aws:s3:::{t.bucket_name}/*" for t in destinations],
    }, {
        "Sid": "DecryptSourceObjects", "Effect": "Allow", "Action": "kms:Decrypt", "Resource": key_arn,
        "Condition": {"StringEquals": {"kms:ViaService": f"s3.{props.region}.amazonaws.com"}},
    }]
    return statements + [{
        # IAM authorizes KMS use on the key, never on an alias ARN: match the destination key
        # by the alias it carries, in its region and account only.
        "Sid": f"EncryptReplicas{''.join(p.capitalize() for p in t.region.split('-'))}", "Effect": "Allow",
        "Action": "kms:Encrypt", "Resource": f"arn:aws:kms:{t.region}:{props.account_id}:key/*",
        "Condition": {"StringEquals": {"kms:ViaService": f"s3.{t.region}.amazonaws.com"},
                      "ForAnyValue:StringEquals": {"kms:ResourceAliases": f"alias/{props.key_alias}"}},
    } for t in destinations]

