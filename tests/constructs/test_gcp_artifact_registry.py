from __future__ import annotations

import cdktn
import pytest

from mlfleet.constructs.gcp.artifact_registry import ArtifactRegistryRepository, ArtifactRegistryRepositoryProps
from mlfleet.constructs.gcp.kms_key import crypto_key_id
from mlfleet.constructs.policy import evaluate_terraform
from mlfleet.constructs.validation import PropsError

from helpers.template import Template

PROJECT, NUMBER, REGION = "mlfleet-prod", "123456789012", "us-central1"
KEY = crypto_key_id(PROJECT, REGION, "mlfleet-prod-usc1", "images")
NODES = "serviceAccount:mlfleet-prod-usc1-nodes@mlfleet-prod.iam.gserviceaccount.com"
DIGEST = "sha256:" + "ab" * 32


def google(build):
    from cdktn_provider_google.provider import GoogleProvider

    def _build(stack):
        GoogleProvider(stack, "google", project="p", region=REGION)
        return build(stack)
    return _build


def props(**overrides) -> ArtifactRegistryRepositoryProps:
    return ArtifactRegistryRepositoryProps(**{**dict(
        project_id=PROJECT, project_number=NUMBER, location=REGION, repository_id="mlfleet-runtime",
        kms_key_id=KEY, reader_members=(NODES,)), **overrides})


def test_repository_is_regional_docker_immutable_cmek_cleaned_and_readable_by_the_nodes_only(synth):
    built = {}
    tf = synth(google(lambda s: built.setdefault("repo", ArtifactRegistryRepository(s, "images", props()))),
               with_provider=False)
    template = Template(tf)
    repository = template.has_resource_properties("google_artifact_registry_repository", {
        "format": "DOCKER", "location": REGION, "repository_id": "mlfleet-runtime", "kms_key_name": KEY,
        "docker_config": {"immutable_tags": True}, "cleanup_policy_dry_run": False,
        "cleanup_policies": [{"id": "delete-untagged", "action": "DELETE",
                              "condition": {"tag_state": "UNTAGGED", "older_than": f"{14 * 86400}s"}}]})
    # The Artifact Registry service agent can use the key before the repository is made with it.
    grants = template.resources("google_kms_crypto_key_iam_member")
    assert [(g["crypto_key_id"], g["role"], g["member"]) for g in grants.values()] == [(
        KEY, "roles/cloudkms.cryptoKeyEncrypterDecrypter",
        f"serviceAccount:service-{NUMBER}@gcp-sa-artifactregistry.iam.gserviceaccount.com")]
    assert repository["depends_on"] == [f"google_kms_crypto_key_iam_member.{name}" for name in grants]
    # Read, and only read, for the nodes that pull images.
    repository_name = next(iter(template.resources("google_artifact_registry_repository")))
    readers = template.resources("google_artifact_registry_repository_iam_member")
    assert [(r["role"], r["member"], r["repository"], r["location"]) for r in readers.values()] == [
        ("roles/artifactregistry.reader", NODES, f"${{google_artifact_registry_repository.{repository_name}.name}}",
         REGION)]
    repo = built["repo"]
    assert repo.repository_url == "us-central1-docker.pkg.dev/mlfleet-prod/mlfleet-runtime"
    assert repo.image("runtime", DIGEST) == f"us-central1-docker.pkg.dev/mlfleet-prod/mlfleet-runtime/runtime@{DIGEST}"
    # MLF006 is the stack's: labels come from the provider's default_labels, set by stacks.
    assert [f for f in evaluate_terraform("gcp", tf) if f.rule != "MLF006"] == []


@pytest.fixture
def stack():
    return cdktn.TerraformStack(cdktn.Testing.app(), "test")


def test_a_reader_given_as_a_reference_is_granted_without_a_shape_check(stack):
    repo = ArtifactRegistryRepository(stack, "images", props(
        reader_members=(f"serviceAccount:{cdktn.Token.as_string(cdktn.Fn.lower('X'))}",), untagged_expiry_days=3))
    body = next(iter(stack.to_terraform()["resource"]["google_artifact_registry_repository"].values()))
    assert body["cleanup_policies"][0]["condition"]["older_than"] == f"{3 * 86400}s"
    assert len(repo.readers) == 1


def test_an_image_is_named_by_a_full_sha256_digest(stack):
    repo = ArtifactRegistryRepository(stack, "images", props())
    for digest in ("latest", "sha256:abc", "sha256:" + "AB" * 32):
        with pytest.raises(PropsError, match="digest: .* is not a sha256 digest"):
            repo.image("runtime", digest)


@pytest.mark.parametrize("overrides, message", [
    (dict(location="us"), "location: 'us' is not a region: a multi-region repository puts every region's images"),
    (dict(project_number="12ab"), "project_number: '12ab' is not a project number"),
    (dict(project_id="Prod"), "project_id: 'Prod' is not a Google Cloud project id"),
    (dict(repository_id="Runtime_Images"), "repository_id: 'Runtime_Images'"),
    (dict(kms_key_id=crypto_key_id(PROJECT, "us-east1", "r", "k")),
     "kms_key_id: the key is in 'us-east1', but the data it encrypts is in 'us-central1'"),
    (dict(reader_members=("allUsers",)), r"reader_members\[0\]: 'allUsers' is not a user, group or service account"),
    (dict(reader_members=(NODES, NODES)), "reader_members: lists a member twice"),
    (dict(untagged_expiry_days=0), "untagged_expiry_days: must be 1 to 365 days"),
])
def test_invalid_props_name_the_prop(stack, overrides, message):
    with pytest.raises(PropsError, match=message):
        ArtifactRegistryRepository(stack, "images", props(**overrides))
