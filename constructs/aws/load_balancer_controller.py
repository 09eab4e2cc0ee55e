"""The AWS Load Balancer Controller on one EKS cluster: it reconciles the serving endpoint's
`LoadBalancer` Service into a network load balancer.

- An IAM role for the controller's pods through EKS Pod Identity, trusted only by this account's
  cluster, with the controller project's published IAM policy for the pinned chart's version
  (kept verbatim in `data/load_balancer_controller_policy.json`: update both together).
- The Helm release of the pinned chart from the eks-charts repository, its pods on the system pool.

The construct does not configure the helm provider; the caller does (one per cluster).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from cdktn import Token
from cdktn_provider_aws.eks_pod_identity_association import EksPodIdentityAssociation
from cdktn_provider_aws.iam_role import IamRole
from cdktn_provider_aws.iam_role_policy import IamRolePolicy
from cdktn_provider_helm.release import Release
from constructs import Construct

from mlfleet.constructs.aws.eks_system_node_pool import NODE_ROLE_LABEL
from mlfleet.constructs.aws.iam_policy import policy_document
from mlfleet.constructs.validation import (
    ACCOUNT_ID,
    EKS_CLUSTER_NAME,
    IAM_ROLE_NAME,
    KUBERNETES_NAME,
    REGION,
    SEMANTIC_VERSION,
    VPC_ID,
    require,
    require_kubernetes_labels,
)

CHART_REPOSITORY = "https://aws.github.io/eks-charts"
CHART = "aws-load-balancer-controller"
CHART_VERSION = "3.5.0"
"""The chart (controller v3.5.0) that the policy file was taken from."""
POLICY_FILE = Path(__file__).parent / "data" / "load_balancer_controller_policy.json"


def controller_policy_statements() -> list[dict]:
    """The controller's IAM policy statements, as the controller project publishes them for `CHART_VERSION`."""
    return json.loads(POLICY_FILE.read_text())["Statement"]


@dataclass(frozen=True, kw_only=True)
class AwsLoadBalancerControllerProps:
    cluster_name: str
    """The EKS cluster (a reference to it is best: the release then waits for the cluster)."""
    account_id: str
    region: str
    vpc_id: str
    """The cluster's VPC; given so the controller need not read it from instance metadata."""
    role_name: str
    """The controller's IAM role; IAM is global, so include the region."""
    chart_version: str = CHART_VERSION
    """The `aws-load-balancer-controller` chart's version; default `CHART_VERSION` (3.5.0). The IAM policy is
    that version's: change both together."""
    namespace: str = "kube-system"
    """The controller's namespace; default `kube-system`."""
    service_account: str = "aws-load-balancer-controller"
    """The controller's service account, created by the chart; default `aws-load-balancer-controller`."""
    replicas: int = 2
    """Controller pods (one leads, the other takes over); default `2`."""
    node_selector: dict[str, str] = field(default_factory=lambda: {NODE_ROLE_LABEL: "system"})
    """Labels of the nodes the controller runs on; default the system pool's (`mlfleet.io/node-role=system`)."""
    tags: dict[str, str] = field(default_factory=dict)
    """AWS tags on the role and the pod identity association; default none."""


class AwsLoadBalancerController(Construct):
    """The AWS Load Balancer Controller's role, pod identity and Helm release (see module docstring)."""

    def __init__(self, scope: Construct, id_: str, props: AwsLoadBalancerControllerProps):
        super().__init__(scope, id_)
        _validate(self, props)
        tags = dict(props.tags) or None
        cluster_arn = f"arn:aws:eks:{props.region}:{props.account_id}:cluster/{props.cluster_name}"
        self.role = IamRole(
            self, "role", name=props.role_name, description="AWS Load Balancer Controller pods",
            assume_role_policy=policy_document([{
                "Effect": "Allow", "Principal": {"Service": "pods.eks.amazonaws.com"},
                "Action": ["sts:AssumeRole", "sts:TagSession"],
                # Only pods of this account's cluster, not any EKS cluster that names the role.
                "Condition": {"StringEquals": {"aws:SourceAccount": props.account_id},
                              "ArnEquals": {"aws:SourceArn": cluster_arn}}}]),
            tags=tags)
        self.role_policy = IamRolePolicy(self, "role-policy", name="aws-load-balancer-controller",
                                         role=self.role.id, policy=policy_document(controller_policy_statements()))
        self.pod_identity_association = EksPodIdentityAssociation(
            self, "pod-identity", cluster_name=props.cluster_name, namespace=props.namespace,
            service_account=props.service_account, role_arn=self.role.arn, tags=tags)

        values = {
            "clusterName": props.cluster_name, "region": props.region, "vpcId": props.vpc_id,
            "serviceAccount": {"create": True, "name": props.service_account},
            "replicaCount": props.replicas,
            # The system pool; no tolerations, so the NoSchedule-tainted GPU nodes never take it.
            "nodeSelector": dict(props.node_selector),
        }
        self.release = Release(
            self, "release", name=CHART, repository=CHART_REPOSITORY, chart=CHART, version=props.chart_version,
            namespace=props.namespace, values=[json.dumps(values, sort_keys=True)], atomic=True,
            cleanup_on_fail=True, wait=True,
            # Pod Identity injects credentials when a pod is created: the association and its role's
            # permissions must exist before the first controller pod starts.
            depends_on=[self.pod_identity_association, self.role_policy])
        self.role_arn: str = self.role.arn


def _validate(scope: Construct, props: AwsLoadBalancerControllerProps) -> None:
    require(bool(ACCOUNT_ID.fullmatch(props.account_id)), scope, "account_id",
            f"{props.account_id!r} is not a 12-digit AWS account id")
    require(bool(REGION.fullmatch(props.region)), scope, "region", f"{props.region!r} is not an AWS region name")
    require(Token.is_unresolved(props.cluster_name) or bool(EKS_CLUSTER_NAME.fullmatch(props.cluster_name)),
            scope, "cluster_name", f"{props.cluster_name!r} is not an EKS cluster name")
    require(Token.is_unresolved(props.vpc_id) or bool(VPC_ID.fullmatch(props.vpc_id)), scope, "vpc_id",
            f"{props.vpc_id!r} is not a VPC id (vpc-…)")
    require(bool(IAM_ROLE_NAME.fullmatch(props.role_name)), scope, "role_name",
            f"{props.role_name!r} is not a valid IAM role name (letters, digits, +=,.@_-; at most 64 characters)")
    require(bool(SEMANTIC_VERSION.fullmatch(props.chart_version)), scope, "chart_version",
            f"{props.chart_version!r} is not a released chart version like {CHART_VERSION!r} (a range would let "
            "the chart move away from its IAM policy)")
    for prop in ("namespace", "service_account"):
        value = getattr(props, prop)
        require(bool(KUBERNETES_NAME.fullmatch(value)), scope, prop, f"{value!r} is not a Kubernetes DNS label")
    require(props.replicas >= 1, scope, "replicas", f"{props.replicas}: the controller needs at least one pod")
    require(bool(props.node_selector), scope, "node_selector",
            "name the system pool's labels: an unselective controller may land anywhere")
    require_kubernetes_labels(scope, "node_selector", props.node_selector)
