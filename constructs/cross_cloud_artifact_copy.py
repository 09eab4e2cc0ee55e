"""Model artifacts from an AWS primary to a Google Cloud standby: Storage Transfer Service copies
the primary's S3 models prefix into the dual-region artifact bucket.

S3 cannot replicate into Cloud Storage, so a Storage Transfer job pulls instead. It reads S3 as
an IAM role that it assumes with web identity federation as the project's transfer service
agent (`accounts.google.com`, the agent's numeric subject id): no access key exists anywhere.
The two halves live in their own failure domains and name each other only by deterministic
names:

- `S3ToGcsTransferRole`, in the AWS primary's regional stack: the role, allowed to list the
  models prefix, read its objects and decrypt them with the bucket's key, and nothing else;
- `S3ToGcsTransfer`, in the environment's `<env>-gcp-global` stack: the transfer job and the
  agent's grants on the destination bucket.

Copies land under `<models_prefix>mirror/<aws-region>/`, outside the `champion/` prefix that
serving reads (`GcpServingIdentity`): the S3 side marks champions with object tags, which Cloud
Storage does not carry. Review publishes a mirrored champion on Google Cloud by copying it into
`champion/`, as it publishes any champion there, after checking it against the mirrored
manifest. Storage Transfer's shortest repeat interval is one hour: that bounds the RPO of the
artifacts on Google Cloud (the environment model checks the target against it).
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from cdktn import Token
from cdktn_provider_aws.iam_role import IamRole
from cdktn_provider_aws.iam_role_policy import IamRolePolicy
from constructs import Construct

from mlfleet.constructs.iam_policy import policy_document
from mlfleet.constructs.validation import (ACCOUNT_ID, GOOGLE_PROJECT_ID as PROJECT_ID,
                                          GOOGLE_PROJECT_NUMBER as PROJECT_NUMBER, REGION, require)

MIRROR = "mirror/"
MIN_REPEAT_SECONDS = 3600
"""Storage Transfer Service runs a recurring job at most once an hour."""
GOOGLE_FEDERATION = "accounts.google.com"
# A fixed date in the past: the job starts at once, and synthesized output stays reproducible.
SCHEDULE_START = {"year": 2026, "month": 1, "day": 1}
_SUBJECT_ID = re.compile(r"^\d{10,30}$")
_S3_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_GCS_BUCKET = re.compile(r"^[a-z0-9][a-z0-9_-]{1,61}[a-z0-9]$")
_PREFIX = re.compile(r"^[a-z0-9][a-z0-9/_-]*/$")
_ROLE_NAME = re.compile(r"^[\w+=,.@-]{1,64}$")


def transfer_agent(project_number: str) -> str:
    """The per-project service agent Storage Transfer Service runs as."""
    return f"project-{project_number}@storage-transfer-service.iam.gserviceaccount.com"


def mirror_prefix(models_prefix: str, source_region: str) -> str:
    return f"{models_prefix}{MIRROR}{source_region}/"


@dataclass(frozen=True, kw_only=True)
class S3ToGcsTransferRoleProps:
    role_name: str
    """Deterministic: the transfer job in the Google Cloud stack names it."""
    account_id: str
    bucket_name: str
    """The primary's artifact bucket."""
    key_arn: str
    """The bucket's KMS key (objects are SSE-KMS encrypted)."""
    transfer_agent_subject_id: str
    """Numeric subject id of the project's Storage Transfer service agent."""
    models_prefix: str = "models/"


class S3ToGcsTransferRole(Construct):
    """The AWS role Storage Transfer Service assumes to read the models prefix (see module docstring)."""

    def __init__(self, scope: Construct, id_: str, props: S3ToGcsTransferRoleProps):
        super().__init__(scope, id_)
        require(bool(_ROLE_NAME.match(props.role_name)), self, "role_name", f"{props.role_name!r} is not an IAM role name")
        require(bool(ACCOUNT_ID.match(props.account_id)), self, "account_id",
                f"{props.account_id!r} is not a 12-digit AWS account id")
        require(bool(_S3_BUCKET.match(props.bucket_name)), self, "bucket_name",
                f"{props.bucket_name!r} is not an S3 bucket name")
        require(Token.is_unresolved(props.key_arn) or props.key_arn.startswith("arn:aws:kms:"), self, "key_arn",
                f"{props.key_arn!r} is not a KMS key ARN")
        require(bool(_SUBJECT_ID.match(props.transfer_agent_subject_id)), self, "transfer_agent_subject_id",
                f"{props.transfer_agent_subject_id!r} is not a Google subject id (digits)")
        require(bool(_PREFIX.match(props.models_prefix)), self, "models_prefix",
                f"{props.models_prefix!r} must be a relative key prefix ending in '/'")
        bucket_arn = f"arn:aws:s3:::{props.bucket_name}"
        trust = {"Effect": "Allow", "Principal": {"Federated": GOOGLE_FEDERATION},
                 "Action": "sts:AssumeRoleWithWebIdentity",
                 "Condition": {"StringEquals": {f"{GOOGLE_FEDERATION}:sub": props.transfer_agent_subject_id}}}
        self.role = IamRole(self, "role", name=props.role_name, assume_role_policy=policy_document([trust]),
                            description="Storage Transfer Service: copy model artifacts to Google Cloud")
        IamRolePolicy(self, "policy", name="mlfleet-gcs-transfer", role=self.role.id, policy=policy_document([
            {"Sid": "LocateBucket", "Effect": "Allow", "Action": "s3:GetBucketLocation", "Resource": bucket_arn},
            {"Sid": "ListModels", "Effect": "Allow", "Action": "s3:ListBucket", "Resource": bucket_arn,
             "Condition": {"StringLike": {"s3:prefix": f"{props.models_prefix}*"}}},
            {"Sid": "ReadModels", "Effect": "Allow", "Action": "s3:GetObject",
             "Resource": f"{bucket_arn}/{props.models_prefix}*"},
            {"Sid": "DecryptModels", "Effect": "Allow", "Action": "kms:Decrypt", "Resource": props.key_arn,
             "Condition": {"StringEquals": {"kms:ViaService": f"s3.{_key_region(props.key_arn)}.amazonaws.com"}}
             if _key_region(props.key_arn) else {}},
        ]))
        self.role_arn: str = self.role.arn


