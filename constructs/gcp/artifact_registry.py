"""The runtime's container images on Google Cloud: one regional Artifact Registry repository per
serving region.

Artifact Registry has no cross-region replication of a regional repository: the image is pushed to
each region's repository, and each region's runtime pulls from its own. A multi-region repository
(`us`, `europe`) would put every region's images in one location's failure domain, so it is refused.
Each regional stack makes its repository; the push pipeline names every region's repository by its
deterministic URL (`repository_url`), never by a reference into another stack.

Secure by default:
- immutable tags: a tag names one digest forever, so a pull by digest and a pull by tag agree, and a
  pushed image cannot be replaced under a running Deployment;
- a customer-managed key in the repository's region (the Artifact Registry service agent is granted
  on it before the repository is made);
- read access only for the listed members (the GKE nodes' service account pulls images);
- a cleanup policy deleting untagged versions after `untagged_expiry_days` (what a re-push leaves
  behind). The child manifests of a multi-platform image index are untagged versions too: push the
  runtime as single-platform images.
"""
from __future__ import annotations

from dataclasses import dataclass

from cdktn import Token
from cdktn_provider_google.artifact_registry_repository import (
    ArtifactRegistryRepository as ArtifactRegistryRepositoryResource,
)
from cdktn_provider_google.artifact_registry_repository import (
    ArtifactRegistryRepositoryCleanupPolicies,
    ArtifactRegistryRepositoryCleanupPoliciesCondition,
    ArtifactRegistryRepositoryDockerConfig,
)
from cdktn_provider_google.artifact_registry_repository_iam_member import ArtifactRegistryRepositoryIamMember
from cdktn_provider_google.kms_crypto_key_iam_member import KmsCryptoKeyIamMember
from constructs import Construct

from mlfleet.constructs.gcp.kms_key import ENCRYPTER_DECRYPTER, require_key_id
from mlfleet.constructs.validation import (
    GOOGLE_IAM_MEMBER,
    GOOGLE_PROJECT_ID,
    GOOGLE_PROJECT_NUMBER,
    GOOGLE_REGION,
    GOOGLE_RESOURCE_NAME,
    require,
)

# The agent that encrypts a repository's content with the customer key.
ARTIFACT_REGISTRY_AGENT = "service-{number}@gcp-sa-artifactregistry.iam.gserviceaccount.com"
READER_ROLE = "roles/artifactregistry.reader"
SECONDS_PER_DAY = 86400
MAX_UNTAGGED_EXPIRY_DAYS = 365


@dataclass(frozen=True, kw_only=True)
class ArtifactRegistryRepositoryProps:
    project_id: str
    project_number: str
    """Names the Artifact Registry service agent that encrypts with the key."""
    location: str
    """The serving region (`us-central1`): a regional repository, never a multi-region."""
    repository_id: str
    kms_key_id: str
    """Crypto key in the repository's region."""
    reader_members: tuple[str, ...] = ()
    """IAM members that pull images (`serviceAccount:<GKE node account>`). Default: none."""
    untagged_expiry_days: int = 14
    """Days an untagged image version is kept before the cleanup policy deletes it (1 to 365). Default: `14`."""


class ArtifactRegistryRepository(Construct):
    """A regional, CMEK-encrypted DOCKER repository with immutable tags (see module docstring)."""

    def __init__(self, scope: Construct, id_: str, props: ArtifactRegistryRepositoryProps):
        super().__init__(scope, id_)
        _validate(self, props)
        agent = ARTIFACT_REGISTRY_AGENT.format(number=props.project_number)
        # The same grant as kms_key.grant_service_agent makes: the repository's first write needs it.
        grant = KmsCryptoKeyIamMember(self, "artifactregistry-key-grant", crypto_key_id=props.kms_key_id,
                                      role=ENCRYPTER_DECRYPTER, member=f"serviceAccount:{agent}")
        self.repository = ArtifactRegistryRepositoryResource(
            self, "repository", project=props.project_id, location=props.location,
            repository_id=props.repository_id, format="DOCKER", mode="STANDARD_REPOSITORY",
            description="mlfleet runtime images (pushed to every serving region)",
            kms_key_name=props.kms_key_id,
            docker_config=ArtifactRegistryRepositoryDockerConfig(immutable_tags=True),
            cleanup_policy_dry_run=False,
            cleanup_policies=[ArtifactRegistryRepositoryCleanupPolicies(
                id="delete-untagged", action="DELETE",
                condition=ArtifactRegistryRepositoryCleanupPoliciesCondition(
                    tag_state="UNTAGGED", older_than=f"{props.untagged_expiry_days * SECONDS_PER_DAY}s"))],
            depends_on=[grant])
        self.readers = [ArtifactRegistryRepositoryIamMember(
            self, f"reader-{index}", project=props.project_id, location=props.location,
            repository=self.repository.name, role=READER_ROLE, member=member)
            for index, member in enumerate(props.reader_members)]
        self.location = props.location
        self.repository_id = props.repository_id
        self.repository_url = f"{props.location}-docker.pkg.dev/{props.project_id}/{props.repository_id}"
        """Where images are pushed and pulled (`<location>-docker.pkg.dev/<project>/<id>`), as a plain string."""

    def image(self, name: str, digest: str) -> str:
        """The reference a Deployment pulls: an image of this repository by digest."""
        hex_part = digest.removeprefix("sha256:")
        require(digest.startswith("sha256:") and len(hex_part) == 64 and all(c in "0123456789abcdef" for c in hex_part),
                self, "digest",
                f"{digest!r} is not a sha256 digest")
        return f"{self.repository_url}/{name}@{digest}"


def _validate(scope: Construct, p: ArtifactRegistryRepositoryProps) -> None:
    require(bool(GOOGLE_PROJECT_ID.fullmatch(p.project_id)), scope, "project_id",
            f"{p.project_id!r} is not a Google Cloud project id")
    require(bool(GOOGLE_PROJECT_NUMBER.fullmatch(p.project_number)), scope, "project_number",
            f"{p.project_number!r} is not a project number (digits only)")
    require(bool(GOOGLE_REGION.fullmatch(p.location)), scope, "location",
            f"{p.location!r} is not a region: a multi-region repository puts every region's images in "
            "one failure domain; give each serving region its own repository")
    require(bool(GOOGLE_RESOURCE_NAME.fullmatch(p.repository_id)), scope, "repository_id",
            f"{p.repository_id!r}: lowercase letters, digits and '-', starting with a letter, at most 63")
    require_key_id(scope, "kms_key_id", p.kms_key_id, p.location)
    for index, member in enumerate(p.reader_members):
        if not Token.is_unresolved(member):
            require(bool(GOOGLE_IAM_MEMBER.fullmatch(member)), scope, f"reader_members[{index}]",
                    f"{member!r} is not a user, group or service account member")
    require(len(set(p.reader_members)) == len(p.reader_members), scope, "reader_members",
            "lists a member twice")
    require(1 <= p.untagged_expiry_days <= MAX_UNTAGGED_EXPIRY_DAYS, scope, "untagged_expiry_days",
            f"must be 1 to {MAX_UNTAGGED_EXPIRY_DAYS} days")
