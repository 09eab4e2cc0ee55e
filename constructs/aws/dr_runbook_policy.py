"""What the DR runbooks may do on AWS, and nothing more: one customer-managed IAM policy per
environment, attached to the environment's operator roles in its own account.

The runbooks (readiness, failover, failback, reconcile, the audit anchor, the run lock) call:

- RDS: read and promote the global cluster (switchover, failover) and its member clusters;
- EKS: read the cluster (its endpoint) and read and resize the GPU node groups;
- Route 53: the records of the hosted zone (the flip and the reconcile), health-check status;
- Route 53 ARC: list and turn the environment's routing controls (cluster data plane), find the
  cluster (configuration API);
- CloudWatch: the replica-lag metric (no resource-level permission exists for metric reads);
- S3: read the approved models (the champion in each replica), anchor the audit head under
  `audit-anchor/`, read a bucket's Object Lock setting; KMS through S3 for the artifact keys;
- DynamoDB: the run lock's item; KMS through DynamoDB for the lock table's key;
- KMS: the manifest signing key's public key (the champion's signature is checked, never made).

Kubernetes rights (scale the runtime, port-forward to pin) come from the operators' EKS access
entries, not from IAM. A managed policy attaches only to roles of its own account: an operator role
elsewhere needs the same document (`statements(props)`) as a policy of its account.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from cdktn import Token
from cdktn_provider_aws.iam_policy import IamPolicy
from cdktn_provider_aws.iam_role_policy_attachment import IamRolePolicyAttachment
from constructs import Construct

from mlfleet.constructs.aws.iam_policy import policy_document
from mlfleet.constructs.validation import (
    ACCOUNT_ID,
    EKS_CLUSTER_NAME,
    EKS_NODE_GROUP_NAME,
    IAM_ROLE_ARN,
    IAM_ROLE_NAME,
    OBJECT_PREFIX,
    RDS_IDENTIFIER,
    REGION,
    require,
)

AUDIT_ANCHOR_PREFIX = "audit-anchor/"


@dataclass(frozen=True, kw_only=True)
class RunbookRegion:
    """One AWS region the runbooks act in."""
    region: str
    db_cluster_identifier: str
    eks_cluster_name: str
    node_group_names: tuple[str, ...]
    artifact_bucket: str
    lock_table_name: str


@dataclass(frozen=True, kw_only=True)
class DrRunbookPolicyProps:
    policy_name: str
    account_id: str
    global_cluster_identifier: str
    regions: tuple[RunbookRegion, ...]
    models_prefix: str
    """The artifact stores' models prefix, e.g. `models/` (the runbooks read only the approved area under it)."""
    artifact_key_alias: str
    lock_key_alias: str
    signing_key_alias: str
    hosted_zone_id: str | None = None
    """The zone of the serving records; default none (no record statements)."""
    routing_control_arns: tuple[str, ...] = ()
    """The environment's ARC routing controls; default none (no ARC statements)."""
    recovery_cluster_arn: str | None = None
    """The ARC cluster holding them (found by name through the configuration API); default none."""
    attach_to_role_arns: tuple[str, ...] = field(default=())
    """Roles of this account that get the policy (the operators); default none."""


class DrRunbookPolicy(Construct):
    """A managed IAM policy with the DR runbooks' calls, each on the environment's own resources."""

    def __init__(self, scope: Construct, id_: str, props: DrRunbookPolicyProps):
        super().__init__(scope, id_)
        _validate(self, props)
        self.policy = IamPolicy(self, "policy", name=props.policy_name,
                                description="mlfleet DR runbooks: promote, scale, route, anchor, lock",
                                policy=policy_document(statements(props)))
        self.policy_arn = self.policy.arn
        for arn in props.attach_to_role_arns:
            name = arn.rsplit("/", 1)[1]
            IamRolePolicyAttachment(self, f"attach-{name}", role=name, policy_arn=self.policy.arn)


