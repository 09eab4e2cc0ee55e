"""A pool of GPU nodes on GKE: the Google counterpart of `aws.eks_gpu_node_pool.EksGpuNodePool`.

- Every node carries the `nvidia.com/gpu=<value>:NoSchedule` taint, so only pods that ask for
  GPUs land on (and pay for) GPU nodes. GKE installs the NVIDIA driver (DEFAULT or LATEST).
- GPU sharing: time-sharing or NVIDIA MPS with a number of clients per GPU, and/or MIG
  partitions on the GPUs that support them.
- Nodes: shielded (secure boot, integrity monitoring), GKE metadata server only (pods get their
  own Workload Identity, never the node's service account), boot disk encrypted with a Cloud
  KMS key of the region.
- Capacity: on-demand or spot; reservation affinity NONE, ANY or SPECIFIC (one named
  reservation); or queued provisioning (Dynamic Workload Scheduler), where nodes come only
  through ProvisioningRequests and GKE requires affinity NONE, autoscaling from zero with the
  ANY location policy and no auto-repair.
- Node locations are the zones where the accelerator is offered: the stack passes them.
- Sizes are totals across the pool's zones (the autoscaler's total limits). The node count
  belongs to the autoscaler and the DR runbooks after creation; Terraform ignores it. A standby
  pool runs `warm_size` nodes; a failover raises it to `failover_size`. Both are Terraform
  outputs, so the runbooks read them from the region's own state.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Literal

from cdktn import TerraformResourceLifecycle, Token
from cdktn_provider_google.container_node_pool import (
    ContainerNodePool,
    ContainerNodePoolAutoscaling,
    ContainerNodePoolManagement,
    ContainerNodePoolNodeConfig,
    ContainerNodePoolNodeConfigGuestAccelerator,
    ContainerNodePoolNodeConfigGuestAcceleratorGpuDriverInstallationConfig,
    ContainerNodePoolNodeConfigGuestAcceleratorGpuSharingConfig,
    ContainerNodePoolNodeConfigReservationAffinity,
    ContainerNodePoolNodeConfigShieldedInstanceConfig,
    ContainerNodePoolNodeConfigTaint,
    ContainerNodePoolNodeConfigWorkloadMetadataConfig,
    ContainerNodePoolQueuedProvisioning,
    ContainerNodePoolUpgradeSettings,
)
from constructs import Construct

from mlfleet.constructs.gcp.kms_key import require_key_id
from mlfleet.constructs.standby_pool import add_pool_outputs, pool_sizes, validate_standby_sizes
from mlfleet.constructs.validation import (
    GOOGLE_ACCELERATOR_TYPE,
    GOOGLE_MACHINE_TYPE,
    GOOGLE_PROJECT_ID,
    GOOGLE_REGION,
    GOOGLE_RESERVATION,
    GOOGLE_RESOURCE_NAME,
    GOOGLE_SERVICE_ACCOUNT_EMAIL,
    GOOGLE_ZONE,
    KUBERNETES_LABEL_KEY,
    KUBERNETES_LABEL_VALUE,
    require,
)

GPU_RESOURCE = "nvidia.com/gpu"
DRIVER_VERSIONS = ("DEFAULT", "LATEST")
SHARING_STRATEGIES = ("TIME_SHARING", "MPS")
MAX_SHARED_CLIENTS = 48
AFFINITIES = {"NONE": "NO_RESERVATION", "ANY": "ANY_RESERVATION", "SPECIFIC": "SPECIFIC_RESERVATION"}
RESERVATION_KEY = "compute.googleapis.com/reservation-name"
LOCATION_POLICIES = ("BALANCED", "ANY")
DISK_TYPES = ("pd-balanced", "pd-ssd", "hyperdisk-balanced")
# GPUs that NVIDIA's Multi-Instance GPU partitions.
MIG_ACCELERATORS = ("nvidia-tesla-a100", "nvidia-a100-80gb", "nvidia-h100-80gb", "nvidia-h100-mega-80gb",
                    "nvidia-h200-141gb")
CLOUD_PLATFORM_SCOPE = "https://www.googleapis.com/auth/cloud-platform"
MAX_POOL_NODES = 1000

_MIG_PARTITION = re.compile(r"^[1-7]g\.\d+gb$")


@dataclass(frozen=True, kw_only=True)
class GpuSharing:
    """Several containers share each GPU: by time slices, or concurrently through NVIDIA MPS."""
    strategy: Literal["TIME_SHARING", "MPS"]
    max_shared_clients_per_gpu: int


@dataclass(frozen=True, kw_only=True)
class ReservationAffinity:
    """Which Compute Engine reservations the nodes consume."""
    type: Literal["NONE", "ANY", "SPECIFIC"] = "ANY"
    """NONE, ANY or SPECIFIC (prefer the factories: `none()`, `any()`, `specific(name)`); default `ANY`."""
    name: str | None = None
    """SPECIFIC: the reservation's name, or `projects/P/reservations/NAME` for a shared one. Default: none."""

    @classmethod
    def none(cls) -> ReservationAffinity:
        """Never consume a reservation."""
        return cls(type="NONE")

    @classmethod
    def any(cls) -> ReservationAffinity:
        """Consume any matching reservation, else on-demand capacity (GKE's default)."""
        return cls(type="ANY")

    @classmethod
    def specific(cls, name: str) -> ReservationAffinity:
        """Consume only the named reservation (`projects/P/reservations/NAME` for a shared one)."""
        return cls(type="SPECIFIC", name=name)


