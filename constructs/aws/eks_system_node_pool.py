"""A small pool of untainted nodes for the cluster's own workloads: coredns, the cluster
autoscaler and other add-ons, which cannot (and should not) run on tainted GPU nodes.

- Standard x86_64 AMIs and general-purpose instances only: GPU nodes belong in EksGpuNodePool,
  tainted, where the policy pass (MLF004) checks them.
- No taint; nodes are labelled `mlfleet.io/node-role=system` so add-ons can select them.
- On-demand capacity: the pods that schedule everything else are not to be reclaimed at two
  minutes' notice. At least one node, spread over the subnets given (one per AZ).
- The launch template every mlfleet pool shares (`node_launch_template`): IMDSv2 only, gp3
  volumes encrypted with a KMS key that the Auto Scaling role holds a grant on.
- Desired size belongs to the cluster autoscaler after creation (the group is tagged for its
  auto-discovery); Terraform ignores it. The pool never scales to zero, so it needs no
  node-template tags.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Literal

from cdktn import TerraformResourceLifecycle, Token
from cdktn_provider_aws.eks_node_group import (
    EksNodeGroup,
    EksNodeGroupNodeRepairConfig,
    EksNodeGroupScalingConfig,
    EksNodeGroupUpdateConfig,
)
from constructs import Construct

from mlfleet.constructs.aws.node_launch_template import (
    NodeLaunchTemplateProps,
    add_node_launch_template,
    validate_node_pool_props,
)
from mlfleet.constructs.policy import is_gpu_instance_type
from mlfleet.constructs.validation import IAM_ROLE_ARN, require

SYSTEM_AMI_TYPES = ("AL2023_x86_64_STANDARD", "BOTTLEROCKET_x86_64")
NODE_ROLE_LABEL = "mlfleet.io/node-role"
AUTOSCALER_PREFIX = "k8s.io/cluster-autoscaler"

# Graviton families carry a `g` right after the generation (m7g, c7gn, r8gd, t4g): arm64 only.
_ARM_FAMILY = re.compile(r"^[a-z]+\d+g[a-z]*$")


@dataclass(frozen=True, kw_only=True)
class EksSystemPoolOptions:
    """The system pool's own settings. `EksCluster.add_system_pool` adds the cluster's (role, subnets, key)."""
    name: str = "system"
    """Node group name, unique in the cluster. Default: `system`."""
    instance_types: tuple[str, ...] = ("m7i.large", "m6i.large")
    """General-purpose x86_64 types, in order of preference. Default: `m7i.large, m6i.large`."""
    ami_type: Literal["AL2023_x86_64_STANDARD", "BOTTLEROCKET_x86_64"] = "AL2023_x86_64_STANDARD"
    """An x86_64 AMI type without GPU drivers; default `AL2023_x86_64_STANDARD`."""
    min_size: int = 2
    """At least one: the add-ons have nowhere else to run. Default: `2`."""
    max_size: int = 4
    """Most system nodes; default `4`."""
    volume_key_alias: str | None = None
    """Alias of the created volume key; default `<cluster_name>-<name>-volumes`."""
    root_volume_size_gib: int = 50
    """Room for the add-ons' images (Bottlerocket: the data volume). Default: `50`."""
    labels: dict[str, str] = field(default_factory=lambda: {NODE_ROLE_LABEL: "system"})
    """Kubernetes labels on every node (default `mlfleet.io/node-role=system`, which add-ons select)."""
    tags: dict[str, str] = field(default_factory=dict)
    """AWS tags on the pool's resources (default none)."""


@dataclass(frozen=True, kw_only=True)
class EksSystemNodePoolProps(EksSystemPoolOptions):
    """The pool's settings and the cluster it joins, given by name (`EksCluster.add_system_pool` fills them in)."""
    cluster_name: str
    """The cluster's name; pass the cluster construct's `cluster_name` so the pool is created after it."""
    node_role_arn: str
    subnet_ids: tuple[str, ...]
    """Private subnets, one per AZ: the pool spreads over them, so the add-ons outlive an AZ."""
    account_id: str
    kms_key_arn: str | None = None
    """Key for the node volumes; default: a key created for the pool."""


