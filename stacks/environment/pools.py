"""GPU node pools: their shape on each cloud, and the reserved capacity they launch into."""
from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from mlfleet.constructs.validation import (
    CAPACITY_RESERVATION_ID,
    GOOGLE_ACCELERATOR_TYPE,
    GOOGLE_MACHINE_TYPE,
    GOOGLE_RESERVATION,
    RESOURCE_GROUP_ARN,
)
from mlfleet.stacks.environment.fields import NAME_PATTERN, Model

_RESERVED_POOL_NAMES = {"system"}  # the cluster's untainted add-on pool


class Reservation(Model):
    """Where a pool's nodes launch into reserved capacity. AWS: one capacity reservation (or
    Capacity Block), or a resource group of reservations when there are several. Google Cloud:
    one Compute Engine reservation by name (`projects/P/reservations/NAME` for a shared one)."""
    capacity_reservation_id: str | None = Field(default=None, pattern=CAPACITY_RESERVATION_ID.pattern)
    resource_group_arn: str | None = Field(default=None, pattern=RESOURCE_GROUP_ARN.pattern)
    name: str | None = Field(default=None, pattern=GOOGLE_RESERVATION.pattern)

    @model_validator(mode="after")
    def _exactly_one(self) -> Reservation:
        given = [v for v in (self.capacity_reservation_id, self.resource_group_arn, self.name) if v is not None]
        if len(given) != 1:
            raise ValueError("give one of capacity_reservation_id, resource_group_arn (AWS) or name (Google Cloud)")
        return self

    @property
    def cloud(self) -> str:
        return "gcp" if self.name is not None else "aws"


class GpuSharing(Model):
    strategy: Literal["TIME_SHARING", "MPS"]
    max_shared_clients_per_gpu: int = Field(ge=2, le=48)


class GcpPoolShape(Model):
    """How a GPU pool's nodes look on GKE: the machine and its accelerators."""
    machine_type: str = Field(pattern=GOOGLE_MACHINE_TYPE.pattern, description="e.g. g2-standard-8")
    accelerator_type: str = Field(pattern=GOOGLE_ACCELERATOR_TYPE.pattern, description="e.g. nvidia-l4")
    accelerator_count: int = Field(default=1, ge=1, le=16, description="GPUs per node")
    driver_version: Literal["DEFAULT", "LATEST"] = "DEFAULT"
    gpu_sharing: GpuSharing | None = None
    mig_partition_size: str | None = Field(default=None, pattern=r"^[1-7]g\.\d+gb$")
    location_policy: Literal["BALANCED", "ANY"] = "BALANCED"
    reservation_affinity: Literal["NONE", "ANY"] = Field(
        default="ANY", description="Where no reservation is named for the region: consume any matching "
                                   "reservation (ANY) or none (NONE)")
    queued_provisioning: bool = Field(
        default=False, description="Nodes only through ProvisioningRequests (Dynamic Workload Scheduler)")


class GpuPool(Model):
    """A GPU node pool, the same in every region: the primary runs `min_size` nodes, each
    standby keeps `warm_standby` nodes warm and scales to `min_size` on failover."""
    name: str = Field(pattern=NAME_PATTERN)
    instance_types: list[str] = Field(default_factory=list, description="EC2 instance types (AWS regions)")
    gcp: GcpPoolShape | None = Field(default=None, description="The pool's nodes in Google Cloud regions")
    capacity_type: Literal["ON_DEMAND", "SPOT", "CAPACITY_BLOCK"] = "ON_DEMAND"
    ami_type: Literal["AL2023_x86_64_NVIDIA", "BOTTLEROCKET_x86_64_NVIDIA"] = "AL2023_x86_64_NVIDIA"
    min_size: int = Field(ge=0)
    warm_standby: int = Field(ge=0)
    max_size: int = Field(ge=1)
    efa_interfaces: int = Field(
        default=0, ge=0, le=32,
        description="EFA interfaces per node, one per network card (p5.48xlarge: 32, p4d.24xlarge: 4); 0: no EFA")
    labels: dict[str, str] = Field(default_factory=dict)
    reservations: dict[str, Reservation] = Field(
        default_factory=dict, description="Capacity reservations by region name")

    @property
    def spot(self) -> bool:
        return self.capacity_type == "SPOT"

    @field_validator("name")
    @classmethod
    def _not_reserved(cls, name: str) -> str:
        if name in _RESERVED_POOL_NAMES:
            raise ValueError(f"{name!r} is reserved for the cluster's system node pool")
        return name

    @model_validator(mode="after")
    def _ordering(self) -> GpuPool:
        if not self.warm_standby <= self.min_size <= self.max_size:
            raise ValueError(
                f"sizes must satisfy warm_standby <= min_size <= max_size "
                f"(got warm_standby={self.warm_standby}, min_size={self.min_size}, max_size={self.max_size})")
        if len(set(self.instance_types)) != len(self.instance_types):
            raise ValueError("instance_types lists a type twice")
        if self.capacity_type == "CAPACITY_BLOCK" and len(self.instance_types) != 1:
            raise ValueError("a CAPACITY_BLOCK pool takes exactly one instance type")
        return self
