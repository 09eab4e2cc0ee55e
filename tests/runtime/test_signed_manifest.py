"""The runtime trusts only signed manifests: manifest.json.sig (ECDSA P-256 over the exact bytes of
manifest.json, the format KMS signing produces) verifies against --manifest-public-key before
anything is loaded, and the manifest approves each model's config.pbtxt by its sha256."""
from __future__ import annotations

import base64
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import boto3
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from moto import mock_aws

from mlfleet.runtime.artifacts import VerificationError, fetch_verified_config
from mlfleet.runtime.examples import write_example_repository
from mlfleet.runtime.manifest import Manifest
from mlfleet.runtime.process import RuntimeProcess
from mlfleet.runtime.signing import (
    ALGORITHM,
    SIGNATURE_FILE,
    LocalSigningKey,
    SignatureError,
    load_public_key,
    sign_manifest_locally,
    verify_manifest,
)
from mlfleet.runtime.sources import LocalSource

from helpers.runtime import ADMIN_TOKEN, request_json
from helpers.runtime_signing import approve_config, edit_manifest

AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
PIN = "/v2/mlfleet/models/mlp/pin"
MANIFEST = b'{"models": {}}'


# -- the signature format, in process ------------------------------------------------------------
def test_a_local_signature_verifies_and_names_its_key(manifest_key):
    signature = manifest_key.signing_key.sign(MANIFEST)
    document = json.loads(signature)
    assert set(document) == {"algorithm", "key_id", "signature"} and document["algorithm"] == ALGORITHM
    info = verify_manifest(MANIFEST, signature, load_public_key(manifest_key.public_key_path))
    assert info.key_id == "tests-session-key"


def _signature_with(original: bytes, **fields) -> bytes:
    return json.dumps({**json.loads(original), **fields}).encode()


@pytest.mark.parametrize("manifest, signature, message", [
    (MANIFEST, None, "manifest.json.sig is missing"),
    (MANIFEST, b"\x00not json", "manifest.json.sig is not JSON"),
    (MANIFEST, b"[]", "must be a JSON object"),
    (MANIFEST, "drop-key-id", "'key_id' must be a non-empty string"),
    (MANIFEST, "rsa-algorithm", "algorithm 'RSASSA_PSS_SHA_256' is not ECDSA_SHA_256"),
    (MANIFEST, "bad-base64", "'signature' is not valid base64"),
    (MANIFEST, "not-der", "does not verify"),
    (b'{"models": { }}', "good", "does not verify"),  # one byte more than what was signed
    (MANIFEST, "other-key", "does not verify"),
])
def test_each_bad_signature_is_one_line_naming_the_problem(manifest_key, manifest, signature, message):
    good = manifest_key.signing_key.sign(MANIFEST)
    signature = {
        "good": good,
        "drop-key-id": _signature_with(good, key_id=""),
        "rsa-algorithm": _signature_with(good, algorithm="RSASSA_PSS_SHA_256"),
        "bad-base64": _signature_with(good, signature="not base64!"),
        "not-der": _signature_with(good, signature=base64.b64encode(b"\x30\x02\x01\x01").decode()),
        "other-key": LocalSigningKey.generate("someone-else").sign(MANIFEST),
    }.get(signature, signature)
    with pytest.raises(SignatureError) as raised:
        verify_manifest(manifest, signature, manifest_key.signing_key.public_key)
    assert message in str(raised.value) and "\n" not in str(raised.value)


def test_the_public_key_must_be_a_readable_p256_pem(tmp_path):
    def pem(key) -> bytes:
        return key.public_key().public_bytes(serialization.Encoding.PEM,
                                             serialization.PublicFormat.SubjectPublicKeyInfo)

    cases = {"missing.pem": None, "garbage.pem": b"not a key",
             "p384.pem": pem(ec.generate_private_key(ec.SECP384R1())),
             "rsa.pem": pem(rsa.generate_private_key(public_exponent=65537, key_size=2048))}
    messages = {"missing.pem": "cannot read the manifest public key", "garbage.pem": "not a PEM public key",
                "p384.pem": "EC P-256 (ECC_NIST_P256) public key, not an EC secp384r1 key",
                "rsa.pem": "EC P-256 (ECC_NIST_P256) public key, not a key of type RSAPublicKey"}
    for name, content in cases.items():
        if content is not None:
            (tmp_path / name).write_bytes(content)
        with pytest.raises(SignatureError, match=re.escape(messages[name])):
            load_public_key(tmp_path / name)


