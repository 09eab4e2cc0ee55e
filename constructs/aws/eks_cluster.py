"""One region's EKS cluster for GPU serving, with its IAM roles and its KMS key.

The cluster is private by default (the Kubernetes API is reachable only from the VPC),
envelope-encrypts Secrets with a customer-managed key, sends all five control-plane log
types to a log group encrypted with the same key, authenticates through EKS access entries
only (no aws-auth ConfigMap, no implicit admin for whoever created it), runs the EKS Pod
Identity agent, which the serving identity relies on, and the VPC CNI with NetworkPolicy
enforcement on. The node role is created here, not in
each node pool, so that every pool of the cluster shares one access entry.
"""
from __future__ import annotations

import ipaddress
import json
import re
from dataclasses import dataclass, field, fields
from typing import Literal

from cdktn import TerraformOutput, Token
from cdktn_provider_aws.cloudwatch_log_group import CloudwatchLogGroup
from cdktn_provider_aws.eks_access_entry import EksAccessEntry
from cdktn_provider_aws.eks_access_policy_association import (
    EksAccessPolicyAssociation,
    EksAccessPolicyAssociationAccessScope,
)
from cdktn_provider_aws.eks_addon import EksAddon
from cdktn_provider_aws.eks_cluster import EksCluster as EksClusterResource
from cdktn_provider_aws.eks_cluster import (
    EksClusterAccessConfig,
    EksClusterEncryptionConfig,
    EksClusterEncryptionConfigProvider,
    EksClusterVpcConfig,
    EksClusterZonalShiftConfig,
)
from cdktn_provider_aws.iam_role import IamRole
from cdktn_provider_aws.iam_role_policy import IamRolePolicy
from cdktn_provider_aws.iam_role_policy_attachment import IamRolePolicyAttachment
from constructs import Construct

from mlfleet.constructs.acknowledgements import acknowledge
from mlfleet.constructs.aws.eks_gpu_node_pool import EksGpuNodePool, EksGpuNodePoolProps, EksGpuPoolOptions
from mlfleet.constructs.aws.eks_system_node_pool import EksSystemNodePool, EksSystemNodePoolProps, EksSystemPoolOptions
from mlfleet.constructs.aws.iam_policy import policy_document
from mlfleet.constructs.aws.kms_key import KmsKey, KmsKeyProps
from mlfleet.constructs.validation import (
    ACCOUNT_ID,
    EKS_ACCESS_POLICY_ARN,
    EKS_CLUSTER_NAME,
    IAM_ROLE_OR_USER_ARN,
    KUBERNETES_NAME,
    REGION,
    PropsError,
    require,
)

DEFAULT_KUBERNETES_VERSION = "1.33"
CONTROL_PLANE_LOG_TYPES = ("api", "audit", "authenticator", "controllerManager", "scheduler")
CLUSTER_MANAGED_POLICIES = ("AmazonEKSClusterPolicy",)
NODE_MANAGED_POLICIES = ("AmazonEKSWorkerNodePolicy", "AmazonEC2ContainerRegistryPullOnly", "AmazonEKS_CNI_Policy")
POD_IDENTITY_AGENT = "eks-pod-identity-agent"
VPC_CNI = "vpc-cni"

# Role names are `<cluster>-cluster` / `<cluster>-node` and IAM allows 64 characters.
MAX_CLUSTER_NAME = 57
_VERSION = re.compile(r"^1\.\d{2}$")
_LOG_RETENTION_DAYS = (1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827,
                       2192, 2557, 2922, 3288, 3653)


@dataclass(frozen=True, kw_only=True)
class AccessEntry:
    """Kubernetes access for one IAM principal through an EKS access policy."""
    principal_arn: str
    policy_arn: str
    """An EKS access policy, e.g. `arn:aws:eks::aws:cluster-access-policy/AmazonEKSViewPolicy`."""
    scope: Literal["cluster", "namespace"]
    namespaces: tuple[str, ...] = ()
    """The namespaces a `namespace`-scoped entry covers (none for `cluster`). Default: none."""


