"""The manifest signing keys: AWS's multi-Region asymmetric key with its replicas and aliases, and
Google Cloud's asymmetric Cloud KMS key."""
from __future__ import annotations

import json

import pytest

from mlfleet.constructs.aws.manifest_signing_key import (
    ManifestSigningKey,
    ManifestSigningKeyProps,
    SigningKeyReplica,
)
from mlfleet.constructs.policy import evaluate_terraform
from mlfleet.constructs.validation import PropsError

from helpers.iam import applies
from helpers.template import only_resource, resources

ACCOUNT = "333333333333"
ALIAS = "mlfleet-prod-manifest-signing"
REVIEW = tuple(f"arn:aws:iam::{ACCOUNT}:role/mlfleet-prod-{r}-review" for r in ("us-east-1", "us-west-2"))


def build_key(stack, regions=("us-west-2", "us-east-2"), **overrides) -> ManifestSigningKey:
    from cdktn_provider_aws.provider import AwsProvider

    replicas = tuple(SigningKeyReplica(region=r, provider=AwsProvider(stack, f"aws-{i}", region=r, alias=f"{r}-{i}"))
                     for i, r in enumerate(regions))
    return ManifestSigningKey(stack, "signing", ManifestSigningKeyProps(**{**dict(
        alias=ALIAS, account_id=ACCOUNT, region="us-east-1", signer_role_arns=REVIEW, replicas=replicas),
        **overrides}))


def test_an_asymmetric_multi_region_key_with_a_replica_and_the_alias_in_every_region(synth):
    tf = synth(build_key)
    key = only_resource(tf, "aws_kms_key")
    assert (key["customer_master_key_spec"], key["key_usage"], key["multi_region"]) == (
        "ECC_NIST_P256", "SIGN_VERIFY", True)
    assert key["deletion_window_in_days"] == 30 and "enable_key_rotation" not in key
    replicas = {r["provider"]: r for r in resources(tf, "aws_kms_replica_key").values()}
    assert set(replicas) == {"aws.us-west-2-0", "aws.us-east-2-1"}
    assert all(r["primary_key_arn"].startswith("${aws_kms_key.signing_key") for r in replicas.values())
    aliases = sorted((a.get("provider", "default"), a["name"]) for a in resources(tf, "aws_kms_alias").values())
    assert aliases == [("aws.us-east-2-1", f"alias/{ALIAS}"), ("aws.us-west-2-0", f"alias/{ALIAS}"),
                       ("default", f"alias/{ALIAS}")]
    assert [f for f in evaluate_terraform("test", tf) if f.rule != "MLF006"] == []


def test_only_the_review_roles_may_sign_and_nobody_may_grant_signing(synth):
    tf = synth(build_key)
    statements = json.loads(only_resource(tf, "aws_kms_key")["policy"])["Statement"]

    def key_policy_allows(principal: str, action: str, **context: str) -> bool:
        return any(s["Effect"] == "Allow" and applies(s, action, "*", {"aws:PrincipalArn": principal, **context})
                   for s in statements)

    raw = {"kms:SigningAlgorithm": "ECDSA_SHA_256", "kms:MessageType": "RAW"}
    for role in REVIEW:
        assert key_policy_allows(role, "kms:Sign", **raw)
        assert key_policy_allows(role, "kms:GetPublicKey")
        assert key_policy_allows(role, "kms:Sign", **{**raw, "kms:MessageType": "DIGEST"})  # a large manifest
        assert not key_policy_allows(role, "kms:Sign", **{**raw, "kms:SigningAlgorithm": "ECDSA_SHA_512"})
    training = f"arn:aws:iam::{ACCOUNT}:role/mlfleet-prod-us-east-1-training"
    assert not key_policy_allows(training, "kms:Sign", **raw)
    root = f"arn:aws:iam::{ACCOUNT}:root"
    admin = next(s for s in statements if s["Sid"] == "AccountAdministers")
    assert admin["Principal"] == {"AWS": root}
    assert {"kms:Sign", "kms:CreateGrant", "kms:*"}.isdisjoint(admin["Action"])
    assert {"kms:PutKeyPolicy", "kms:ScheduleKeyDeletion", "kms:ReplicateKey", "kms:GetPublicKey"} <= set(
        admin["Action"])
    replica_policy = next(iter(resources(tf, "aws_kms_replica_key").values()))["policy"]
    assert json.loads(replica_policy)["Statement"] == statements


