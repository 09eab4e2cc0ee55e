"""What every mlfleet node pool shares: the launch template its EKS managed node group runs on,
and the checks on the props that feed the two.

- IMDSv2 is required, with a hop limit of 1 (reasoning at `metadata_options` below).
- Volumes are gp3, encrypted with the pool's KMS key: the one given, or a rotated key created
  for the pool. An Auto Scaling group launches the nodes as its service-linked role, which a key
  policy naming only the account does not let use the key: a KMS grant gives it exactly the EBS
  operations, and the node group must be created after the grant.
- Instances, their volumes and network interfaces carry the pool's tags, a `Name` and `mlfleet:pool`.

`add_node_launch_template` creates its resources in the pool's own scope, not in a child
construct: a pool's Terraform addresses then do not depend on how this code is shared (a new
address for the volume key would mean a new key, and volumes that the old one encrypted).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from cdktn import Token
from cdktn_provider_aws.eks_node_group import EksNodeGroupLaunchTemplate
from cdktn_provider_aws.kms_grant import KmsGrant
from cdktn_provider_aws.launch_template import (
    LaunchTemplate,
    LaunchTemplateBlockDeviceMappings,
    LaunchTemplateBlockDeviceMappingsEbs,
    LaunchTemplateCapacityReservationSpecification,
    LaunchTemplateInstanceMarketOptions,
    LaunchTemplateMetadataOptions,
    LaunchTemplateNetworkInterfaces,
    LaunchTemplatePlacement,
    LaunchTemplateTagSpecifications,
)
from constructs import Construct

from mlfleet.constructs.aws.kms_key import KmsKey, KmsKeyProps
from mlfleet.constructs.validation import (
    ACCOUNT_ID,
    EC2_INSTANCE_TYPE,
    EKS_CLUSTER_NAME,
    EKS_NODE_GROUP_NAME,
    KMS_KEY_OR_ALIAS_ARN,
    KUBERNETES_LABEL_KEY,
    KUBERNETES_LABEL_VALUE,
    require,
)

# AMI type -> the EBS devices it boots from. Bottlerocket keeps its OS and its data (images,
# container storage) on two volumes; both are encrypted, the data volume gets the size.
AMI_DEVICES: dict[str, tuple[str, ...]] = {
    "AL2023_x86_64_STANDARD": ("/dev/xvda",),
    "BOTTLEROCKET_x86_64": ("/dev/xvda", "/dev/xvdb"),
    "AL2023_x86_64_NVIDIA": ("/dev/xvda",),
    "AL2023_ARM_64_NVIDIA": ("/dev/xvda",),
    "BOTTLEROCKET_x86_64_NVIDIA": ("/dev/xvda", "/dev/xvdb"),
    "BOTTLEROCKET_ARM_64_NVIDIA": ("/dev/xvda", "/dev/xvdb"),
}
# The operations EC2 Auto Scaling needs on a customer key to launch instances with encrypted volumes.
EBS_GRANT_OPERATIONS = ("CreateGrant", "Decrypt", "DescribeKey", "Encrypt", "GenerateDataKey",
                        "GenerateDataKeyWithoutPlaintext", "ReEncryptFrom", "ReEncryptTo")
AUTOSCALING_SERVICE_ROLE = "role/aws-service-role/autoscaling.amazonaws.com/AWSServiceRoleForAutoScaling"

"""A Kubernetes label value (also the shape of a taint value); empty allowed."""


@dataclass(frozen=True, kw_only=True)
class NodeLaunchTemplateProps:
    cluster_name: str
    pool_name: str
    """The node group's name: with `cluster_name`, names the template, the key alias and the instances."""
    account_id: str
    ami_type: str
    """One of AMI_DEVICES: picks the volumes to encrypt."""
    volume_size_gib: int
    """Size of the root volume (Bottlerocket: of the data volume)."""
    description: str
    key_description: str
    """Description of the volume key, when one is created."""
    kms_key_arn: str | None = None
    """Key for the volumes; default: a key created for the pool."""
    volume_key_alias: str | None = None
    """Alias of the created key; default `<cluster_name>-<pool_name>-volumes`."""
    tags: dict[str, str] = field(default_factory=dict)
    """AWS tags on the template and what it launches; default none."""
    # Launch options a pool may add to the baseline (capacity, EFA, placement).
    instance_type: str | None = None
    """The instance type, where the node group cannot take it (a Capacity Block); default none."""
    instance_market_options: LaunchTemplateInstanceMarketOptions | None = None
    """Market options (a Capacity Block's); default none."""
    capacity_reservation_specification: LaunchTemplateCapacityReservationSpecification | None = None
    """The reservation the nodes launch into; default none."""
    network_interfaces: tuple[LaunchTemplateNetworkInterfaces, ...] = ()
    """Network interfaces (EFA); default none."""
    vpc_security_group_ids: tuple[str, ...] = ()
    """Node security groups, when not on the interfaces; default none."""
    placement: LaunchTemplatePlacement | None = None
    """The placement group (EFA); default none."""


@dataclass(frozen=True)
class NodeLaunchTemplate:
    launch_template: LaunchTemplate
    key_arn: str
    """The volume key: the given ARN or the created key's (a reference)."""
    volume_grant: KmsGrant
    """The Auto Scaling role's grant on the key: the node group must depend on it."""

    @property
    def for_node_group(self) -> EksNodeGroupLaunchTemplate:
        """The node group's `launch_template` block: always the template's latest version."""
        return EksNodeGroupLaunchTemplate(id=self.launch_template.id,
                                          version=Token.as_string(self.launch_template.latest_version))


