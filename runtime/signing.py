"""The champion manifest's detached signature, `manifest.json.sig` beside `manifest.json`:

    {"algorithm": "ECDSA_SHA_256", "key_id": "<KMS key ARN or Cloud KMS key version>",
     "signature": "<base64 of the DER ECDSA signature over the exact bytes of manifest.json>"}

made with an ECC_NIST_P256 key: AWS KMS `Sign` (MessageType RAW, ECDSA_SHA_256) or Cloud KMS
EC_SIGN_P256_SHA256 (over the SHA-256 digest, the same signature). The runtime verifies it with
the key's public half as PEM (SubjectPublicKeyInfo) before it parses the manifest, so nothing it
loads was approved by anyone but the holder of the signing key. Production signs through KMS
(`mlfleet promote`); `LocalSigningKey` signs the same format for tests and local development."""
from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from .manifest import MANIFEST_FILE

SIGNATURE_FILE = f"{MANIFEST_FILE}.sig"
ALGORITHM = "ECDSA_SHA_256"
LOCAL_KEY_ID = "local-development"
_SIGNATURE_SCHEME = ec.ECDSA(hashes.SHA256())


class SignatureError(ValueError):
    """The manifest's signature, or the key that checks it, is missing or not valid. One line."""


@dataclass(frozen=True)
class SignatureInfo:
    """A signature that verified: which key made it."""
    key_id: str
    algorithm: str = ALGORITHM


def load_public_key(pem_path: str | Path) -> ec.EllipticCurvePublicKey:
    """The manifest verification key from a PEM file (SubjectPublicKeyInfo, EC P-256)."""
    try:
        pem = Path(pem_path).read_bytes()
    except OSError as exc:
        raise SignatureError(f"{pem_path}: cannot read the manifest public key: {exc.strerror or exc}") from None
    try:
        key = serialization.load_pem_public_key(pem)
    except (ValueError, UnsupportedAlgorithm):
        raise SignatureError(f"{pem_path}: not a PEM public key (expected '-----BEGIN PUBLIC KEY-----', "
                             "SubjectPublicKeyInfo)") from None
    if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(key.curve, ec.SECP256R1):
        kind = (f"an EC {key.curve.name} key" if isinstance(key, ec.EllipticCurvePublicKey)
                else f"a key of type {type(key).__name__.lstrip('_')}")
        raise SignatureError(f"{pem_path}: the manifest key must be an EC P-256 (ECC_NIST_P256) public key, "
                             f"not {kind}")
    return key


def verify_manifest(manifest_bytes: bytes, signature_bytes: bytes | None,
                    public_key: ec.EllipticCurvePublicKey) -> SignatureInfo:
    """Check `signature_bytes` (the content of manifest.json.sig; None: there is no such file)
    over the exact `manifest_bytes`; SignatureError names what is wrong."""
    if signature_bytes is None:
        raise SignatureError(f"{SIGNATURE_FILE} is missing: the manifest is not signed")
    try:
        document = json.loads(signature_bytes)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise SignatureError(f"{SIGNATURE_FILE} is not JSON: {exc}") from None
    if not isinstance(document, dict):
        raise SignatureError(f"{SIGNATURE_FILE} must be a JSON object with algorithm, key_id and signature")
    for field in ("algorithm", "key_id", "signature"):
        if not isinstance(document.get(field), str) or not document[field]:
            raise SignatureError(f"{SIGNATURE_FILE}: {field!r} must be a non-empty string")
    if document["algorithm"] != ALGORITHM:
        raise SignatureError(f"{SIGNATURE_FILE}: algorithm {document['algorithm']!r} is not {ALGORITHM}")
    key_id = document["key_id"]
    try:
        der = base64.b64decode(document["signature"], validate=True)
    except (binascii.Error, ValueError):
        raise SignatureError(f"{SIGNATURE_FILE}: 'signature' is not valid base64") from None
    try:
        public_key.verify(der, manifest_bytes, _SIGNATURE_SCHEME)
    except InvalidSignature:
        # also a DER blob that is not an ECDSA signature: cryptography reports both the same way
        raise SignatureError(f"{SIGNATURE_FILE}: the signature by key {key_id} does not verify against the "
                             "manifest public key (the manifest was changed, or another key signed it)") from None
    return SignatureInfo(key_id)


def sign_manifest_locally(manifest_bytes: bytes, private_key: ec.EllipticCurvePrivateKey, key_id: str) -> bytes:
    """The manifest.json.sig content for `manifest_bytes`, in the format KMS signing produces."""
    der = private_key.sign(manifest_bytes, _SIGNATURE_SCHEME)
    document = {"algorithm": ALGORITHM, "key_id": key_id, "signature": base64.b64encode(der).decode("ascii")}
    return (json.dumps(document, indent=2) + "\n").encode()


@dataclass(frozen=True)
class LocalSigningKey:
    """An EC P-256 key pair held in memory, for tests and local development."""
    private_key: ec.EllipticCurvePrivateKey
    key_id: str = LOCAL_KEY_ID

    @classmethod
    def generate(cls, key_id: str = LOCAL_KEY_ID) -> "LocalSigningKey":
        return cls(ec.generate_private_key(ec.SECP256R1()), key_id)

    @property
    def public_key(self) -> ec.EllipticCurvePublicKey:
        return self.private_key.public_key()

    def public_key_pem(self) -> bytes:
        return self.public_key.public_bytes(serialization.Encoding.PEM,
                                            serialization.PublicFormat.SubjectPublicKeyInfo)

    def sign(self, manifest_bytes: bytes) -> bytes:
        return sign_manifest_locally(manifest_bytes, self.private_key, self.key_id)

    def sign_file(self, manifest_path: str | Path) -> Path:
        """Write the signature of the manifest file at `manifest_path` beside it; returns its path."""
        manifest_path = Path(manifest_path)
        signature_path = manifest_path.with_name(SIGNATURE_FILE)
        signature_path.write_bytes(self.sign(manifest_path.read_bytes()))
        return signature_path