@pytest.mark.parametrize(("overrides", "prop", "reason"), [
    (dict(alias="alias/x"), "alias", "without the 'alias/' prefix"),
    (dict(signer_role_arns=()), "signer_role_arns", "name at least one review role"),
    (dict(signer_role_arns=(f"arn:aws:iam::{ACCOUNT}:role/*",)), r"signer_role_arns\[0\]", "not an IAM role ARN"),
    (dict(deletion_window_days=3), "deletion_window_days", "between 7 and 30"),
    (dict(account_id="42"), "account_id", "12-digit"),
])
def test_invalid_props_name_the_prop_and_the_reason(synth, overrides, prop, reason):
    with pytest.raises(PropsError, match=f"signing: {prop}: .*{reason}"):
        synth(lambda stack: build_key(stack, **overrides))


def test_a_replica_in_the_primarys_region_or_twice_is_refused(synth):
    with pytest.raises(PropsError, match=r"signing: replicas\[0\].region: us-east-1 is the primary's region"):
        synth(lambda stack: build_key(stack, regions=("us-east-1",)))
    with pytest.raises(PropsError, match=r"signing: replicas\[1\].region: us-west-2 .*listed twice"):
        synth(lambda stack: build_key(stack, regions=("us-west-2", "us-west-2")))


def _google_key(stack, **overrides):
    from cdktn_provider_google.kms_key_ring import KmsKeyRing
    from cdktn_provider_google.provider import GoogleProvider

    from mlfleet.constructs.gcp.manifest_signing_key import CloudKmsSigningKey, CloudKmsSigningKeyProps

    GoogleProvider(stack, "google", project="mlfleet-prod", region="us-central1")
    ring = KmsKeyRing(stack, "ring", project="mlfleet-prod", location="us", name="mlfleet-prod-us")
    return CloudKmsSigningKey(stack, "signing", CloudKmsSigningKeyProps(**{**dict(
        project_id="mlfleet-prod", location="us", key_ring="mlfleet-prod-us", key_ring_id=ring.id,
        name="mlfleet-prod-manifest-signing"), **overrides}))


def test_the_google_key_signs_p256_in_an_hsm_and_is_never_destroyed(synth):
    built = {}
    tf = synth(lambda s: built.setdefault("key", _google_key(s)), with_provider=False)
    key = only_resource(tf, "google_kms_crypto_key")
    assert key["purpose"] == "ASYMMETRIC_SIGN"
    assert key["version_template"] == {"algorithm": "EC_SIGN_P256_SHA256", "protection_level": "HSM"}
    assert "rotation_period" not in key and key["lifecycle"]["prevent_destroy"] is True
    assert built["key"].key_id_name == (
        "projects/mlfleet-prod/locations/us/keyRings/mlfleet-prod-us/cryptoKeys/mlfleet-prod-manifest-signing")


@pytest.mark.parametrize(("overrides", "prop", "reason"), [
    (dict(protection_level="EXTERNAL"), "protection_level", "not one of HSM, SOFTWARE"),
    (dict(name="bad name"), "name", "letters, digits"),
    (dict(key_ring_id="projects/p/locations/us/keyRings/other"), "key_ring_id", "not the id of key ring"),
])
def test_invalid_google_props_name_the_prop(synth, overrides, prop, reason):
    with pytest.raises(PropsError, match=f"signing: {prop}: .*{reason}"):
        synth(lambda s: _google_key(s, **overrides), with_provider=False)