def add_node_launch_template(pool: Construct, props: NodeLaunchTemplateProps) -> NodeLaunchTemplate:
    """Create the pool's volume key (unless given), its grant and its launch template in `pool`."""
    tags = dict(props.tags)
    qualified_name = f"{props.cluster_name}-{props.pool_name}"
    if props.kms_key_arn is not None:
        key_arn = props.kms_key_arn
    else:
        key_arn = KmsKey(pool, "volume-key", KmsKeyProps(
            alias=props.volume_key_alias or f"{qualified_name}-volumes", account_id=props.account_id,
            description=props.key_description, tags=tags)).key_arn
    grant = KmsGrant(
        pool, "autoscaling-volume-grant", name=f"{props.pool_name}-ebs", key_id=key_arn,
        grantee_principal=f"arn:aws:iam::{props.account_id}:{AUTOSCALING_SERVICE_ROLE}",
        operations=list(EBS_GRANT_OPERATIONS), retire_on_delete=True)

    devices = AMI_DEVICES[props.ami_type]
    instance_tags = {**tags, "Name": qualified_name, "mlfleet:pool": props.pool_name}
    launch_template = LaunchTemplate(
        pool, "launch-template", name=qualified_name, update_default_version=True, description=props.description,
        # Pods get AWS credentials from EKS Pod Identity, not from the node's instance
        # profile: a hop limit of 1 keeps IMDS (and the node role) out of pods' reach;
        # host-network agents such as the VPC CNI are on the node's hop and unaffected.
        metadata_options=LaunchTemplateMetadataOptions(
            http_endpoint="enabled", http_tokens="required", http_put_response_hop_limit=1,
            instance_metadata_tags="disabled"),
        block_device_mappings=[LaunchTemplateBlockDeviceMappings(
            device_name=device, ebs=LaunchTemplateBlockDeviceMappingsEbs(
                volume_type="gp3", encrypted="true", kms_key_id=key_arn, delete_on_termination="true",
                volume_size=props.volume_size_gib if device == devices[-1] else None))
            for device in devices],
        instance_type=props.instance_type,
        instance_market_options=props.instance_market_options,
        capacity_reservation_specification=props.capacity_reservation_specification,
        network_interfaces=list(props.network_interfaces) or None,
        vpc_security_group_ids=list(props.vpc_security_group_ids) or None,
        placement=props.placement,
        tag_specifications=[LaunchTemplateTagSpecifications(resource_type=kind, tags=instance_tags)
                            for kind in ("instance", "volume", "network-interface")],
        tags=tags or None)
    return NodeLaunchTemplate(launch_template=launch_template, key_arn=key_arn, volume_grant=grant)


class NodePoolProps(Protocol):
    """The props every node pool has, checked by `validate_node_pool_props` (read-only, as frozen props are)."""
    @property
    def name(self) -> str: ...
    @property
    def cluster_name(self) -> str: ...
    @property
    def account_id(self) -> str: ...
    @property
    def subnet_ids(self) -> tuple[str, ...]: ...
    @property
    def instance_types(self) -> tuple[str, ...]: ...
    @property
    def labels(self) -> dict[str, str]: ...
    @property
    def root_volume_size_gib(self) -> int: ...
    @property
    def kms_key_arn(self) -> str | None: ...
    @property
    def volume_key_alias(self) -> str | None: ...


def validate_node_pool_props(scope: Construct, p: NodePoolProps) -> None:
    """Raise PropsError, naming the prop, for the first of the shared props that is invalid."""
    require(bool(EKS_NODE_GROUP_NAME.fullmatch(p.name)), scope, "name",
            f"{p.name!r}: letters, digits, '-' and '_', starting with a letter or digit, at most 63 characters")
    if not Token.is_unresolved(p.cluster_name):
        require(bool(EKS_CLUSTER_NAME.fullmatch(p.cluster_name)), scope, "cluster_name",
                f"{p.cluster_name!r} is not an EKS cluster name")
    require(bool(ACCOUNT_ID.fullmatch(p.account_id)), scope, "account_id",
            f"{p.account_id!r} is not a 12-digit AWS account id")
    require(bool(p.subnet_ids), scope, "subnet_ids", "give at least one subnet")
    require(bool(p.instance_types), scope, "instance_types", "give at least one instance type")
    for i, instance_type in enumerate(p.instance_types):
        require(bool(EC2_INSTANCE_TYPE.fullmatch(instance_type)), scope, f"instance_types[{i}]",
                f"{instance_type!r} is not an EC2 instance type")
    require(len(set(p.instance_types)) == len(p.instance_types), scope, "instance_types", "lists a type twice")
    for key, value in p.labels.items():
        require(bool(KUBERNETES_LABEL_KEY.fullmatch(key)), scope, f"labels[{key!r}]", "is not a Kubernetes label key")
        require(bool(KUBERNETES_LABEL_VALUE.fullmatch(value)), scope, f"labels[{key!r}]",
                f"{value!r} is not a Kubernetes label value (63 characters: letters, digits, '-', '_', '.')")
    require(16 <= p.root_volume_size_gib <= 16384, scope, "root_volume_size_gib", "must be 16 to 16384 GiB (gp3)")
    if p.kms_key_arn is not None and not Token.is_unresolved(p.kms_key_arn):
        require(bool(KMS_KEY_OR_ALIAS_ARN.fullmatch(p.kms_key_arn)), scope, "kms_key_arn",
                f"{p.kms_key_arn!r} is not a KMS key ARN")
    require(p.kms_key_arn is None or p.volume_key_alias is None, scope, "volume_key_alias",
            "names a key the pool would create, but kms_key_arn is given")
    if p.kms_key_arn is None and p.volume_key_alias is None:
        require(not Token.is_unresolved(p.cluster_name), scope, "volume_key_alias",
                "needed to name the pool's volume key when cluster_name is a reference (or pass kms_key_arn)")
