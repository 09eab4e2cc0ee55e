from __future__ import annotations

import cdktn
import pytest

from mlfleet.constructs.gcp.gcs_artifact_store import GcsArtifactStore, GcsArtifactStoreProps
from mlfleet.constructs.gcp.kms_key import crypto_key_id
from mlfleet.constructs.validation import PropsError

from helpers.template import only_resource

PROJECT, NUMBER = "mlfleet-prod", "123456789012"
NAM4_KEY = crypto_key_id(PROJECT, "nam4", "mlfleet-prod-nam4", "artifacts")


def google(build):
    from cdktn_provider_google.provider import GoogleProvider

    def _build(stack):
        GoogleProvider(stack, "google", project="p", region="us-central1")
        return build(stack)
    return _build


def props(**overrides) -> GcsArtifactStoreProps:
    return GcsArtifactStoreProps(**{**dict(project_id=PROJECT, project_number=NUMBER, bucket_name="mlfleet-prod-models",
                                           location="NAM4", kms_key_id=NAM4_KEY), **overrides})


def test_bucket_is_dual_region_turbo_replicated_versioned_cmek_private_and_soft_deleting(synth):
    built = {}
    tf = synth(google(lambda s: built.setdefault("store", GcsArtifactStore(s, "store", props(labels={"env": "prod"})))),
               with_provider=False)
    bucket = only_resource(tf, "google_storage_bucket")
    assert bucket["location"] == "NAM4" and bucket["rpo"] == "ASYNC_TURBO"
    assert bucket["versioning"] == {"enabled": True}
    assert bucket["encryption"] == {"default_kms_key_name": NAM4_KEY}
    assert bucket["uniform_bucket_level_access"] is True and bucket["public_access_prevention"] == "enforced"
    assert bucket["soft_delete_policy"] == {"retention_duration_seconds": 30 * 86400}
    assert bucket["force_destroy"] is False
    assert bucket["lifecycle_rule"] == [{"action": {"type": "Delete"},
                                         "condition": {"with_state": "ARCHIVED", "days_since_noncurrent_time": 90}}]
    # The Cloud Storage service agent can use the key before the bucket is made with it.
    grant = only_resource(tf, "google_kms_crypto_key_iam_member")
    assert grant["member"] == f"serviceAccount:service-{NUMBER}@gs-project-accounts.iam.gserviceaccount.com"
    assert grant["crypto_key_id"] == NAM4_KEY and grant["role"] == "roles/cloudkms.cryptoKeyEncrypterDecrypter"
    assert bucket["depends_on"] == [f"google_kms_crypto_key_iam_member.{name}"
                                    for name in tf["resource"]["google_kms_crypto_key_iam_member"]]
    assert tf["output"]["artifact_bucket"]["value"].endswith(".name}")
    assert built["store"].regions == ("us-central1", "us-east1")


@pytest.fixture
def stack():
    return cdktn.TerraformStack(cdktn.Testing.app(), "test")


def test_a_configurable_dual_region_places_data_in_its_two_regions(stack):
    store = GcsArtifactStore(stack, "store", props(location="US", data_locations=("us-east4", "us-west1"),
                                                   kms_key_id=crypto_key_id(PROJECT, "us", "r", "artifacts")))
    bucket = next(iter(stack.to_terraform()["resource"]["google_storage_bucket"].values()))
    assert bucket["custom_placement_config"] == {"data_locations": ["us-east4", "us-west1"]}
    assert store.regions == ("us-east4", "us-west1")


@pytest.mark.parametrize("overrides, message", [
    (dict(location="US-CENTRAL1"), "location: 'US-CENTRAL1' is not a predefined dual-region .*Turbo replication needs"),
    (dict(location="US", data_locations=("us-east4",)),
     "data_locations: a dual-region is exactly two different regions"),
    (dict(location="US", data_locations=("us-east4", "europe-west1")), r"data_locations\[1\]: 'europe-west1' is not a "
                                                                       "region of the US multi-region"),
    (dict(location="NAM9", data_locations=("us-east4", "us-west1")), "location: a configurable dual-region names"),
    (dict(kms_key_id=crypto_key_id(PROJECT, "us-central1", "r", "k")),
     "kms_key_id: the key is in 'us-central1', but the data it encrypts is in 'nam4'"),
    (dict(bucket_name="Models"), "bucket_name: 'Models'"),
    (dict(bucket_name="google-models"), "bucket_name: .*not starting with 'goog'"),
    (dict(soft_delete_days=0), "soft_delete_days: must be 7 to 90 days"),
    (dict(models_prefix="models"), "models_prefix: 'models'.*ending with '/'"),
    (dict(noncurrent_version_days=0), "noncurrent_version_days: must be at least 1 day"),
    (dict(project_number="p-1"), "project_number: 'p-1' is not a project number"),
])
def test_invalid_props_name_the_prop(stack, overrides, message):
    with pytest.raises(PropsError, match=message):
        GcsArtifactStore(stack, "store", props(**overrides))
