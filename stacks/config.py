"""The environment model: one YAML file per environment, validated once, read by everything.

Stacks, runbooks, the runtime's deployment and the review all take an `Environment`. Invalid
input stops here, before anything is synthesized, with the field's path and the reason.
"""
from __future__ import annotations

import ipaddress
import re
from pathlib import Path
from typing import Annotated, Literal, Union

import yaml
from pydantic import (AfterValidator, BaseModel, BeforeValidator, ConfigDict, Discriminator, Field, Tag,
                      ValidationError, WithJsonSchema, field_validator, model_validator)

from mlfleet.stacks import naming
from mlfleet.stacks.errors import ConfigError, MlfleetError
from mlfleet.stacks.gcp_offerings import GcpAcceleratorOfferings
from mlfleet.stacks.offerings import GpuOfferings

ENVIRONMENTS_DIR = Path(__file__).resolve().parent / "environments"

# S3 Replication Time Control replicates 99.99 % of objects within 15 minutes: the best RPO
# the artifact store can promise. Aurora global databases replicate in about a second, and
# `rds.global_db_rpo` cannot be set below 20 seconds.
S3_RTC_RPO_SECONDS = 15 * 60
AURORA_MIN_GLOBAL_DB_RPO_SECONDS = 20
# Artifacts reach a Google Cloud standby of an AWS primary through Storage Transfer Service,
# whose shortest repeat interval is one hour. Within Google Cloud, turbo replication of a
# dual-region bucket has the same 15-minute objective as S3 Replication Time Control.
STORAGE_TRANSFER_RPO_SECONDS = 60 * 60
GCS_TURBO_RPO_SECONDS = 15 * 60
# Each GKE control plane takes a private /28 of its own in the VPC.
GKE_CONTROL_PLANE_BASE = ipaddress.ip_network("172.16.0.0/28")

_DURATION = re.compile(r"^\s*(\d+)\s*(s|m|h)?\s*$")
_UNIT_SECONDS = {None: 1, "s": 1, "m": 60, "h": 3600}
_NAME = r"^[a-z][a-z0-9-]{0,19}$"


def _seconds(value: object) -> object:
    """Durations are seconds (int) or strings with a unit: '90s', '15m', '1h'."""
    if isinstance(value, str):
        match = _DURATION.match(value)
        if not match:
            raise ValueError(f"{value!r} is not a duration like '90s', '15m' or '1h'")
        return int(match.group(1)) * _UNIT_SECONDS[match.group(2)]
    return value


# Editors see what the files say: a number of seconds, or a string with a unit.
Seconds = Annotated[int, BeforeValidator(_seconds), Field(gt=0), WithJsonSchema({"anyOf": [
    {"type": "integer", "exclusiveMinimum": 0},
    {"type": "string", "pattern": _DURATION.pattern}]})]


def _private_cidr(value: str, smallest: int, purpose: str, largest: int = 8) -> str:
    try:
        network = ipaddress.ip_network(value, strict=True)
    except ValueError as exc:
        raise ValueError(f"{value!r} is not a valid network CIDR ({exc})") from None
    if not network.is_private:
        raise ValueError(f"{value} is not a private range")
    if not largest <= network.prefixlen <= smallest:
        raise ValueError(f"{value}: use a /{largest} to /{smallest}, room for {purpose}")
    return str(network)


def _cidr(value: str) -> str:
    return _private_cidr(value, 20, "three AZs of GPU nodes and pods", largest=16)


Cidr = Annotated[str, AfterValidator(_cidr)]


class Model(BaseModel):
    # Unknown keys are typos until proven otherwise.
    model_config = ConfigDict(extra="forbid", frozen=True)


class ExistingNetwork(Model):
    vpc_id: str = Field(pattern=r"^vpc-[0-9a-f]{8,17}$")
    private_subnet_ids: list[Annotated[str, Field(pattern=r"^subnet-[0-9a-f]{8,17}$")]] = Field(min_length=3)
    cidr: Cidr


class Network(Model):
    """Create a VPC from `cidr` across `availability_zones` AZs, or import `existing` ids."""
    cidr: Cidr | None = None
    availability_zones: int = Field(default=3, ge=3, le=6)
    nat_gateways: Literal["per_az", "single"] = "per_az"
    existing: ExistingNetwork | None = None

    @model_validator(mode="after")
    def _one_source(self) -> Network:
        if (self.cidr is None) == (self.existing is None):
            raise ValueError("give either cidr (a VPC is created) or existing (ids are imported)")
        return self

    @property
    def effective_cidr(self) -> str:
        return self.cidr if self.cidr is not None else self.existing.cidr


_AWS_REGION = re.compile(r"^[a-z]{2}(-gov)?-[a-z]+-\d$")
_GCP_REGION = re.compile(r"^[a-z]+-[a-z]+\d+$")