@dataclass(frozen=True, kw_only=True)
class GkeGpuPoolOptions:
    """A GPU pool's own settings. `GkeCluster.add_gpu_pool` adds the cluster's (project, region,
    node service account, boot disk key)."""
    name: str
    """Node pool name, unique in the cluster; also names the pool's outputs."""
    node_locations: tuple[str, ...]
    """Zones of the region where the accelerator is offered."""
    machine_type: str
    accelerator_type: str
    accelerator_count: int
    """GPUs on each node."""
    max_size: int
    """Most nodes, across all zones."""
    min_size: int = 0
    """Nodes the pool always runs when it serves (in a standby: once failed over), across all zones. Default: `0`."""
    driver_version: Literal["DEFAULT", "LATEST"] = "DEFAULT"
    """The NVIDIA driver GKE installs (default: the GKE version's default driver)."""
    gpu_sharing: GpuSharing | None = None
    """Share each GPU between containers (default: one container per GPU)."""
    mig_partition_size: str | None = None
    """MIG partition of each GPU, e.g. `1g.10gb` (A100, H100, H200 only). Default: none."""
    location_policy: Literal["BALANCED", "ANY"] = "BALANCED"
    """BALANCED spreads nodes over the zones; ANY takes capacity wherever it is (spot, scarce GPUs).
    Default: `BALANCED`."""
    spot: bool = False
    """Spot VMs (default: on-demand)."""
    reservation: ReservationAffinity = field(default_factory=ReservationAffinity.any)
    """Which reservations the nodes consume (default: any matching one, else on-demand)."""
    queued_provisioning: bool = False
    """Nodes only through ProvisioningRequests (Dynamic Workload Scheduler). Default: off."""
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
    disk_type: Literal["pd-balanced", "pd-ssd", "hyperdisk-balanced"] = "pd-balanced"
    """Boot disk type; the newest GPU machines (A3 Ultra, A4) take only hyperdisk-balanced. Default: `pd-balanced`."""
    disk_size_gb: int = 200
    """Room for CUDA images and model caches. Default: `200`."""
    auto_upgrade: bool = True
    """Let GKE upgrade the nodes with the cluster's release channel. Default: on."""
    resource_labels: dict[str, str] = field(default_factory=dict)
    """Google Cloud labels on the nodes' VMs and disks (billing; default none)."""