@dataclass(frozen=True, kw_only=True)
class EksClusterProps:
    name: str
    """The cluster's name; also names its roles (`<name>-cluster`, `<name>-node`), so include the region."""
    account_id: str
    region: str
    subnet_ids: tuple[str, ...]
    """Private subnets in at least two AZs, for the control plane's network interfaces."""
    kubernetes_version: str = DEFAULT_KUBERNETES_VERSION
    """Kubernetes minor version of the control plane; default `DEFAULT_KUBERNETES_VERSION` (1.33)."""
    endpoint_public_access_cidrs: tuple[str, ...] = ()
    """Open the Kubernetes API endpoint to these CIDRs too (default: private endpoint only)."""
    public_access_reason: str | None = None
    """Why the endpoint is public: required with `endpoint_public_access_cidrs`, shown in the review. Default: none."""
    access_entries: tuple[AccessEntry, ...] = ()
    """Kubernetes access for IAM principals (the cluster's creator gets none implicitly); default none."""
    deletion_protection: bool = True
    """Refuse to delete the cluster and its log group; default on."""
    log_retention_days: int = 365
    """Days CloudWatch keeps the control-plane logs; default `365`."""
    key_alias: str | None = None
    """Alias of the cluster's KMS key (Secrets, control-plane logs); default `<name>-eks`."""
    zonal_shift: bool = True
    """Let ARC zonal shift move traffic away from an impaired AZ. Default: on."""
    pod_identity_agent_version: str | None = None
    """Pin the Pod Identity agent add-on version (default: EKS's default for the cluster version)."""
    vpc_cni_version: str | None = None
    """Pin the VPC CNI add-on version (default: EKS's default for the cluster version)."""
    tags: dict[str, str] = field(default_factory=dict)
    """AWS tags on the construct's resources; default none."""


