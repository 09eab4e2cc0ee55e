"""The AWS half of the artifact copy to a Google Cloud standby: the IAM role Storage Transfer
Service assumes to read the AWS primary's models prefix (the job itself is
`mlfleet.constructs.gcp.cross_cloud_artifact_copy.S3ToGcsTransfer`, in `<env>-gcp-global`).

The job assumes the role with web identity federation as the project's transfer service agent
(`accounts.google.com`, the agent's numeric subject id): no access key exists anywhere. The role
may list the models prefix, read its objects and decrypt them with the bucket's key, and nothing
else. It lives in the primary's regional stack; the job names it by its deterministic ARN. KMS is
used only through S3 in the stack's region (the provider's), where the bucket and its key are.
"""
from __future__ import annotations

from dataclasses import dataclass

from cdktn import Token
from cdktn_provider_aws.iam_role import IamRole
from cdktn_provider_aws.iam_role_policy import IamRolePolicy
from constructs import Construct

from mlfleet.constructs.aws.iam_policy import policy_document
from mlfleet.constructs.aws.provider_region import provider_region
from mlfleet.constructs.validation import (
    ACCOUNT_ID,
    GOOGLE_SUBJECT_ID,
    IAM_ROLE_NAME,
    OBJECT_PREFIX,
    S3_BUCKET_NAME,
    require,
)

GOOGLE_FEDERATION = "accounts.google.com"


@dataclass(frozen=True, kw_only=True)
class S3ToGcsTransferRoleProps:
    role_name: str
    """Deterministic: the transfer job in the Google Cloud stack names it."""
    account_id: str
    bucket_name: str
    """The primary's artifact bucket."""
    key_arn: str
    """The bucket's KMS key (objects are SSE-KMS encrypted), in the stack's region."""
    transfer_agent_subject_id: str
    """Numeric subject id of the project's Storage Transfer service agent."""
    models_prefix: str = "models/"
    """The prefix the role may list, read and decrypt; default `models/`."""


class S3ToGcsTransferRole(Construct):
    """The AWS role Storage Transfer Service assumes to read the models prefix (see module docstring)."""

    def __init__(self, scope: Construct, id_: str, props: S3ToGcsTransferRoleProps):
        super().__init__(scope, id_)
        require(bool(IAM_ROLE_NAME.fullmatch(props.role_name)), self, "role_name",
                f"{props.role_name!r} is not an IAM role name")
        require(bool(ACCOUNT_ID.fullmatch(props.account_id)), self, "account_id",
                f"{props.account_id!r} is not a 12-digit AWS account id")
        require(bool(S3_BUCKET_NAME.fullmatch(props.bucket_name)), self, "bucket_name",
                f"{props.bucket_name!r} is not an S3 bucket name")
        require(bool(GOOGLE_SUBJECT_ID.fullmatch(props.transfer_agent_subject_id)), self, "transfer_agent_subject_id",
                f"{props.transfer_agent_subject_id!r} is not a Google subject id (digits)")
        require(bool(OBJECT_PREFIX.fullmatch(props.models_prefix)), self, "models_prefix",
                f"{props.models_prefix!r} must be a relative key prefix ending in '/'")
        region = provider_region(self)
        require(Token.is_unresolved(props.key_arn) or props.key_arn.startswith(f"arn:aws:kms:{region}:"), self,
                "key_arn", f"{props.key_arn!r} is not a KMS key ARN in the stack's region {region}")
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
             "Condition": {"StringEquals": {"kms:ViaService": f"s3.{region}.amazonaws.com"}}},
        ]))
        self.role_arn: str = self.role.arn
