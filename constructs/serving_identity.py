"""Separate identities for the three parties that touch model artifacts in one region.

- serving (the runtime's pods, through EKS Pod Identity) reads only artifacts tagged
  `mlfleet:stage=champion`, plus the manifest that pins the champion;
- training writes candidate artifacts under the models prefix, but can neither tag one champion
  nor overwrite the manifest;
- review reads everything under the prefix, approves a version by tagging it champion, and
  publishes the manifest.

So a compromised training job cannot get a model served, and a compromised serving pod cannot
read unapproved models or write anything. IAM is global: role names carry the region.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

from cdktn import Token
from cdktn_provider_aws.eks_pod_identity_association import EksPodIdentityAssociation
from cdktn_provider_aws.iam_role import IamRole
from cdktn_provider_aws.iam_role_policy import IamRolePolicy
from constructs import Construct

from mlfleet.constructs.iam_policy import policy_document
from mlfleet.constructs.validation import REGION, require

STAGE_TAG = "mlfleet:stage"
CHAMPION = "champion"
MANIFEST_NAME = "manifest.json"
_BUCKET_NAME = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_PREFIX = re.compile(r"^[a-z0-9][a-z0-9/_-]*/$")
_ROLE_NAME = re.compile(r"^[\w+=,.@-]{1,64}$")
_K8S_NAME = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
_PRINCIPAL = re.compile(r"^arn:aws(-[a-z]+)*:iam::\d{12}:(root|(role|user)/[\w+=,.@/-]+)$")


@dataclass(frozen=True, kw_only=True)
class ServingIdentityProps:
    name_prefix: str
    """Start of every role name, e.g. `mlfleet-prod`; roles are `<prefix>-<region>-<purpose>`."""
    account_id: str
    region: str
    bucket_name: str
    """This region's artifact bucket."""
    key_arn: str
    """This region's artifact key (S3 decrypts with it on the caller's behalf)."""
    cluster_name: str
    """The EKS cluster whose runtime pods assume the serving role."""
    training_principals: tuple[str, ...]
    """IAM role/user/account ARNs allowed to assume the training role (no wildcards)."""
    review_principals: tuple[str, ...]
    """IAM role/user/account ARNs allowed to assume the review role (no wildcards)."""
    models_prefix: str = "models/"
    namespace: str = "mlfleet"
    service_account: str = "mlfleet-runtime"
    tags: dict[str, str] = field(default_factory=dict)


