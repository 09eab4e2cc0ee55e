"""Signs the champion manifest with the environment's asymmetric KMS key (ECC_NIST_P256,
ECDSA_SHA_256) into the detached `manifest.json.sig` format of `runtime.signing`, and reads the
key's public half to verify a manifest (its own signature before it is written, the current one
before it is extended).

The key is `alias/<naming.manifest_signing_key_alias(env)>`: one multi-region key with a replica
of the same alias in every region, so the writer region signs with its own replica and every
replica's public key verifies every signature."""
from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import dataclass, field

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from mlfleet.dr.errors import EXIT_FAILED
from mlfleet.runtime.signing import ALGORITHM, SignatureInfo, verify_manifest
from mlfleet.stacks.environment.errors import MlfleetError

KMS_RAW_MESSAGE_LIMIT = 4096
"""KMS signs at most 4 KiB of RAW message; a larger manifest is signed as its SHA-256 digest
(MessageType DIGEST), which gives the same ECDSA_SHA_256 signature."""


class SigningFailed(MlfleetError):
    """The signing key is missing, of the wrong kind, or its signature did not verify; `transient`
    when KMS did not answer (a timeout, throttling), which retries may get past."""
    exit_code = EXIT_FAILED

    def __init__(self, message: str, *, transient: bool = False):
        super().__init__(message)
        self.transient = transient


@dataclass
class KmsManifestSigner:
    kms: object
    """A boto3 KMS client of the region that signs."""
    alias: str
    """The alias name without `alias/`."""
    region: str
    _public_key: ec.EllipticCurvePublicKey | None = field(default=None, repr=False)
    key_arn: str = ""
    """The key's ARN (as KMS answers Sign, or else GetPublicKey): the signature's key_id."""

    @property
    def key_ref(self) -> str:
        return f"alias/{self.alias}"

    def public_key(self) -> ec.EllipticCurvePublicKey:
        """GetPublicKey, once; SigningFailed (one line) when the key is missing or not a P-256 signing key."""
        if self._public_key is None:
            from botocore.exceptions import BotoCoreError, ClientError

            from mlfleet.dr.retry import TRANSIENT, classify

            try:
                answer = self.kms.get_public_key(KeyId=self.key_ref)  # type: ignore[attr-defined]
            except ClientError as exc:
                code = exc.response.get("Error", {}).get("Code", "")
                if code == "NotFoundException":
                    raise SigningFailed(f"the manifest signing key {self.key_ref} does not exist in {self.region} "
                                        "(the environment's multi-region signing key and its replica there)") from None
                raise SigningFailed(f"cannot read the public key of {self.key_ref} in {self.region}: "
                                    f"{code or exc}", transient=classify(exc) == TRANSIENT) from None
            except BotoCoreError as exc:  # no credentials, no connection: one line, not a traceback
                raise SigningFailed(f"cannot read the public key of {self.key_ref} in {self.region}: {exc}",
                                    transient=classify(exc) == TRANSIENT) from None
            key = serialization.load_der_public_key(answer["PublicKey"])
            if (answer.get("KeyUsage", "SIGN_VERIFY") != "SIGN_VERIFY" or not isinstance(key, ec.EllipticCurvePublicKey)
                    or not isinstance(key.curve, ec.SECP256R1)):
                raise SigningFailed(f"{self.key_ref} in {self.region} is a {answer.get('KeySpec', type(key).__name__)} "
                                    f"{answer.get('KeyUsage')} key; the manifest needs ECC_NIST_P256 SIGN_VERIFY")
            self._public_key, self.key_arn = key, answer["KeyId"]
        return self._public_key

    def public_key_pem(self) -> bytes:
        """What the runtime takes as `--manifest-public-key`."""
        return self.public_key().public_bytes(serialization.Encoding.PEM,
                                              serialization.PublicFormat.SubjectPublicKeyInfo)

    def verify(self, manifest: bytes, signature: bytes | None) -> SignatureInfo:
        """runtime.signing.verify_manifest against this key; SignatureError when it does not verify."""
        return verify_manifest(manifest, signature, self.public_key())

    def sign(self, manifest: bytes) -> bytes:
        """The `manifest.json.sig` content for the exact bytes of `manifest`, checked against the
        public key before it is returned (a signature nobody can verify is never written)."""
        from botocore.exceptions import BotoCoreError, ClientError

        from mlfleet.runtime.signing import SignatureError

        self.public_key()
        if len(manifest) <= KMS_RAW_MESSAGE_LIMIT:
            message, message_type = manifest, "RAW"
        else:
            message, message_type = hashlib.sha256(manifest).digest(), "DIGEST"
        try:
            answer = self.kms.sign(KeyId=self.key_ref, Message=message,  # type: ignore[attr-defined]
                                   MessageType=message_type, SigningAlgorithm=ALGORITHM)
        except ClientError as exc:
            raise SigningFailed(f"KMS Sign with {self.key_ref} in {self.region} failed: "
                                f"{exc.response.get('Error', {}).get('Code') or exc}") from None
        except BotoCoreError as exc:
            raise SigningFailed(f"KMS Sign with {self.key_ref} in {self.region} failed: {exc}") from None
        key_id = answer["KeyId"] if answer["KeyId"].startswith("arn:") else self.key_arn
        self.key_arn = key_id
        document = {"algorithm": ALGORITHM, "key_id": key_id,
                    "signature": base64.b64encode(answer["Signature"]).decode("ascii")}
        signature = (json.dumps(document, indent=2) + "\n").encode()
        try:
            self.verify(manifest, signature)
        except SignatureError as exc:
            raise SigningFailed(f"the signature KMS returned does not verify with {self.key_ref}'s public key "
                                f"({exc}); nothing was written") from None
        return signature
