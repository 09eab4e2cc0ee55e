"""The AWS Load Balancer Controller: its pod identity role, the published policy, the Helm release."""
from __future__ import annotations

import json

import pytest

from mlfleet.constructs.aws.load_balancer_controller import (
    CHART_VERSION,
    POLICY_FILE,
    AwsLoadBalancerController,
    AwsLoadBalancerControllerProps,
)
from mlfleet.constructs.policy import PolicyAspect
from mlfleet.constructs.validation import PropsError

from helpers.template import Template

ACCOUNT = "111111111111"
CLUSTER = "mlfleet-prod-us-east-1"


def props(**overrides) -> AwsLoadBalancerControllerProps:
    base = dict(cluster_name=CLUSTER, account_id=ACCOUNT, region="us-east-1", vpc_id="vpc-0123456789abcdef0",
                role_name="mlfleet-prod-us-east-1-lb-controller")
    return AwsLoadBalancerControllerProps(**{**base, **overrides})


@pytest.fixture(scope="module")
def controller(tmp_path_factory):
    """One synth for the module, with the policy pass run as the stacks run it."""
    from cdktn import Aspects, TerraformStack, Testing
    from cdktn_provider_aws.provider import AwsProvider

    app = Testing.app(outdir=str(tmp_path_factory.mktemp("out")))
    stack = TerraformStack(app, "test")
    AwsProvider(stack, "aws", region="us-east-1")
    aspect = PolicyAspect()
    Aspects.of(stack).add(aspect)
    AwsLoadBalancerController(stack, "lb-controller", props())
    tf = json.loads(Testing.synth(stack))
    return tf, aspect.evaluate("test", tf)


def test_the_role_is_assumable_only_by_this_clusters_pods(controller):
    tf, _ = controller
    template = Template(tf)
    role = template.only("aws_iam_role")
    assert role["name"] == "mlfleet-prod-us-east-1-lb-controller"
    assert json.loads(role["assume_role_policy"])["Statement"] == [{
        "Effect": "Allow", "Principal": {"Service": "pods.eks.amazonaws.com"},
        "Action": ["sts:AssumeRole", "sts:TagSession"],
        "Condition": {"StringEquals": {"aws:SourceAccount": ACCOUNT},
                      "ArnEquals": {"aws:SourceArn": f"arn:aws:eks:us-east-1:{ACCOUNT}:cluster/{CLUSTER}"}}}]
    role_id = next(iter(template.resources("aws_iam_role")))
    association = template.only("aws_eks_pod_identity_association")
    assert association == {**association, "cluster_name": CLUSTER, "namespace": "kube-system",
                           "service_account": "aws-load-balancer-controller",
                           "role_arn": f"${{aws_iam_role.{role_id}.arn}}"}


def test_the_policy_is_the_published_one_and_passes_the_policy_rules(controller):
    tf, findings = controller
    policy = json.loads(Template(tf).only("aws_iam_role_policy")["policy"])
    assert policy["Statement"] == json.loads(POLICY_FILE.read_text())["Statement"]
    actions = {a for s in policy["Statement"] for a in ([s["Action"]] if isinstance(s["Action"], str) else s["Action"])}
    # What the NLB endpoint needs from it: load balancers, listeners, target groups, ACM certificates.
    assert {"elasticloadbalancing:CreateLoadBalancer", "elasticloadbalancing:CreateListener",
            "elasticloadbalancing:CreateTargetGroup", "elasticloadbalancing:RegisterTargets",
            "acm:DescribeCertificate"} <= actions
    # Creating a load balancer stays tied to the controller's own cluster tag.
    create_lb = next(s for s in policy["Statement"] if "elasticloadbalancing:CreateLoadBalancer" in s["Action"])
    assert "Condition" in create_lb
    assert [f for f in findings if f.rule != "MLF006"] == []


def test_the_release_pins_the_chart_and_runs_two_replicas_on_the_system_pool(controller):
    tf, _ = controller
    template = Template(tf)
    release = template.only("helm_release")
    assert (release["repository"], release["chart"], release["version"]) == (
        "https://aws.github.io/eks-charts", "aws-load-balancer-controller", CHART_VERSION)
    assert release["namespace"] == "kube-system" and release["atomic"] is True
    values = json.loads(release["values"][0])
    assert values == {
        "clusterName": CLUSTER, "region": "us-east-1", "vpcId": "vpc-0123456789abcdef0",
        "serviceAccount": {"create": True, "name": "aws-load-balancer-controller"},
        "replicaCount": 2, "nodeSelector": {"mlfleet.io/node-role": "system"}}
    assert "tolerations" not in values  # the GPU nodes' NoSchedule taint keeps it off them
    # Pod Identity injects credentials at pod creation: the association comes first.
    association_id = next(iter(template.resources("aws_eks_pod_identity_association")))
    assert f"aws_eks_pod_identity_association.{association_id}" in release["depends_on"]
    assert any(d.startswith("aws_iam_role_policy.") for d in release["depends_on"])


def test_the_policy_data_file_is_valid_iam():
    document = json.loads(POLICY_FILE.read_text())
    assert document["Version"] == "2012-10-17"
    assert all(s["Effect"] == "Allow" and s["Action"] and s["Resource"] for s in document["Statement"])


@pytest.mark.parametrize("overrides, match", [
    (dict(account_id="1"), r"account_id: '1' is not a 12-digit"),
    (dict(region="us"), r"region: 'us' is not an AWS region"),
    (dict(cluster_name="-x"), r"cluster_name: '-x' is not an EKS cluster name"),
    (dict(vpc_id="vpc-1"), r"vpc_id: 'vpc-1' is not a VPC id"),
    (dict(role_name="bad role"), r"role_name: 'bad role' is not a valid IAM role name"),
    (dict(chart_version="^3.5"), r"chart_version: '\^3.5' is not a released chart version"),
    (dict(namespace="Kube_System"), r"namespace: 'Kube_System' is not a Kubernetes DNS label"),
    (dict(replicas=0), r"replicas: 0: the controller needs at least one pod"),
    (dict(node_selector={}), r"node_selector: name the system pool's labels"),
])
def test_invalid_props_are_rejected_with_the_prop_named(synth, overrides, match):
    with pytest.raises(PropsError, match=match):
        synth(lambda stack: AwsLoadBalancerController(stack, "lb-controller", props(**overrides)))
