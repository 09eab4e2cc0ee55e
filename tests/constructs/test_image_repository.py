"""The runtime image's ECR repository in the primary, and the creation template in a standby."""
from __future__ import annotations

import json

import pytest

from mlfleet.constructs.aws.image_repository import (
    EcrImageRepository,
    EcrImageRepositoryProps,
    EcrReplicaTemplate,
    EcrReplicaTemplateProps,
)
from mlfleet.constructs.policy import evaluate_terraform
from mlfleet.constructs.validation import PropsError

from helpers.template import ABSENT, Template

ACCOUNT = "111111111111"
KEY = f"arn:aws:kms:us-east-1:{ACCOUNT}:key/0123abcd-0000-0000-0000-000000000000"
STANDBY_KEY = f"arn:aws:kms:us-west-2:{ACCOUNT}:key/4567abcd-0000-0000-0000-000000000000"


def repo_props(**overrides) -> EcrImageRepositoryProps:
    base = dict(name="mlfleet/runtime", kms_key_arn=KEY, account_id=ACCOUNT, replicate_to=("us-west-2", "eu-west-1"))
    return EcrImageRepositoryProps(**{**base, **overrides})


def template_props(**overrides) -> EcrReplicaTemplateProps:
    base = dict(repository_name="mlfleet/runtime", kms_key_arn=STANDBY_KEY, account_id=ACCOUNT, region="us-west-2",
                role_name="mlfleet-prod-us-west-2-ecr-template")
    return EcrReplicaTemplateProps(**{**base, **overrides})


def test_primary_repository_is_immutable_scanned_kms_encrypted_and_replicated(synth):
    from cdktn import TerraformOutput

    built = {}

    def build(stack):
        repo = built["repo"] = EcrImageRepository(stack, "runtime-image", repo_props())
        TerraformOutput(stack, "url", value=repo.repository_url)

    tf = synth(build)
    template = Template(tf)
    repository = template.has_resource_properties("aws_ecr_repository", {
        "name": "mlfleet/runtime", "image_tag_mutability": "IMMUTABLE",
        "image_scanning_configuration": {"scan_on_push": True},
        "encryption_configuration": [{"encryption_type": "KMS", "kms_key": KEY}],
        "force_delete": ABSENT})
    assert repository
    rules = json.loads(template.only("aws_ecr_lifecycle_policy")["policy"])["rules"]
    assert rules == [{"rulePriority": 1, "description": "Expire untagged images 14 days after push",
                      "selection": {"tagStatus": "untagged", "countType": "sinceImagePushed", "countUnit": "days",
                                    "countNumber": 14}, "action": {"type": "expire"}}]
    rule = template.only("aws_ecr_replication_configuration")["replication_configuration"]["rule"]
    assert rule == [{"destination": [{"region": "us-west-2", "registry_id": ACCOUNT},
                                     {"region": "eu-west-1", "registry_id": ACCOUNT}],
                     "repository_filter": [{"filter": "mlfleet/runtime", "filter_type": "PREFIX_MATCH"}]}]
    # The rule exposed for another owner is the one written here.
    assert built["repo"].replication_rule == rule[0]
    repo_id = next(iter(template.resources("aws_ecr_repository")))
    assert template.output_value("url") == f"${{aws_ecr_repository.{repo_id}.repository_url}}"
    assert [f for f in evaluate_terraform("test", tf) if f.rule != "MLF006"] == []


def test_without_registry_ownership_only_the_rule_is_exposed(synth):
    built = {}
    tf = synth(lambda stack: built.setdefault("repo", EcrImageRepository(
        stack, "runtime-image", repo_props(manage_registry_replication=False, replicate_to=("us-west-2",)))))
    Template(tf).resource_count_is("aws_ecr_replication_configuration", 0)
    assert built["repo"].replication is None
    assert built["repo"].replication_rule == {
        "destination": [{"region": "us-west-2", "registry_id": ACCOUNT}],
        "repository_filter": [{"filter": "mlfleet/runtime", "filter_type": "PREFIX_MATCH"}]}


def test_a_standby_repository_replicates_nothing(synth):
    built = {}
    tf = synth(lambda stack: built.setdefault("repo", EcrImageRepository(
        stack, "runtime-image", repo_props(name="mlfleet-runtime", replicate_to=(), untagged_expiry_days=3))))
    Template(tf).resource_count_is("aws_ecr_replication_configuration", 0)
    assert built["repo"].replication_rule is None
    policy = json.loads(Template(tf).only("aws_ecr_lifecycle_policy")["policy"])
    assert policy["rules"][0]["selection"]["countNumber"] == 3


