"""The model artifact store on Google Cloud: one dual-region GCS bucket with turbo replication.

A dual-region bucket keeps every object in both regions, and turbo replication (`ASYNC_TURBO`)
copies new objects to the second region within 15 minutes (Google's RPO target), so the
artifacts survive the loss of either region without a replica bucket or a replication rule
to fail over. It is therefore made once, in the environment's global stack, and both regions'
runtimes read it.

Secure by default: a customer-managed key (which for a dual-region bucket lives in the bucket's
own location: a predefined dual-region such as `nam4`, or the multi-region such as `us` that
holds a configurable pair), uniform bucket-level access (IAM only, no ACLs, and the IAM
conditions `GcpServingIdentity` relies on), public access prevention, object versioning and
soft delete. `force_destroy` stays off: Terraform cannot delete a bucket that holds artifacts.

Layout under `models_prefix` (see `GcpServingIdentity`): `candidates/` written by training,
`approved/` published by review (the runtime's model repository, with the manifest at
`approved/manifest.json` and its signature beside it), and `mirror/` for copies from an AWS
primary. The store grants on that layout (`grant_read_approved`, ...; see
artifact_grants): pass the store to the identities and the transfer job.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from cdktn import TerraformOutput
from cdktn_provider_google.storage_bucket import (
    StorageBucket,
    StorageBucketCustomPlacementConfig,
    StorageBucketEncryption,
    StorageBucketLifecycleRule,
    StorageBucketLifecycleRuleAction,
    StorageBucketLifecycleRuleCondition,
    StorageBucketSoftDeletePolicy,
    StorageBucketVersioning,
)
from cdktn_provider_google.storage_bucket_iam_member import StorageBucketIamMember
from constructs import Construct

from mlfleet.constructs.gcp.artifact_grants import GcsArtifactBucket
from mlfleet.constructs.gcp.kms_key import grant_service_agent, require_key_id
from mlfleet.constructs.validation import (
    GCS_BUCKET_NAME,
    GOOGLE_PROJECT_ID,
    GOOGLE_PROJECT_NUMBER,
    GOOGLE_REGION,
    OBJECT_PREFIX,
    require,
    require_google_labels,
)

# Predefined dual-regions (location -> its regions); a configurable pair names its multi-region.
PREDEFINED_DUAL_REGIONS = {"ASIA1": ("asia-northeast1", "asia-northeast2"),
                           "EUR4": ("europe-north1", "europe-west4"),
                           "EUR5": ("europe-west1", "europe-west2"),
                           "NAM4": ("us-central1", "us-east1")}
MULTI_REGIONS = {"US": "us-", "EU": "europe-", "ASIA": "asia-"}
MIN_SOFT_DELETE_DAYS, MAX_SOFT_DELETE_DAYS = 7, 90
SECONDS_PER_DAY = 86400


@dataclass(frozen=True, kw_only=True)
class GcsArtifactStoreProps:
    project_id: str
    project_number: str
    """Names the Cloud Storage service agent that encrypts with the key."""
    bucket_name: str
    location: str
    """A predefined dual-region (`NAM4`, `EUR4`, …) or, with `data_locations`, a multi-region (`US`)."""
    kms_key_id: str
    """Crypto key in the bucket's location (`nam4` for NAM4, `us` for a pair of US regions)."""
    data_locations: tuple[str, ...] = ()
    """A configurable dual-region: the two regions of `location`'s multi-region. Default: none."""
    models_prefix: str = "models/"
    """Where artifacts live in the bucket; default `models/`."""
    soft_delete_days: int = 30
    """Days a deleted or overwritten object stays restorable (7 to 90). Default: `30`."""
    noncurrent_version_days: int = 90
    """Days an older version of an artifact is kept once replaced. Default: `90`."""
    labels: dict[str, str] = field(default_factory=dict)
    """Google Cloud labels on the bucket; default none."""