@dataclass(frozen=True, kw_only=True)
class GkeGpuNodePoolProps(GkeGpuPoolOptions):
    """A pool's settings and the cluster it joins, given by name (`GkeCluster.add_gpu_pool` fills them in)."""
    project_id: str
    cluster: str
    """The cluster's id or name; pass `GkeCluster.cluster_id` so the pool is created after it."""
    region: str
    """The cluster's region."""
    node_service_account: str
    """The nodes' service account email (`GkeCluster.node_service_account_email`)."""
    boot_disk_kms_key: str
    """Crypto key in the pool's region for the boot disks (`GkeCluster.kms_key_id`)."""


class GkeGpuNodePool(Construct):
    """A tainted, shielded, CMEK-encrypted GKE GPU node pool (see module docstring)."""

    def __init__(self, scope: Construct, id_: str, props: GkeGpuNodePoolProps):
        super().__init__(scope, id_)
        _validate(self, props)

        self.sizes = pool_sizes(standby=props.standby, min_size=props.min_size, warm_size=props.warm_size,
                                failover_size=props.failover_size)
        self.warm_size, self.failover_size = self.sizes.warm_size, self.sizes.failover_size
        self.scaling_minimum = self.sizes.scaling_minimum
        """The size Terraform creates the pool at, and the in-service floor to alarm below."""
        # GKE creates the initial count in every zone: enough to reach the minimum in total (the
        # autoscaler removes idle nodes beyond it).
        initial_per_zone = math.ceil(self.scaling_minimum / len(props.node_locations))

        sharing = props.gpu_sharing
        reservation = props.reservation
        self.node_pool = ContainerNodePool(
            self, "node-pool", project=props.project_id, cluster=props.cluster, location=props.region,
            name=props.name, node_locations=list(props.node_locations), initial_node_count=initial_per_zone,
            autoscaling=ContainerNodePoolAutoscaling(
                total_min_node_count=self.scaling_minimum, total_max_node_count=props.max_size,
                location_policy=props.location_policy),
            queued_provisioning=ContainerNodePoolQueuedProvisioning(enabled=True)
            if props.queued_provisioning else None,
            # GKE does not repair nodes that a ProvisioningRequest holds.
            management=ContainerNodePoolManagement(auto_repair=not props.queued_provisioning,
                                                   auto_upgrade=props.auto_upgrade),
            # One GPU node at a time, without a surge node: scarce GPUs may have no spare capacity.
            upgrade_settings=ContainerNodePoolUpgradeSettings(strategy="SURGE", max_surge=0, max_unavailable=1),
            node_config=ContainerNodePoolNodeConfig(
                machine_type=props.machine_type, image_type="COS_CONTAINERD",
                guest_accelerator=[ContainerNodePoolNodeConfigGuestAccelerator(
                    type=props.accelerator_type, count=props.accelerator_count,
                    gpu_driver_installation_config=ContainerNodePoolNodeConfigGuestAcceleratorGpuDriverInstallationConfig(
                        gpu_driver_version=props.driver_version),
                    gpu_partition_size=props.mig_partition_size,
                    gpu_sharing_config=ContainerNodePoolNodeConfigGuestAcceleratorGpuSharingConfig(
                        gpu_sharing_strategy=sharing.strategy,
                        max_shared_clients_per_gpu=sharing.max_shared_clients_per_gpu) if sharing else None)],
                taint=[ContainerNodePoolNodeConfigTaint(key=GPU_RESOURCE, value=props.gpu_taint_value,
                                                        effect="NO_SCHEDULE")],
                labels=dict(props.labels) or None, resource_labels=dict(props.resource_labels) or None,
                spot=props.spot or None,
                reservation_affinity=ContainerNodePoolNodeConfigReservationAffinity(
                    consume_reservation_type=AFFINITIES[reservation.type],
                    key=RESERVATION_KEY if reservation.type == "SPECIFIC" else None,
                    values=[reservation.name] if reservation.type == "SPECIFIC" else None),
                service_account=props.node_service_account, oauth_scopes=[CLOUD_PLATFORM_SCOPE],
                boot_disk_kms_key=props.boot_disk_kms_key, disk_type=props.disk_type,
                disk_size_gb=props.disk_size_gb, metadata={"disable-legacy-endpoints": "true"},
                shielded_instance_config=ContainerNodePoolNodeConfigShieldedInstanceConfig(
                    enable_secure_boot=True, enable_integrity_monitoring=True),
                workload_metadata_config=ContainerNodePoolNodeConfigWorkloadMetadataConfig(mode="GKE_METADATA")),
            lifecycle=TerraformResourceLifecycle(ignore_changes=["initial_node_count", "node_count"]))

        self.node_pool_name = props.name
        self.node_locations = props.node_locations
        add_pool_outputs(self, props.name, ("node_pool_name", self.node_pool.name, "GKE node pool of the pool"),
                         self.sizes)


