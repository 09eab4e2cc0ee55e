"""The model registry made real, on every example environment and both clouds: who may write the
approved area (the runtime's model repository), the manifest signing keys, and the runtime's trust
in them. Policies are evaluated on concrete keys of the shared layout (stacks/environment/naming.py)."""
from __future__ import annotations

import json

import pytest

from mlfleet.constructs.aws import artifact_grants as aws_layout
from mlfleet.constructs.gcp import artifact_grants as gcp_layout
from mlfleet.constructs.terraform_json import first_block
from mlfleet.stacks.environment import environment_names, load_environment, naming
from mlfleet.stacks.gcp_global_stack import manifest_signing_key_id

from helpers.iam import allowed
from helpers.template import resources

ENVIRONMENTS = [load_environment(n) for n in environment_names()]
WITH_AWS = [e for e in ENVIRONMENTS if e.regions_on("aws")]
AWS_PRIMARY = [e for e in ENVIRONMENTS if e.primary.cloud == "aws"]
WITH_GCP = [e for e in ENVIRONMENTS if e.regions_on("gcp")]
WRITES = ("s3:PutObject", "s3:DeleteObject", "s3:DeleteObjectVersion")


def test_the_constructs_lay_out_the_bucket_as_the_environment_names_it():
    for layout in (aws_layout.ArtifactBucket(bucket_name="b-b-b", key_arn="k", region="us-east-1",
                                             models_prefix="registry/"),
                   gcp_layout.GcsArtifactBucket(bucket_name="b-b-b", models_prefix="registry/")):
        assert layout.candidates_prefix == naming.candidates_prefix("registry/")
        assert layout.approved_prefix == naming.approved_prefix("registry/")
        assert layout.manifest_key == naming.approved_prefix("registry/") + naming.MANIFEST_FILE
        assert layout.manifest_signature_key == naming.approved_prefix("registry/") + naming.MANIFEST_SIGNATURE_FILE
    assert naming.mlflow_artifact_prefix("registry/").startswith(naming.candidates_prefix("registry/"))


def _keys(bucket_arn: str, env) -> dict[str, str]:
    prefix = env.artifact_store.models_prefix
    approved, candidates = naming.approved_prefix(prefix), naming.candidates_prefix(prefix)
    return {"version": f"{bucket_arn}/{approved}mlp/1/model.pt",
            "manifest": f"{bucket_arn}/{approved}{naming.MANIFEST_FILE}",
            "signature": f"{bucket_arn}/{approved}{naming.MANIFEST_SIGNATURE_FILE}",
            "candidate": f"{bucket_arn}/{candidates}mlp/1/model.pt",
            "mlflow": f"{bucket_arn}/{naming.mlflow_artifact_prefix(prefix)}7/run/artifacts/model.pt"}


def _aws_region_policies(synthesized, env, region: str):
    tf = synthesized.stacks[naming.stack_name(env.name, region)]
    roles = {f"${{aws_iam_role.{rid}.id}}": body["name"] for rid, body in resources(tf, "aws_iam_role").items()}
    by_purpose = {roles[p["role"]].rsplit("-", 1)[1]: json.loads(p["policy"])
                  for p in resources(tf, "aws_iam_role_policy").values() if p["role"] in roles}
    (bucket_policy,) = [json.loads(p["policy"]) for p in resources(tf, "aws_s3_bucket_policy").values()
                        if p["//"]["metadata"]["path"].endswith("/artifacts/policy")]
    return tf, by_purpose, bucket_policy


