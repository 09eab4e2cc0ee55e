"""Regions of an environment, on AWS or Google Cloud, and the network each one runs in."""
from __future__ import annotations

import re
from typing import Annotated, Literal, Union

from pydantic import AfterValidator, Discriminator, Field, Tag, field_validator, model_validator

from mlfleet.constructs.service_limits import CLOUDWATCH_LOG_RETENTION_DAYS
from mlfleet.constructs.validation import GOOGLE_REGION, GOOGLE_RESOURCE_NAME, REGION, SUBNET_ID, VPC_ID
from mlfleet.stacks.environment.fields import (
    Cidr,
    ControlPlaneCidr,
    Model,
    NodeCidr,
    PodsCidr,
    ProxyCidr,
    ServicesCidr,
)


class ExistingNetwork(Model):
    vpc_id: str = Field(pattern=VPC_ID.pattern)
    private_subnet_ids: list[Annotated[str, Field(pattern=SUBNET_ID.pattern)]] = Field(min_length=3)
    cidr: Cidr


class FlowLogs(Model):
    """VPC flow logs of a created VPC, to a CloudWatch log group encrypted with a customer key. On by
    default: turning them off is an explicit exception, with its reason."""
    enabled: bool = Field(default=True, description="Record the VPC's traffic; default true")
    traffic_type: Literal["ALL", "ACCEPT", "REJECT"] = Field(
        default="ALL", description="ALL, ACCEPT or REJECT traffic; default ALL")
    retention_days: int = Field(
        default=365, description="Days CloudWatch keeps the flow logs; default 365",
        json_schema_extra={"enum": list(CLOUDWATCH_LOG_RETENTION_DAYS)})
    reason: str | None = Field(default=None, min_length=10,
                               description="Why flow logs are off (required with enabled: false)")

    @field_validator("retention_days")
    @classmethod
    def _retention(cls, days: int) -> int:
        if days not in CLOUDWATCH_LOG_RETENTION_DAYS:
            raise ValueError(f"{days} is not a CloudWatch Logs retention "
                             f"({', '.join(map(str, CLOUDWATCH_LOG_RETENTION_DAYS))})")
        return days

    @model_validator(mode="after")
    def _off_needs_a_reason(self) -> FlowLogs:
        if not self.enabled and self.reason is None:
            raise ValueError("flow logs are off: give the reason (an exception to secure defaults is explicit)")
        if self.enabled and self.reason is not None:
            raise ValueError("reason explains flow logs turned off; with enabled: true, leave it out")
        return self


class Network(Model):
    """Create a VPC from `cidr` across `availability_zones` AZs, or import `existing` ids."""
    cidr: Cidr | None = None
    availability_zones: int = Field(default=3, ge=3, le=6)
    nat_gateways: Literal["per_az", "single"] = "per_az"
    existing: ExistingNetwork | None = None
    flow_logs: FlowLogs = Field(
        default=FlowLogs(), description="Flow logs of the created VPC (an existing network keeps its own); "
                                        "default on, all traffic, kept 365 days")

    @model_validator(mode="after")
    def _one_source(self) -> Network:
        if (self.cidr is None) == (self.existing is None):
            raise ValueError("give either cidr (a VPC is created) or existing (ids are imported)")
        if self.existing is not None and "flow_logs" in self.model_fields_set:
            raise ValueError("flow_logs applies to a VPC mlfleet creates: an existing network keeps its own")
        return self

    @property
    def effective_cidr(self) -> str:
        if self.cidr is not None:
            return self.cidr
        assert self.existing is not None  # _one_source gives one of the two
        return self.existing.cidr


def _aws_region_name(name: str) -> str:
    if not REGION.fullmatch(name):
        hint = "; a Google Cloud region needs cloud: gcp" if GOOGLE_REGION.fullmatch(name) else ""
        raise ValueError(f"{name!r} is not an AWS region name (like us-east-1){hint}")
    return name


def _gcp_region_name(name: str) -> str:
    if not GOOGLE_REGION.fullmatch(name):
        hint = "; an AWS region needs no cloud key (or cloud: aws)" if REGION.fullmatch(name) else ""
        raise ValueError(f"{name!r} is not a Google Cloud region name (like us-central1){hint}")
    return name


class AwsRegion(Model):
    name: Annotated[str, AfterValidator(_aws_region_name)] = Field(
        description="AWS region, e.g. us-east-1", json_schema_extra={"pattern": REGION.pattern})
    cloud: Literal["aws"] = "aws"
    role: Literal["primary", "standby"]
    network: Network
    endpoint: str | None = Field(
        default=None, description="Regional serving hostname; default <region>.<serving.dns_name>")
    multi_region_key_arn: str | None = Field(
        default=None, pattern=r"^arn:aws:kms:[a-z0-9-]+:\d{12}:key/mrk-[0-9a-f]{32}$",
        description="Standby only: the primary's multi-Region artifact key, known after it is deployed")


class ExistingGcpSubnet(Model):
    """A subnet made outside mlfleet, in the environment's VPC, with GKE's two secondary ranges."""
    subnet_name: str = Field(pattern=GOOGLE_RESOURCE_NAME.pattern)
    pods_range_name: str = Field(pattern=GOOGLE_RESOURCE_NAME.pattern)
    services_range_name: str = Field(pattern=GOOGLE_RESOURCE_NAME.pattern)
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
    proxy_cidr: ProxyCidr = Field(
        description="The region's proxy-only subnet (a /23 is Google's advice), which the serving endpoint's "
                    "regional load balancer sends from: created with the subnet, or the one that exists "
                    "beside an existing subnet; the runtime's NetworkPolicy admits it")
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
        if self.cidr is not None:
            return self.cidr
        assert self.existing is not None  # _one_source gives the three CIDRs or existing
        return self.existing.cidr


class GcpRegion(Model):
    name: Annotated[str, AfterValidator(_gcp_region_name)] = Field(
        description="Google Cloud region, e.g. us-central1", json_schema_extra={"pattern": GOOGLE_REGION.pattern})
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
    return {"aws": "aws-region", "gcp": "gcp-region"}.get(cloud) if isinstance(cloud, str) else None


Region = Annotated[Union[Annotated[AwsRegion, Tag("aws-region")], Annotated[GcpRegion, Tag("gcp-region")]],
                   Discriminator(_cloud_of, custom_error_type="cloud",
                                 custom_error_message="cloud must be aws (the default) or gcp")]
REGION_TAGS = ("aws-region", "gcp-region")
"""The union's tags, which pydantic puts in error paths; error messages leave them out."""
