"""A pool of GPU nodes: an EKS managed node group on a launch template of mlfleet's making.

- Only NVIDIA AMI types, and every node carries the `nvidia.com/gpu=<value>:NoSchedule` taint,
  so only pods that ask for GPUs land on (and pay for) GPU nodes.
- The launch template every mlfleet pool shares (`node_launch_template`): IMDSv2
  only, gp3 volumes encrypted with a KMS key that the Auto Scaling role holds a grant on.
- Capacity: on-demand, spot, on-demand capacity reservations (one reservation or a resource
  group of them) or a Capacity Block; EFA interfaces in a cluster placement group.
- Scale-from-zero: the cluster autoscaler cannot see a node that does not exist, so the node
  group's Auto Scaling group carries node-template tags for its labels, its GPU taint and its
  GPU count (EKS tags the group for auto-discovery itself).
- Desired size belongs to the autoscaler and the DR runbooks after creation; Terraform ignores it.
  A standby pool runs `warm_size` nodes; a failover raises it to `failover_size`. Both are
  Terraform outputs, so the runbooks read them from the region's own state.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Literal

from cdktn import TerraformResourceLifecycle
from cdktn_provider_aws.autoscaling_group_tag import AutoscalingGroupTagA, AutoscalingGroupTagTag
from cdktn_provider_aws.eks_node_group import (
    EksNodeGroup,
    EksNodeGroupNodeRepairConfig,
    EksNodeGroupScalingConfig,
    EksNodeGroupTaint,
    EksNodeGroupUpdateConfig,
)
from cdktn_provider_aws.launch_template import (
    LaunchTemplateCapacityReservationSpecification,
    LaunchTemplateCapacityReservationSpecificationCapacityReservationTarget,
    LaunchTemplateInstanceMarketOptions,
    LaunchTemplateNetworkInterfaces,
    LaunchTemplatePlacement,
)
from cdktn_provider_aws.placement_group import PlacementGroup
from constructs import Construct

from mlfleet.constructs.aws.node_launch_template import (
    AMI_DEVICES,
    NodeLaunchTemplateProps,
    add_node_launch_template,
    validate_node_pool_props,
)
from mlfleet.constructs.standby_pool import add_pool_outputs, pool_sizes, validate_standby_sizes
from mlfleet.constructs.validation import CAPACITY_RESERVATION_ID, KUBERNETES_LABEL_VALUE, RESOURCE_GROUP_ARN, require

GPU_RESOURCE = "nvidia.com/gpu"
NVIDIA_AMI_DEVICES: dict[str, tuple[str, ...]] = {
    ami_type: devices for ami_type, devices in AMI_DEVICES.items() if ami_type.endswith("_NVIDIA")}
CAPACITY_TYPES = ("ON_DEMAND", "SPOT", "CAPACITY_BLOCK")
AUTOSCALER_PREFIX = "k8s.io/cluster-autoscaler"
MAX_EFA_INTERFACES = 32  # p5.48xlarge: one per network card



@dataclass(frozen=True)
class Reservation:
    """Reserved capacity a pool launches into. Make one with the factory of its kind, which takes
    exactly what that kind needs: one reservation, a resource group of them, or a Capacity Block."""
    kind: Literal["odcr", "resource-group", "capacity-block"]
    target: str
    """The capacity reservation id (`cr-…`) or, for `resource-group`, the group's ARN."""

    @classmethod
    def odcr(cls, capacity_reservation_id: str) -> Reservation:
        """An on-demand capacity reservation (ON_DEMAND pools). A launch template targets a single
        one: put several in a resource group."""
        return cls("odcr", capacity_reservation_id)

    @classmethod
    def resource_group(cls, arn: str) -> Reservation:
        """A resource group of on-demand capacity reservations (ON_DEMAND pools)."""
        return cls("resource-group", arn)

    @classmethod
    def capacity_block(cls, capacity_reservation_id: str) -> Reservation:
        """The Capacity Block for ML a CAPACITY_BLOCK pool launches into, by its reservation id."""
        return cls("capacity-block", capacity_reservation_id)

    @property
    def capacity_reservation_id(self) -> str | None:
        return None if self.kind == "resource-group" else self.target

    @property
    def resource_group_arn(self) -> str | None:
        return self.target if self.kind == "resource-group" else None