def _key_region(key_arn: str) -> str | None:
    parts = key_arn.split(":") if not Token.is_unresolved(key_arn) else []
    return parts[3] if len(parts) > 3 else None


@dataclass(frozen=True, kw_only=True)
class S3ToGcsTransferProps:
    project_id: str
    project_number: str
    source_bucket: str
    source_region: str
    role_arn: str
    """The `S3ToGcsTransferRole` of the source region, by its deterministic ARN."""
    destination_bucket: str
    models_prefix: str = "models/"
    repeat_interval_seconds: int = MIN_REPEAT_SECONDS


class S3ToGcsTransfer(Construct):
    """A recurring Storage Transfer job from the AWS primary's models prefix to the mirror prefix."""

    def __init__(self, scope: Construct, id_: str, props: S3ToGcsTransferProps):
        super().__init__(scope, id_)
        require(bool(PROJECT_ID.match(props.project_id)), self, "project_id",
                f"{props.project_id!r} is not a Google Cloud project id")
        require(bool(PROJECT_NUMBER.match(props.project_number)), self, "project_number",
                f"{props.project_number!r} is not a project number (digits only)")
        require(bool(_S3_BUCKET.match(props.source_bucket)), self, "source_bucket",
                f"{props.source_bucket!r} is not an S3 bucket name")
        require(bool(REGION.match(props.source_region)), self, "source_region",
                f"{props.source_region!r} is not an AWS region")
        require(re.fullmatch(r"arn:aws:iam::\d{12}:role/[\w+=,.@-]+", props.role_arn) is not None, self, "role_arn",
                f"{props.role_arn!r} is not an IAM role ARN")
        require(bool(_GCS_BUCKET.match(props.destination_bucket)), self, "destination_bucket",
                f"{props.destination_bucket!r} is not a Cloud Storage bucket name")
        require(bool(_PREFIX.match(props.models_prefix)), self, "models_prefix",
                f"{props.models_prefix!r} must be a relative prefix ending in '/'")
        require(props.repeat_interval_seconds >= MIN_REPEAT_SECONDS, self, "repeat_interval_seconds",
                f"Storage Transfer Service repeats a job at most every {MIN_REPEAT_SECONDS} s")

        # Imported here: the AWS half of this module is synthesized without the Google provider,
        # whose bindings cost seconds and hundreds of MB to load.
        from cdktn_provider_google.storage_bucket_iam_member import (StorageBucketIamMember,
                                                                     StorageBucketIamMemberCondition)
        from cdktn_provider_google.storage_transfer_job import (
            StorageTransferJob, StorageTransferJobSchedule, StorageTransferJobScheduleScheduleStartDate,
            StorageTransferJobTransferSpec, StorageTransferJobTransferSpecAwsS3DataSource,
            StorageTransferJobTransferSpecGcsDataSink, StorageTransferJobTransferSpecTransferOptions)

        self.mirror_prefix = mirror_prefix(props.models_prefix, props.source_region)
        member = f"serviceAccount:{transfer_agent(props.project_number)}"
        # The agent lists the bucket (bucket-level) and writes only under the mirror prefix.
        grants = [
            StorageBucketIamMember(self, "agent-bucket-read", bucket=props.destination_bucket,
                                   role="roles/storage.legacyBucketReader", member=member),
            StorageBucketIamMember(
                self, "agent-mirror-write", bucket=props.destination_bucket, role="roles/storage.objectUser",
                member=member, condition=StorageBucketIamMemberCondition(
                    title="mirror-write", description="Write mirrored artifacts only",
                    expression=f'resource.name.startsWith("projects/_/buckets/{props.destination_bucket}'
                               f'/objects/{self.mirror_prefix}")')),
        ]
        self.job = StorageTransferJob(
            self, "job", project=props.project_id,
            description=f"mlfleet artifacts s3://{props.source_bucket}/{props.models_prefix} to Google Cloud",
            transfer_spec=StorageTransferJobTransferSpec(
                aws_s3_data_source=StorageTransferJobTransferSpecAwsS3DataSource(
                    bucket_name=props.source_bucket, path=props.models_prefix, role_arn=props.role_arn),
                gcs_data_sink=StorageTransferJobTransferSpecGcsDataSink(
                    bucket_name=props.destination_bucket, path=self.mirror_prefix),
                # Versions in the destination keep what a deletion at the source would lose.
                transfer_options=StorageTransferJobTransferSpecTransferOptions(
                    overwrite_when="DIFFERENT", delete_objects_unique_in_sink=False)),
            schedule=StorageTransferJobSchedule(
                schedule_start_date=StorageTransferJobScheduleScheduleStartDate(**SCHEDULE_START),
                repeat_interval=f"{props.repeat_interval_seconds}s"),
            status="ENABLED", depends_on=grants)