def _aws_region_name(name: str) -> str:
    if not _AWS_REGION.match(name):
        hint = "; a Google Cloud region needs cloud: gcp" if _GCP_REGION.match(name) else ""
        raise ValueError(f"{name!r} is not an AWS region name (like us-east-1){hint}")
    return name


def _gcp_region_name(name: str) -> str:
    if not _GCP_REGION.match(name):
        hint = "; an AWS region needs no cloud key (or cloud: aws)" if _AWS_REGION.match(name) else ""
        raise ValueError(f"{name!r} is not a Google Cloud region name (like us-central1){hint}")
    return name


class AwsRegion(Model):
    name: Annotated[str, AfterValidator(_aws_region_name)] = Field(
        description="AWS region, e.g. us-east-1", json_schema_extra={"pattern": _AWS_REGION.pattern})
    cloud: Literal["aws"] = "aws"
    role: Literal["primary", "standby"]
    network: Network
    endpoint: str | None = Field(
        default=None, description="Regional serving hostname; default <region>.<serving.dns_name>")
    multi_region_key_arn: str | None = Field(
        default=None, pattern=r"^arn:aws:kms:[a-z0-9-]+:\d{12}:key/mrk-[0-9a-f]{32}$",
        description="Standby only: the primary's multi-Region artifact key, known after it is deployed")


NodeCidr = Annotated[str, AfterValidator(lambda v: _private_cidr(v, 24, "the nodes of a GKE region"))]
PodsCidr = Annotated[str, AfterValidator(lambda v: _private_cidr(v, 21, "pods (GKE gives each node a /24)"))]
ServicesCidr = Annotated[str, AfterValidator(lambda v: _private_cidr(v, 27, "Kubernetes Services"))]
ControlPlaneCidr = Annotated[str, AfterValidator(lambda v: _private_cidr(v, 28, "the GKE control plane"))]


class ExistingGcpSubnet(Model):
    """A subnet made outside mlfleet, in the environment's VPC, with GKE's two secondary ranges."""
    subnet_name: str = Field(pattern=r"^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$")
    pods_range_name: str = Field(pattern=r"^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$")
    services_range_name: str = Field(pattern=r"^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$")
    cidr: NodeCidr


class GcpNetwork(Model):
    """A GKE region's subnet: the nodes' range and secondary ranges for pods and Services, or an
    `existing` subnet. The VPC itself is global (the environment's `<env>-gcp-global` stack)."""
    cidr: NodeCidr | None = None
    pods_cidr: PodsCidr | None = None
    services_cidr: ServicesCidr | None = None
    control_plane_cidr: ControlPlaneCidr | None = Field(
        default=None, description="The GKE control plane's private /28, unique in the VPC; "
                                  "default 172.16.0.<16 x n>/28 for the n-th Google Cloud region")
    existing: ExistingGcpSubnet | None = None

    @model_validator(mode="after")
    def _one_source(self) -> GcpNetwork:
        created = (self.cidr, self.pods_cidr, self.services_cidr)
        if self.existing is None and None in created:
            raise ValueError("give cidr, pods_cidr and services_cidr (a subnet is created) or existing")
        if self.existing is not None and any(c is not None for c in created):
            raise ValueError("an existing subnet keeps its own ranges: give existing, or the three CIDRs")
        return self

    @property
    def effective_cidr(self) -> str:
        return self.cidr if self.cidr is not None else self.existing.cidr


class GcpRegion(Model):
    name: Annotated[str, AfterValidator(_gcp_region_name)] = Field(
        description="Google Cloud region, e.g. us-central1", json_schema_extra={"pattern": _GCP_REGION.pattern})
    cloud: Literal["gcp"]
    role: Literal["primary", "standby"]
    network: GcpNetwork
    endpoint: str | None = Field(
        default=None, description="Regional serving hostname; default <region>.<serving.dns_name>")
    zones: list[str] | None = Field(
        default=None, min_length=1,
        description="Zones GPU nodes may use; default every zone of the region that offers the pool's accelerator")

    @model_validator(mode="after")
    def _zones_in_region(self) -> GcpRegion:
        for zone in self.zones or []:
            if not re.fullmatch(rf"{re.escape(self.name)}-[a-z]", zone):
                raise ValueError(f"zone {zone!r} is not a zone of {self.name}")
        if self.zones and len(set(self.zones)) != len(self.zones):
            raise ValueError("zones lists a zone twice")
        return self


def _cloud_of(value: object) -> str | None:
    cloud = value.get("cloud", "aws") if isinstance(value, dict) else getattr(value, "cloud", None)
    return {"aws": "aws-region", "gcp": "gcp-region"}.get(cloud)


Region = Annotated[Union[Annotated[AwsRegion, Tag("aws-region")], Annotated[GcpRegion, Tag("gcp-region")]],
                   Discriminator(_cloud_of, custom_error_type="cloud",
                                 custom_error_message="cloud must be aws (the default) or gcp")]
