from __future__ import annotations

import json

import pytest

from mlfleet.constructs.acknowledgements import acknowledgements_for
from mlfleet.constructs.aws.eks_cluster import AccessEntry, EksCluster, EksClusterProps
from mlfleet.constructs.policy import PolicyAspect, evaluate_terraform
from mlfleet.constructs.validation import PropsError

from helpers.template import only_resource, resources

ACCOUNT = "111111111111"
SUBNETS = ("subnet-0aaaaaaaaaaaaaaa1", "subnet-0aaaaaaaaaaaaaaa2", "subnet-0aaaaaaaaaaaaaaa3")
ADMINS = f"arn:aws:iam::{ACCOUNT}:role/platform-admins"
DEVS = f"arn:aws:iam::{ACCOUNT}:role/teams/serving-devs"
POLICY = "arn:aws:eks::aws:cluster-access-policy/"


def props(**overrides) -> EksClusterProps:
    base = dict(name="mlfleet-prod-us-east-1", account_id=ACCOUNT, region="us-east-1", subnet_ids=SUBNETS)
    return EksClusterProps(**{**base, **overrides})


def _roles(tf: dict) -> dict[str, dict]:
    return {r["name"]: r for r in resources(tf, "aws_iam_role").values()}


def _attached(tf: dict, role: str) -> set[str]:
    name = next(n for n, r in resources(tf, "aws_iam_role").items() if r["name"] == role)
    return {a["policy_arn"].removeprefix("arn:aws:iam::aws:policy/")
            for a in resources(tf, "aws_iam_role_policy_attachment").values()
            if a["role"] == f"${{aws_iam_role.{name}.name}}"}


def test_default_cluster_is_private_encrypted_logged_and_api_authenticated(synth):
    built = {}
    tf = synth(lambda stack: built.setdefault("cluster", EksCluster(stack, "cluster", props())))
    cluster = only_resource(tf, "aws_eks_cluster")
    key_arn = f"${{aws_kms_key.{next(iter(resources(tf, 'aws_kms_key')))}.arn}}"

    assert cluster["name"] == "mlfleet-prod-us-east-1" and cluster["version"] == "1.33"
    assert cluster["vpc_config"] == {"endpoint_private_access": True, "endpoint_public_access": False,
                                     "subnet_ids": list(SUBNETS)}
    assert cluster["access_config"] == {"authentication_mode": "API",
                                        "bootstrap_cluster_creator_admin_permissions": False}
    assert cluster["encryption_config"] == {"resources": ["secrets"], "provider": {"key_arn": key_arn}}
    assert sorted(cluster["enabled_cluster_log_types"]) == ["api", "audit", "authenticator", "controllerManager",
                                                             "scheduler"]
    assert cluster["deletion_protection"] is True and cluster["zonal_shift_config"] == {"enabled": True}

    logs = only_resource(tf, "aws_cloudwatch_log_group")
    assert logs["name"] == "/aws/eks/mlfleet-prod-us-east-1/cluster" and logs["kms_key_id"] == key_arn
    assert logs["retention_in_days"] == 365
    key = json.loads(only_resource(tf, "aws_kms_key")["policy"])
    assert key["Statement"][1]["Principal"] == {"Service": ["logs.us-east-1.amazonaws.com"]}
    assert only_resource(tf, "aws_kms_alias")["name"] == "alias/mlfleet-prod-us-east-1-eks"
    # The log group and both roles' policies exist before the cluster (and so before any node).
    depends = cluster["depends_on"]
    assert any(d.startswith("aws_cloudwatch_log_group.") for d in depends)
    assert sum(d.startswith("aws_iam_role_policy_attachment.") for d in depends) == 4

    addons = {a["addon_name"]: a for a in resources(tf, "aws_eks_addon").values()}
    assert sorted(addons) == ["eks-pod-identity-agent", "vpc-cni"]
    cluster_ref = "${aws_eks_cluster.%s.name}" % next(iter(resources(tf, "aws_eks_cluster")))
    assert all(a["cluster_name"] == cluster_ref for a in addons.values())
    assert resources(tf, "aws_eks_access_entry") == {}

    assert set(tf["output"]) == {"eks_cluster_name", "eks_cluster_arn"}
    assert [f for f in evaluate_terraform("test", tf) if f.rule != "MLF006"] == []
    assert built["cluster"].key.alias == "mlfleet-prod-us-east-1-eks"


