"""The project's Binary Authorization policy: GKE admits only the images mlfleet pins.

GKE clusters evaluate one policy per project (`PROJECT_SINGLETON_POLICY_ENFORCE`, set by
`GkeCluster`). This one denies every image by default and admits:
- each image of `images` by digest only: the allowlist pattern `<image>@sha256:*` matches a reference
  by digest and no tag (a tag can be moved to other content; a digest cannot);
- Google's own GKE system images, through the global policy (`globalPolicyEvaluationMode: ENABLE`), so
  that add-ons and GKE-managed components keep running.
A denied pod is refused at admission and the refusal is written to Cloud Audit Logs.

The policy is a singleton: it replaces whatever policy the project has. A project shared with other
workloads keeps its own policy and adds mlfleet's patterns to it (the environment's
`gcp.manage_binary_authorization_policy: false`).
"""
from __future__ import annotations

from dataclasses import dataclass

from cdktn_provider_google.binary_authorization_policy import (
    BinaryAuthorizationPolicy,
    BinaryAuthorizationPolicyAdmissionWhitelistPatterns,
    BinaryAuthorizationPolicyDefaultAdmissionRule,
)
from constructs import Construct

from mlfleet.constructs.validation import GOOGLE_PROJECT_ID, IMAGE_REFERENCE, require

_ANY_DIGEST = "sha256:" + "0" * 64


@dataclass(frozen=True, kw_only=True)
class ImageAdmissionPolicyProps:
    project_id: str
    images: tuple[str, ...]
    """Images admitted by digest, as `<registry>/<path>/<image>` without a tag or digest, e.g.
    `us-central1-docker.pkg.dev/my-project/mlfleet-prod/runtime`."""


class ImageAdmissionPolicy(Construct):
    """Deny by default; admit `images` by digest and GKE's system images (see module docstring)."""

    def __init__(self, scope: Construct, id_: str, props: ImageAdmissionPolicyProps):
        super().__init__(scope, id_)
        require(bool(GOOGLE_PROJECT_ID.fullmatch(props.project_id)), self, "project_id",
                f"{props.project_id!r} is not a Google Cloud project id")
        require(len(props.images) >= 1, self, "images", "name at least one image: with none, no pod could run")
        require(len(set(props.images)) == len(props.images), self, "images", "lists an image twice")
        for i, image in enumerate(props.images):
            # A name that takes a digest, and no tag or digest of its own, under a registry host.
            require(bool(IMAGE_REFERENCE.fullmatch(f"{image}@{_ANY_DIGEST}")) and "." in image.split("/")[0]
                    and "/" in image, self, f"images[{i}]",
                    f"{image!r} is not <registry>/<path>/<image> without a tag or digest (the policy admits the "
                    "image by digest only)")
        self.name_patterns = [f"{image}@sha256:*" for image in sorted(props.images)]
        self.policy = BinaryAuthorizationPolicy(
            self, "policy", project=props.project_id,
            description="mlfleet: only the pinned images, by digest, and GKE's system images",
            global_policy_evaluation_mode="ENABLE",
            admission_whitelist_patterns=[BinaryAuthorizationPolicyAdmissionWhitelistPatterns(name_pattern=pattern)
                                          for pattern in self.name_patterns],
            default_admission_rule=BinaryAuthorizationPolicyDefaultAdmissionRule(
                evaluation_mode="ALWAYS_DENY", enforcement_mode="ENFORCED_BLOCK_AND_AUDIT_LOG"))