def test_a_kms_signature_in_the_shared_format_verifies(tmp_path):
    """What `mlfleet promote` writes: KMS Sign (RAW, ECDSA_SHA_256) with a multi-region P-256 key,
    its DER signature in base64, verified with the PEM of get_public_key's DER."""
    with mock_aws():
        kms = boto3.client("kms", region_name="us-east-1")
        key = kms.create_key(KeyUsage="SIGN_VERIFY", KeySpec="ECC_NIST_P256", MultiRegion=True)["KeyMetadata"]
        der = kms.sign(KeyId=key["KeyId"], Message=MANIFEST, MessageType="RAW",
                       SigningAlgorithm="ECDSA_SHA_256")["Signature"]
        public_der = kms.get_public_key(KeyId=key["KeyId"])["PublicKey"]
    pem = serialization.load_der_public_key(public_der).public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    (tmp_path / "kms.pem").write_bytes(pem)
    signature = json.dumps({"algorithm": "ECDSA_SHA_256", "key_id": key["Arn"],
                            "signature": base64.b64encode(der).decode()}).encode()
    assert verify_manifest(MANIFEST, signature, load_public_key(tmp_path / "kms.pem")).key_id == key["Arn"]
    # and the local signer writes what this reads
    local = LocalSigningKey.generate()
    assert verify_manifest(MANIFEST, sign_manifest_locally(MANIFEST, local.private_key, "k"), local.public_key)


# -- config.pbtxt is approved by the manifest ----------------------------------------------------
@pytest.fixture(scope="module")
def signed_repo(tmp_path_factory, manifest_key) -> Path:
    """mlp versions 1 and 2 (champion 2), signed; tests copy it before changing anything."""
    root = tmp_path_factory.mktemp("signed-repo")
    write_example_repository(root, versions=("1", "2"), champion="2", signing_key=manifest_key.signing_key)
    return root


def test_the_example_manifest_lists_each_config(signed_repo):
    manifest = Manifest.load(signed_repo / "manifest.json")
    source = LocalSource(signed_repo)
    assert fetch_verified_config(source, manifest, "mlp") == (signed_repo / "mlp" / "config.pbtxt").read_bytes()
    unlisted = Manifest.model_validate({"models": {"mlp": {**manifest.models["mlp"].model_dump(mode="json"),
                                                           "config_sha256": None}}})
    with pytest.raises(VerificationError, match=r"mlp/config.pbtxt is not listed in the manifest \(models.mlp.config"):
        fetch_verified_config(source, unlisted, "mlp")
    other = Manifest.model_validate({"models": {"mlp": {**manifest.models["mlp"].model_dump(mode="json"),
                                                        "config_sha256": "0" * 64}}})
    with pytest.raises(VerificationError, match="does not match the manifest's config_sha256 0000"):
        fetch_verified_config(source, other, "mlp")


# -- at start: one line and exit code 2 ----------------------------------------------------------
def _serve(*args: str) -> subprocess.CompletedProcess:
    environment = {k: v for k, v in os.environ.items() if k != "MLFLEET_ADMIN_TOKEN"}
    return subprocess.run([sys.executable, "-m", "mlfleet.runtime", "--http-port", "0", "--grpc-port", "0", *args],
                          capture_output=True, text=True, timeout=60, env=environment)


def _refused_with_one_line(result: subprocess.CompletedProcess, fragment: str) -> None:
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr[-2000:]
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("mlfleet serve: error: ") and fragment in last, last


