"""The environment model: one YAML file per environment, validated once, read by everything.

Stacks, runbooks, the runtime's deployment and the review all take an `Environment`. Invalid
input stops here, before anything is synthesized, with the field's path and the reason.
"""
from __future__ import annotations

import ipaddress
import re
from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import (AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field,
                      ValidationError, field_validator, model_validator)

from mlfleet.stacks.errors import ConfigError, MlfleetError
from mlfleet.stacks.offerings import GpuOfferings

ENVIRONMENTS_DIR = Path(__file__).resolve().parent / "environments"

# S3 Replication Time Control replicates 99.99 % of objects within 15 minutes: the best RPO
# the artifact store can promise. Aurora global databases replicate in about a second, and
# `rds.global_db_rpo` cannot be set below 20 seconds.
S3_RTC_RPO_SECONDS = 15 * 60
AURORA_MIN_GLOBAL_DB_RPO_SECONDS = 20

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


Seconds = Annotated[int, BeforeValidator(_seconds), Field(gt=0)]


def _cidr(value: str) -> str:
    try:
        network = ipaddress.ip_network(value, strict=True)
    except ValueError as exc:
        raise ValueError(f"{value!r} is not a valid network CIDR ({exc})") from None
    if not network.is_private:
        raise ValueError(f"{value} is not a private range")
    if not 16 <= network.prefixlen <= 20:
        raise ValueError(f"{value}: use a /16 to /20, room for three AZs of GPU nodes and pods")
    return str(network)


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


class Region(Model):
    name: str = Field(pattern=r"^[a-z]{2}(-gov)?-[a-z]+-\d$", description="AWS region, e.g. us-east-1")
    role: Literal["primary", "standby"]
    network: Network
    endpoint: str | None = Field(
        default=None, description="Regional serving hostname; default <region>.<serving.dns_name>")
    multi_region_key_arn: str | None = Field(
        default=None, pattern=r"^arn:aws:kms:[a-z0-9-]+:\d{12}:key/mrk-[0-9a-f]{32}$",
        description="Standby only: the primary's multi-Region artifact key, known after it is deployed")


class Reservation(Model):
    """Where a pool's nodes launch into reserved capacity: one capacity reservation (or
    Capacity Block), or a resource group of reservations when there are several."""
    capacity_reservation_id: str | None = Field(default=None, pattern=r"^cr-[0-9a-f]{8,17}$")
    resource_group_arn: str | None = Field(
        default=None, pattern=r"^arn:aws[a-z-]*:resource-groups:[a-z0-9-]+:\d{12}:group/[A-Za-z0-9_.-]+$")

    @model_validator(mode="after")
    def _exactly_one(self) -> Reservation:
        if (self.capacity_reservation_id is None) == (self.resource_group_arn is None):
            raise ValueError("give capacity_reservation_id or resource_group_arn (one of them)")
        return self


_RESERVED_POOL_NAMES = {"system"}  # the cluster's untainted add-on pool


class GpuPool(Model):
    """A GPU node pool, the same in every region: the primary runs `min_size` nodes, each
    standby keeps `warm_standby` nodes warm and scales to `min_size` on failover."""
    name: str = Field(pattern=_NAME)
    instance_types: list[str] = Field(min_length=1)
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


_PRINCIPAL = Annotated[str, Field(pattern=r"^arn:aws:iam::\d{12}:(role|user)/[\w+=,.@/-]+$")]


class Identities(Model):
    """Who may assume the training (writes candidate models) and review (approves champions)
    roles. Serving pods get their own role through EKS Pod Identity."""
    training_principals: list[_PRINCIPAL] = Field(min_length=1)
    review_principals: list[_PRINCIPAL] = Field(min_length=1)


class Environment(Model):
    name: str = Field(pattern=_NAME)
    aws: Aws
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
        if region.role == "primary" and region.multi_region_key_arn:
            raise _FieldError(("regions", i, "multi_region_key_arn"),
                              "only a standby replicates the primary's key; the primary creates it")
    networks = [(i, ipaddress.ip_network(r.network.effective_cidr)) for i, r in enumerate(env.regions)]
    for a, (i, net_i) in enumerate(networks):
        for j, net_j in networks[a + 1:]:
            if net_i.overlaps(net_j):
                raise _FieldError(("regions", j, "network", "cidr"),
                                  f"{net_j} overlaps {net_i} of regions.{i} ({env.regions[i].name}); "
                                  "regional VPCs must not overlap so they can be peered")


def _check_pools(env: Environment) -> None:
    offerings = GpuOfferings.load()
    names: set[str] = set()
    region_names = {r.name for r in env.regions}
    for p, pool in enumerate(env.gpu_pools):
        if pool.name in names:
            raise _FieldError(("gpu_pools", p, "name"), f"pool name {pool.name} is used twice")
        names.add(pool.name)
        for t, instance_type in enumerate(pool.instance_types):
            if not offerings.is_gpu_type(instance_type):
                raise _FieldError(("gpu_pools", p, "instance_types", t),
                                  f"{instance_type} is not an NVIDIA GPU instance type")
            for region in env.regions:
                if not offerings.offered(instance_type, region.name):
                    raise _FieldError(("gpu_pools", p, "instance_types", t),
                                      f"{instance_type} is not offered in {region.name} "
                                      f"(GPU offerings table of {offerings.generated_at})")
        for region_name in pool.reservations:
            if region_name not in region_names:
                raise _FieldError(("gpu_pools", p, "reservations", region_name),
                                  f"{region_name} is not one of this environment's regions")
        if pool.efa_interfaces and pool.reservations:
            raise _FieldError(("gpu_pools", p, "efa_interfaces"),
                              "EFA puts nodes in a cluster placement group, which cannot target "
                              "capacity reservations; drop EFA or the reservations")
        if pool.capacity_type == "CAPACITY_BLOCK":
            missing = sorted(region_names - set(pool.reservations))
            if missing:
                raise _FieldError(("gpu_pools", p, "reservations"),
                                  f"a CAPACITY_BLOCK pool needs a reservation in every region; missing {', '.join(missing)}")


def _check_rpo(env: Environment) -> None:
    if len(env.regions) == 1:
        return  # nothing is replicated; the review reports RPO as not applicable
    deliverable = S3_RTC_RPO_SECONDS if env.artifact_store.replication_time_control else None
    if deliverable is None:
        raise _FieldError(("artifact_store", "replication_time_control"),
                          "a multi-region environment needs Replication Time Control to state an RPO")
    if env.targets.rpo < deliverable and env.acknowledged("MLF010") is None:
        raise _FieldError(("targets", "rpo"),
                          f"RPO target {env.targets.rpo}s is tighter than S3 Replication Time Control "
                          f"can deliver ({deliverable}s) for model artifacts; raise it, or acknowledge "
                          "rule MLF010 in acknowledgements with a reason")
    if env.targets.rpo < AURORA_MIN_GLOBAL_DB_RPO_SECONDS:
        raise _FieldError(("targets", "rpo"),
                          f"Aurora global databases cannot enforce an RPO under {AURORA_MIN_GLOBAL_DB_RPO_SECONDS}s")


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
            loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and p.startswith("function-")))
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