def statements(props: DrRunbookPolicyProps) -> list[dict]:
    account, regions = props.account_id, props.regions
    global_cluster = f"arn:aws:rds::{account}:global-cluster:{props.global_cluster_identifier}"
    db_clusters = [f"arn:aws:rds:{r.region}:{account}:cluster:{r.db_cluster_identifier}" for r in regions]
    buckets = [f"arn:aws:s3:::{r.artifact_bucket}" for r in regions]
    keys = [f"arn:aws:kms:{r.region}:{account}:key/*" for r in regions]

    def via(service: str, alias: str) -> dict:
        return {"StringEquals": {"kms:ViaService": [f"{service}.{r.region}.amazonaws.com" for r in regions]},
                "ForAnyValue:StringEquals": {"kms:ResourceAliases": f"alias/{alias}"}}

    found: list[dict] = [
        {"Sid": "ReadRegistry", "Effect": "Allow", "Action": ["rds:DescribeDBClusters", "rds:DescribeGlobalClusters"],
         "Resource": [global_cluster, *db_clusters]},
        {"Sid": "PromoteRegistry", "Effect": "Allow",
         "Action": ["rds:FailoverGlobalCluster", "rds:SwitchoverGlobalCluster"],
         "Resource": [global_cluster, *db_clusters]},
        {"Sid": "FindClusters", "Effect": "Allow", "Action": "eks:DescribeCluster",
         "Resource": [f"arn:aws:eks:{r.region}:{account}:cluster/{r.eks_cluster_name}" for r in regions]},
        {"Sid": "ScaleNodeGroups", "Effect": "Allow", "Action": ["eks:DescribeNodegroup", "eks:UpdateNodegroupConfig"],
         "Resource": [f"arn:aws:eks:{r.region}:{account}:nodegroup/{r.eks_cluster_name}/{group}/*"
                      for r in regions for group in r.node_group_names]},
        {"Sid": "ReadReplicaLag", "Effect": "Allow",
         "Action": ["cloudwatch:GetMetricData", "cloudwatch:GetMetricStatistics"], "Resource": "*"},
        {"Sid": "ReadApprovedModels", "Effect": "Allow", "Action": "s3:GetObject",
         "Resource": [f"{b}/{props.models_prefix}*" for b in buckets]},
        {"Sid": "ListApprovedModelsAndAnchors", "Effect": "Allow", "Action": "s3:ListBucket", "Resource": buckets,
         "Condition": {"StringLike": {"s3:prefix": [f"{props.models_prefix}*", f"{AUDIT_ANCHOR_PREFIX}*"]}}},
        {"Sid": "ReadObjectLock", "Effect": "Allow", "Action": "s3:GetBucketObjectLockConfiguration",
         "Resource": buckets},
        {"Sid": "AnchorAuditHead", "Effect": "Allow",
         "Action": ["s3:GetObject", "s3:PutObject", "s3:PutObjectRetention"],
         "Resource": [f"{b}/{AUDIT_ANCHOR_PREFIX}*" for b in buckets]},
        {"Sid": "UseArtifactKeysThroughS3", "Effect": "Allow", "Action": ["kms:Decrypt", "kms:GenerateDataKey"],
         "Resource": keys, "Condition": via("s3", props.artifact_key_alias)},
        {"Sid": "HoldRunLock", "Effect": "Allow",
         "Action": ["dynamodb:DeleteItem", "dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem"],
         "Resource": [f"arn:aws:dynamodb:{r.region}:{account}:table/{r.lock_table_name}" for r in regions]},
        {"Sid": "UseLockKeyThroughDynamoDb", "Effect": "Allow",
         "Action": ["kms:Decrypt", "kms:DescribeKey", "kms:Encrypt", "kms:GenerateDataKey"],
         "Resource": keys, "Condition": via("dynamodb", props.lock_key_alias)},
        {"Sid": "CheckManifestSignature", "Effect": "Allow", "Action": "kms:GetPublicKey", "Resource": keys,
         "Condition": {"ForAnyValue:StringEquals": {"kms:ResourceAliases": f"alias/{props.signing_key_alias}"}}},
    ]
    if props.hosted_zone_id:
        found += [
            {"Sid": "FlipAndReconcileRecords", "Effect": "Allow",
             "Action": ["route53:ChangeResourceRecordSets", "route53:ListResourceRecordSets"],
             "Resource": f"arn:aws:route53:::hostedzone/{props.hosted_zone_id}"},
            {"Sid": "ReadHealthChecks", "Effect": "Allow", "Action": "route53:GetHealthCheckStatus",
             "Resource": "arn:aws:route53:::healthcheck/*"}]
    if props.routing_control_arns:
        found += [
            {"Sid": "TurnRoutingControls", "Effect": "Allow",
             "Action": ["route53-recovery-cluster:GetRoutingControlState",
                        "route53-recovery-cluster:UpdateRoutingControlState",
                        "route53-recovery-cluster:UpdateRoutingControlStates"],
             "Resource": list(props.routing_control_arns)},
            # Listing has no resource type: it answers for the cluster the request is sent to.
            {"Sid": "ListRoutingControls", "Effect": "Allow", "Action": "route53-recovery-cluster:ListRoutingControls",
             "Resource": "*"},
            {"Sid": "FindRecoveryCluster", "Effect": "Allow", "Action": "route53-recovery-control-config:ListClusters",
             "Resource": "*"}]
        if props.recovery_cluster_arn:
            found.append({"Sid": "DescribeRecoveryCluster", "Effect": "Allow",
                          "Action": "route53-recovery-control-config:DescribeCluster",
                          "Resource": props.recovery_cluster_arn})
    return found


