"""Separate identities for the three parties that touch model artifacts in one region.

- serving (the runtime's pods, through EKS Pod Identity) reads the approved area only
  (`<models_prefix>approved/`: the signed manifest and the approved versions);
- training writes, reads and lists candidates (`<models_prefix>candidates/`) and can write nothing
  in the approved area (an explicit deny, and the bucket policy's guard);
- review reads candidates, copies an approved version into the approved area, publishes the
  manifest and its signature there, and signs with the manifest signing key of its region.

So a compromised training job cannot get a model served (it can neither write the approved area
nor sign a manifest), and a compromised serving pod cannot read unapproved models or write
anything. IAM is global: role names carry the region.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from cdktn import Token
from cdktn_provider_aws.eks_pod_identity_association import EksPodIdentityAssociation
from cdktn_provider_aws.iam_role import IamRole
from cdktn_provider_aws.iam_role_policy import IamRolePolicy
from constructs import Construct

from mlfleet.constructs.aws.artifact_grants import ArtifactGrants, PolicyStatements
from mlfleet.constructs.aws.iam_policy import policy_document
from mlfleet.constructs.aws.manifest_signing_key import ManifestSigningGrants
from mlfleet.constructs.validation import (
    ACCOUNT_ID,
    EKS_CLUSTER_NAME,
    IAM_ROLE_NAME,
    IAM_TRUSTED_PRINCIPAL_ARN,
    KUBERNETES_NAME,
    REGION,
    require,
)


@dataclass(frozen=True, kw_only=True)
class IamServingIdentityProps:
    name_prefix: str
    """Start of every role name, e.g. `mlfleet-prod`; roles are `<prefix>-<region>-<purpose>`."""
    account_id: str
    region: str
    artifacts: ArtifactGrants
    """What the roles are granted on: this region's `S3ArtifactStore` (in the same stack), or an
    `ArtifactBucket.from_attributes(...)` for a bucket known only by its derived names."""
    cluster_name: str
    """The EKS cluster whose runtime pods assume the serving role."""
    training_principals: tuple[str, ...]
    """IAM role/user/account ARNs allowed to assume the training role (no wildcards)."""
    review_principals: tuple[str, ...]
    """IAM role/user/account ARNs allowed to assume the review role (no wildcards)."""
    signing_key: ManifestSigningGrants | None = None
    """The manifest signing key of this region that review signs with: the `ManifestSigningKey`, or a
    `ManifestSigningKeyAlias` for a replica. Default: none (review then cannot sign)."""
    namespace: str = "mlfleet"
    """The runtime pods' Kubernetes namespace; default `mlfleet`."""
    service_account: str = "mlfleet-runtime"
    """The runtime pods' Kubernetes service account; default `mlfleet-runtime`."""
    tags: dict[str, str] = field(default_factory=dict)
    """AWS tags on the roles; default none."""


class IamServingIdentity(Construct):
    """Serving (pod identity), training and review roles over one region's artifacts."""

    def __init__(self, scope: Construct, id_: str, props: IamServingIdentityProps):
        super().__init__(scope, id_)
        _validate(self, props)
        # The statements each role gets are the bucket's grants (artifact_grants), not assembled here.
        artifacts = props.artifacts
        self.manifest_key = artifacts.manifest_key
        tags = dict(props.tags) or None

        cluster_arn = f"arn:aws:eks:{props.region}:{props.account_id}:cluster/{props.cluster_name}"
        serving = PolicyStatements()
        artifacts.grant_read_approved(serving)
        self.runtime_role = self._role(props, "serving", "mlfleet runtime pods: read approved models", {
            "Effect": "Allow", "Principal": {"Service": "pods.eks.amazonaws.com"},
            "Action": ["sts:AssumeRole", "sts:TagSession"],
            # Only pods of this account's cluster, not any EKS cluster that names the role.
            "Condition": {"StringEquals": {"aws:SourceAccount": props.account_id},
                          "ArnEquals": {"aws:SourceArn": cluster_arn}}}, serving, tags)
        self.pod_identity_association = EksPodIdentityAssociation(
            self, "runtime-pod-identity", cluster_name=props.cluster_name, namespace=props.namespace,
            service_account=props.service_account, role_arn=self.runtime_role.arn, tags=tags)

        training = PolicyStatements()
        artifacts.grant_write_candidates(training)
        self.training_role = self._role(props, "training", "mlfleet training: write candidate models",
                                        _assumed_by(props.training_principals), training, tags)

        review = PolicyStatements()
        artifacts.grant_approve(review)
        if props.signing_key is not None:
            props.signing_key.grant_sign(review)
        self.review_role = self._role(props, "review", "mlfleet review: approve and sign models",
                                      _assumed_by(props.review_principals), review, tags)

    def _role(self, props: IamServingIdentityProps, purpose: str, description: str, trust: dict,
              policy: PolicyStatements, tags: dict[str, str] | None) -> IamRole:
        role = IamRole(self, f"{purpose}-role", name=role_name(props.name_prefix, props.region, purpose),
                       description=description, assume_role_policy=policy_document([trust]), tags=tags)
        IamRolePolicy(self, f"{purpose}-policy", name=f"mlfleet-{purpose}", role=role.id,
                      policy=policy_document(policy.statements))
        return role


def role_name(name_prefix: str, region: str, purpose: str) -> str:
    return f"{name_prefix}-{region}-{purpose}"


def _assumed_by(principals: tuple[str, ...]) -> dict:
    return {"Effect": "Allow", "Principal": {"AWS": sorted(principals)}, "Action": "sts:AssumeRole"}



def _validate(scope: Construct, props: IamServingIdentityProps) -> None:
    require(bool(ACCOUNT_ID.fullmatch(props.account_id)), scope, "account_id",
            f"{props.account_id!r} is not a 12-digit AWS account id")
    require(bool(REGION.fullmatch(props.region)), scope, "region", f"{props.region!r} is not an AWS region name")
    longest = role_name(props.name_prefix, props.region, "training")
    require(bool(IAM_ROLE_NAME.fullmatch(longest)), scope, "name_prefix",
            f"{longest!r} is not a valid IAM role name (letters, digits, +=,.@_-; at most 64 characters)")
    require(Token.is_unresolved(props.cluster_name) or bool(EKS_CLUSTER_NAME.fullmatch(props.cluster_name)),
            scope, "cluster_name", f"{props.cluster_name!r} is not an EKS cluster name")
    for prop in ("namespace", "service_account"):
        value = getattr(props, prop)
        require(bool(KUBERNETES_NAME.fullmatch(value)), scope, prop, f"{value!r} is not a Kubernetes DNS label")
    for prop in ("training_principals", "review_principals"):
        principals = getattr(props, prop)
        require(len(principals) >= 1, scope, prop, "name at least one principal that may assume the role")
        for i, principal in enumerate(principals):
            require(bool(IAM_TRUSTED_PRINCIPAL_ARN.fullmatch(principal)), scope, f"{prop}[{i}]",
                    f"{principal!r} is not an IAM role, user or account root ARN (wildcards are not allowed)")