class EksCluster(Construct):
    """A private EKS cluster with encrypted Secrets and logs, access entries and Pod Identity."""

    def __init__(self, scope: Construct, id_: str, props: EksClusterProps):
        super().__init__(scope, id_)
        _validate(self, props)
        self._scope = scope
        self.account_id = props.account_id
        self.subnet_ids = props.subnet_ids
        tags = dict(props.tags) or None

        self.key = KmsKey(self, "key", KmsKeyProps(
            alias=props.key_alias or f"{props.name}-eks", account_id=props.account_id,
            description=f"mlfleet EKS cluster {props.name}: Secrets, control-plane logs, node volumes",
            service_principals=(f"logs.{props.region}.amazonaws.com",), tags=props.tags))

        self.cluster_role = IamRole(
            self, "cluster-role", name=f"{props.name}-cluster", description=f"EKS control plane of {props.name}",
            assume_role_policy=policy_document([{
                "Effect": "Allow", "Principal": {"Service": "eks.amazonaws.com"},
                "Action": ["sts:AssumeRole", "sts:TagSession"]}]), tags=tags)
        cluster_role_ready = [IamRolePolicyAttachment(
            self, f"cluster-role-{policy}", role=self.cluster_role.name, policy_arn=_managed_policy(policy))
            for policy in CLUSTER_MANAGED_POLICIES]
        cluster_role_ready.append(IamRolePolicy(
            self, "cluster-role-secrets-key", name="envelope-encrypt-secrets", role=self.cluster_role.id,
            policy=policy_document([{
                "Sid": "EnvelopeEncryptSecrets", "Effect": "Allow",
                "Action": ["kms:Decrypt", "kms:DescribeKey", "kms:Encrypt", "kms:ListGrants"],
                "Resource": self.key.key_arn}])))

        self.node_role = IamRole(
            self, "node-role", name=f"{props.name}-node", description=f"GPU nodes of {props.name}",
            assume_role_policy=policy_document([{
                "Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"}, "Action": "sts:AssumeRole"}]),
            tags=tags)
        node_role_ready = [IamRolePolicyAttachment(
            self, f"node-role-{policy}", role=self.node_role.name, policy_arn=_managed_policy(policy))
            for policy in NODE_MANAGED_POLICIES]

        # Created before the cluster, or EKS creates it unencrypted and kept forever.
        log_group = CloudwatchLogGroup(
            self, "control-plane-logs", name=f"/aws/eks/{props.name}/cluster", kms_key_id=self.key.key_arn,
            retention_in_days=props.log_retention_days,
            deletion_protection_enabled=props.deletion_protection or None, tags=tags)

        public = bool(props.endpoint_public_access_cidrs)
        self.cluster = EksClusterResource(
            self, "cluster", name=props.name, version=props.kubernetes_version, role_arn=self.cluster_role.arn,
            vpc_config=EksClusterVpcConfig(
                subnet_ids=list(props.subnet_ids), endpoint_private_access=True, endpoint_public_access=public,
                public_access_cidrs=sorted(props.endpoint_public_access_cidrs) if public else None),
            access_config=EksClusterAccessConfig(
                authentication_mode="API", bootstrap_cluster_creator_admin_permissions=False),
            encryption_config=EksClusterEncryptionConfig(
                resources=["secrets"], provider=EksClusterEncryptionConfigProvider(key_arn=self.key.key_arn)),
            enabled_cluster_log_types=list(CONTROL_PLANE_LOG_TYPES),
            zonal_shift_config=EksClusterZonalShiftConfig(enabled=props.zonal_shift),
            deletion_protection=props.deletion_protection, tags=tags,
            # Node pools reference the cluster, so waiting here for the node role's policies
            # also keeps nodes from booting before they may join; on destroy, the policies
            # outlive the nodes that need them.
            depends_on=[log_group, *cluster_role_ready, *node_role_ready])
        if public:
            acknowledge(self.cluster, "MLF002", props.public_access_reason or "")

        EksAddon(self, "pod-identity-agent", cluster_name=self.cluster.name, addon_name=POD_IDENTITY_AGENT,
                 addon_version=props.pod_identity_agent_version, resolve_conflicts_on_create="OVERWRITE",
                 resolve_conflicts_on_update="OVERWRITE", tags=tags)
        # The VPC CNI as a managed add-on so that it enforces Kubernetes NetworkPolicy: without
        # this, NetworkPolicy objects are accepted and silently not enforced.
        EksAddon(self, "vpc-cni", cluster_name=self.cluster.name, addon_name=VPC_CNI,
                 addon_version=props.vpc_cni_version,
                 configuration_values=json.dumps({"enableNetworkPolicy": "true"}),
                 resolve_conflicts_on_create="OVERWRITE", resolve_conflicts_on_update="OVERWRITE", tags=tags)
        self._access_entries(props.access_entries, tags)

        self.cluster_name: str = self.cluster.name
        """The cluster's name as a reference: whatever uses it is created after the cluster."""
        self.cluster_arn: str = self.cluster.arn
        self.node_role_arn: str = self.node_role.arn
        self.security_group_id: str = self.cluster.vpc_config.cluster_security_group_id
        """EKS's cluster security group: the control plane and every managed node are members."""
        for name, value, description in (
                ("eks_cluster_name", self.cluster.name, "EKS cluster the DR runbooks scale node groups in"),
                ("eks_cluster_arn", self.cluster.arn, "EKS cluster ARN")):
            TerraformOutput(self, name, value=value, description=description).override_logical_id(name)

    def add_gpu_pool(self, id_: str, options: EksGpuPoolOptions) -> EksGpuNodePool:
        """A GPU node pool of this cluster, as CDK's `addNodegroupCapacity` adds one: its nodes join with
        the cluster's node role, run in the cluster's subnets and encrypt their volumes with the cluster's
        key. With EFA the pool takes the first subnet only (a cluster placement group lives in one AZ)
        and the cluster security group, which admits its own members as EFA traffic needs.

        The pool is created beside the cluster (`scope/id_`), not under it, so its Terraform address
        does not change with the cluster's."""
        efa = bool(options.efa_interfaces)
        return EksGpuNodePool(self._scope, id_, EksGpuNodePoolProps(
            **_settings(options), cluster_name=self.cluster_name, node_role_arn=self.node_role_arn,
            subnet_ids=self.subnet_ids[:1] if efa else self.subnet_ids,
            security_group_ids=(self.security_group_id,) if efa else (), account_id=self.account_id,
            kms_key_arn=self.key.key_arn))

    def add_system_pool(self, id_: str, options: EksSystemPoolOptions | None = None) -> EksSystemNodePool:
        """The untainted pool for the cluster's add-ons, over all of the cluster's subnets (one per AZ),
        with the cluster's node role and key; created beside the cluster like `add_gpu_pool`'s pools."""
        return EksSystemNodePool(self._scope, id_, EksSystemNodePoolProps(
            **_settings(options or EksSystemPoolOptions()), cluster_name=self.cluster_name,
            node_role_arn=self.node_role_arn, subnet_ids=self.subnet_ids, account_id=self.account_id,
            kms_key_arn=self.key.key_arn))

    def _access_entries(self, entries: tuple[AccessEntry, ...], tags: dict[str, str] | None) -> None:
        created: dict[str, EksAccessEntry] = {}
        for entry in entries:
            principal_id = re.sub(r"[^A-Za-z0-9-]", "-", entry.principal_arn.split(":", 4)[4])
            if entry.principal_arn not in created:
                created[entry.principal_arn] = EksAccessEntry(
                    self, f"access-{principal_id}", cluster_name=self.cluster.name,
                    principal_arn=entry.principal_arn, type="STANDARD", tags=tags)
            policy_name = entry.policy_arn.rsplit("/", 1)[1]
            EksAccessPolicyAssociation(
                self, f"access-{principal_id}-{policy_name}", cluster_name=self.cluster.name,
                principal_arn=entry.principal_arn, policy_arn=entry.policy_arn,
                access_scope=EksAccessPolicyAssociationAccessScope(
                    type=entry.scope, namespaces=sorted(entry.namespaces) or None),
                depends_on=[created[entry.principal_arn]])


