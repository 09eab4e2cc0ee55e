from __future__ import annotations

import cdktn
import pytest
from cdktn_provider_google.kms_key_ring import KmsKeyRing

from mlfleet.constructs.gcp.artifact_grants import GcsArtifactBucket
from mlfleet.constructs.gcp.gcs_artifact_store import GcsArtifactStore
from mlfleet.constructs.gcp.manifest_signing_key import CloudKmsSigningKey, CloudKmsSigningKeyProps
from mlfleet.constructs.gcp.serving_identity import GcpServingIdentity, GcpServingIdentityProps
from mlfleet.constructs.validation import PropsError

from helpers.template import resources

PROJECT, BUCKET = "mlfleet-prod", "mlfleet-prod-models"
OBJECTS = f"projects/_/buckets/{BUCKET}/objects/"


def google(build):
    from cdktn_provider_google.provider import GoogleProvider

    def _build(stack):
        GoogleProvider(stack, "google", project="p", region="us-central1")
        return build(stack)
    return _build


def props(**overrides) -> GcpServingIdentityProps:
    return GcpServingIdentityProps(**{**dict(
        project_id=PROJECT, name_prefix="mlfleet-prod", artifacts=GcsArtifactBucket(bucket_name=BUCKET),
        training_principals=(f"serviceAccount:trainer@{PROJECT}.iam.gserviceaccount.com",),
        review_principals=("group:ml-reviewers@example.com",)), **overrides})


def test_serving_reads_only_approved_training_writes_only_candidates_review_publishes_and_signs(synth):
    built = {}

    def build(stack):
        key_ring = KmsKeyRing(stack, "ring", project=PROJECT, location="us", name="mlfleet-prod-us")
        key = CloudKmsSigningKey(stack, "signing", CloudKmsSigningKeyProps(
            project_id=PROJECT, location="us", key_ring="mlfleet-prod-us", key_ring_id=key_ring.id,
            name="mlfleet-prod-manifest-signing"))
        built["id"] = GcpServingIdentity(stack, "identity", props(signing_key=key))

    tf = synth(google(build), with_provider=False)
    accounts = {body["account_id"]: name for name, body in resources(tf, "google_service_account").items()}
    assert set(accounts) == {"mlfleet-prod-serving", "mlfleet-prod-training", "mlfleet-prod-review"}

    def email(account_id: str) -> str:
        return "serviceAccount:${google_service_account.%s.email}" % accounts[account_id]

    grants = {(g["member"], g["role"]): g["condition"]["expression"]
              for g in resources(tf, "google_storage_bucket_iam_member").values()}
    assert all(g["bucket"] == BUCKET for g in resources(tf, "google_storage_bucket_iam_member").values())
    assert grants == {
        (email("mlfleet-prod-serving"), "roles/storage.objectViewer"):
            f'resource.name.startsWith("{OBJECTS}models/approved/")',
        (email("mlfleet-prod-training"), "roles/storage.objectCreator"):
            f'resource.name.startsWith("{OBJECTS}models/candidates/")',
        (email("mlfleet-prod-training"), "roles/storage.objectViewer"):
            f'resource.name.startsWith("{OBJECTS}models/candidates/")',
        (email("mlfleet-prod-review"), "roles/storage.objectViewer"):
            f'resource.type == "storage.googleapis.com/Bucket"'
            f' || resource.name.startsWith("{OBJECTS}models/candidates/")'
            f' || resource.name.startsWith("{OBJECTS}models/approved/")'
            f' || resource.name.startsWith("{OBJECTS}models/mirror/")',
        (email("mlfleet-prod-review"), "roles/storage.objectUser"):
            f'resource.name.startsWith("{OBJECTS}models/approved/")',
    }
    # The manifest and its signature lie in the approved area: serving can read them, training cannot write them.
    assert built["id"].manifest_key == "models/approved/manifest.json"
    (signer,) = resources(tf, "google_kms_crypto_key_iam_member").values()
    assert (signer["role"], signer["member"]) == ("roles/cloudkms.signerVerifier", email("mlfleet-prod-review"))
    assert signer["crypto_key_id"].startswith("${google_kms_crypto_key.signing_key_")

    bindings = {(b["service_account_id"], b["role"], b["member"])
                for b in resources(tf, "google_service_account_iam_member").values()}
    name = "${google_service_account.%s.name}"
    assert bindings == {
        (name % accounts["mlfleet-prod-serving"], "roles/iam.workloadIdentityUser",
         f"serviceAccount:{PROJECT}.svc.id.goog[mlfleet/mlfleet-runtime]"),
        (name % accounts["mlfleet-prod-training"], "roles/iam.serviceAccountTokenCreator",
         f"serviceAccount:trainer@{PROJECT}.iam.gserviceaccount.com"),
        (name % accounts["mlfleet-prod-review"], "roles/iam.serviceAccountTokenCreator",
         "group:ml-reviewers@example.com"),
    }
    assert resources(tf, "google_project_iam_member") == {}  # nothing project-wide
    assert {o: tf["output"][o]["value"] for o in ("serving_service_account", "training_service_account",
                                                  "review_service_account")} == {
        "serving_service_account": "${google_service_account.%s.email}" % accounts["mlfleet-prod-serving"],
        "training_service_account": "${google_service_account.%s.email}" % accounts["mlfleet-prod-training"],
        "review_service_account": "${google_service_account.%s.email}" % accounts["mlfleet-prod-review"]}


