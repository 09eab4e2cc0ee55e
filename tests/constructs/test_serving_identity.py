from __future__ import annotations

import fnmatch
import json

import pytest

from mlfleet.constructs.aws.artifact_grants import ArtifactBucket
from mlfleet.constructs.aws.kms_key import KmsKey, KmsKeyProps
from mlfleet.constructs.aws.s3_artifact_store import S3ArtifactStore, S3ArtifactStoreProps
from mlfleet.constructs.aws.serving_identity import IamServingIdentity, IamServingIdentityProps
from mlfleet.constructs.policy import evaluate_terraform
from mlfleet.constructs.validation import PropsError

from helpers.template import only_resource, resources

ACCOUNT = "333333333333"
BUCKET = f"mlfleet-prod-{ACCOUNT}-us-east-1"
KEY = f"arn:aws:kms:us-east-1:{ACCOUNT}:key/0123abcd-0000-0000-0000-000000000000"
TRAINER = f"arn:aws:iam::{ACCOUNT}:role/ml-training-pipeline"
REVIEWER = f"arn:aws:iam::{ACCOUNT}:role/ml-reviewers"
OBJ = f"arn:aws:s3:::{BUCKET}/models/resnet/v7/model.pt"
MANIFEST = f"arn:aws:s3:::{BUCKET}/models/manifest.json"
CHAMPION = {"s3:ExistingObjectTag/mlfleet:stage": "champion"}
VIA_S3 = {"kms:ViaService": "s3.us-east-1.amazonaws.com"}


def props(**overrides) -> IamServingIdentityProps:
    base = dict(name_prefix="mlfleet-prod", account_id=ACCOUNT, region="us-east-1",
                artifacts=ArtifactBucket(bucket_name=BUCKET, key_arn=KEY, region="us-east-1"),
                cluster_name="mlfleet-prod-us-east-1", training_principals=(TRAINER,), review_principals=(REVIEWER,))
    return IamServingIdentityProps(**{**base, **overrides})


def bucket_attributes(stack, **overrides) -> ArtifactBucket:
    """The bucket named by its derived attributes, as a stack without the store names it."""
    return ArtifactBucket.from_attributes(stack, "artifacts", **{
        **dict(bucket_name=BUCKET, key_arn=KEY, region="us-east-1"), **overrides})


def allowed(policy: dict, action: str, resource: str, context: dict | None = None) -> bool:
    """IAM evaluation for one identity policy: an explicit deny wins, then any allow."""
    context = context or {}

    def matches(statement: dict) -> bool:
        actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
        resources_ = statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]
        if action not in actions or not any(fnmatch.fnmatchcase(resource, r) for r in resources_):
            return False
        for operator, conditions in statement.get("Condition", {}).items():
            for key, expected in conditions.items():
                values = expected if isinstance(expected, list) else [expected]
                actual = context.get(key)
                if actual is None:
                    return False
                if operator in ("StringEquals", "ArnEquals") and actual not in values:
                    return False
                if operator == "StringLike" and not any(fnmatch.fnmatchcase(actual, v) for v in values):
                    return False
        return True

    hits = [s["Effect"] for s in policy["Statement"] if matches(s)]
    return "Deny" not in hits and "Allow" in hits


@pytest.fixture(scope="module")
def policies(tmp_path_factory):
    from cdktn import TerraformStack, Testing
    from cdktn_provider_aws.provider import AwsProvider

    app = Testing.app(outdir=str(tmp_path_factory.mktemp("out")))
    stack = TerraformStack(app, "test")
    AwsProvider(stack, "aws", region="us-east-1")
    IamServingIdentity(stack, "identity", props())
    tf = json.loads(Testing.synth(stack))
    by_role = {p["name"].removeprefix("mlfleet-"): json.loads(p["policy"])
               for p in resources(tf, "aws_iam_role_policy").values()}
    return tf, by_role


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


def test_serving_reads_only_champion_artifacts_and_the_manifest(policies):
    serving = policies[1]["serving"]
    assert allowed(serving, "s3:GetObject", OBJ, CHAMPION)
    assert allowed(serving, "s3:GetObjectVersion", OBJ, CHAMPION)
    assert not allowed(serving, "s3:GetObject", OBJ)  # an untagged candidate
    assert not allowed(serving, "s3:GetObject", OBJ, {"s3:ExistingObjectTag/mlfleet:stage": "candidate"})
    assert not allowed(serving, "s3:GetObject", f"arn:aws:s3:::{BUCKET}/other/x", CHAMPION)
    assert allowed(serving, "s3:GetObject", MANIFEST)
    assert not allowed(serving, "s3:PutObject", OBJ, CHAMPION)
    assert not allowed(serving, "s3:PutObjectTagging", OBJ, CHAMPION)
    assert allowed(serving, "kms:Decrypt", KEY, VIA_S3)
    assert not allowed(serving, "kms:Decrypt", KEY)  # directly, not through S3