_REGION_TAGS = ("aws-region", "gcp-region")


class Reservation(Model):
    """Where a pool's nodes launch into reserved capacity. AWS: one capacity reservation (or
    Capacity Block), or a resource group of reservations when there are several. Google Cloud:
    one Compute Engine reservation by name (`projects/P/reservations/NAME` for a shared one)."""
    capacity_reservation_id: str | None = Field(default=None, pattern=r"^cr-[0-9a-f]{8,17}$")
    resource_group_arn: str | None = Field(
        default=None, pattern=r"^arn:aws[a-z-]*:resource-groups:[a-z0-9-]+:\d{12}:group/[A-Za-z0-9_.-]+$")
    name: str | None = Field(
        default=None, pattern=r"^(projects/[a-z][a-z0-9-]{4,28}[a-z0-9]/reservations/)?[a-z]([-a-z0-9]{0,61}[a-z0-9])?$")

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
    machine_type: str = Field(pattern=r"^[a-z][a-z0-9]*-[a-z0-9-]+$", description="e.g. g2-standard-8")
    accelerator_type: str = Field(pattern=r"^nvidia-[a-z0-9-]+$", description="e.g. nvidia-l4")
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


_RESERVED_POOL_NAMES = {"system"}  # the cluster's untainted add-on pool


class GpuPool(Model):
    """A GPU node pool, the same in every region: the primary runs `min_size` nodes, each
    standby keeps `warm_standby` nodes warm and scales to `min_size` on failover."""
    name: str = Field(pattern=_NAME)
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


class ObjectLock(Model):
    mode: Literal["GOVERNANCE", "COMPLIANCE"] = "GOVERNANCE"
    days: int = Field(ge=1, le=36500)


class ArtifactStore(Model):
    models_prefix: str = Field(default="models/", pattern=r"^[a-z0-9][a-z0-9/_-]*/$")
    replication_time_control: bool = True
    noncurrent_version_days: int = Field(default=90, ge=1)
    object_lock: ObjectLock | None = None


class RegistryDatabase(Model):
    engine_version: str = Field(default="16.6", pattern=r"^\d+\.\d+$")
    instance_class: str = Field(default="db.r7g.large", pattern=r"^db\.[a-z0-9]+\.[a-z0-9]+$")
    instances_primary: int = Field(default=2, ge=1, le=15)
    instances_standby: int = Field(default=1, ge=1, le=15)
    backup_retention_days: int = Field(default=14, ge=7, le=35)


class Serving(Model):
    dns_name: str = Field(pattern=r"^([a-z0-9-]+\.)+[a-z]{2,}$")
    hosted_zone_id: str = Field(pattern=r"^Z[A-Z0-9]{4,32}$")
    failover_health_path: str = Field(default="/v2/health/failover", pattern=r"^/\S*$")
    routing: Literal["failover", "weighted"] = "failover"
    record_ttl: int = Field(default=60, ge=5, le=3600)
    health_check_interval: Literal[10, 30] = 10
    health_check_failure_threshold: int = Field(default=3, ge=1, le=10)


class Targets(Model):
    rto: Seconds = Field(description="Recovery time objective, e.g. '15m'")
    rpo: Seconds = Field(description="Recovery point objective, e.g. '15m'")


class Acknowledgement(Model):
    rule: str = Field(pattern=r"^MLF\d{3}$")
    reason: str = Field(min_length=10)
    resource: str = Field(default="*", description="Construct path glob the exception covers")


class Aws(Model):
    account_id: str = Field(pattern=r"^\d{12}$")


_AWS_PRINCIPAL = r"arn:aws:iam::\d{12}:(role|user)/[\w+=,.@/-]+"
_GOOGLE_PRINCIPAL = r"(user|group|serviceAccount):[^\s@]+@[^\s@]+\.[a-z]{2,}"
_PRINCIPAL = Annotated[str, Field(pattern=rf"^({_AWS_PRINCIPAL}|{_GOOGLE_PRINCIPAL})$")]


def is_aws_principal(principal: str) -> bool:
    return principal.startswith("arn:aws:")


class Identities(Model):
    """Who may assume the training (writes candidate models) and review (approves champions)
    identities: IAM role or user ARNs for AWS regions, `user:`, `group:` or `serviceAccount:`
    members for Google Cloud regions (each cloud takes the principals of its own kind). Serving
    pods get their own identity (EKS Pod Identity, GKE Workload Identity)."""
    training_principals: list[_PRINCIPAL] = Field(min_length=1)
    review_principals: list[_PRINCIPAL] = Field(min_length=1)

    def of_cloud(self, kind: str, cloud: str) -> list[str]:
        principals = self.training_principals if kind == "training" else self.review_principals
        return [p for p in principals if is_aws_principal(p) == (cloud == "aws")]