def _validate(scope: Construct, p: GkeGpuNodePoolProps) -> None:
    require(bool(GOOGLE_PROJECT_ID.fullmatch(p.project_id)), scope, "project_id",
            f"{p.project_id!r} is not a Google Cloud project id")
    require(bool(GOOGLE_REGION.fullmatch(p.region)), scope, "region", f"{p.region!r} is not a Google Cloud region")
    require(bool(GOOGLE_RESOURCE_NAME.fullmatch(p.name)) and len(p.name) <= 40, scope, "name",
            f"{p.name!r}: lowercase letters, digits and '-', starting with a letter, at most 40 characters")
    if not Token.is_unresolved(p.cluster):
        require(bool(p.cluster), scope, "cluster", "name the cluster")
    require(bool(p.node_locations), scope, "node_locations",
            "give at least one zone where the accelerator is offered")
    for i, zone in enumerate(p.node_locations):
        match = GOOGLE_ZONE.fullmatch(zone)
        require(match is not None and match[1] == p.region, scope, f"node_locations[{i}]",
                f"{zone!r} is not a zone of {p.region}")
    require(len(set(p.node_locations)) == len(p.node_locations), scope, "node_locations", "lists a zone twice")
    require(bool(GOOGLE_MACHINE_TYPE.fullmatch(p.machine_type)), scope, "machine_type",
            f"{p.machine_type!r} is not a Compute Engine machine type")
    require(bool(GOOGLE_ACCELERATOR_TYPE.fullmatch(p.accelerator_type)), scope, "accelerator_type",
            f"{p.accelerator_type!r} is not an NVIDIA accelerator type (nvidia-…)")
    require(1 <= p.accelerator_count <= 16, scope, "accelerator_count", "a node has 1 to 16 GPUs")
    if not Token.is_unresolved(p.node_service_account):
        require(bool(GOOGLE_SERVICE_ACCOUNT_EMAIL.fullmatch(p.node_service_account)), scope, "node_service_account",
                f"{p.node_service_account!r} is not a user-managed service account email")
    require_key_id(scope, "boot_disk_kms_key", p.boot_disk_kms_key, p.region)
    require(p.driver_version in DRIVER_VERSIONS, scope, "driver_version",
            f"{p.driver_version!r} is not one of {', '.join(DRIVER_VERSIONS)}")
    _validate_sharing(scope, p)
    _validate_sizes(scope, p)
    _validate_capacity(scope, p)
    for key, value in p.labels.items():
        require(bool(KUBERNETES_LABEL_KEY.fullmatch(key)), scope, f"labels[{key!r}]", "is not a Kubernetes label key")
        require(bool(KUBERNETES_LABEL_VALUE.fullmatch(value)), scope, f"labels[{key!r}]",
                f"{value!r} is not a Kubernetes label value (63 characters: letters, digits, '-', '_', '.')")
    require(bool(p.gpu_taint_value) and bool(KUBERNETES_LABEL_VALUE.fullmatch(p.gpu_taint_value)),
            scope, "gpu_taint_value",
            f"{p.gpu_taint_value!r} is not a taint value (63 characters: letters, digits, '-', '_', '.')")
    require(p.disk_type in DISK_TYPES, scope, "disk_type", f"{p.disk_type!r} is not one of {', '.join(DISK_TYPES)}")
    require(10 <= p.disk_size_gb <= 65536, scope, "disk_size_gb", "must be 10 to 65536 GB")