def test_standby_template_gives_replicas_the_primarys_settings_with_a_key_scoped_role(synth):
    built = {}
    tf = synth(lambda stack: built.setdefault("template", EcrReplicaTemplate(stack, "replica", template_props())),
               region="us-west-2")
    template = Template(tf)
    body = template.only("aws_ecr_repository_creation_template")
    role_id = next(iter(template.resources("aws_iam_role")))
    # ECR appends '/' to a template prefix: the namespace covers mlfleet/runtime.
    assert body["prefix"] == "mlfleet" and body["applied_for"] == ["REPLICATION"]
    assert body["image_tag_mutability"] == "IMMUTABLE"
    assert body["encryption_configuration"] == [{"encryption_type": "KMS", "kms_key": STANDBY_KEY}]
    assert body["custom_role_arn"] == f"${{aws_iam_role.{role_id}.arn}}"
    assert json.loads(body["lifecycle_policy"])["rules"][0]["selection"]["tagStatus"] == "untagged"
    assert any(d.startswith("aws_iam_role_policy.") for d in body["depends_on"])

    role = template.only("aws_iam_role")
    assert role["name"] == "mlfleet-prod-us-west-2-ecr-template"
    assert json.loads(role["assume_role_policy"])["Statement"] == [{
        "Effect": "Allow", "Principal": {"Service": "ecr.amazonaws.com"}, "Action": "sts:AssumeRole",
        "Condition": {"StringEquals": {"aws:SourceAccount": ACCOUNT}}}]
    statements = {s["Sid"]: s for s in json.loads(template.only("aws_iam_role_policy")["policy"])["Statement"]}
    kms = statements["EncryptWithTheRegionKey"]
    assert kms["Resource"] == STANDBY_KEY
    assert kms["Condition"] == {"StringEquals": {"kms:ViaService": "ecr.us-west-2.amazonaws.com"}}
    assert {"kms:CreateGrant", "kms:Encrypt", "kms:Decrypt", "kms:GenerateDataKey*", "kms:DescribeKey"} <= set(
        kms["Action"])
    ecr = statements["CreateNamespaceRepositories"]
    assert ecr["Action"] == ["ecr:CreateRepository", "ecr:ReplicateImage"]  # no tags, no TagResource
    assert ecr["Resource"] == f"arn:aws:ecr:us-west-2:{ACCOUNT}:repository/mlfleet/*"
    assert built["template"].repository_url == f"{ACCOUNT}.dkr.ecr.us-west-2.amazonaws.com/mlfleet/runtime"
    assert [f for f in evaluate_terraform("test", tf) if f.rule != "MLF006"] == []


def test_template_resource_tags_add_tag_resource_to_the_role(synth):
    tf = synth(lambda stack: EcrReplicaTemplate(stack, "replica", template_props(resource_tags={"team": "ml"})))
    statements = json.loads(Template(tf).only("aws_iam_role_policy")["policy"])["Statement"]
    assert "ecr:TagResource" in statements[0]["Action"]
    assert Template(tf).only("aws_ecr_repository_creation_template")["resource_tags"] == {"team": "ml"}


@pytest.mark.parametrize("overrides, match", [
    (dict(name="MLfleet/Runtime"), r"name: 'MLfleet/Runtime' is not an ECR repository name"),
    (dict(name="mlfleet-runtime"), r"name: 'mlfleet-runtime' has no namespace"),
    (dict(kms_key_arn="alias/aws/ecr"), r"kms_key_arn: 'alias/aws/ecr' is not a KMS key ARN"),
    (dict(account_id="1234"), r"account_id: '1234' is not a 12-digit"),
    (dict(replicate_to=("us-west-2", "us-west-2")), r"replicate_to: lists a region twice"),
    (dict(replicate_to=("uswest2",)), r"replicate_to\[0\]: 'uswest2' is not an AWS region"),
    (dict(untagged_expiry_days=0), r"untagged_expiry_days: 0 is not between"),
])
def test_invalid_repository_props_are_rejected(synth, overrides, match):
    with pytest.raises(PropsError, match=match):
        synth(lambda stack: EcrImageRepository(stack, "runtime-image", repo_props(**overrides)))


@pytest.mark.parametrize("overrides, match", [
    (dict(repository_name="runtime"), r"repository_name: 'runtime' has no namespace"),
    (dict(role_name="x" * 65), r"role_name: 'x{65}' is not a valid IAM role name"),
    (dict(region="us-west"), r"region: 'us-west' is not an AWS region"),
    (dict(kms_key_arn="key-1"), r"kms_key_arn: 'key-1' is not a KMS key ARN"),
])
def test_invalid_template_props_are_rejected(synth, overrides, match):
    with pytest.raises(PropsError, match=match):
        synth(lambda stack: EcrReplicaTemplate(stack, "replica", template_props(**overrides)))