class CloudSqlRegistry(Model):
    """The registry database in Google Cloud regions: Cloud SQL for PostgreSQL, Enterprise Plus."""
    database_version: Literal["POSTGRES_15", "POSTGRES_16", "POSTGRES_17"] = "POSTGRES_16"
    tier: str = Field(default="db-perf-optimized-N-2", pattern=r"^db-perf-optimized-N-\d+$")
    disk_size_gb: int = Field(default=100, ge=10, le=65536)


PrivateCidr = Annotated[str, AfterValidator(lambda v: _private_cidr(v, 32, "one or more addresses"))]


class RegistrySource(Model):
    """Where a Google Cloud standby replicates the registry from when the primary is on AWS:
    the Aurora cluster endpoint, reachable from the Google Cloud VPC (VPN or Interconnect)."""
    host: str = Field(pattern=r"^([a-z0-9-]+\.)+[a-z]{2,}$",
                      description="The Aurora cluster (writer) endpoint, known once the primary is deployed")
    port: int = Field(default=5432, ge=1, le=65535)
    replication_user: str = Field(default="mlfleet_replication", pattern=r"^[a-z_][a-z0-9_]{0,62}$")
    password_secret: str | None = Field(
        default=None, pattern=r"^[A-Za-z0-9_-]{1,255}$",
        description="Secret Manager secret with the replication user's password; default mlfleet-<env>-registry-replication")
    ca_certificate: str | None = Field(default=None, description="PEM of the Aurora CA bundle, to verify the source")


