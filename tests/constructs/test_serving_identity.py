from __future__ import annotations

import json

import pytest

from mlfleet.constructs.aws.artifact_grants import ArtifactBucket
from mlfleet.constructs.aws.kms_key import KmsKey, KmsKeyProps
from mlfleet.constructs.aws.manifest_signing_key import ManifestSigningKeyAlias
from mlfleet.constructs.aws.s3_artifact_store import S3ArtifactStore, S3ArtifactStoreProps
from mlfleet.constructs.aws.serving_identity import IamServingIdentity, IamServingIdentityProps
from mlfleet.constructs.policy import evaluate_terraform
from mlfleet.constructs.validation import PropsError

from helpers.iam import allowed
from helpers.template import only_resource, resources

ACCOUNT = "333333333333"
BUCKET = f"mlfleet-prod-{ACCOUNT}-us-east-1"
KEY = f"arn:aws:kms:us-east-1:{ACCOUNT}:key/0123abcd-0000-0000-0000-000000000000"
SIGNING_KEY = f"arn:aws:kms:us-east-1:{ACCOUNT}:key/mrk-0123456789abcdef0123456789abcdef"
SIGNING_ALIAS = {"kms:ResourceAliases": "alias/mlfleet-prod-manifest-signing"}
TRAINER = f"arn:aws:iam::{ACCOUNT}:role/ml-training-pipeline"
REVIEWER = f"arn:aws:iam::{ACCOUNT}:role/ml-reviewers"
OBJECTS = f"arn:aws:s3:::{BUCKET}/models/"
CANDIDATE = f"{OBJECTS}candidates/mlp/1/model.pt"
APPROVED_FILE = f"{OBJECTS}approved/mlp/1/model.pt"
MANIFEST = f"{OBJECTS}approved/manifest.json"
SIGNATURE = f"{OBJECTS}approved/manifest.json.sig"
APPROVED_KEYS = (APPROVED_FILE, MANIFEST, SIGNATURE)
WRITES = ("s3:PutObject", "s3:DeleteObject", "s3:DeleteObjectVersion")
VIA_S3 = {"kms:ViaService": "s3.us-east-1.amazonaws.com"}


def props(**overrides) -> IamServingIdentityProps:
    base = dict(name_prefix="mlfleet-prod", account_id=ACCOUNT, region="us-east-1",
                artifacts=ArtifactBucket(bucket_name=BUCKET, key_arn=KEY, region="us-east-1"),
                cluster_name="mlfleet-prod-us-east-1", training_principals=(TRAINER,), review_principals=(REVIEWER,),
                signing_key=ManifestSigningKeyAlias(alias="mlfleet-prod-manifest-signing", account_id=ACCOUNT,
                                                    region="us-east-1"))
    return IamServingIdentityProps(**{**base, **overrides})


def bucket_attributes(stack, **overrides) -> ArtifactBucket:
    """The bucket named by its derived attributes, as a stack without the store names it."""
    return ArtifactBucket.from_attributes(stack, "artifacts", **{
        **dict(bucket_name=BUCKET, key_arn=KEY, region="us-east-1"), **overrides})


def role_policies(tf: dict) -> dict[str, dict]:
    return {p["name"].removeprefix("mlfleet-"): json.loads(p["policy"])
            for p in resources(tf, "aws_iam_role_policy").values()}


@pytest.fixture(scope="module")
def policies(tmp_path_factory):
    from cdktn import TerraformStack, Testing
    from cdktn_provider_aws.provider import AwsProvider

    app = Testing.app(outdir=str(tmp_path_factory.mktemp("out")))
    stack = TerraformStack(app, "test")
    AwsProvider(stack, "aws", region="us-east-1")
    IamServingIdentity(stack, "identity", props())
    tf = json.loads(Testing.synth(stack))
    return tf, role_policies(tf)