class EksSystemNodePool(Construct):
    """An untainted, on-demand, IMDSv2-only, encrypted node group for add-ons (see module docstring)."""

    def __init__(self, scope: Construct, id_: str, props: EksSystemNodePoolProps):
        super().__init__(scope, id_)
        _validate(self, props)
        tags = dict(props.tags)

        template = add_node_launch_template(self, NodeLaunchTemplateProps(
            cluster_name=props.cluster_name, pool_name=props.name, account_id=props.account_id,
            ami_type=props.ami_type, volume_size_gib=props.root_volume_size_gib,
            description=f"mlfleet system pool {props.name}",
            key_description=f"mlfleet system node volumes of {props.name}",
            kms_key_arn=props.kms_key_arn, volume_key_alias=props.volume_key_alias, tags=tags))
        self.key_arn = template.key_arn
        self.launch_template = template.launch_template

        self.node_group = EksNodeGroup(
            self, "node-group", cluster_name=props.cluster_name, node_group_name=props.name,
            node_role_arn=props.node_role_arn, subnet_ids=list(props.subnet_ids), ami_type=props.ami_type,
            capacity_type="ON_DEMAND", instance_types=list(props.instance_types),
            labels=dict(props.labels) or None, launch_template=template.for_node_group,
            scaling_config=EksNodeGroupScalingConfig(
                min_size=props.min_size, desired_size=props.min_size, max_size=props.max_size),
            update_config=EksNodeGroupUpdateConfig(max_unavailable=1),
            node_repair_config=EksNodeGroupNodeRepairConfig(enabled=True),
            tags={**tags, f"{AUTOSCALER_PREFIX}/enabled": "true",
                  f"{AUTOSCALER_PREFIX}/{props.cluster_name}": "owned"},
            lifecycle=TerraformResourceLifecycle(ignore_changes=["scaling_config[0].desired_size"]),
            depends_on=[template.volume_grant])

        self.node_group_name: str = self.node_group.node_group_name
        """The node group's name, as a reference: what uses it (an add-on that needs nodes to become
        healthy) is created after the pool."""
        self.node_group_arn: str = self.node_group.arn


def _validate(scope: Construct, p: EksSystemNodePoolProps) -> None:
    validate_node_pool_props(scope, p)
    if not Token.is_unresolved(p.node_role_arn):
        require(bool(IAM_ROLE_ARN.fullmatch(p.node_role_arn)), scope, "node_role_arn",
                f"{p.node_role_arn!r} is not an IAM role ARN")
    require(len(set(p.subnet_ids)) == len(p.subnet_ids), scope, "subnet_ids", "lists a subnet twice")
    require("NVIDIA" not in p.ami_type and "GPU" not in p.ami_type, scope, "ami_type",
            f"{p.ami_type!r} is a GPU AMI type: GPU nodes belong in an EksGpuNodePool, tainted")
    require(p.ami_type in SYSTEM_AMI_TYPES, scope, "ami_type",
            f"{p.ami_type!r} is not a system node AMI type; use one of {', '.join(SYSTEM_AMI_TYPES)}")
    for i, instance_type in enumerate(p.instance_types):
        require(not is_gpu_instance_type(instance_type), scope, f"instance_types[{i}]",
                f"{instance_type!r} is a GPU instance type: GPU nodes belong in an EksGpuNodePool, tainted")
        require(not _ARM_FAMILY.fullmatch(instance_type.split(".", 1)[0]), scope, f"instance_types[{i}]",
                f"{instance_type!r} is an Arm (Graviton) instance type; the system AMI types are x86_64")
    require(p.min_size >= 1, scope, "min_size", "the cluster's add-ons need at least one system node")
    require(p.min_size <= p.max_size, scope, "max_size", f"{p.max_size} is below min_size ({p.min_size})")
