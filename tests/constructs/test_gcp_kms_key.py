from __future__ import annotations

import cdktn
import pytest

from mlfleet.constructs.gcp.kms_key import (
    CloudKmsKey,
    CloudKmsKeyProps,
    crypto_key_id,
    key_location,
    require_key_id,
    service_agent,
)
from mlfleet.constructs.validation import PropsError

from helpers.template import only_resource


def google(build):
    from cdktn_provider_google.provider import GoogleProvider

    def _build(stack):
        GoogleProvider(stack, "google", project="p", region="us-central1")
        return build(stack)
    return _build


def props(**overrides) -> CloudKmsKeyProps:
    return CloudKmsKeyProps(**{**dict(project_id="mlfleet-prod", location="us-central1", key_ring="mlfleet-prod-usc1",
                                      key="registry", labels={"env": "prod"}), **overrides})


def test_key_is_rotated_protected_from_destroy_and_named_deterministically(synth):
    built = {}
    tf = synth(google(lambda s: built.setdefault("key", CloudKmsKey(s, "key", props(rotation_days=30)))),
               with_provider=False)
    ring = only_resource(tf, "google_kms_key_ring")
    key = only_resource(tf, "google_kms_crypto_key")
    assert ring == {"location": "us-central1", "name": "mlfleet-prod-usc1", "project": "mlfleet-prod"}
    assert key["rotation_period"] == "2592000s" and key["destroy_scheduled_duration"] == "2592000s"
    assert key["purpose"] == "ENCRYPT_DECRYPT" and key["labels"] == {"env": "prod"}
    assert key["lifecycle"] == {"prevent_destroy": True}
    assert key["key_ring"].startswith("${google_kms_key_ring.")
    assert built["key"].key_id_name == \
        "projects/mlfleet-prod/locations/us-central1/keyRings/mlfleet-prod-usc1/cryptoKeys/registry"
    assert built["key"].key_id.startswith("${TfToken")  # a reference, so users are ordered after the key


def test_service_agents_and_key_locations():
    assert service_agent("123456", "cloudsql") == "service-123456@gcp-sa-cloud-sql.iam.gserviceaccount.com"
    assert service_agent("123456", "storage") == "service-123456@gs-project-accounts.iam.gserviceaccount.com"
    assert key_location(crypto_key_id("p-roject", "nam4", "r", "k")) == "nam4"
    assert key_location("not-a-key") is None


@pytest.fixture
def stack():
    return cdktn.TerraformStack(cdktn.Testing.app(), "test")


def test_a_key_in_another_location_than_its_data_is_refused(stack):
    with pytest.raises(PropsError, match=r"kms_key_id: the key is in 'us-east1', but the data it encrypts is in "
                                         r"'us-central1'"):
        require_key_id(stack, "kms_key_id", crypto_key_id("mlfleet-prod", "us-east1", "r", "k"), "us-central1")
    with pytest.raises(PropsError, match="kms_key_id: 'alias/x' is not a crypto key id"):
        require_key_id(stack, "kms_key_id", "alias/x", "us-central1")


@pytest.mark.parametrize("overrides, message", [
    (dict(project_id="P"), "project_id: 'P' is not a Google Cloud project id"),
    (dict(location="US Central"), "location: 'US Central' is not a Cloud KMS location"),
    (dict(key_ring="ring/1"), "key_ring: 'ring/1'"),
    (dict(key=""), "key: ''"),
    (dict(rotation_days=400), "rotation_days: must be 1 to 365 days"),
    (dict(destroy_scheduled_days=0), "destroy_scheduled_days: Cloud KMS keeps"),
    (dict(labels={"Env": "prod"}), r"labels\['Env'\]: is not a Google Cloud label"),
])
def test_invalid_props_name_the_prop(stack, overrides, message):
    with pytest.raises(PropsError, match=message):
        CloudKmsKey(stack, "key", props(**overrides))