class ServingIdentity(Construct):
    """Serving (pod identity), training and review roles over one region's artifacts."""

    def __init__(self, scope: Construct, id_: str, props: ServingIdentityProps):
        super().__init__(scope, id_)
        _validate(self, props)
        bucket_arn = f"arn:aws:s3:::{props.bucket_name}"
        models = f"{bucket_arn}/{props.models_prefix}*"
        manifest = f"{bucket_arn}/{props.models_prefix}{MANIFEST_NAME}"
        self.manifest_key = f"{props.models_prefix}{MANIFEST_NAME}"
        via_s3 = {"StringEquals": {"kms:ViaService": f"s3.{props.region}.amazonaws.com"}}
        tags = dict(props.tags) or None

        cluster_arn = f"arn:aws:eks:{props.region}:{props.account_id}:cluster/{props.cluster_name}"
        self.runtime_role = self._role(props, "serving", "mlfleet runtime pods: read champion models", {
            "Effect": "Allow", "Principal": {"Service": "pods.eks.amazonaws.com"},
            "Action": ["sts:AssumeRole", "sts:TagSession"],
            # Only pods of this account's cluster, not any EKS cluster that names the role.
            "Condition": {"StringEquals": {"aws:SourceAccount": props.account_id},
                          "ArnEquals": {"aws:SourceArn": cluster_arn}}}, [{
                "Sid": "ReadChampionArtifacts", "Effect": "Allow",
                "Action": ["s3:GetObject", "s3:GetObjectVersion"], "Resource": models,
                "Condition": {"StringEquals": {f"s3:ExistingObjectTag/{STAGE_TAG}": CHAMPION}},
            }, {
                "Sid": "ReadManifest", "Effect": "Allow", "Action": "s3:GetObject", "Resource": manifest,
            }, {
                "Sid": "DecryptArtifacts", "Effect": "Allow", "Action": "kms:Decrypt", "Resource": props.key_arn,
                "Condition": via_s3,
            }], tags)
        self.pod_identity_association = EksPodIdentityAssociation(
            self, "runtime-pod-identity", cluster_name=props.cluster_name, namespace=props.namespace,
            service_account=props.service_account, role_arn=self.runtime_role.arn, tags=tags)

        self.training_role = self._role(props, "training", "mlfleet training: write candidate models",
                                        _assumed_by(props.training_principals), [{
            "Sid": "WriteCandidates", "Effect": "Allow",
            # Multipart uploads of large artifacts need to be abortable.
            "Action": ["s3:AbortMultipartUpload", "s3:PutObject"], "Resource": models,
        }, {
            "Sid": "EncryptUploads", "Effect": "Allow",
            # Multipart uploads under SSE-KMS decrypt the data key to assemble the parts.
            "Action": ["kms:Decrypt", "kms:GenerateDataKey"], "Resource": props.key_arn, "Condition": via_s3,
        }, {
            "Sid": "DenyChampionTag", "Effect": "Deny",
            "Action": ["s3:PutObject", "s3:PutObjectTagging", "s3:PutObjectVersionTagging"], "Resource": models,
            "Condition": {"StringEquals": {f"s3:RequestObjectTag/{STAGE_TAG}": CHAMPION}},
        }, {
            # The manifest lives under the prefix: an explicit deny keeps training from repinning it.
            "Sid": "DenyManifestWrites", "Effect": "Deny", "Action": "s3:PutObject", "Resource": manifest,
        }], tags)

        self.review_role = self._role(props, "review", "mlfleet review: approve champion models",
                                      _assumed_by(props.review_principals), [{
            "Sid": "ListModels", "Effect": "Allow", "Action": ["s3:ListBucket", "s3:ListBucketVersions"],
            "Resource": bucket_arn, "Condition": {"StringLike": {"s3:prefix": f"{props.models_prefix}*"}},
        }, {
            "Sid": "ReadModels", "Effect": "Allow",
            "Action": ["s3:GetObject", "s3:GetObjectTagging", "s3:GetObjectVersion",
                       "s3:GetObjectVersionTagging"],
            "Resource": models,
        }, {
            "Sid": "ApproveChampion", "Effect": "Allow",
            "Action": ["s3:PutObjectTagging", "s3:PutObjectVersionTagging"], "Resource": models,
        }, {
            "Sid": "PublishManifest", "Effect": "Allow", "Action": "s3:PutObject", "Resource": manifest,
        }, {
            "Sid": "UseArtifactKey", "Effect": "Allow", "Action": ["kms:Decrypt", "kms:GenerateDataKey"],
            "Resource": props.key_arn, "Condition": via_s3,
        }], tags)

    def _role(self, props: ServingIdentityProps, purpose: str, description: str, trust: dict,
              statements: list[dict], tags: dict[str, str] | None) -> IamRole:
        role = IamRole(self, f"{purpose}-role", name=role_name(props.name_prefix, props.region, purpose),
                       description=description, assume_role_policy=policy_document([trust]), tags=tags)
        IamRolePolicy(self, f"{purpose}-policy", name=f"mlfleet-{purpose}", role=role.id,
                      policy=policy_document(statements))
        return role


def role_name(name_prefix: str, region: str, purpose: str) -> str:
    return f"{name_prefix}-{region}-{purpose}"


def _assumed_by(principals: tuple[str, ...]) -> dict:
    return {"Effect": "Allow", "Principal": {"AWS": sorted(principals)}, "Action": "sts:AssumeRole"}



def _validate(scope: Construct, props: ServingIdentityProps) -> None:
    require(re.fullmatch(r"\d{12}", props.account_id) is not None, scope, "account_id",
            f"{props.account_id!r} is not a 12-digit AWS account id")
    require(bool(REGION.match(props.region)), scope, "region", f"{props.region!r} is not an AWS region name")
    longest = role_name(props.name_prefix, props.region, "training")
    require(bool(_ROLE_NAME.match(longest)), scope, "name_prefix",
            f"{longest!r} is not a valid IAM role name (letters, digits, +=,.@_-; at most 64 characters)")
    require(bool(_BUCKET_NAME.match(props.bucket_name)), scope, "bucket_name",
            f"{props.bucket_name!r} is not a valid S3 bucket name")
    require(Token.is_unresolved(props.key_arn) or props.key_arn.startswith(f"arn:aws:kms:{props.region}:"),
            scope, "key_arn", f"{props.key_arn!r} is not a KMS key ARN in {props.region}")
    require(bool(_PREFIX.match(props.models_prefix)), scope, "models_prefix",
            f"{props.models_prefix!r} must be a relative key prefix ending in '/', e.g. 'models/'")
    require(Token.is_unresolved(props.cluster_name) or re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_-]{0,99}",
                                                                    props.cluster_name) is not None,
            scope, "cluster_name", f"{props.cluster_name!r} is not an EKS cluster name")
    for prop in ("namespace", "service_account"):
        value = getattr(props, prop)
        require(bool(_K8S_NAME.match(value)), scope, prop, f"{value!r} is not a Kubernetes DNS label")
    for prop in ("training_principals", "review_principals"):
        principals = getattr(props, prop)
        require(len(principals) >= 1, scope, prop, "name at least one principal that may assume the role")
        for i, principal in enumerate(principals):
            require(bool(_PRINCIPAL.match(principal)), scope, f"{prop}[{i}]",
                    f"{principal!r} is not an IAM role, user or account root ARN (wildcards are not allowed)")