def test_the_vpc_cni_add_on_enforces_network_policy(synth):
    tf = synth(lambda stack: EksCluster(stack, "cluster", props(vpc_cni_version="v1.20.0-eksbuild.1")))
    cni = next(a for a in resources(tf, "aws_eks_addon").values() if a["addon_name"] == "vpc-cni")
    # Without it, NetworkPolicy objects are accepted and silently not enforced.
    assert json.loads(cni["configuration_values"]) == {"enableNetworkPolicy": "true"}
    assert cni["addon_version"] == "v1.20.0-eksbuild.1"
    assert cni["resolve_conflicts_on_update"] == "OVERWRITE"
    default = synth(lambda stack: EksCluster(stack, "cluster", props()))
    assert "addon_version" not in next(a for a in resources(default, "aws_eks_addon").values()
                                       if a["addon_name"] == "vpc-cni")


def test_roles_carry_the_required_managed_policies_and_a_key_scoped_inline_policy(synth):
    tf = synth(lambda stack: EksCluster(stack, "cluster", props()))
    roles = _roles(tf)
    assert set(roles) == {"mlfleet-prod-us-east-1-cluster", "mlfleet-prod-us-east-1-node"}
    trust = {name: json.loads(r["assume_role_policy"])["Statement"][0]["Principal"] for name, r in roles.items()}
    assert trust == {"mlfleet-prod-us-east-1-cluster": {"Service": "eks.amazonaws.com"},
                     "mlfleet-prod-us-east-1-node": {"Service": "ec2.amazonaws.com"}}
    assert _attached(tf, "mlfleet-prod-us-east-1-cluster") == {"AmazonEKSClusterPolicy"}
    assert _attached(tf, "mlfleet-prod-us-east-1-node") == {
        "AmazonEKSWorkerNodePolicy", "AmazonEC2ContainerRegistryPullOnly", "AmazonEKS_CNI_Policy"}
    inline = json.loads(only_resource(tf, "aws_iam_role_policy")["policy"])["Statement"]
    assert inline == [{"Sid": "EnvelopeEncryptSecrets", "Effect": "Allow",
                       "Action": ["kms:Decrypt", "kms:DescribeKey", "kms:Encrypt", "kms:ListGrants"],
                       "Resource": "${aws_kms_key.%s.arn}" % next(iter(resources(tf, "aws_kms_key")))}]


def test_access_entries_group_policies_per_principal_with_their_scope(synth):
    tf = synth(lambda stack: EksCluster(stack, "cluster", props(access_entries=(
        AccessEntry(principal_arn=ADMINS, policy_arn=POLICY + "AmazonEKSClusterAdminPolicy", scope="cluster"),
        AccessEntry(principal_arn=DEVS, policy_arn=POLICY + "AmazonEKSEditPolicy", scope="namespace",
                    namespaces=("serving", "canary")),
        AccessEntry(principal_arn=DEVS, policy_arn=POLICY + "AmazonEKSViewPolicy", scope="cluster"),
    ))))
    entries = {e["principal_arn"]: e for e in resources(tf, "aws_eks_access_entry").values()}
    assert sorted(entries) == sorted([ADMINS, DEVS]) and all(e["type"] == "STANDARD" for e in entries.values())
    scopes = {(a["principal_arn"], a["policy_arn"].removeprefix(POLICY)): a["access_scope"]
              for a in resources(tf, "aws_eks_access_policy_association").values()}
    assert scopes == {
        (ADMINS, "AmazonEKSClusterAdminPolicy"): {"type": "cluster"},
        (DEVS, "AmazonEKSEditPolicy"): {"type": "namespace", "namespaces": ["canary", "serving"]},
        (DEVS, "AmazonEKSViewPolicy"): {"type": "cluster"},
    }
    assert all(len(a["depends_on"]) == 1 for a in resources(tf, "aws_eks_access_policy_association").values())


def test_public_endpoint_needs_explicit_cidrs_and_is_acknowledged_with_the_reason(synth):
    built = {}
    reason = "CI runners outside the VPC apply Kubernetes manifests"
    tf = synth(lambda stack: built.setdefault("cluster", EksCluster(stack, "cluster", props(
        endpoint_public_access_cidrs=("203.0.113.0/24", "198.51.100.7/32"), public_access_reason=reason))))
    vpc = only_resource(tf, "aws_eks_cluster")["vpc_config"]
    assert vpc["endpoint_public_access"] is True and vpc["endpoint_private_access"] is True
    assert vpc["public_access_cidrs"] == ["198.51.100.7/32", "203.0.113.0/24"]
    assert [f.rule for f in evaluate_terraform("test", tf) if f.rule != "MLF006"] == ["MLF002"]
    assert acknowledgements_for(built["cluster"].cluster, "MLF002")[0].reason == reason