@pytest.mark.parametrize("env", WITH_AWS, ids=lambda e: e.name)
def test_on_aws_only_review_writes_the_approved_area_and_serving_reads_only_it(synthesized, env):
    account = env.aws.account_id
    for region in env.regions_on("aws"):
        _, policy, bucket_policy = _aws_region_policies(synthesized, env, region.name)
        keys = _keys(f"arn:aws:s3:::{naming.artifact_bucket(env.name, account, region.name)}", env)

        def ctx(purpose: str, region: str = region.name) -> dict:
            return {"aws:PrincipalArn": f"arn:aws:iam::{account}:role/{naming.role_name(env.name, region, purpose)}",
                    "aws:SecureTransport": "true", "s3:TlsVersion": "1.3"}

        def may(purpose: str, action: str, key: str, policies: dict = policy, guard: dict = bucket_policy) -> bool:
            return allowed(policies[purpose], action, key, ctx(purpose), bucket_policy=guard)

        for key in ("version", "manifest", "signature"):
            for action in WRITES:
                assert not may("training", action, keys[key]), (region.name, action, key)
                assert not may("serving", action, keys[key]), (region.name, action, key)
            assert may("review", "s3:PutObject", keys[key])
            assert may("serving", "s3:GetObject", keys[key])
        for key in ("candidate", "mlflow"):
            assert may("training", "s3:PutObject", keys[key]) and may("training", "s3:GetObject", keys[key])
            assert may("review", "s3:GetObject", keys[key])
            assert not may("serving", "s3:GetObject", keys[key])
        assert not may("review", "s3:PutObject", keys["candidate"])
        # The bucket's guard alone stops a role whose own policy would allow every write.
        everything = {"Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}
        assert not allowed(everything, "s3:PutObject", keys["manifest"], ctx("training"), bucket_policy=bucket_policy)


@pytest.mark.parametrize("env", AWS_PRIMARY, ids=lambda e: e.name)
def test_the_aws_signing_key_is_multi_region_with_a_replica_and_the_alias_in_every_region(synthesized, env):
    account, primary = env.aws.account_id, env.primary.name
    aws_regions = [r.name for r in env.regions_on("aws")]
    alias = f"alias/{naming.manifest_signing_key_alias(env.name)}"
    reviewers = sorted(f"arn:aws:iam::{account}:role/{naming.role_name(env.name, r, 'review')}" for r in aws_regions)
    tf = synthesized.stacks[naming.stack_name(env.name, primary)]
    (key,) = [k for k in resources(tf, "aws_kms_key").values() if k.get("key_usage") == "SIGN_VERIFY"]
    assert (key["customer_master_key_spec"], key["multi_region"], key["deletion_window_in_days"]) == (
        "ECC_NIST_P256", True, 30)
    assert "enable_key_rotation" not in key  # KMS does not rotate asymmetric keys
    replicas = {r["provider"].removeprefix("aws."): r for r in resources(tf, "aws_kms_replica_key").values()}
    assert set(replicas) == set(aws_regions) - {primary}
    for replica in replicas.values():
        assert replica["primary_key_arn"].startswith("${aws_kms_key.manifest-signing-key")
        assert replica["policy"] == key["policy"]
    aliases = {a.get("provider", f"aws.{primary}").removeprefix("aws."): a
               for a in resources(tf, "aws_kms_alias").values() if a["name"] == alias}
    assert set(aliases) == set(aws_regions)
    statements = {s["Sid"]: s for s in json.loads(key["policy"])["Statement"]}
    assert not any(a in ("kms:*", "kms:Sign", "kms:CreateGrant") for a in statements["AccountAdministers"]["Action"])
    assert statements["ReviewSigns"]["Condition"]["ArnEquals"]["aws:PrincipalArn"] == reviewers
    assert statements["ReviewSigns"]["Action"] == "kms:Sign"
    for standby in set(aws_regions) - {primary}:
        # A standby's stack names its replica by alias: it creates no key and reads no state.
        standby_tf = synthesized.stacks[naming.stack_name(env.name, standby)]
        assert not [k for k in resources(standby_tf, "aws_kms_key").values() if k.get("key_usage") == "SIGN_VERIFY"]
        assert resources(standby_tf, "aws_kms_replica_key") == {}


@pytest.mark.parametrize("env", WITH_AWS, ids=lambda e: e.name)
def test_on_aws_only_review_signs_with_the_key_of_its_own_region(synthesized, env):
    account = env.aws.account_id
    for region in env.regions_on("aws"):
        _, policy, _ = _aws_region_policies(synthesized, env, region.name)
        signing_key = f"arn:aws:kms:{region.name}:{account}:key/mrk-00000000000000000000000000000000"
        context = {"kms:ResourceAliases": f"alias/{naming.manifest_signing_key_alias(env.name)}"}
        review = policy["review"]
        if region.role == "primary":
            # The primary's review role is granted the key itself, by reference.
            (sign,) = [s for s in review["Statement"] if s.get("Sid") == "SignManifest"]
            assert sign["Resource"].startswith("${aws_kms_key.manifest-signing-key")
            signing_key = sign["Resource"]
        assert allowed(review, "kms:Sign", signing_key, context)
        other_key = f"arn:aws:kms:eu-west-9:{account}:key/mrk-00000000000000000000000000000000"
        assert not allowed(review, "kms:Sign", other_key, context)  # the alias in another region
        assert not allowed(review, "kms:Sign", f"arn:aws:kms:{region.name}:{account}:key/other",
                           {"kms:ResourceAliases": f"alias/{naming.artifact_key_alias(env.name)}"})
        for purpose in ("training", "serving"):
            assert not allowed(policy[purpose], "kms:Sign", signing_key, context)


@pytest.mark.parametrize("env", ENVIRONMENTS, ids=lambda e: e.name)
def test_every_runtime_verifies_the_manifest_with_its_regions_public_key(synthesized, env):
    for region in env.regions:
        tf = synthesized.stacks[naming.serving_stack_name(env.name, region.name)]
        (config_map,) = resources(tf, "kubernetes_config_map_v1").values()
        pem = config_map["data"]["public.pem"]
        if region.cloud == "aws":
            ((name, source),) = tf["data"]["aws_kms_public_key"].items()
            # The key under the signing alias in the stack's own region: the primary key or its replica.
            assert source["key_id"] == f"alias/{naming.manifest_signing_key_alias(env.name)}"
            assert "provider" not in source
            assert pem == f"${{data.aws_kms_public_key.{name}.public_key_pem}}"
        else:
            ((name, source),) = tf["data"]["google_kms_crypto_key_version"].items()
            assert (source["crypto_key"], source["version"]) == (manifest_signing_key_id(env), 1)
            assert pem == f"${{data.google_kms_crypto_key_version.{name}.public_key[0].pem}}"
        for deployment in resources(tf, "kubernetes_deployment_v1").values():
            pod = deployment["spec"]["template"]["spec"]
            (container,) = pod["container"]
            args = container["args"]
            assert args[args.index("--manifest-public-key") + 1] == "/etc/mlfleet/manifest-key/public.pem"
            assert "--allow-unsigned" not in args
            mount = next(m for m in container["volume_mount"] if m["mount_path"] == "/etc/mlfleet/manifest-key")
            volume = next(v for v in pod["volume"] if v["name"] == mount["name"])
            assert mount["read_only"] is True and volume["config_map"]["optional"] is False
            assert volume["config_map"]["name"].startswith("${kubernetes_config_map_v1.")


def _gcs_grants(tf: dict) -> list[tuple[str, str, str]]:
    """(account id, role, condition expression) of every bucket grant to an identity account."""
    accounts = {f"serviceAccount:${{google_service_account.{rid}.email}}": body["account_id"]
                for rid, body in resources(tf, "google_service_account").items()}
    return [(accounts.get(g["member"], g["member"]), g["role"], first_block(g.get("condition")).get("expression", ""))
            for g in resources(tf, "google_storage_bucket_iam_member").values()]


def _gcs_allows(grants, account: str, roles: set[str], object_name: str) -> bool:
    """Whether a grant of one of `roles` to `account` covers the object (prefix conditions only)."""
    for who, role, expression in grants:
        if who != account or role not in roles:
            continue
        prefixes = [part.split('"')[1] for part in expression.split("resource.name.startsWith(")[1:]]
        if not expression or any(object_name.startswith(p) for p in prefixes):
            return True
    return False


@pytest.mark.parametrize("env", WITH_GCP, ids=lambda e: e.name)
def test_on_google_cloud_only_review_writes_the_approved_area_and_signs(synthesized, env):
    tf = synthesized.stacks[naming.gcp_global_stack_name(env.name)]
    grants = _gcs_grants(tf)
    bucket = naming.gcs_artifact_bucket(env.name, env.gcp.project_id)
    keys = {k: v.replace("arn:aws:s3:::", "projects/_/buckets/").replace(f"{bucket}/", f"{bucket}/objects/")
            for k, v in _keys(f"arn:aws:s3:::{bucket}", env).items()}
    prefix = naming.gcp_identity_prefix(env.name)
    writers = {"roles/storage.objectCreator", "roles/storage.objectUser", "roles/storage.objectAdmin"}
    readers = {"roles/storage.objectViewer", "roles/storage.objectUser"}
    for key in ("version", "manifest", "signature"):
        assert not _gcs_allows(grants, f"{prefix}-training", writers, keys[key])
        assert not _gcs_allows(grants, f"{prefix}-serving", writers, keys[key])
        assert _gcs_allows(grants, f"{prefix}-review", {"roles/storage.objectUser"}, keys[key])
        assert _gcs_allows(grants, f"{prefix}-serving", readers, keys[key])
    for key in ("candidate", "mlflow"):
        # objectCreator: create, never replace (replacing needs delete, which it lacks).
        assert _gcs_allows(grants, f"{prefix}-training", {"roles/storage.objectCreator"}, keys[key])
        assert not _gcs_allows(grants, f"{prefix}-training", {"roles/storage.objectUser"}, keys[key])
        assert _gcs_allows(grants, f"{prefix}-review", readers, keys[key])
        assert not _gcs_allows(grants, f"{prefix}-serving", readers, keys[key])
    assert not _gcs_allows(grants, f"{prefix}-review", writers, keys["candidate"])

    (key,) = [k for k in resources(tf, "google_kms_crypto_key").values() if k["purpose"] == "ASYMMETRIC_SIGN"]
    assert key["name"] == naming.gcp_manifest_signing_key(env.name)
    assert key["version_template"] == {"algorithm": "EC_SIGN_P256_SHA256", "protection_level": "HSM"}
    assert "rotation_period" not in key and key["lifecycle"]["prevent_destroy"] is True
    ring = next(r for r in resources(tf, "google_kms_key_ring").values() if key["key_ring"].startswith(
        "${google_kms_key_ring.") and r["name"] in manifest_signing_key_id(env))
    assert ring["location"] in ("us", "eu", "europe", "asia")  # a multi-region: every region verifies it
    signers = [(b["role"], b["member"], b["crypto_key_id"]) for b in resources(tf, "google_kms_crypto_key_iam_member")
               .values() if b["role"] == "roles/cloudkms.signerVerifier"]
    accounts = {f"serviceAccount:${{google_service_account.{rid}.email}}": body["account_id"]
                for rid, body in resources(tf, "google_service_account").items()}
    assert [(accounts[m], k.startswith("${google_kms_crypto_key.manifest-signing-key")) for _, m, k in signers] == [
        (f"{prefix}-review", True)]
