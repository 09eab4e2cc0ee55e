"""The DR runbooks' IAM policy: each call on the environment's own resources, attached to the
operator roles of the account given, refused props named where they are given."""
from __future__ import annotations

import json

import pytest

from mlfleet.constructs.aws.dr_runbook_policy import DrRunbookPolicy, DrRunbookPolicyProps, RunbookRegion
from mlfleet.constructs.policy import evaluate_terraform
from mlfleet.constructs.validation import PropsError

from helpers.template import Template

ACCOUNT = "111111111111"
ONCALL = f"arn:aws:iam::{ACCOUNT}:role/platform/oncall"


def region(name: str) -> RunbookRegion:
    return RunbookRegion(region=name, db_cluster_identifier=f"mlfleet-prod-registry-{name}",
                         eks_cluster_name=f"mlfleet-prod-{name}", node_group_names=("inference-gpu",),
                         artifact_bucket=f"mlfleet-prod-{ACCOUNT}-{name}", lock_table_name="mlfleet-prod-dr-locks")


def props(**overrides) -> DrRunbookPolicyProps:
    base = dict(policy_name="mlfleet-prod-dr-runbooks", account_id=ACCOUNT,
                global_cluster_identifier="mlfleet-prod-registry",
                regions=(region("us-east-1"), region("us-west-2")), models_prefix="models/",
                artifact_key_alias="mlfleet-prod-artifacts", lock_key_alias="mlfleet-prod-dr-locks",
                signing_key_alias="mlfleet-prod-manifest-signing", hosted_zone_id="Z0123456789ABCDEFGHIJ",
                routing_control_arns=("arn:aws:route53-recovery-control::111111111111:controlpanel/abc/routingcontrol/x",),
                recovery_cluster_arn="arn:aws:route53-recovery-control::111111111111:cluster/c",
                attach_to_role_arns=(ONCALL,))
    return DrRunbookPolicyProps(**{**base, **overrides})


def _statements(tf: dict) -> dict[str, dict]:
    document = json.loads(Template(tf).only("aws_iam_policy")["policy"])
    return {s["Sid"]: s for s in document["Statement"]}


def test_every_write_is_on_the_environments_own_resources(synth):
    tf = synth(lambda stack: DrRunbookPolicy(stack, "dr", props()))
    found = _statements(tf)
    assert found["PromoteRegistry"]["Resource"] == [
        f"arn:aws:rds::{ACCOUNT}:global-cluster:mlfleet-prod-registry",
        f"arn:aws:rds:us-east-1:{ACCOUNT}:cluster:mlfleet-prod-registry-us-east-1",
        f"arn:aws:rds:us-west-2:{ACCOUNT}:cluster:mlfleet-prod-registry-us-west-2"]
    assert found["ScaleNodeGroups"]["Resource"] == [
        f"arn:aws:eks:{r}:{ACCOUNT}:nodegroup/mlfleet-prod-{r}/inference-gpu/*" for r in ("us-east-1", "us-west-2")]
    assert found["AnchorAuditHead"]["Resource"] == [
        f"arn:aws:s3:::mlfleet-prod-{ACCOUNT}-{r}/audit-anchor/*" for r in ("us-east-1", "us-west-2")]
    assert found["ReadApprovedModels"]["Action"] == "s3:GetObject"  # reads models, never writes them
    assert found["HoldRunLock"]["Resource"] == [
        f"arn:aws:dynamodb:{r}:{ACCOUNT}:table/mlfleet-prod-dr-locks" for r in ("us-east-1", "us-west-2")]
    assert found["FlipAndReconcileRecords"]["Resource"] == "arn:aws:route53:::hostedzone/Z0123456789ABCDEFGHIJ"
    assert found["TurnRoutingControls"]["Resource"] == list(props().routing_control_arns)
    # KMS only through the service that stores the data, and only for the key of that data.
    lock_key = found["UseLockKeyThroughDynamoDb"]["Condition"]
    assert lock_key["StringEquals"]["kms:ViaService"] == ["dynamodb.us-east-1.amazonaws.com",
                                                          "dynamodb.us-west-2.amazonaws.com"]
    assert lock_key["ForAnyValue:StringEquals"]["kms:ResourceAliases"] == "alias/mlfleet-prod-dr-locks"
    # The only statements on any resource: reads that have no resource type.
    assert sorted(sid for sid, s in found.items() if s["Resource"] == "*") == [
        "FindRecoveryCluster", "ListRoutingControls", "ReadReplicaLag"]
    assert all(not a.startswith(("iam:", "sts:")) for s in found.values() for a in _listed(s["Action"]))
    Template(tf).has_resource_properties("aws_iam_role_policy_attachment", {"role": "oncall"})
    assert [f for f in evaluate_terraform("test", tf) if f.rule != "MLF006"] == []


def test_without_records_or_routing_controls_there_are_no_statements_for_them(synth):
    tf = synth(lambda stack: DrRunbookPolicy(stack, "dr", props(
        hosted_zone_id=None, routing_control_arns=(), recovery_cluster_arn=None, attach_to_role_arns=())))
    found = _statements(tf)
    assert not {"FlipAndReconcileRecords", "TurnRoutingControls", "ListRoutingControls"} & set(found)
    Template(tf).resource_count_is("aws_iam_role_policy_attachment", 0)


@pytest.mark.parametrize("overrides, match", [
    ({"attach_to_role_arns": ("arn:aws:iam::222222222222:role/oncall",)},
     "attach_to_role_arns: .* is not a role of account 111111111111"),
    ({"regions": ()}, "regions: names no AWS region"),
    ({"regions": (region("us-east-1"), region("us-east-1"))}, "regions: lists a region twice"),
    ({"models_prefix": "models"}, "models_prefix: 'models' is not an object prefix"),
    ({"account_id": "1234"}, "account_id: '1234' is not a 12-digit AWS account id"),
    ({"routing_control_arns": ("control-1",)}, "routing_control_arns: 'control-1' is not a routing control ARN"),
])
def test_invalid_props_are_refused_naming_the_prop(synth, overrides, match):
    with pytest.raises(PropsError, match=match):
        synth(lambda stack: DrRunbookPolicy(stack, "dr", props(**overrides)))


def _listed(value) -> list:
    return value if isinstance(value, list) else [value]