def _validate_sharing(scope: Construct, p: GkeGpuNodePoolProps) -> None:
    if p.gpu_sharing is not None:
        require(p.gpu_sharing.strategy in SHARING_STRATEGIES, scope, "gpu_sharing.strategy",
                f"{p.gpu_sharing.strategy!r} is not one of {', '.join(SHARING_STRATEGIES)}")
        require(2 <= p.gpu_sharing.max_shared_clients_per_gpu <= MAX_SHARED_CLIENTS, scope,
                "gpu_sharing.max_shared_clients_per_gpu", f"must be 2 to {MAX_SHARED_CLIENTS}")
    if p.mig_partition_size is not None:
        require(bool(_MIG_PARTITION.fullmatch(p.mig_partition_size)), scope, "mig_partition_size",
                f"{p.mig_partition_size!r} is not a MIG partition size (e.g. 1g.10gb)")
        require(p.accelerator_type in MIG_ACCELERATORS, scope, "mig_partition_size",
                f"{p.accelerator_type} has no MIG partitions; MIG GPUs: {', '.join(MIG_ACCELERATORS)}")


def _validate_sizes(scope: Construct, p: GkeGpuNodePoolProps) -> None:
    require(1 <= p.max_size <= MAX_POOL_NODES, scope, "max_size", f"must be 1 to {MAX_POOL_NODES} nodes")
    require(0 <= p.min_size <= p.max_size, scope, "min_size",
            f"{p.min_size} is not between 0 and max_size ({p.max_size})")
    require(p.standby or p.warm_size == 0, scope, "warm_size", "only a standby pool has a warm size")
    require(p.standby or p.failover_size is None, scope, "failover_size", "only a standby pool has a failover size")
    validate_standby_sizes(scope, min_size=p.min_size, max_size=p.max_size, warm_size=p.warm_size,
                           failover_size=p.failover_size)


def _validate_capacity(scope: Construct, p: GkeGpuNodePoolProps) -> None:
    require(p.location_policy in LOCATION_POLICIES, scope, "location_policy",
            f"{p.location_policy!r} is not one of {', '.join(LOCATION_POLICIES)}")
    reservation = p.reservation
    require(reservation.type in AFFINITIES, scope, "reservation.type",
            f"{reservation.type!r} is not one of {', '.join(AFFINITIES)}")
    if reservation.type == "SPECIFIC":
        require(reservation.name is not None and bool(GOOGLE_RESERVATION.fullmatch(reservation.name)), scope,
                "reservation.name", f"{reservation.name!r} is not a reservation name (or projects/P/reservations/NAME)")
        require(not p.spot, scope, "reservation", "a reservation holds on-demand capacity, not spot")
    else:
        require(reservation.name is None, scope, "reservation.name",
                f"only a SPECIFIC reservation affinity names a reservation (type is {reservation.type})")
    if p.queued_provisioning:
        require(reservation.type == "NONE", scope, "reservation.type",
                f"queued provisioning is valid only with reservation affinity NONE, not {reservation.type}")
        require(not p.spot, scope, "spot", "queued provisioning obtains nodes through Dynamic Workload Scheduler, "
                                           "not spot")
        require(p.min_size == 0 and not p.standby, scope, "min_size",
                "a queued-provisioning pool scales from zero: nodes come only with ProvisioningRequests "
                "(min_size 0, no standby)")
        require(p.location_policy == "ANY", scope, "location_policy",
                "queued provisioning needs location_policy ANY")