@pytest.fixture
def stack():
    return cdktn.TerraformStack(cdktn.Testing.app(), "test")


@pytest.mark.parametrize("overrides, message", [
    (dict(review_principals=("allUsers",)), r"review_principals\[0\]: 'allUsers' is not a named principal"),
    (dict(training_principals=("allAuthenticatedUsers",)), r"training_principals\[0\]: 'allAuthenticatedUsers'"),
    (dict(review_principals=("domain:example.com",)), r"review_principals\[0\]: 'domain:example.com'"),
    (dict(training_principals=()), "training_principals: name at least one principal"),
    (dict(review_principals=("user:a@example.com", "user:a@example.com")),
     "review_principals: lists a principal twice"),
    (dict(name_prefix="mlfleet-production-use1"), "name_prefix: 'mlfleet-production-use1' makes "
                                                "'mlfleet-production-use1-training', not a service account id"),
    (dict(namespace="ML_Fleet"), "namespace: 'ML_Fleet' is not a Kubernetes name"),
])
def test_invalid_props_name_the_prop(stack, overrides, message):
    with pytest.raises(PropsError, match=message):
        GcpServingIdentity(stack, "identity", props(**overrides))


# The bucket's names enter where it is named by its attributes: they are checked there.
@pytest.mark.parametrize("overrides, message", [
    (dict(models_prefix="/models/"), "models_prefix: '/models/'"),
    (dict(bucket_name="B"), "bucket_name: 'B' is not a Cloud Storage bucket name"),
])
def test_invalid_bucket_attributes_name_the_attribute(stack, overrides, message):
    with pytest.raises(PropsError, match=f"test/artifacts: {message}"):
        GcpServingIdentity(stack, "identity", props(artifacts=GcsArtifactBucket.from_attributes(
            stack, "artifacts", **{"bucket_name": BUCKET, **overrides})))


def test_serving_granted_by_the_store_reads_only_the_approved_area_under_the_stores_prefix(synth):
    import test_gcp_artifact_store as store

    built = {}

    def build(stack):
        artifacts = GcsArtifactStore(stack, "store", store.props(bucket_name=BUCKET, models_prefix="registry/models/"))
        built["id"] = GcpServingIdentity(stack, "identity", props(artifacts=artifacts))

    tf = synth(google(build), with_provider=False)
    assert built["id"].manifest_key == "registry/models/approved/manifest.json"
    grants = list(resources(tf, "google_storage_bucket_iam_member").values())
    assert all(g["bucket"] == BUCKET for g in grants)
    serving = [g for g in grants if "serving" in g["member"]]
    assert [(g["role"], g["condition"]["expression"]) for g in serving] == [
        ("roles/storage.objectViewer", f'resource.name.startsWith("{OBJECTS}registry/models/approved/")')]