@dataclass(frozen=True, kw_only=True)
class EksGpuPoolOptions:
    """A GPU pool's own settings. `EksCluster.add_gpu_pool` adds the cluster's (role, subnets, key)."""
    name: str
    """Node group name, unique in the cluster; also names the pool's outputs."""
    instance_types: tuple[str, ...]
    gpus_per_node: int
    """GPUs on each node (the smallest of the instance types): the autoscaler's scale-from-zero template."""
    max_size: int
    min_size: int = 0
    """Nodes the pool always runs when it serves (in a standby: once failed over). Default: `0`."""
    ami_type: str = "AL2023_x86_64_NVIDIA"
    """An NVIDIA AMI type (default: Amazon Linux 2023's)."""
    capacity_type: Literal["ON_DEMAND", "SPOT", "CAPACITY_BLOCK"] = "ON_DEMAND"
    """On-demand, spot, or a Capacity Block for ML; default `ON_DEMAND`."""
    reservation: Reservation | None = None
    """Capacity reservation to launch into (ON_DEMAND), or the Capacity Block (CAPACITY_BLOCK, required);
    default: none."""
    standby: bool = False
    """A standby pool runs `warm_size` nodes until a failover scales it to `failover_size`. Default: off."""
    warm_size: int = 0
    """Standby: the nodes it runs before a failover (default none)."""
    failover_size: int | None = None
    """Standby: the size a failover scales to; default `min_size`."""
    labels: dict[str, str] = field(default_factory=dict)
    """Kubernetes labels on every node (default none)."""
    gpu_taint_value: str = "present"
    """Value of the `nvidia.com/gpu` NoSchedule taint. Default: `present`."""
    efa_interfaces: int = 0
    """EFA interfaces per node, one per network card (p5.48xlarge: 32, p4d.24xlarge: 4); 0: no EFA.
    Every instance type of the pool needs that many network cards. Default: `0`."""
    volume_key_alias: str | None = None
    """Alias of the created volume key; default `<cluster_name>-<name>-volumes`."""
    root_volume_size_gib: int = 200
    """Room for CUDA images and model caches (Bottlerocket: the data volume). Default: `200`."""
    node_auto_repair: bool = True
    """Let EKS replace nodes that report unhealthy. Default: on."""
    tags: dict[str, str] = field(default_factory=dict)
    """AWS tags on the pool's resources (default none)."""


@dataclass(frozen=True, kw_only=True)
class EksGpuNodePoolProps(EksGpuPoolOptions):
    """A pool's settings and the cluster it joins, given by name (`EksCluster.add_gpu_pool` fills them in)."""
    cluster_name: str
    """The cluster's name; pass the cluster construct's `cluster_name` so the pool is created after it."""
    node_role_arn: str
    subnet_ids: tuple[str, ...]
    account_id: str
    security_group_ids: tuple[str, ...] = ()
    """Node security groups (default: EKS's cluster security group). Required with EFA, whose
    traffic needs a group that admits its own members, as the cluster security group does."""
    kms_key_arn: str | None = None
    """Key for the node volumes; default: a key created for the pool."""