def _tamper(root: Path, case: str, manifest_key) -> None:
    manifest, signature = root / "manifest.json", root / SIGNATURE_FILE
    if case == "no signature file":
        signature.unlink()
    elif case == "a changed manifest byte":  # still valid JSON: only the signature can tell
        manifest.write_bytes(manifest.read_bytes().replace(b'"ml-review"', b'"ml-reviex"', 1))
    elif case == "signed by another key":
        LocalSigningKey.generate("someone-else").sign_file(manifest)
    elif case == "another algorithm":
        signature.write_bytes(_signature_with(signature.read_bytes(), algorithm="RSASSA_PSS_SHA_256"))
    elif case == "a changed config.pbtxt":
        config = root / "mlp" / "config.pbtxt"
        config.write_text(config.read_text().replace("max_batch_size: 64", "max_batch_size: 32"))
    elif case == "an unlisted config.pbtxt":
        edit_manifest(root, manifest_key.signing_key, lambda document: document["models"]["mlp"].pop("config_sha256"))


@pytest.mark.sandbox
@pytest.mark.parametrize("case, fragment", [
    ("no signature file", "manifest.json.sig is missing: the manifest is not signed; refusing the manifest"),
    ("a changed manifest byte", "the signature by key tests-session-key does not verify"),
    ("signed by another key", "the signature by key someone-else does not verify"),
    ("another algorithm", "algorithm 'RSASSA_PSS_SHA_256' is not ECDSA_SHA_256"),
    ("a changed config.pbtxt", "mlp/config.pbtxt: sha256"),
    ("an unlisted config.pbtxt", "mlp/config.pbtxt is not listed in the manifest"),
])
def test_an_untrusted_repository_stops_the_start_with_one_line(signed_repo, tmp_path, manifest_key, case, fragment):
    root = shutil.copytree(signed_repo, tmp_path / "repo")
    _tamper(root, case, manifest_key)
    _refused_with_one_line(_serve("--model-repository", str(root),
                                  "--manifest-public-key", str(manifest_key.public_key_path)), fragment)


@pytest.mark.sandbox
def test_the_trust_flags_are_required_and_exclusive(signed_repo, manifest_key, tmp_path):
    repository = ("--model-repository", str(signed_repo))
    _refused_with_one_line(_serve(*repository), "pass --manifest-public-key PATH (the public key that signs "
                                                "manifest.json) or, for local development only, --allow-unsigned")
    _refused_with_one_line(_serve(*repository, "--allow-unsigned", "--manifest-public-key",
                                  str(manifest_key.public_key_path)), "not both")
    _refused_with_one_line(_serve(*repository, "--manifest-public-key", str(tmp_path / "none.pem")),
                           f"--manifest-public-key {tmp_path / 'none.pem'}: cannot read the manifest public key")


# -- serving: the key that approved, re-pins that are refused --------------------------------------
@pytest.fixture(scope="module")
def pin_repo(signed_repo, tmp_path_factory) -> Path:
    return shutil.copytree(signed_repo, tmp_path_factory.mktemp("pin") / "repo")


@pytest.fixture(scope="module")
def served(pin_repo, manifest_key, tmp_path_factory):
    log = tmp_path_factory.mktemp("logs") / "signed-runtime.log"
    with RuntimeProcess(pin_repo, admin_token=ADMIN_TOKEN, manifest_public_key=manifest_key.public_key_path,
                        extra_args=["--grpc-port", "0"], log_path=log) as process:
        yield process, log


def _serving_version(url: str) -> str:
    status, body = request_json(url, "POST", "/v2/models/mlp/infer",
                                {"inputs": [{"name": "INPUT__0", "datatype": "FP32", "shape": [1, 64],
                                             "data": [0.5] * 64}]})
    assert status == 200, body
    return body["model_version"]