def test_roles_are_named_per_region_pass_the_policy_pass_and_trust_only_named_principals(policies):
    tf, _ = policies
    assert [f for f in evaluate_terraform("test", tf) if f.rule != "MLF006"] == []
    roles = {r["name"]: json.loads(r["assume_role_policy"])["Statement"][0]
             for r in resources(tf, "aws_iam_role").values()}
    assert set(roles) == {"mlfleet-prod-us-east-1-serving", "mlfleet-prod-us-east-1-training",
                          "mlfleet-prod-us-east-1-review"}
    serving = roles["mlfleet-prod-us-east-1-serving"]
    assert serving["Principal"] == {"Service": "pods.eks.amazonaws.com"}
    assert serving["Action"] == ["sts:AssumeRole", "sts:TagSession"]
    assert serving["Condition"] == {
        "StringEquals": {"aws:SourceAccount": ACCOUNT},
        "ArnEquals": {"aws:SourceArn": f"arn:aws:eks:us-east-1:{ACCOUNT}:cluster/mlfleet-prod-us-east-1"}}
    assert roles["mlfleet-prod-us-east-1-training"]["Principal"] == {"AWS": [TRAINER]}
    assert roles["mlfleet-prod-us-east-1-review"]["Principal"] == {"AWS": [REVIEWER]}
    association = only_resource(tf, "aws_eks_pod_identity_association")
    assert (association["cluster_name"], association["namespace"], association["service_account"]) == (
        "mlfleet-prod-us-east-1", "mlfleet", "mlfleet-runtime")
    assert association["role_arn"].endswith(".arn}") and "serving-role" in association["role_arn"]


def test_serving_reads_the_approved_area_only_and_writes_nothing(policies):
    serving = policies[1]["serving"]
    for key in APPROVED_KEYS:
        assert allowed(serving, "s3:GetObject", key)
    assert not allowed(serving, "s3:GetObject", CANDIDATE)
    assert not allowed(serving, "s3:GetObject", f"arn:aws:s3:::{BUCKET}/other/x")
    assert not allowed(serving, "s3:ListBucket", f"arn:aws:s3:::{BUCKET}", {"s3:prefix": "models/"})
    for action in (*WRITES, "s3:PutObjectTagging"):
        for key in (CANDIDATE, *APPROVED_KEYS):
            assert not allowed(serving, action, key)
    assert allowed(serving, "kms:Decrypt", KEY, VIA_S3)
    assert not allowed(serving, "kms:Decrypt", KEY)  # directly, not through S3
    assert not allowed(serving, "kms:Sign", SIGNING_KEY, SIGNING_ALIAS)


def test_training_writes_reads_and_lists_candidates(policies):
    training = policies[1]["training"]
    assert allowed(training, "s3:PutObject", CANDIDATE)
    assert allowed(training, "s3:PutObject", f"{OBJECTS}candidates/mlflow/1/abc/artifacts/model.pt")
    assert allowed(training, "s3:AbortMultipartUpload", CANDIDATE)
    assert allowed(training, "s3:GetObject", CANDIDATE)
    assert allowed(training, "s3:ListBucket", f"arn:aws:s3:::{BUCKET}", {"s3:prefix": "models/candidates/mlp/"})
    assert not allowed(training, "s3:ListBucket", f"arn:aws:s3:::{BUCKET}", {"s3:prefix": "models/approved/"})
    assert not allowed(training, "s3:PutObject", f"arn:aws:s3:::{BUCKET}/outside-prefix/x")
    assert allowed(training, "kms:GenerateDataKey", KEY, VIA_S3)


@pytest.mark.parametrize("key", APPROVED_KEYS, ids=("approved-version", "manifest", "signature"))
@pytest.mark.parametrize("action", WRITES)
def test_training_cannot_overwrite_or_delete_any_approved_key(policies, action, key):
    training = policies[1]["training"]
    assert not allowed(training, action, key)
    # Its own deny holds even beside a policy attached later that allows every write in the bucket.
    widened = {"Statement": [*training["Statement"], {"Effect": "Allow", "Action": "s3:*",
                                                      "Resource": f"arn:aws:s3:::{BUCKET}/*"}]}
    assert not allowed(widened, action, key)
    assert allowed(widened, action, CANDIDATE)


def test_training_cannot_read_approved_files_or_sign(policies):
    training = policies[1]["training"]
    assert not allowed(training, "s3:GetObject", APPROVED_FILE)
    assert not allowed(training, "kms:Sign", SIGNING_KEY, SIGNING_ALIAS)