class EksGpuNodePool(Construct):
    """A tainted, IMDSv2-only, encrypted GPU node group (see module docstring)."""

    def __init__(self, scope: Construct, id_: str, props: EksGpuNodePoolProps):
        super().__init__(scope, id_)
        _validate(self, props)
        tags = dict(props.tags)
        qualified_name = f"{props.cluster_name}-{props.name}"
        capacity_block = props.capacity_type == "CAPACITY_BLOCK"

        self.sizes = pool_sizes(standby=props.standby, min_size=props.min_size, warm_size=props.warm_size,
                                failover_size=props.failover_size)
        self.warm_size, self.failover_size = self.sizes.warm_size, self.sizes.failover_size
        self.scaling_minimum = self.sizes.scaling_minimum
        """The size Terraform creates the pool at, and the in-service floor to alarm below."""

        self.placement_group = None
        if props.efa_interfaces:
            self.placement_group = PlacementGroup(self, "placement-group", name=qualified_name, strategy="cluster",
                                                  tags=tags or None)
        reservation = props.reservation
        template = add_node_launch_template(self, NodeLaunchTemplateProps(
            cluster_name=props.cluster_name, pool_name=props.name, account_id=props.account_id,
            ami_type=props.ami_type, volume_size_gib=props.root_volume_size_gib,
            description=f"mlfleet GPU pool {props.name}", key_description=f"mlfleet GPU node volumes of {props.name}",
            kms_key_arn=props.kms_key_arn, volume_key_alias=props.volume_key_alias, tags=tags,
            # A Capacity Block's instance type is fixed by the block; EKS wants it here, not on the group.
            instance_type=props.instance_types[0] if capacity_block else None,
            instance_market_options=LaunchTemplateInstanceMarketOptions(market_type="capacity-block")
            if capacity_block else None,
            capacity_reservation_specification=LaunchTemplateCapacityReservationSpecification(
                capacity_reservation_target=LaunchTemplateCapacityReservationSpecificationCapacityReservationTarget(
                    capacity_reservation_id=reservation.capacity_reservation_id,
                    capacity_reservation_resource_group_arn=reservation.resource_group_arn))
            if reservation else None,
            network_interfaces=tuple(LaunchTemplateNetworkInterfaces(
                device_index=0 if card == 0 else 1, network_card_index=card, interface_type="efa",
                delete_on_termination="true", security_groups=list(props.security_group_ids))
                for card in range(props.efa_interfaces)),
            # With EFA the groups go on each interface: EC2 refuses them in both places.
            vpc_security_group_ids=() if props.efa_interfaces else props.security_group_ids,
            placement=LaunchTemplatePlacement(group_name=self.placement_group.name) if self.placement_group else None))
        self.key_arn = template.key_arn
        self.launch_template = template.launch_template

        template_tags = self._node_template_tags(props)
        self.node_group = EksNodeGroup(
            self, "node-group", cluster_name=props.cluster_name, node_group_name=props.name,
            node_role_arn=props.node_role_arn, subnet_ids=list(props.subnet_ids), ami_type=props.ami_type,
            capacity_type=props.capacity_type, instance_types=None if capacity_block else list(props.instance_types),
            labels=dict(props.labels) or None,
            taint=[EksNodeGroupTaint(key=GPU_RESOURCE, value=props.gpu_taint_value, effect="NO_SCHEDULE")],
            launch_template=template.for_node_group,
            scaling_config=EksNodeGroupScalingConfig(
                min_size=self.scaling_minimum, desired_size=self.scaling_minimum, max_size=props.max_size),
            # One GPU node at a time: a serving pool loses the least capacity during an update.
            update_config=EksNodeGroupUpdateConfig(max_unavailable=1),
            node_repair_config=EksNodeGroupNodeRepairConfig(enabled=props.node_auto_repair),
            tags={**tags, f"{AUTOSCALER_PREFIX}/enabled": "true",
                  f"{AUTOSCALER_PREFIX}/{props.cluster_name}": "owned", **template_tags},
            lifecycle=TerraformResourceLifecycle(ignore_changes=["scaling_config[0].desired_size"]),
            depends_on=[template.volume_grant])

        self.node_group_name = props.name
        self.node_group_arn = self.node_group.arn
        self.autoscaling_group_name: str = self.node_group.resources.get(0).autoscaling_groups.get(0).name
        """The node group's Auto Scaling group, as a reference (known once EKS created it)."""
        # EKS does not copy node group tags to its Auto Scaling group, where the autoscaler reads them.
        for key, value in template_tags.items():
            AutoscalingGroupTagA(self, f"asg-tag-{re.sub(r'[^A-Za-z0-9-]', '-', key.split('/node-template/')[1])}",
                                 autoscaling_group_name=self.autoscaling_group_name,
                                 tag=AutoscalingGroupTagTag(key=key, value=value, propagate_at_launch=False))

        add_pool_outputs(self, props.name, ("node_group_name", self.node_group.node_group_name,
                                             "EKS node group of the pool"), self.sizes)

    @staticmethod
    def _node_template_tags(props: EksGpuNodePoolProps) -> dict[str, str]:
        template = f"{AUTOSCALER_PREFIX}/node-template"
        tags = {f"{template}/label/{k}": v for k, v in sorted(props.labels.items())}
        tags[f"{template}/taint/{GPU_RESOURCE}"] = f"{props.gpu_taint_value}:NoSchedule"
        tags[f"{template}/resources/{GPU_RESOURCE}"] = str(props.gpus_per_node)
        return tags