class Gcp(Model):
    """The Google Cloud project of the environment's Google Cloud regions."""
    project_id: str = Field(pattern=r"^[a-z][a-z0-9-]{4,28}[a-z0-9]$")
    project_number: str = Field(pattern=r"^[1-9]\d{5,18}$",
                                description="Names the Google service agents that use the project's keys")
    artifact_regions: list[str] | None = Field(
        default=None, min_length=2, max_length=2,
        description="The dual-region pair of the artifact bucket; default the two Google Cloud regions")
    existing_vpc: str | None = Field(
        default=None, pattern=r"^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$",
        description="Use this VPC (with private services access set up) instead of creating mlfleet-<env>")
    release_channel: Literal["RAPID", "REGULAR", "STABLE", "EXTENDED"] = "REGULAR"
    soft_delete_days: int = Field(default=30, ge=7, le=90,
                                  description="Days a deleted or overwritten artifact stays restorable in Cloud Storage")
    control_plane_networks: dict[str, PrivateCidr] = Field(
        default_factory=dict, description="Name → private CIDR allowed to reach the GKE control planes "
                                          "(the VPC's own subnets need no entry)")
    registry: CloudSqlRegistry = CloudSqlRegistry()
    registry_source: RegistrySource | None = Field(
        default=None, description="AWS primary only: replicate its Aurora registry into each Google Cloud standby")
    private_services_cidr: Annotated[str, AfterValidator(lambda v: _private_cidr(v, 24, "private services access"))] = \
        Field(default="10.250.0.0/16", description="The VPC range Cloud SQL private IPs (and DMS) come from")
    alert_emails: list[Annotated[str, Field(pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$")]] = Field(default_factory=list)
    notification_channels: list[Annotated[str, Field(pattern=r"^projects/[a-z][a-z0-9-]{4,28}[a-z0-9]/notificationChannels/\d+$")]] = Field(default_factory=list)
    storage_transfer_subject_id: str | None = Field(
        default=None, pattern=r"^\d{10,30}$",
        description="subjectId of the project's Storage Transfer service agent (googleServiceAccounts.get): "
                    "the identity that copies an AWS primary's artifacts into Google Cloud")

    @model_validator(mode="after")
    def _alerts_go_somewhere(self) -> Gcp:
        if not self.alert_emails and not self.notification_channels:
            raise ValueError("give alert_emails or notification_channels: an alert nobody receives protects nothing")
        return self


class Environment(Model):
    name: str = Field(pattern=_NAME)
    aws: Aws = Field(description="The AWS account: its regions, and the Route 53 zone that routes every region")
    gcp: Gcp | None = Field(default=None, description="The Google Cloud project, when a region has cloud: gcp")
    regions: list[Region] = Field(min_length=1)
    gpu_pools: list[GpuPool] = Field(min_length=1)
    artifact_store: ArtifactStore = ArtifactStore()
    registry_database: RegistryDatabase = RegistryDatabase()
    identities: Identities
    serving: Serving
    targets: Targets
    tags: dict[str, str] = Field(default_factory=dict)
    acknowledgements: list[Acknowledgement] = Field(default_factory=list)

    @field_validator("tags")
    @classmethod
    def _required_tags(cls, tags: dict[str, str]) -> dict[str, str]:
        missing = [t for t in ("owner", "cost-center") if not tags.get(t)]
        if missing:
            raise ValueError(f"required tags missing: {', '.join(missing)}")
        return tags

    @model_validator(mode="after")
    def _cross_field(self) -> Environment:
        _check_regions(self)
        _check_clouds(self)
        _check_pools(self)
        _check_rpo(self)
        return self

    # Derived views used by stacks, runbooks and the review.
    @property
    def primary(self) -> Region:
        return next(r for r in self.regions if r.role == "primary")

    @property
    def standbys(self) -> list[Region]:
        return [r for r in self.regions if r.role == "standby"]

    def regions_on(self, cloud: str) -> list[Region]:
        return [r for r in self.regions if r.cloud == cloud]

    @property
    def clouds(self) -> list[str]:
        return sorted({r.cloud for r in self.regions})

    @property
    def cross_cloud(self) -> bool:
        return len(self.clouds) > 1

    def gke_control_plane_cidr(self, region: GcpRegion) -> str:
        """The region's GKE control plane /28: given, or the n-th /28 of 172.16.0.0/24."""
        if region.network.control_plane_cidr:
            return region.network.control_plane_cidr
        index = [r.name for r in self.regions_on("gcp")].index(region.name)
        return str(ipaddress.ip_network(f"{GKE_CONTROL_PLANE_BASE.network_address + 16 * index}/28"))

    @property
    def gcp_network_name(self) -> str | None:
        """The Google Cloud VPC every region's subnet joins."""
        if self.gcp is None:
            return None
        return self.gcp.existing_vpc or naming.gcp_network(self.name)

    @property
    def gcp_artifact_regions(self) -> tuple[str, str] | None:
        """The dual-region pair of the Google Cloud artifact bucket, when there are GCP regions."""
        if not self.regions_on("gcp"):
            return None
        if self.gcp.artifact_regions:
            return tuple(self.gcp.artifact_regions)
        return tuple(r.name for r in self.regions_on("gcp"))[:2]

    def region(self, name: str) -> Region:
        for region in self.regions:
            if region.name == name:
                return region
        raise KeyError(f"environment {self.name} has no region {name}")

    def endpoint(self, region: Region) -> str:
        return region.endpoint or f"{region.name}.{self.serving.dns_name}"

    def acknowledged(self, rule: str) -> Acknowledgement | None:
        return next((a for a in self.acknowledgements if a.rule == rule), None)


class _FieldError(ValueError):
    """A cross-field error that knows which field it is about."""

    def __init__(self, loc: tuple, message: str):
        self.loc = loc
        super().__init__(message)


def _check_regions(env: Environment) -> None:
    seen: dict[str, int] = {}
    for i, region in enumerate(env.regions):
        if region.name in seen:
            raise _FieldError(("regions", i, "name"),
                              f"region {region.name} is listed twice (also regions.{seen[region.name]})")
        seen[region.name] = i
    primaries = [i for i, r in enumerate(env.regions) if r.role == "primary"]
    if len(primaries) != 1:
        raise _FieldError(("regions",), f"exactly one region must have role primary, found {len(primaries)}")
    for i, region in enumerate(env.regions):
        if region.role == "primary" and getattr(region, "multi_region_key_arn", None):
            raise _FieldError(("regions", i, "multi_region_key_arn"),
                              "only a standby replicates the primary's key; the primary creates it")
    # Every range of every region (VPCs, GKE subnets and their pod and Service ranges) is
    # distinct, so that regions and clouds can be peered or joined by VPN.
    networks = [(i, field, ipaddress.ip_network(cidr)) for i, r in enumerate(env.regions)
                for field, cidr in _region_ranges(env, r)]
    if env.gcp is not None:
        services = ipaddress.ip_network(env.gcp.private_services_cidr)
        for i, field, net in networks:
            if services.overlaps(net):
                raise _FieldError(("gcp", "private_services_cidr"),
                                  f"{services} overlaps {net} ({field}) of regions.{i} ({env.regions[i].name})")
    for a, (i, field_i, net_i) in enumerate(networks):
        for j, field_j, net_j in networks[a + 1:]:
            if net_i.overlaps(net_j):
                where = f"regions.{i} ({env.regions[i].name})" if i != j else "this region"
                raise _FieldError(("regions", j, "network", field_j),
                                  f"{net_j} overlaps {net_i} ({field_i}) of {where}; "
                                  "regional networks must not overlap so they can be peered")


def _region_ranges(env: Environment, region) -> list[tuple[str, str]]:
    network = region.network
    if region.cloud == "aws":
        return [("cidr", network.effective_cidr)]
    ranges = [("cidr" if network.existing is None else "existing", network.effective_cidr)]
    ranges += [(f, getattr(network, f)) for f in ("pods_cidr", "services_cidr") if getattr(network, f)]
    return ranges + [("control_plane_cidr", env.gke_control_plane_cidr(region))]


def _check_clouds(env: Environment) -> None:
    for cloud in env.clouds:
        for kind in ("training", "review"):
            if not env.identities.of_cloud(kind, cloud):
                raise _FieldError(("identities", f"{kind}_principals"),
                                  f"no {cloud.upper()} principal for the {kind} identity: "
                                  + ("an IAM role or user ARN" if cloud == "aws"
                                     else "a user:, group: or serviceAccount: member"))
    gcp_regions = [(i, r) for i, r in enumerate(env.regions) if r.cloud == "gcp"]
    if not gcp_regions:
        if env.gcp is not None:
            raise _FieldError(("gcp",), "no region has cloud: gcp; remove the gcp section or add a Google Cloud region")
        return
    if env.gcp is None:
        raise _FieldError(("gcp",), f"{', '.join(r.name for _, r in gcp_regions)} on Google Cloud: give "
                                    "gcp.project_id, gcp.project_number and where alerts go")
    if env.primary.cloud == "gcp" and env.regions_on("aws"):
        i = next(i for i, r in enumerate(env.regions) if r.cloud == "aws")
        raise _FieldError(("regions", i, "cloud"),
                          "an AWS standby of a Google Cloud primary is not supported: Aurora cannot follow "
                          "Cloud SQL, nor S3 replicate from Cloud Storage, without a migration service mlfleet "
                          "does not provision; make the AWS region the primary, or keep the standbys on Google Cloud")
    if env.gcp.registry_source is not None and env.primary.cloud != "aws":
        raise _FieldError(("gcp", "registry_source"),
                          "only a Google Cloud standby of an AWS primary replicates from Aurora; "
                          "a Google Cloud primary's standbys are Cloud SQL replicas")
    if env.primary.cloud == "aws" and env.gcp.storage_transfer_subject_id is None:
        raise _FieldError(("gcp", "storage_transfer_subject_id"),
                          "artifacts reach the Google Cloud standby through Storage Transfer Service, which "
                          "reads the AWS primary's bucket through an IAM role it assumes as the project's "
                          "transfer service agent: give that agent's subjectId (googleServiceAccounts.get)")
    _check_gcp_names(env)
    pair = env.gcp_artifact_regions
    if len(pair) != 2:
        raise _FieldError(("gcp", "artifact_regions"),
                          f"one Google Cloud region ({pair[0]}): name the dual-region pair of the artifact "
                          "bucket (that region and a second one on the same continent)")
    if pair[0] == pair[1] or pair[0].split("-")[0] != pair[1].split("-")[0]:
        raise _FieldError(("gcp", "artifact_regions"),
                          f"{pair[0]} and {pair[1]} are not a dual-region: two different regions of one "
                          "multi-region (us, europe, asia)")
    if pair[0].split("-")[0] not in GCS_MULTI_REGIONS:
        raise _FieldError(("gcp", "artifact_regions"),
                          f"{pair[0]} is not in a multi-region that holds configurable dual-regions (us, europe, asia)")
    if env.gcp.artifact_regions is not None:
        for i, region in gcp_regions:
            if region.role == "primary" and region.name not in pair:
                raise _FieldError(("gcp", "artifact_regions"),
                                  f"the primary {region.name} writes the artifacts: it must be one of the pair")


GCS_MULTI_REGIONS = {"us": "US", "europe": "EU", "asia": "ASIA"}
# Google Cloud's shortest id limits among the names mlfleet derives (stacks/naming.py).
_GKE_CLUSTER_NAME_MAX, _SERVICE_ACCOUNT_ID_MAX = 40, 30


def _check_gcp_names(env: Environment) -> None:
    too_long = [name for name, limit in
                [(f"{naming.gcp_identity_prefix(env.name)}-training", _SERVICE_ACCOUNT_ID_MAX)]
                + [(n, lim) for r in env.regions_on("gcp")
                   for n, lim in ((naming.gke_cluster_name(env.name, r.name), _GKE_CLUSTER_NAME_MAX),
                                  (naming.gke_node_service_account(env.name, r.name), _SERVICE_ACCOUNT_ID_MAX))]
                if len(name) > limit]
    if too_long:
        raise _FieldError(("name",), f"too long for Google Cloud ids derived from it ({', '.join(too_long)}); "
                                     f"GKE cluster names take {_GKE_CLUSTER_NAME_MAX} characters, service "
                                     f"account ids {_SERVICE_ACCOUNT_ID_MAX}: use a shorter environment name")


def _check_pools(env: Environment) -> None:
    names: set[str] = set()
    for p, pool in enumerate(env.gpu_pools):
        if pool.name in names:
            raise _FieldError(("gpu_pools", p, "name"), f"pool name {pool.name} is used twice")
        names.add(pool.name)
        for region_name, reservation in pool.reservations.items():
            region = next((r for r in env.regions if r.name == region_name), None)
            if region is None:
                raise _FieldError(("gpu_pools", p, "reservations", region_name),
                                  f"{region_name} is not one of this environment's regions")
            if reservation.cloud != region.cloud:
                raise _FieldError(("gpu_pools", p, "reservations", region_name),
                                  f"{region_name} is on {region.cloud.upper()}: "
                                  + ("name the Compute Engine reservation (name)" if region.cloud == "gcp"
                                     else "give capacity_reservation_id or resource_group_arn"))
        if env.regions_on("aws"):
            _check_aws_pool(env, p, pool)
        if env.regions_on("gcp"):
            _check_gcp_pool(env, p, pool)


def _check_aws_pool(env: Environment, p: int, pool: GpuPool) -> None:
    offerings = GpuOfferings.load()
    regions = env.regions_on("aws")
    if not pool.instance_types:
        raise _FieldError(("gpu_pools", p, "instance_types"),
                          f"give the pool's EC2 instance types for {', '.join(r.name for r in regions)}")
    for t, instance_type in enumerate(pool.instance_types):
        if not offerings.is_gpu_type(instance_type):
            raise _FieldError(("gpu_pools", p, "instance_types", t),
                              f"{instance_type} is not an NVIDIA GPU instance type")
        for region in regions:
            if not offerings.offered(instance_type, region.name):
                raise _FieldError(("gpu_pools", p, "instance_types", t),
                                  f"{instance_type} is not offered in {region.name} "
                                  f"(GPU offerings table of {offerings.generated_at})")
    aws_reservations = {n for n, r in pool.reservations.items() if r.cloud == "aws"}
    if pool.efa_interfaces and aws_reservations:
        raise _FieldError(("gpu_pools", p, "efa_interfaces"),
                          "EFA puts nodes in a cluster placement group, which cannot target "
                          "capacity reservations; drop EFA or the reservations")
    if pool.capacity_type == "CAPACITY_BLOCK":
        missing = sorted({r.name for r in regions} - aws_reservations)
        if missing:
            raise _FieldError(("gpu_pools", p, "reservations"),
                              f"a CAPACITY_BLOCK pool needs a reservation in every region; missing {', '.join(missing)}")


def gke_node_locations(region: GcpRegion, accelerator_type: str) -> tuple[str, ...]:
    """The zones a pool's GKE nodes use in `region`: those offering the accelerator (and chosen)."""
    offered = GcpAcceleratorOfferings.load().zones_offering(accelerator_type, region.name)
    return tuple(z for z in offered if region.zones is None or z in region.zones)


def _check_gcp_pool(env: Environment, p: int, pool: GpuPool) -> None:
    offerings = GcpAcceleratorOfferings.load()
    regions = env.regions_on("gcp")
    shape = pool.gcp
    if shape is None:
        raise _FieldError(("gpu_pools", p, "gcp"),
                          f"give the pool's machine and accelerator for {', '.join(r.name for r in regions)} "
                          "(gcp: {machine_type, accelerator_type, accelerator_count})")
    loc = ("gpu_pools", p, "gcp")
    if not offerings.is_accelerator(shape.accelerator_type):
        raise _FieldError((*loc, "accelerator_type"),
                          f"{shape.accelerator_type} is not an NVIDIA accelerator type of Google Cloud "
                          f"(accelerator table of {offerings.generated_at})")
    most = offerings.max_per_instance(shape.accelerator_type)
    if shape.accelerator_count > most:
        raise _FieldError((*loc, "accelerator_count"),
                          f"a VM takes at most {most} {shape.accelerator_type}")
    for region in regions:
        if not gke_node_locations(region, shape.accelerator_type):
            chosen = f" among the chosen zones {', '.join(region.zones)}" if region.zones else ""
            raise _FieldError((*loc, "accelerator_type"),
                              f"{shape.accelerator_type} is not offered in {region.name}{chosen} "
                              f"(accelerator table of {offerings.generated_at})")
    if pool.capacity_type == "CAPACITY_BLOCK":
        raise _FieldError(("gpu_pools", p, "capacity_type"),
                          "Google Cloud has no Capacity Blocks: use gcp.queued_provisioning (Dynamic Workload "
                          "Scheduler) or a reservation")
    if shape.mig_partition_size and shape.gpu_sharing and shape.gpu_sharing.strategy == "MPS":
        raise _FieldError((*loc, "gpu_sharing"), "MPS does not combine with MIG partitions; use TIME_SHARING")
    gcp_reserved = sorted(n for n, r in pool.reservations.items() if r.cloud == "gcp")
    if shape.queued_provisioning:
        if shape.reservation_affinity != "NONE" or gcp_reserved:
            raise _FieldError((*loc, "queued_provisioning"),
                              "queued provisioning is valid only with reservation affinity NONE: set "
                              "gcp.reservation_affinity: NONE" + (f" and drop the reservations of {', '.join(gcp_reserved)}"
                                                                  if gcp_reserved else ""))
        if pool.spot:
            raise _FieldError((*loc, "queued_provisioning"),
                              "queued provisioning obtains nodes through Dynamic Workload Scheduler, not spot")
        if pool.min_size or pool.warm_standby:
            raise _FieldError((*loc, "queued_provisioning"),
                              "a queued-provisioning pool scales from zero: nodes come only with "
                              "ProvisioningRequests (min_size 0, warm_standby 0)")
    if pool.spot and gcp_reserved:
        raise _FieldError(("gpu_pools", p, "reservations", gcp_reserved[0]),
                          "a reservation holds on-demand capacity, not spot")


def _check_rpo(env: Environment) -> None:
    if len(env.regions) == 1:
        return  # nothing is replicated; the review reports RPO as not applicable
    if env.regions_on("aws") and not env.artifact_store.replication_time_control:
        raise _FieldError(("artifact_store", "replication_time_control"),
                          "a multi-region environment needs Replication Time Control to state an RPO")
    deliverable, how = artifact_rpo(env)
    if env.targets.rpo < deliverable and env.acknowledged("MLF010") is None:
        raise _FieldError(("targets", "rpo"),
                          f"RPO target {env.targets.rpo}s is tighter than {how} "
                          f"can deliver ({deliverable}s) for model artifacts; raise it, or acknowledge "
                          "rule MLF010 in acknowledgements with a reason")
    if env.regions_on("aws") and env.targets.rpo < AURORA_MIN_GLOBAL_DB_RPO_SECONDS:
        raise _FieldError(("targets", "rpo"),
                          f"Aurora global databases cannot enforce an RPO under {AURORA_MIN_GLOBAL_DB_RPO_SECONDS}s")


def artifact_rpo(env: Environment) -> tuple[int, str]:
    """The worst-case artifact RPO of the environment's replication paths, and what bounds it."""
    paths = []
    if len(env.regions_on("aws")) > 1:
        paths.append((S3_RTC_RPO_SECONDS, "S3 Replication Time Control"))
    if len(env.regions_on("gcp")) >= 1 and env.primary.cloud == "aws":
        paths.append((STORAGE_TRANSFER_RPO_SECONDS, "Storage Transfer Service's hourly copy to Google Cloud"))
    elif len(env.regions_on("gcp")) > 1:
        paths.append((GCS_TURBO_RPO_SECONDS, "dual-region turbo replication"))
    return max(paths) if paths else (0, "nothing replicated")


def _format_loc(loc: tuple) -> str:
    path = ""
    for part in loc:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    return path or "(top level)"


def parse_environment(data: object, source: str) -> Environment:
    """Validate already-loaded data; raise ConfigError listing every problem with its path."""
    try:
        return Environment.model_validate(data)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            ctx_error = (err.get("ctx") or {}).get("error")
            if isinstance(ctx_error, _FieldError):
                problems.append((_format_loc(ctx_error.loc), str(ctx_error)))
                continue
            loc = tuple(p for p in err["loc"]
                        if not (isinstance(p, str) and (p.startswith("function-") or p in _REGION_TAGS)))
            message = err["msg"].removeprefix("Value error, ")
            if err["type"] == "extra_forbidden":
                message = "unknown key (a typo?)"
            problems.append((_format_loc(loc), message))
        raise ConfigError(source, problems) from None


def load_environment_file(path: Path) -> Environment:
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(str(path), [("(file)", exc.strerror or str(exc))]) from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "(file)"
        raise ConfigError(str(path), [(where, f"not valid YAML: {getattr(exc, 'problem', exc)}")]) from None
    if not isinstance(data, dict):
        raise ConfigError(str(path), [("(top level)", "expected a mapping of environment settings")])
    env = parse_environment(data, str(path))
    if path.parent == ENVIRONMENTS_DIR and path.stem != env.name:
        raise ConfigError(str(path), [("name", f"{env.name!r} must match the file name {path.stem!r}")])
    return env


def environment_names() -> list[str]:
    return sorted(p.stem for p in ENVIRONMENTS_DIR.glob("*.yaml"))


def load_environment(name: str) -> Environment:
    """Load a shipped environment by name (stacks/environments/<name>.yaml)."""
    path = ENVIRONMENTS_DIR / f"{name}.yaml"
    if not path.is_file():
        raise MlfleetError(f"no environment {name!r}; known: {', '.join(environment_names())} "
                           "(or give a file with --config)")
    return load_environment_file(path)


def json_schema() -> dict:
    schema = Environment.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "mlfleet environment"
    return schema