def test_review_reads_candidates_writes_the_approved_area_and_signs(policies):
    review = policies[1]["review"]
    assert allowed(review, "s3:GetObject", CANDIDATE)
    assert allowed(review, "s3:GetObjectVersion", CANDIDATE)
    for prefix in ("models/candidates/mlp/", "models/approved/"):
        assert allowed(review, "s3:ListBucket", f"arn:aws:s3:::{BUCKET}", {"s3:prefix": prefix})
    assert not allowed(review, "s3:ListBucket", f"arn:aws:s3:::{BUCKET}", {"s3:prefix": "secrets/"})
    for key in APPROVED_KEYS:
        assert allowed(review, "s3:PutObject", key)
        assert not allowed(review, "s3:DeleteObject", key)
    assert not allowed(review, "s3:PutObject", CANDIDATE)  # review approves, it does not upload candidates
    assert allowed(review, "kms:Sign", SIGNING_KEY, SIGNING_ALIAS)
    assert allowed(review, "kms:GetPublicKey", SIGNING_KEY, SIGNING_ALIAS)
    # Another key of the region, or the signing alias in another region: no.
    assert not allowed(review, "kms:Sign", SIGNING_KEY, {"kms:ResourceAliases": "alias/mlfleet-prod-artifacts"})
    assert not allowed(review, "kms:Sign", SIGNING_KEY.replace("us-east-1", "us-west-2"), SIGNING_ALIAS)
    assert not allowed(review, "kms:Decrypt", SIGNING_KEY, SIGNING_ALIAS)


def test_review_without_a_signing_key_cannot_sign(synth):
    review = role_policies(synth(lambda s: IamServingIdentity(s, "identity", props(signing_key=None))))["review"]
    assert not allowed(review, "kms:Sign", SIGNING_KEY, SIGNING_ALIAS)
    assert allowed(review, "s3:PutObject", MANIFEST)


def test_key_and_cluster_may_be_tokens_from_the_same_stack(synth):
    def build(stack):
        key = KmsKey(stack, "key", KmsKeyProps(alias="mlfleet-prod-artifacts", account_id=ACCOUNT))
        artifacts = bucket_attributes(stack, key_arn=key.key_arn, models_prefix="registry/models/")
        IamServingIdentity(stack, "identity", props(artifacts=artifacts))

    serving = role_policies(synth(build))["serving"]
    decrypt = next(s for s in serving["Statement"] if s["Sid"] == "DecryptArtifacts")
    assert decrypt["Resource"].startswith("${aws_kms_key.key_")
    read = next(s for s in serving["Statement"] if s["Sid"] == "ReadApproved")
    assert read["Resource"] == f"arn:aws:s3:::{BUCKET}/registry/models/approved/*"


@pytest.mark.parametrize(("overrides", "prop", "reason"), [
    (dict(training_principals=("*",)), r"training_principals\[0\]", "wildcards are not allowed"),
    (dict(review_principals=(f"arn:aws:iam::{ACCOUNT}:role/*",)), r"review_principals\[0\]", "not an IAM role"),
    (dict(training_principals=()), "training_principals", "at least one principal"),
    (dict(name_prefix="mlfleet-" + "x" * 50), "name_prefix", "at most 64 characters"),
    (dict(namespace="ML_Fleet"), "namespace", "not a Kubernetes DNS label"),
    (dict(account_id="42"), "account_id", "12-digit"),
])
def test_invalid_props_are_rejected_with_the_prop_and_the_reason(synth, overrides, prop, reason):
    with pytest.raises(PropsError, match=f"identity: {prop}: .*{reason}"):
        synth(lambda stack: IamServingIdentity(stack, "identity", props(**overrides)))


# The bucket's names enter where it is named by its attributes: they are checked there.
@pytest.mark.parametrize(("overrides", "prop", "reason"), [
    (dict(models_prefix="/models"), "models_prefix", "ending in '/'"),
    (dict(key_arn=f"arn:aws:kms:us-west-2:{ACCOUNT}:key/x"), "key_arn", "in us-east-1"),
    (dict(bucket_name="B"), "bucket_name", "not a valid S3 bucket name"),
    (dict(region="mars-1"), "region", "not an AWS region name"),
])
def test_invalid_bucket_attributes_are_rejected_with_the_attribute_and_the_reason(synth, overrides, prop, reason):
    with pytest.raises(PropsError, match=f"test/artifacts: {prop}: .*{reason}"):
        synth(lambda stack: IamServingIdentity(stack, "identity", props(artifacts=bucket_attributes(
            stack, **overrides))))


