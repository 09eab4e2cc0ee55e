"""Separate Google identities for the three parties that touch model artifacts.

- serving: the runtime's pods, through Workload Identity (their Kubernetes service account
  impersonates this Google service account), read only the approved area: the approved versions,
  the manifest and its signature;
- training creates and reads candidates, and nothing else;
- review reads candidates (and mirrored copies), publishes approved versions, the manifest and its
  signature, and signs with the manifest signing key (`roles/cloudkms.signerVerifier` on it alone).

How "approved only" is enforced: by name, as on AWS. Cloud Storage IAM Conditions test an
object's name: the runtime's model repository is `<models_prefix>approved/` (with the manifest at
`<models_prefix>approved/manifest.json`), writable by review only. Serving's read grant carries
the condition `resource.name.startsWith(".../objects/<models_prefix>approved/")`; training's
create grant is conditioned on `<models_prefix>candidates/`. Approving a version is a
server-side copy from `candidates/` into `approved/` by review, which also makes the approved
bytes immutable to training. The conditions need uniform bucket-level access, which
`GcsArtifactStore` enforces.

So a compromised training job cannot get a model served, and a compromised serving pod cannot
read unapproved models or write anything. Only review has a Cloud KMS grant (to sign): Cloud
Storage encrypts and decrypts with the bucket's key as its own service agent.

Workload Identity binds `PROJECT.svc.id.goog[namespace/service_account]`, a name shared by
every cluster of the project: give each region's runtime the same namespace and Kubernetes
service account, and one serving identity serves them all (IAM is global, like the bucket).
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from cdktn import TerraformOutput
from cdktn_provider_google.service_account import ServiceAccount
from cdktn_provider_google.service_account_iam_member import ServiceAccountIamMember
from constructs import Construct

from mlfleet.constructs.gcp.artifact_grants import GcsArtifactGrants
from mlfleet.constructs.gcp.manifest_signing_key import GcpManifestSigningGrants
from mlfleet.constructs.validation import (
    GOOGLE_IAM_MEMBER,
    GOOGLE_PROJECT_ID,
    GOOGLE_SERVICE_ACCOUNT_ID,
    KUBERNETES_NAME,
    require,
)

WORKLOAD_IDENTITY_USER = "roles/iam.workloadIdentityUser"
IMPERSONATE = "roles/iam.serviceAccountTokenCreator"
PURPOSES = ("serving", "training", "review")
# Named principals only: no allUsers, allAuthenticatedUsers or whole domains.


@dataclass(frozen=True, kw_only=True)
class GcpServingIdentityProps:
    project_id: str
    name_prefix: str
    """Start of the service account ids: `<prefix>-serving`, `-training`, `-review` (at most 30 characters)."""
    artifacts: GcsArtifactGrants
    """What the accounts are granted on: the `GcsArtifactStore` (in the same stack), or a
    `GcsArtifactBucket.from_attributes(...)` for a bucket known only by its derived name."""
    training_principals: tuple[str, ...]
    """Who may impersonate the training account: `user:`, `group:` or `serviceAccount:` emails."""
    review_principals: tuple[str, ...]
    """Who may impersonate the review account: `user:`, `group:` or `serviceAccount:` emails."""
    signing_key: GcpManifestSigningGrants | None = None
    """The manifest signing key review signs with (a `CloudKmsSigningKey`). Default: none (review cannot sign)."""
    namespace: str = "mlfleet"
    """The runtime's Kubernetes namespace; default `mlfleet`."""
    service_account: str = "mlfleet-runtime"
    """The runtime's Kubernetes service account. Default: `mlfleet-runtime`."""


class GcpServingIdentity(Construct):
    """Serving (Workload Identity), training and review service accounts over the artifact bucket."""

    def __init__(self, scope: Construct, id_: str, props: GcpServingIdentityProps):
        super().__init__(scope, id_)
        _validate(self, props)
        project = props.project_id
        # Each binding below is the bucket's grant (artifact_grants), not assembled here.
        artifacts = props.artifacts
        self.candidates_prefix = artifacts.candidates_prefix
        self.approved_prefix = artifacts.approved_prefix
        self.manifest_key = artifacts.manifest_key
        self.workload_identity_member = \
            f"serviceAccount:{project}.svc.id.goog[{props.namespace}/{props.service_account}]"

        accounts = {purpose: ServiceAccount(
            self, f"{purpose}-account", project=project, account_id=f"{props.name_prefix}-{purpose}",
            display_name=f"mlfleet {purpose}", description=description)
            for purpose, description in (
                ("serving", "mlfleet runtime pods: read approved models"),
                ("training", "mlfleet training: write candidate models"),
                ("review", "mlfleet review: approve and sign models"))}
        self.serving_account, self.training_account, self.review_account = (accounts[p] for p in PURPOSES)

        ServiceAccountIamMember(self, "serving-workload-identity", service_account_id=self.serving_account.name,
                                role=WORKLOAD_IDENTITY_USER, member=self.workload_identity_member)
        for purpose, principals in (("training", props.training_principals), ("review", props.review_principals)):
            for principal in sorted(principals):
                ServiceAccountIamMember(self, f"{purpose}-impersonator-{_slug(principal)}",
                                        service_account_id=accounts[purpose].name, role=IMPERSONATE, member=principal)

        member = {purpose: f"serviceAccount:{accounts[purpose].email}" for purpose in PURPOSES}
        self.bucket_grants = [
            artifacts.grant_read_approved(self, "serving-approved-read", member["serving"]),
            *artifacts.grant_write_candidates(self, "training-candidate-write", member["training"]),
            artifacts.grant_read_models(self, "review-models-read", member["review"]),
            artifacts.grant_publish_approved(self, "review-approved-publish", member["review"]),
        ]
        self.signing_grant = props.signing_key.grant_sign(self, "review-manifest-sign", member["review"]) \
            if props.signing_key is not None else None

        self.serving_email: str = self.serving_account.email
        self.training_email: str = self.training_account.email
        self.review_email: str = self.review_account.email
        for purpose in PURPOSES:
            name = f"{purpose}_service_account"
            TerraformOutput(self, name, value=accounts[purpose].email,
                            description=f"Google service account of mlfleet {purpose}").override_logical_id(name)


def _slug(principal: str) -> str:
    return re.sub(r"[^a-z0-9-]", "-", principal.lower())


def _validate(scope: Construct, p: GcpServingIdentityProps) -> None:
    require(bool(GOOGLE_PROJECT_ID.fullmatch(p.project_id)), scope, "project_id",
            f"{p.project_id!r} is not a Google Cloud project id")
    longest = f"{p.name_prefix}-training"
    require(bool(GOOGLE_SERVICE_ACCOUNT_ID.fullmatch(longest)), scope, "name_prefix",
            f"{p.name_prefix!r} makes {longest!r}, not a service account id "
            "(6 to 30 lowercase letters, digits and '-', starting with a letter)")
    for prop in ("namespace", "service_account"):
        require(bool(KUBERNETES_NAME.fullmatch(getattr(p, prop))), scope, prop,
                f"{getattr(p, prop)!r} is not a Kubernetes name")
    for prop in ("training_principals", "review_principals"):
        principals = getattr(p, prop)
        require(bool(principals), scope, prop, "name at least one principal")
        for i, principal in enumerate(principals):
            require(bool(GOOGLE_IAM_MEMBER.fullmatch(principal)), scope, f"{prop}[{i}]",
                    f"{principal!r} is not a named principal (user:, group: or serviceAccount: email); "
                    "allUsers, allAuthenticatedUsers and domains are refused")
        require(len(set(principals)) == len(principals), scope, prop, "lists a principal twice")