@pytest.mark.sandbox
def test_a_signed_repository_serves_and_reports_its_key(served):
    process, log = served
    assert _serving_version(process.http_url) == "2"
    status, health = request_json(process.http_url, "GET", "/v2/health/failover")
    assert status == 200 and health["manifest_signature"] == {"verified": True, "key_id": "tests-session-key"}
    assert "manifest signature verified: ECDSA_SHA_256 by key tests-session-key" in log.read_text()


@pytest.mark.sandbox
@pytest.mark.parametrize("case, reason", [
    ("no signature file", "manifest.json.sig is missing"),
    ("signed by another key", "the signature by key someone-else does not verify"),
    ("a changed manifest byte", "does not verify"),
])
def test_a_reload_of_an_untrusted_manifest_is_409_and_the_old_version_serves(served, pin_repo, manifest_key,
                                                                              case, reason):
    process, _ = served
    manifest, signature = pin_repo / "manifest.json", pin_repo / SIGNATURE_FILE
    good_manifest, good_signature = manifest.read_bytes(), signature.read_bytes()
    # the unapproved change: version 1 champion
    manifest.write_bytes(good_manifest.replace(b'"champion": "2"', b'"champion": "1"'))
    if case == "signed by another key":
        LocalSigningKey.generate("someone-else").sign_file(manifest)
    elif case == "no signature file":
        signature.unlink()
    try:
        status, body = request_json(process.http_url, "POST", PIN, {"version": "1", "reload_manifest": True}, AUTH)
        assert status == 409 and "manifest reload refused" in body["error"] and reason in body["error"], body
        assert _serving_version(process.http_url) == "2"
        assert request_json(process.http_url, "GET", PIN)[1]["champion"] == "2"  # the old manifest still rules
    finally:
        manifest.write_bytes(good_manifest)
        signature.write_bytes(good_signature)


@pytest.mark.sandbox
def test_a_changed_config_is_refused_on_re_pin_until_it_is_approved(served, pin_repo, manifest_key):
    process, _ = served
    config = pin_repo / "mlp" / "config.pbtxt"
    good_config = config.read_text()
    good = {path: path.read_bytes() for path in (pin_repo / "manifest.json", pin_repo / SIGNATURE_FILE)}
    config.write_text(good_config.replace("max_batch_size: 64", "max_batch_size: 32"))
    try:
        for request in ({"version": "1"}, {"version": "2", "reload_manifest": True}):
            status, body = request_json(process.http_url, "POST", PIN, request, AUTH)
            assert status == 409 and "mlp/config.pbtxt: sha256" in body["error"], body
            assert _serving_version(process.http_url) == "2"
        approve_config(pin_repo, "mlp", manifest_key.signing_key)  # the review approves the new config
        status, body = request_json(process.http_url, "POST", PIN, {"version": "1", "reload_manifest": True}, AUTH)
        assert status == 200 and _serving_version(process.http_url) == "1"
        status, config_document = request_json(process.http_url, "GET", "/v2/models/mlp/config")
        assert config_document["max_batch_size"] == 32
    finally:
        config.write_text(good_config)
        for path, content in good.items():
            path.write_bytes(content)
        request_json(process.http_url, "POST", PIN, {"version": "2", "reload_manifest": True}, AUTH)


@pytest.mark.sandbox
def test_allow_unsigned_serves_an_unsigned_repository_and_says_so(signed_repo, tmp_path):
    root = shutil.copytree(signed_repo, tmp_path / "repo")
    (root / SIGNATURE_FILE).unlink()
    log = tmp_path / "runtime.log"
    with RuntimeProcess(root, allow_unsigned=True, extra_args=["--grpc-port", "0"], log_path=log) as process:
        assert _serving_version(process.http_url) == "2"
        status, health = request_json(process.http_url, "GET", "/v2/health/failover")
        assert status == 200 and health["manifest_signature"] == {"verified": False, "key_id": None}
    warnings = [line for line in log.read_text().splitlines() if "WARNING" in line and "NOT VERIFIED" in line]
    assert len(warnings) == 1 and "--allow-unsigned, for local development only" in warnings[0]