def _validate(scope: Construct, props: DrRunbookPolicyProps) -> None:
    require(bool(IAM_ROLE_NAME.fullmatch(props.policy_name)) and len(props.policy_name) <= 128, scope, "policy_name",
            f"{props.policy_name!r} is not a valid IAM policy name")
    require(bool(ACCOUNT_ID.fullmatch(props.account_id)), scope, "account_id",
            f"{props.account_id!r} is not a 12-digit AWS account id")
    require(bool(RDS_IDENTIFIER.fullmatch(props.global_cluster_identifier)), scope, "global_cluster_identifier",
            f"{props.global_cluster_identifier!r} is not an RDS identifier")
    require(bool(props.regions), scope, "regions", "names no AWS region: the runbooks act in at least one")
    require(bool(OBJECT_PREFIX.fullmatch(props.models_prefix)), scope, "models_prefix",
            f"{props.models_prefix!r} is not an object prefix ending in '/'")
    for i, r in enumerate(props.regions):
        where = f"regions[{i}]"
        require(bool(REGION.fullmatch(r.region)), scope, f"{where}.region", f"{r.region!r} is not an AWS region name")
        require(bool(RDS_IDENTIFIER.fullmatch(r.db_cluster_identifier)), scope, f"{where}.db_cluster_identifier",
                f"{r.db_cluster_identifier!r} is not an RDS identifier")
        require(bool(EKS_CLUSTER_NAME.fullmatch(r.eks_cluster_name)), scope, f"{where}.eks_cluster_name",
                f"{r.eks_cluster_name!r} is not an EKS cluster name")
        for group in r.node_group_names:
            require(bool(EKS_NODE_GROUP_NAME.fullmatch(group)), scope, f"{where}.node_group_names",
                    f"{group!r} is not an EKS node group name")
    require(len({r.region for r in props.regions}) == len(props.regions), scope, "regions", "lists a region twice")
    for arn in props.attach_to_role_arns:
        require(bool(IAM_ROLE_ARN.fullmatch(arn)) and f"::{props.account_id}:" in arn, scope, "attach_to_role_arns",
                f"{arn!r} is not a role of account {props.account_id} (attach the output policy there instead)")
    for arn in props.routing_control_arns:
        require(Token.is_unresolved(arn) or arn.startswith("arn:aws:route53-recovery-control::"), scope,
                "routing_control_arns", f"{arn!r} is not a routing control ARN")