def _validate(scope: Construct, p: EksGpuNodePoolProps) -> None:
    validate_node_pool_props(scope, p)
    require(p.ami_type in NVIDIA_AMI_DEVICES, scope, "ami_type",
            f"{p.ami_type!r} is not an NVIDIA AMI type; use one of {', '.join(NVIDIA_AMI_DEVICES)}")
    require(p.gpus_per_node >= 1, scope, "gpus_per_node", "a GPU node has at least one GPU")
    _validate_sizes(scope, p)
    _validate_capacity(scope, p)
    require(bool(p.gpu_taint_value) and bool(KUBERNETES_LABEL_VALUE.fullmatch(p.gpu_taint_value)),
            scope, "gpu_taint_value",
            f"{p.gpu_taint_value!r} is not a taint value (63 characters: letters, digits, '-', '_', '.')")


def _validate_sizes(scope: Construct, p: EksGpuNodePoolProps) -> None:
    require(p.max_size >= 1, scope, "max_size", "an EKS node group holds at least one node")
    require(0 <= p.min_size <= p.max_size, scope, "min_size",
            f"{p.min_size} is not between 0 and max_size ({p.max_size})")
    validate_standby_sizes(scope, min_size=p.min_size, max_size=p.max_size, warm_size=p.warm_size,
                           failover_size=p.failover_size)


def _validate_capacity(scope: Construct, p: EksGpuNodePoolProps) -> None:
    require(p.capacity_type in CAPACITY_TYPES, scope, "capacity_type",
            f"{p.capacity_type!r} is not one of {', '.join(CAPACITY_TYPES)}")
    reservation = p.reservation
    if reservation is not None:
        require(p.capacity_type != "SPOT", scope, "reservation",
                "capacity reservations hold on-demand capacity, not spot")
        reservation_id, group = reservation.capacity_reservation_id, reservation.resource_group_arn
        if reservation_id is not None:
            require(bool(CAPACITY_RESERVATION_ID.fullmatch(reservation_id)), scope,
                    "reservation.capacity_reservation_id",
                    f"{reservation_id!r} is not a capacity reservation id (cr-…)")
        if group is not None:
            require(bool(RESOURCE_GROUP_ARN.fullmatch(group)), scope, "reservation.resource_group_arn",
                    f"{group!r} is not a resource group ARN")
    block = reservation is not None and reservation.kind == "capacity-block"
    if p.capacity_type == "CAPACITY_BLOCK":
        require(block, scope, "reservation",
                "a CAPACITY_BLOCK pool launches into its Capacity Block: give Reservation.capacity_block(<its id>)")
        require(len(p.instance_types) == 1, scope, "instance_types",
                "a CAPACITY_BLOCK pool takes exactly one instance type, the block's")
    else:
        require(not block, scope, "reservation",
                f"a Capacity Block is for a CAPACITY_BLOCK pool, not {p.capacity_type}: use Reservation.odcr")
    require(0 <= p.efa_interfaces <= MAX_EFA_INTERFACES, scope, "efa_interfaces",
            f"{p.efa_interfaces} is not between 0 and {MAX_EFA_INTERFACES}")
    if p.efa_interfaces:
        placement = "EFA nodes share a cluster placement group"
        require(p.capacity_type != "CAPACITY_BLOCK", scope, "efa_interfaces",
                f"conflicts with capacity_type CAPACITY_BLOCK: {placement}, and a Capacity Block's instances "
                "are already placed by the block")
        require(reservation is None, scope, "efa_interfaces",
                f"conflicts with reservation: {placement}, which cannot launch into a reservation made outside it")
        require(len(p.subnet_ids) == 1, scope, "subnet_ids",
                f"{placement}, which lives in one AZ: give exactly one subnet")
        require(bool(p.security_group_ids), scope, "security_group_ids",
                "EFA interfaces need a security group that admits its own members (e.g. the cluster security group)")