def test_policy_aspect_reports_the_public_endpoint_as_acknowledged(synth):
    aspect = PolicyAspect()
    stacks = []

    def build(stack):
        from cdktn import Aspects
        EksCluster(stack, "cluster", props(endpoint_public_access_cidrs=("203.0.113.0/24",),
                                           public_access_reason="office network runs kubectl"))
        Aspects.of(stack).add(aspect)
        stacks.append(stack)

    synth(build)  # runs the aspect; the rules then read the stack's JSON with construct paths
    (stack,) = stacks
    public = [f for f in aspect.evaluate(stack.node.id, stack.to_terraform()) if f.rule == "MLF002"]
    assert [f.acknowledged for f in public] == ["office network runs kubectl"]


@pytest.mark.parametrize("overrides, match", [
    (dict(name="x" * 58), r"name: 'x{58}': .* at most 57"),
    (dict(name="-bad"), r"name: '-bad'"),
    (dict(account_id="12"), r"account_id: '12' is not a 12-digit"),
    (dict(region="useast1"), r"region: 'useast1' is not an AWS region"),
    (dict(kubernetes_version="1.33.2"), r"kubernetes_version: '1.33.2'"),
    (dict(subnet_ids=SUBNETS[:1]), r"subnet_ids: EKS needs subnets in at least two AZs"),
    (dict(subnet_ids=(SUBNETS[0], SUBNETS[0])), r"subnet_ids: lists a subnet twice"),
    (dict(endpoint_public_access_cidrs=("0.0.0.0/0",), public_access_reason="r"),
     r"endpoint_public_access_cidrs\[0\]: 0.0.0.0/0 opens the Kubernetes API to the whole internet"),
    (dict(endpoint_public_access_cidrs=("203.0.113.1/24",), public_access_reason="r"),
     r"endpoint_public_access_cidrs\[0\]: '203.0.113.1/24' is not a CIDR"),
    (dict(endpoint_public_access_cidrs=("203.0.113.0/24",)), r"public_access_reason: a public Kubernetes API"),
    (dict(public_access_reason="because"), r"public_access_reason: given without endpoint_public_access_cidrs"),
    (dict(log_retention_days=10), r"log_retention_days: 10 is not a CloudWatch Logs retention"),
    (dict(access_entries=(AccessEntry(principal_arn="arn:aws:iam::111111111111:root",
                                      policy_arn=POLICY + "AmazonEKSViewPolicy",
                                      scope="cluster"),)), r"access_entries\[0\].principal_arn"),
    (dict(access_entries=(AccessEntry(principal_arn=ADMINS, policy_arn="arn:aws:iam::aws:policy/AdministratorAccess",
                                      scope="cluster"),)),
     r"access_entries\[0\].policy_arn: .* not an EKS access policy"),
    (dict(access_entries=(AccessEntry(principal_arn=ADMINS, policy_arn=POLICY + "AmazonEKSEditPolicy",
                                      scope="namespace"),)),
     r"access_entries\[0\].namespaces: a namespace-scoped entry lists its namespaces"),
    (dict(access_entries=(AccessEntry(principal_arn=ADMINS, policy_arn=POLICY + "AmazonEKSEditPolicy", scope="cluster",
                                      namespaces=("serving",)),)),
     r"access_entries\[0\].namespaces: a cluster-scoped entry"),
    (dict(access_entries=(AccessEntry(principal_arn=ADMINS, policy_arn=POLICY + "AmazonEKSEditPolicy",
                                      scope="namespace",
                                      namespaces=("Serving",)),)), r"'Serving' is not a Kubernetes namespace"),
    (dict(access_entries=2 * (AccessEntry(principal_arn=ADMINS, policy_arn=POLICY + "AmazonEKSViewPolicy",
                                          scope="cluster"),)),
     r"access_entries\[1\]: .*AmazonEKSViewPolicy is already associated"),
])
def test_invalid_props_are_rejected_with_the_prop_named(synth, overrides, match):
    with pytest.raises(PropsError, match=match):
        synth(lambda stack: EksCluster(stack, "cluster", props(**overrides)))
