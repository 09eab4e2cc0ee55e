"""The Cloud KMS key that signs the champion manifest on Google Cloud: an asymmetric signing key
(`ASYMMETRIC_SIGN`, `EC_SIGN_P256_SHA256`), the same algorithm as AWS's ECC_NIST_P256 key.

It lives in a multi-region key ring (`us`, `europe`, `asia`: the one around the environment's
Google regions, beside the artifact bucket's key, in the `<env>-gcp-global` stack), so every
region signs and verifies with the same key and no region's loss takes it away. Review signs
`approved/manifest.json` with it (`roles/cloudkms.signerVerifier` on this key only); each region's
serving stack reads the public key of version 1 (`google_kms_crypto_key_version`) for its runtime.

Protection level HSM by default: the private key never leaves a FIPS 140-2 Level 3 module, as on
AWS KMS, and the key that decides what serves everywhere is worth the few dollars a month it costs
over a software key (see the review's cost estimate). Cloud KMS does not rotate asymmetric keys
automatically: a new version means a new public key in the serving stacks.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Protocol

from cdktn import TerraformResourceLifecycle, Token
from cdktn_provider_google.kms_crypto_key import KmsCryptoKey, KmsCryptoKeyVersionTemplate
from cdktn_provider_google.kms_crypto_key_iam_member import KmsCryptoKeyIamMember
from constructs import Construct

from mlfleet.constructs.gcp.kms_key import SECONDS_PER_DAY, crypto_key_id
from mlfleet.constructs.validation import GOOGLE_IAM_MEMBER, GOOGLE_KMS_NAME, require, require_google_labels

PURPOSE = "ASYMMETRIC_SIGN"
ALGORITHM = "EC_SIGN_P256_SHA256"
SIGNER_VERIFIER = "roles/cloudkms.signerVerifier"
PROTECTION_LEVELS = ("HSM", "SOFTWARE")


class GcpManifestSigningGrants(Protocol):
    """What the review identity is granted to sign with: a `CloudKmsSigningKey`."""
    def grant_sign(self, scope: Construct, id_: str, member: str) -> KmsCryptoKeyIamMember: ...


@dataclass(frozen=True, kw_only=True)
class CloudKmsSigningKeyProps:
    project_id: str
    location: str
    """The key ring's location: a multi-region (`us`) so that every region verifies the same key."""
    key_ring: str
    """The key ring's name (its id is derived from project, location and name)."""
    key_ring_id: str
    """The key ring's id as a reference to it (`KmsKeyRing.id`), so the key is created after it."""
    name: str
    """The crypto key's name, e.g. `mlfleet-prod-manifest-signing`."""
    protection_level: Literal["HSM", "SOFTWARE"] = "HSM"
    """Where the private key lives: `HSM` (Cloud HSM) or `SOFTWARE`; default `HSM` (see the module docstring)."""
    destroy_scheduled_days: int = 30
    """Days a destroyed key version stays recoverable. Default: `30`."""
    labels: dict[str, str] = field(default_factory=dict)
    """Google Cloud labels on the key; default none."""


class CloudKmsSigningKey(Construct):
    """An asymmetric P-256 signing key, protected from `terraform destroy`."""

    def __init__(self, scope: Construct, id_: str, props: CloudKmsSigningKeyProps):
        super().__init__(scope, id_)
        for prop in ("key_ring", "name"):
            value = getattr(props, prop)
            require(bool(GOOGLE_KMS_NAME.fullmatch(value)), self, prop,
                    f"{value!r}: 1 to 63 letters, digits, '-' or '_'")
        require(Token.is_unresolved(props.key_ring_id) or props.key_ring_id.endswith(f"/keyRings/{props.key_ring}"),
                self, "key_ring_id", f"{props.key_ring_id!r} is not the id of key ring {props.key_ring!r}")
        require(props.protection_level in PROTECTION_LEVELS, self, "protection_level",
                f"{props.protection_level!r} is not one of {', '.join(PROTECTION_LEVELS)}")
        require(1 <= props.destroy_scheduled_days <= 120, self, "destroy_scheduled_days",
                "Cloud KMS keeps destroyed versions 1 to 120 days")
        require_google_labels(self, props.labels)
        self.crypto_key = KmsCryptoKey(
            self, "key", name=props.name, key_ring=props.key_ring_id, purpose=PURPOSE,
            version_template=KmsCryptoKeyVersionTemplate(algorithm=ALGORITHM,
                                                         protection_level=props.protection_level),
            destroy_scheduled_duration=f"{props.destroy_scheduled_days * SECONDS_PER_DAY}s",
            labels=dict(props.labels) or None,
            # Destroying it leaves every region unable to verify a manifest.
            lifecycle=TerraformResourceLifecycle(prevent_destroy=True))
        self.key_id_name = crypto_key_id(props.project_id, props.location, props.key_ring, props.name)
        """The key's id as a plain string: the serving stacks read its public key by it."""

    def grant_sign(self, scope: Construct, id_: str, member: str) -> KmsCryptoKeyIamMember:
        """Let `member` sign with (and read the public key of) this key only."""
        require(Token.is_unresolved(member) or bool(GOOGLE_IAM_MEMBER.fullmatch(member)), scope, id_,
                f"{member!r} is not a named principal (user:, group: or serviceAccount: email)")
        return KmsCryptoKeyIamMember(scope, id_, crypto_key_id=self.crypto_key.id, role=SIGNER_VERIFIER,
                                     member=member)