def _store(stack, **overrides) -> S3ArtifactStore:
    return S3ArtifactStore(stack, "artifacts", S3ArtifactStoreProps(**{**dict(
        bucket_name=BUCKET, account_id=ACCOUNT, region="us-east-1", role="standby",
        key_alias="mlfleet-prod-artifacts", models_prefix="registry/models/"), **overrides}))


def test_serving_granted_by_the_store_reads_only_the_approved_area_under_the_stores_prefix(synth):
    built = {}

    def build(stack):
        built["identity"] = IamServingIdentity(stack, "identity", props(artifacts=_store(stack)))

    serving = role_policies(synth(build))["serving"]
    assert built["identity"].manifest_key == "registry/models/approved/manifest.json"
    approved = f"arn:aws:s3:::{BUCKET}/registry/models/approved/mlp/1/model.pt"
    assert allowed(serving, "s3:GetObject", approved)
    assert allowed(serving, "s3:GetObject", f"arn:aws:s3:::{BUCKET}/registry/models/approved/manifest.json.sig")
    assert not allowed(serving, "s3:GetObject", f"arn:aws:s3:::{BUCKET}/registry/models/candidates/mlp/1/model.pt")
    assert not allowed(serving, "s3:GetObject", APPROVED_FILE)  # outside the store's prefix
    assert not allowed(serving, "s3:PutObject", approved)
    decrypt = next(s for s in serving["Statement"] if s["Sid"] == "DecryptArtifacts")
    assert decrypt["Resource"].startswith("${aws_kms_key.artifacts_key_")  # the store's own key
    assert decrypt["Condition"] == {"StringEquals": VIA_S3}


REVIEW_ROLE = f"arn:aws:iam::{ACCOUNT}:role/mlfleet-prod-us-east-1-review"
TRAINING_ROLE = f"arn:aws:iam::{ACCOUNT}:role/mlfleet-prod-us-east-1-training"
EVERYTHING = {"Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}


def test_the_bucket_policy_denies_approved_writes_to_every_principal_but_review(synth):
    tf = synth(lambda s: _store(s, models_prefix="models/", approved_writer_arns=(REVIEW_ROLE,)))
    bucket_policy = json.loads(only_resource(tf, "aws_s3_bucket_policy")["policy"])

    def may(principal: str, action: str, key: str) -> bool:
        # An identity policy that allows everything: only the bucket policy stands in the way.
        request = {"aws:PrincipalArn": principal, "aws:SecureTransport": "true", "s3:TlsVersion": "1.3"}
        return allowed(EVERYTHING, action, key, request, bucket_policy=bucket_policy)

    for key in APPROVED_KEYS:
        for action in WRITES:
            assert not may(TRAINING_ROLE, action, key)
            assert not may(f"arn:aws:iam::{ACCOUNT}:root", action, key)
            assert may(REVIEW_ROLE, action, key)
        # Replication writes replicas with its own actions, which the guard does not name.
        for action in ("s3:ReplicateObject", "s3:ReplicateDelete", "s3:ReplicateTags"):
            assert may(f"arn:aws:iam::{ACCOUNT}:role/mlfleet-prod-us-west-2-replication", action, key)
    assert may(TRAINING_ROLE, "s3:PutObject", CANDIDATE)


def test_without_approved_writers_the_guard_denies_everyone(synth):
    tf = synth(lambda s: _store(s, models_prefix="models/"))
    bucket_policy = json.loads(only_resource(tf, "aws_s3_bucket_policy")["policy"])
    assert not allowed(EVERYTHING, "s3:PutObject", MANIFEST, {"aws:PrincipalArn": REVIEW_ROLE},
                       bucket_policy=bucket_policy)


def test_an_approved_writer_must_be_a_role_arn(synth):
    with pytest.raises(PropsError, match=r"artifacts: approved_writer_arns\[0\]: '\*' is not an IAM role ARN"):
        synth(lambda s: _store(s, approved_writer_arns=("*",)))