class GcsArtifactStore(Construct):
    """A turbo-replicated, CMEK-encrypted, private dual-region bucket (see module docstring)."""

    def __init__(self, scope: Construct, id_: str, props: GcsArtifactStoreProps):
        super().__init__(scope, id_)
        _validate(self, props)
        grant = grant_service_agent(self, "storage-key-grant", props.kms_key_id, props.project_number, "storage")
        self.bucket = StorageBucket(
            self, "bucket", project=props.project_id, name=props.bucket_name, location=props.location,
            custom_placement_config=StorageBucketCustomPlacementConfig(data_locations=list(props.data_locations))
            if props.data_locations else None,
            rpo="ASYNC_TURBO", storage_class="STANDARD",
            uniform_bucket_level_access=True, public_access_prevention="enforced",
            versioning=StorageBucketVersioning(enabled=True),
            encryption=StorageBucketEncryption(default_kms_key_name=props.kms_key_id),
            soft_delete_policy=StorageBucketSoftDeletePolicy(
                retention_duration_seconds=props.soft_delete_days * SECONDS_PER_DAY),
            lifecycle_rule=[StorageBucketLifecycleRule(
                action=StorageBucketLifecycleRuleAction(type="Delete"),
                condition=StorageBucketLifecycleRuleCondition(
                    with_state="ARCHIVED", days_since_noncurrent_time=props.noncurrent_version_days))],
            force_destroy=False, labels=dict(props.labels) or None, depends_on=[grant])
        self.bucket_name = props.bucket_name
        """The bucket's name as a plain string (deterministic: other stacks name it from config)."""
        self.models_prefix = props.models_prefix
        self.artifact_bucket = GcsArtifactBucket(bucket_name=props.bucket_name, models_prefix=props.models_prefix)
        """The bucket and models prefix the store's grants name (see artifact_grants)."""
        self.regions: tuple[str, ...] = props.data_locations or PREDEFINED_DUAL_REGIONS[props.location.upper()]
        """The two regions that hold every object."""
        TerraformOutput(self, "artifact_bucket", value=self.bucket.name,
                        description="Dual-region artifact bucket").override_logical_id("artifact_bucket")

    @property
    def candidates_prefix(self) -> str:
        return self.artifact_bucket.candidates_prefix

    @property
    def approved_prefix(self) -> str:
        return self.artifact_bucket.approved_prefix

    @property
    def manifest_key(self) -> str:
        return self.artifact_bucket.manifest_key

    def mirror_prefix(self, source_region: str) -> str:
        """Where copies of an AWS region's models land."""
        return self.artifact_bucket.mirror_prefix(source_region)

    def grant_read_approved(self, scope: Construct, id_: str, member: str) -> StorageBucketIamMember:
        """Read the approved area only (serving)."""
        return self.artifact_bucket.grant_read_approved(scope, id_, member)

    def grant_write_candidates(self, scope: Construct, id_: str, member: str) -> list[StorageBucketIamMember]:
        """Create and read candidates only: no overwrite, nothing approved (training)."""
        return self.artifact_bucket.grant_write_candidates(scope, id_, member)

    def grant_read_models(self, scope: Construct, id_: str, member: str) -> StorageBucketIamMember:
        """List the bucket and read candidates, approved and mirrored models (review)."""
        return self.artifact_bucket.grant_read_models(scope, id_, member)

    def grant_publish_approved(self, scope: Construct, id_: str, member: str) -> StorageBucketIamMember:
        """Write the approved area (review)."""
        return self.artifact_bucket.grant_publish_approved(scope, id_, member)

    def grant_list_bucket(self, scope: Construct, id_: str, member: str) -> StorageBucketIamMember:
        """See the bucket and list its objects, with no object access (the transfer agent)."""
        return self.artifact_bucket.grant_list_bucket(scope, id_, member)

    def grant_write_mirror(self, scope: Construct, id_: str, member: str, source_region: str) -> StorageBucketIamMember:
        """Write under the mirror prefix of one AWS region only (the transfer agent)."""
        return self.artifact_bucket.grant_write_mirror(scope, id_, member, source_region)


def _validate(scope: Construct, p: GcsArtifactStoreProps) -> None:
    require(bool(GOOGLE_PROJECT_ID.fullmatch(p.project_id)), scope, "project_id",
            f"{p.project_id!r} is not a Google Cloud project id")
    require(bool(GOOGLE_PROJECT_NUMBER.fullmatch(p.project_number)), scope, "project_number",
            f"{p.project_number!r} is not a project number (digits only)")
    require(bool(GCS_BUCKET_NAME.fullmatch(p.bucket_name)) and not p.bucket_name.startswith("goog"),
            scope, "bucket_name",
            f"{p.bucket_name!r}: 3 to 63 lowercase letters, digits, '-' and '_', not starting with 'goog'")
    location = p.location.upper()
    if p.data_locations:
        require(location in MULTI_REGIONS, scope, "location",
                f"a configurable dual-region names its multi-region ({', '.join(MULTI_REGIONS)}), not {p.location!r}")
        require(len(p.data_locations) == 2 and len(set(p.data_locations)) == 2, scope, "data_locations",
                "a dual-region is exactly two different regions")
        for i, region in enumerate(p.data_locations):
            require(bool(GOOGLE_REGION.fullmatch(region)) and region.startswith(MULTI_REGIONS[location]), scope,
                    f"data_locations[{i}]", f"{region!r} is not a region of the {location} multi-region")
    else:
        require(location in PREDEFINED_DUAL_REGIONS, scope, "location",
                f"{p.location!r} is not a predefined dual-region ({', '.join(PREDEFINED_DUAL_REGIONS)}); "
                "for another pair give a multi-region and data_locations. Turbo replication needs a dual-region")
    require_key_id(scope, "kms_key_id", p.kms_key_id, location)
    require(bool(OBJECT_PREFIX.fullmatch(p.models_prefix)), scope, "models_prefix",
            f"{p.models_prefix!r}: lowercase letters, digits, '-', '_', '/', ending with '/'")
    require(MIN_SOFT_DELETE_DAYS <= p.soft_delete_days <= MAX_SOFT_DELETE_DAYS, scope, "soft_delete_days",
            f"must be {MIN_SOFT_DELETE_DAYS} to {MAX_SOFT_DELETE_DAYS} days (Cloud Storage's range when it is on)")
    require(p.noncurrent_version_days >= 1, scope, "noncurrent_version_days", "must be at least 1 day")
    require_google_labels(scope, p.labels)