def test_training_writes_candidates_but_cannot_crown_a_champion_or_repin_the_manifest(policies):
    training = policies[1]["training"]
    assert allowed(training, "s3:PutObject", OBJ)
    assert allowed(training, "s3:PutObject", OBJ, {"s3:RequestObjectTag/mlfleet:stage": "candidate"})
    assert not allowed(training, "s3:PutObject", OBJ, {"s3:RequestObjectTag/mlfleet:stage": "champion"})
    assert not allowed(training, "s3:PutObjectTagging", OBJ, {"s3:RequestObjectTag/mlfleet:stage": "champion"})
    assert not allowed(training, "s3:PutObjectTagging", OBJ)
    assert not allowed(training, "s3:PutObject", MANIFEST)
    assert not allowed(training, "s3:PutObject", f"arn:aws:s3:::{BUCKET}/outside-prefix/x")
    assert not allowed(training, "s3:GetObject", OBJ)
    assert allowed(training, "kms:GenerateDataKey", KEY, VIA_S3)


def test_review_reads_approves_and_publishes_the_manifest(policies):
    review = policies[1]["review"]
    assert allowed(review, "s3:GetObject", OBJ)
    assert allowed(review, "s3:GetObjectVersionTagging", OBJ)
    assert allowed(review, "s3:ListBucket", f"arn:aws:s3:::{BUCKET}", {"s3:prefix": "models/resnet/"})
    assert not allowed(review, "s3:ListBucket", f"arn:aws:s3:::{BUCKET}", {"s3:prefix": "secrets/"})
    assert allowed(review, "s3:PutObjectTagging", OBJ)
    assert allowed(review, "s3:PutObject", MANIFEST)
    assert not allowed(review, "s3:PutObject", OBJ)  # review approves, it does not upload models
    assert not allowed(review, "s3:DeleteObject", OBJ)


def test_key_and_cluster_may_be_tokens_from_the_same_stack(synth):
    def build(stack):
        key = KmsKey(stack, "key", KmsKeyProps(alias="mlfleet-prod-artifacts", account_id=ACCOUNT))
        artifacts = bucket_attributes(stack, key_arn=key.key_arn, models_prefix="registry/models/")
        IamServingIdentity(stack, "identity", props(artifacts=artifacts))

    tf = synth(build)
    serving = next(json.loads(p["policy"]) for p in resources(tf, "aws_iam_role_policy").values()
                   if p["name"] == "mlfleet-serving")
    decrypt = next(s for s in serving["Statement"] if s["Sid"] == "DecryptArtifacts")
    assert decrypt["Resource"].startswith("${aws_kms_key.key_")
    manifest = next(s for s in serving["Statement"] if s["Sid"] == "ReadManifest")
    assert manifest["Resource"] == f"arn:aws:s3:::{BUCKET}/registry/models/manifest.json"


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


def test_serving_granted_by_the_store_reads_only_champions_under_the_stores_prefix(synth):
    built = {}

    def build(stack):
        store = S3ArtifactStore(stack, "artifacts", S3ArtifactStoreProps(
            bucket_name=BUCKET, account_id=ACCOUNT, region="us-east-1", role="standby",
            key_alias="mlfleet-prod-artifacts", models_prefix="registry/models/"))
        built["identity"] = IamServingIdentity(stack, "identity", props(artifacts=store))

    tf = synth(build)
    assert built["identity"].manifest_key == "registry/models/manifest.json"
    serving = next(json.loads(p["policy"]) for p in resources(tf, "aws_iam_role_policy").values()
                   if p["name"] == "mlfleet-serving")
    champion = f"arn:aws:s3:::{BUCKET}/registry/models/resnet/v7/model.pt"
    assert allowed(serving, "s3:GetObject", champion, CHAMPION)
    assert allowed(serving, "s3:GetObjectVersion", champion, CHAMPION)
    assert not allowed(serving, "s3:GetObject", champion)  # an untagged candidate
    assert not allowed(serving, "s3:GetObject", OBJ, CHAMPION)  # a champion outside the store's prefix
    assert not allowed(serving, "s3:GetObject", MANIFEST)
    assert allowed(serving, "s3:GetObject", f"arn:aws:s3:::{BUCKET}/registry/models/manifest.json")
    assert not allowed(serving, "s3:PutObject", champion, CHAMPION)
    decrypt = next(s for s in serving["Statement"] if s["Sid"] == "DecryptArtifacts")
    assert decrypt["Resource"].startswith("${aws_kms_key.artifacts_key_")  # the store's own key
    assert decrypt["Condition"] == {"StringEquals": VIA_S3}