def _validate(scope: Construct, props: EksClusterProps) -> None:
    require(bool(EKS_CLUSTER_NAME.fullmatch(props.name)) and len(props.name) <= MAX_CLUSTER_NAME, scope, "name",
            f"{props.name!r}: letters, digits, '-' and '_', starting with a letter or digit, at most 57 "
            "characters (it names the cluster's IAM roles)")
    require(bool(ACCOUNT_ID.fullmatch(props.account_id)), scope, "account_id",
            f"{props.account_id!r} is not a 12-digit AWS account id")
    require(bool(REGION.fullmatch(props.region)), scope, "region", f"{props.region!r} is not an AWS region name")
    require(bool(_VERSION.fullmatch(props.kubernetes_version)), scope, "kubernetes_version",
            f"{props.kubernetes_version!r} is not a Kubernetes minor version like '1.33'")
    require(len(props.subnet_ids) >= 2, scope, "subnet_ids", "EKS needs subnets in at least two AZs")
    literal_subnets = [s for s in props.subnet_ids if not Token.is_unresolved(s)]
    require(len(set(literal_subnets)) == len(literal_subnets), scope, "subnet_ids", "lists a subnet twice")
    for i, cidr in enumerate(props.endpoint_public_access_cidrs):
        try:
            network = ipaddress.ip_network(cidr, strict=True)
        except ValueError as exc:
            raise PropsError(scope, f"endpoint_public_access_cidrs[{i}]", f"{cidr!r} is not a CIDR ({exc})") from None
        require(network.prefixlen > 0, scope, f"endpoint_public_access_cidrs[{i}]",
                f"{cidr} opens the Kubernetes API to the whole internet; list the networks that need it")
    if props.endpoint_public_access_cidrs:
        require(bool(props.public_access_reason and props.public_access_reason.strip()), scope,
                "public_access_reason", "a public Kubernetes API endpoint needs a reason (rule MLF002)")
    else:
        require(props.public_access_reason is None, scope, "public_access_reason",
                "given without endpoint_public_access_cidrs: the endpoint is private")
    require(props.log_retention_days in _LOG_RETENTION_DAYS, scope, "log_retention_days",
            f"{props.log_retention_days} is not a CloudWatch Logs retention "
            f"({', '.join(map(str, _LOG_RETENTION_DAYS))})")
    pairs: set[tuple[str, str]] = set()
    for i, entry in enumerate(props.access_entries):
        where = f"access_entries[{i}]"
        require(bool(IAM_ROLE_OR_USER_ARN.fullmatch(entry.principal_arn)), scope, f"{where}.principal_arn",
                f"{entry.principal_arn!r} is not an IAM role or user ARN")
        require(bool(EKS_ACCESS_POLICY_ARN.fullmatch(entry.policy_arn)), scope, f"{where}.policy_arn",
                f"{entry.policy_arn!r} is not an EKS access policy ARN "
                "(arn:aws:eks::aws:cluster-access-policy/…)")
        require(entry.scope in ("cluster", "namespace"), scope, f"{where}.scope",
                f"{entry.scope!r} is not 'cluster' or 'namespace'")
        if entry.scope == "namespace":
            require(bool(entry.namespaces), scope, f"{where}.namespaces",
                    "a namespace-scoped entry lists its namespaces")
        else:
            require(not entry.namespaces, scope, f"{where}.namespaces",
                    "a cluster-scoped entry covers every namespace; use scope 'namespace' to limit it")
        for namespace in entry.namespaces:
            require(bool(KUBERNETES_NAME.fullmatch(namespace)), scope, f"{where}.namespaces",
                    f"{namespace!r} is not a Kubernetes namespace name")
        pair = (entry.principal_arn, entry.policy_arn)
        require(pair not in pairs, scope, where, f"{entry.policy_arn} is already associated with {entry.principal_arn}")
        pairs.add(pair)


def _managed_policy(name: str) -> str:
    return f"arn:aws:iam::aws:policy/{name}"


def _settings(options: EksGpuPoolOptions | EksSystemPoolOptions) -> dict:
    """The options' fields as keywords (not `asdict`, which would turn a nested reservation into a dict)."""
    return {f.name: getattr(options, f.name) for f in fields(options)}
