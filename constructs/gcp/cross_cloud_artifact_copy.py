"""Model artifacts from an AWS primary to a Google Cloud standby: Storage Transfer Service copies
the primary's S3 models prefix into the dual-region artifact bucket.

S3 cannot replicate into Cloud Storage, so a Storage Transfer job pulls instead. The two halves
live in their own failure domains and name each other only by deterministic names:

- `mlfleet.constructs.aws.gcs_transfer_role.S3ToGcsTransferRole`, in the AWS primary's regional
  stack: the role the job assumes with web identity federation (no access key exists anywhere);
- `S3ToGcsTransfer` (here), in the environment's `<env>-gcp-global` stack: the transfer job and
  the agent's grants on the destination bucket.

Copies land under the destination's `<models_prefix>mirror/<aws-region>/`, outside the
`approved/` area that serving reads (`GcpServingIdentity`): a mirrored manifest is signed with the
AWS key, not Google Cloud's. Review publishes a mirrored version on Google Cloud by copying it into
`approved/` and signing the manifest there, as it publishes any version, after checking it against
the mirrored manifest. Storage Transfer's shortest repeat interval is one hour: that
bounds the RPO of the artifacts on Google Cloud (the environment model checks the target against
it).
"""
from __future__ import annotations

from dataclasses import dataclass

from cdktn_provider_google.storage_transfer_job import (
    StorageTransferJob,
    StorageTransferJobSchedule,
    StorageTransferJobScheduleScheduleStartDate,
    StorageTransferJobTransferSpec,
    StorageTransferJobTransferSpecAwsS3DataSource,
    StorageTransferJobTransferSpecGcsDataSink,
    StorageTransferJobTransferSpecTransferOptions,
)
from constructs import Construct

from mlfleet.constructs.gcp.artifact_grants import GcsArtifactGrants
from mlfleet.constructs.service_limits import STORAGE_TRANSFER_RPO_SECONDS
from mlfleet.constructs.validation import (
    GOOGLE_PROJECT_ID,
    GOOGLE_PROJECT_NUMBER,
    IAM_ROLE_ARN,
    OBJECT_PREFIX,
    REGION,
    S3_BUCKET_NAME,
    require,
)

# A fixed date in the past: the job starts at once, and synthesized output stays reproducible.
SCHEDULE_START = {"year": 2026, "month": 1, "day": 1}


def transfer_agent(project_number: str) -> str:
    """The per-project service agent Storage Transfer Service runs as."""
    return f"project-{project_number}@storage-transfer-service.iam.gserviceaccount.com"


@dataclass(frozen=True, kw_only=True)
class S3ToGcsTransferProps:
    project_id: str
    project_number: str
    source_bucket: str
    source_region: str
    role_arn: str
    """The `S3ToGcsTransferRole` of the source region, by its deterministic ARN."""
    destination: GcsArtifactGrants
    """The artifact bucket copies land in, under its mirror prefix, and whose grants the agent gets: the
    `GcsArtifactStore` (in the same stack), or a `GcsArtifactBucket.from_attributes(...)`."""
    models_prefix: str = "models/"
    """The source prefix copied; default `models/`."""
    repeat_interval_seconds: int = STORAGE_TRANSFER_RPO_SECONDS
    """Seconds between transfer runs (at least Storage Transfer's one hour);
    default one hour (`STORAGE_TRANSFER_RPO_SECONDS`)."""


class S3ToGcsTransfer(Construct):
    """A recurring Storage Transfer job from the AWS primary's models prefix to the mirror prefix."""

    def __init__(self, scope: Construct, id_: str, props: S3ToGcsTransferProps):
        super().__init__(scope, id_)
        require(bool(GOOGLE_PROJECT_ID.fullmatch(props.project_id)), self, "project_id",
                f"{props.project_id!r} is not a Google Cloud project id")
        require(bool(GOOGLE_PROJECT_NUMBER.fullmatch(props.project_number)), self, "project_number",
                f"{props.project_number!r} is not a project number (digits only)")
        require(bool(S3_BUCKET_NAME.fullmatch(props.source_bucket)), self, "source_bucket",
                f"{props.source_bucket!r} is not an S3 bucket name")
        require(bool(REGION.fullmatch(props.source_region)), self, "source_region",
                f"{props.source_region!r} is not an AWS region")
        require(bool(IAM_ROLE_ARN.fullmatch(props.role_arn)), self, "role_arn",
                f"{props.role_arn!r} is not an IAM role ARN")
        require(bool(OBJECT_PREFIX.fullmatch(props.models_prefix)), self, "models_prefix",
                f"{props.models_prefix!r} must be a relative prefix ending in '/'")
        require(props.repeat_interval_seconds >= STORAGE_TRANSFER_RPO_SECONDS, self, "repeat_interval_seconds",
                f"Storage Transfer Service repeats a job at most every {STORAGE_TRANSFER_RPO_SECONDS} s")

        destination = props.destination
        self.mirror_prefix = destination.mirror_prefix(props.source_region)
        member = f"serviceAccount:{transfer_agent(props.project_number)}"
        # The agent lists the bucket (bucket-level) and writes only under the mirror prefix.
        grants = [destination.grant_list_bucket(self, "agent-bucket-read", member),
                  destination.grant_write_mirror(self, "agent-mirror-write", member, props.source_region)]
        self.job = StorageTransferJob(
            self, "job", project=props.project_id,
            description=f"mlfleet artifacts s3://{props.source_bucket}/{props.models_prefix} to Google Cloud",
            transfer_spec=StorageTransferJobTransferSpec(
                aws_s3_data_source=StorageTransferJobTransferSpecAwsS3DataSource(
                    bucket_name=props.source_bucket, path=props.models_prefix, role_arn=props.role_arn),
                gcs_data_sink=StorageTransferJobTransferSpecGcsDataSink(
                    bucket_name=destination.bucket_name, path=self.mirror_prefix),
                # Versions in the destination keep what a deletion at the source would lose.
                transfer_options=StorageTransferJobTransferSpecTransferOptions(
                    overwrite_when="DIFFERENT", delete_objects_unique_in_sink=False)),
            schedule=StorageTransferJobSchedule(
                schedule_start_date=StorageTransferJobScheduleScheduleStartDate(**SCHEDULE_START),
                repeat_interval=f"{props.repeat_interval_seconds}s"),
            status="ENABLED", depends_on=grants)
