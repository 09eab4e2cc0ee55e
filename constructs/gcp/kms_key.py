"""Cloud KMS: a key ring and a rotated crypto key per location, and the grants that let a Google
service agent use a key for CMEK.

The key's resource id is the cross-region handle: `crypto_key_id(project, location, ring, key)`
names a key in another location without reading that stack's state (principle 1). A Google
service encrypts with a customer key as its per-project service agent, so every construct that
uses a key for CMEK grants its own service agent on it (`grant_service_agent`) and makes the
encrypted resource depend on that grant: the first write would fail without it.

The shapes of the Google identifiers every GCP construct validates live in `validation.py`
(importing them from there does not load the Google provider), and are re-exported here.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from cdktn import TerraformResourceLifecycle, Token
from cdktn_provider_google.kms_crypto_key import KmsCryptoKey
from cdktn_provider_google.kms_crypto_key_iam_member import KmsCryptoKeyIamMember
from cdktn_provider_google.kms_key_ring import KmsKeyRing
from constructs import Construct

from mlfleet.constructs.validation import (
    GOOGLE_CRYPTO_KEY_ID,
    GOOGLE_KMS_LOCATION,
    GOOGLE_KMS_NAME,
    GOOGLE_PROJECT_ID,
    require,
    require_google_labels,
)

ENCRYPTER_DECRYPTER = "roles/cloudkms.cryptoKeyEncrypterDecrypter"
# The service agents that encrypt with a customer key on a project's behalf.
SERVICE_AGENTS = {
    "storage": "service-{number}@gs-project-accounts.iam.gserviceaccount.com",
    "cloudsql": "service-{number}@gcp-sa-cloud-sql.iam.gserviceaccount.com",
    "container": "service-{number}@container-engine-robot.iam.gserviceaccount.com",
    "compute": "service-{number}@compute-system.iam.gserviceaccount.com",
}
SECONDS_PER_DAY = 86400


def crypto_key_id(project: str, location: str, key_ring: str, key: str) -> str:
    """A crypto key's resource id: deterministic, so other regions can name it from config alone."""
    return f"projects/{project}/locations/{location}/keyRings/{key_ring}/cryptoKeys/{key}"


def key_location(key_id: str) -> str | None:
    """The location in a crypto key id, or None when the id is a reference or malformed."""
    match = GOOGLE_CRYPTO_KEY_ID.fullmatch(key_id) if not Token.is_unresolved(key_id) else None
    return match["location"] if match else None


def service_agent(project_number: str, service: str) -> str:
    return SERVICE_AGENTS[service].format(number=project_number)


def require_key_id(scope: Construct, prop: str, key_id: str, location: str) -> None:
    """Validate a crypto key id given in props, and that it lives where the data it encrypts lives."""
    if Token.is_unresolved(key_id):
        return
    require(GOOGLE_CRYPTO_KEY_ID.fullmatch(key_id) is not None, scope, prop,
            f"{key_id!r} is not a crypto key id (projects/P/locations/L/keyRings/R/cryptoKeys/K)")
    require(key_location(key_id) == location.lower(), scope, prop,
            f"the key is in {key_location(key_id)!r}, but the data it encrypts is in {location.lower()!r}: "
            "CMEK needs a key in the same location")


def grant_service_agent(scope: Construct, id_: str, key_id: str, project_number: str,
                        service: str) -> KmsCryptoKeyIamMember:
    """Let one Google service's agent encrypt and decrypt with the key (and nothing else)."""
    return KmsCryptoKeyIamMember(scope, id_, crypto_key_id=key_id, role=ENCRYPTER_DECRYPTER,
                                 member=f"serviceAccount:{service_agent(project_number, service)}")


@dataclass(frozen=True, kw_only=True)
class CloudKmsKeyProps:
    project_id: str
    location: str
    """A region (`us-central1`), a dual-region (`nam4`) or a multi-region (`us`): where the data is."""
    key_ring: str
    key: str
    rotation_days: int = 90
    """Days between automatic key rotations; default `90`."""
    destroy_scheduled_days: int = 30
    """Days a destroyed key version stays recoverable. Default: `30`."""
    labels: dict[str, str] = field(default_factory=dict)
    """Google Cloud labels on the key; default none."""


class CloudKmsKey(Construct):
    """A key ring and one software crypto key, rotated, protected from `terraform destroy`."""

    def __init__(self, scope: Construct, id_: str, props: CloudKmsKeyProps):
        super().__init__(scope, id_)
        require(bool(GOOGLE_PROJECT_ID.fullmatch(props.project_id)), self, "project_id",
                f"{props.project_id!r} is not a Google Cloud project id")
        require(bool(GOOGLE_KMS_LOCATION.fullmatch(props.location)), self, "location",
                f"{props.location!r} is not a Cloud KMS location")
        for prop in ("key_ring", "key"):
            value = getattr(props, prop)
            require(bool(GOOGLE_KMS_NAME.fullmatch(value)), self, prop,
                    f"{value!r}: 1 to 63 letters, digits, '-' or '_'")
        require(1 <= props.rotation_days <= 365, self, "rotation_days", "must be 1 to 365 days")
        require(1 <= props.destroy_scheduled_days <= 120, self, "destroy_scheduled_days",
                "Cloud KMS keeps destroyed versions 1 to 120 days")
        require_google_labels(self, props.labels)

        self.key_ring = KmsKeyRing(self, "key-ring", project=props.project_id, location=props.location,
                                   name=props.key_ring)
        self.crypto_key = KmsCryptoKey(
            self, "key", name=props.key, key_ring=self.key_ring.id, purpose="ENCRYPT_DECRYPT",
            rotation_period=f"{props.rotation_days * SECONDS_PER_DAY}s",
            destroy_scheduled_duration=f"{props.destroy_scheduled_days * SECONDS_PER_DAY}s",
            labels=dict(props.labels) or None,
            # Destroying a key makes everything encrypted with it unreadable.
            lifecycle=TerraformResourceLifecycle(prevent_destroy=True))
        self.location = props.location
        self.key_id_name = crypto_key_id(props.project_id, props.location, props.key_ring, props.key)
        """The key's id as a plain string, for other regions' configuration."""

    @property
    def key_id(self) -> str:
        """The key's id as a reference: resources that use it are created after it."""
        return self.crypto_key.id
