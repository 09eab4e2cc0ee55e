"""The Google Cloud network: one global VPC, and in each region a subnet with secondary ranges
for GKE pods and services, Private Google Access, and Cloud NAT for egress without public IPs.

A VPC is global and survives the loss of any region, so it is made once (`GcpVpc`, in the
environment's global stack) together with the private services access range that Cloud SQL's
private IPs come from. Each regional stack makes its own subnet, router and NAT
(`GcpRegionalNetwork`) and names the VPC by its deterministic self link
(`network_self_link(project, name)`), never by a reference into another stack.

Existing networks are used as they are: skip `GcpVpc` and give the VPC's name, and set
`existing_subnet` to use a subnet (and its secondary ranges) made outside mlfleet.
"""
from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from cdktn import TerraformOutput, Token
from cdktn_provider_google.compute_firewall import ComputeFirewall, ComputeFirewallDeny, ComputeFirewallLogConfig
from cdktn_provider_google.compute_global_address import ComputeGlobalAddress
from cdktn_provider_google.compute_network import ComputeNetwork
from cdktn_provider_google.compute_router import ComputeRouter
from cdktn_provider_google.compute_router_nat import ComputeRouterNat, ComputeRouterNatLogConfig
from cdktn_provider_google.compute_subnetwork import (
    ComputeSubnetwork,
    ComputeSubnetworkLogConfig,
    ComputeSubnetworkSecondaryIpRange,
)
from cdktn_provider_google.service_networking_connection import ServiceNetworkingConnection
from constructs import Construct

from mlfleet.constructs.validation import GOOGLE_PROJECT_ID, GOOGLE_REGION, GOOGLE_RESOURCE_NAME, PropsError, require

PRIVATE_RANGES = tuple(ipaddress.IPv4Network(c) for c in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16",
                                                          "100.64.0.0/10"))
DENY_ALL_SUFFIX = "-deny-all-ingress"


def network_self_link(project: str, name: str) -> str:
    return f"projects/{project}/global/networks/{name}"


def subnetwork_self_link(project: str, region: str, name: str) -> str:
    return f"projects/{project}/regions/{region}/subnetworks/{name}"


@dataclass(frozen=True, kw_only=True)
class GcpVpcProps:
    project_id: str
    name: str
    private_services_cidr: str = "10.250.0.0/16"
    """Range Google allocates Cloud SQL private IPs from (private services access), in every region.
    Default: `10.250.0.0/16`."""


class GcpVpc(Construct):
    """A custom-mode, globally routed VPC with private services access and a logged deny-all ingress rule."""

    def __init__(self, scope: Construct, id_: str, props: GcpVpcProps):
        super().__init__(scope, id_)
        _require_project(self, props.project_id)
        _require_name(self, "name", props.name)
        require(len(props.name) <= 63 - len(DENY_ALL_SUFFIX), self, "name",
                f"{props.name!r} is too long: at most {63 - len(DENY_ALL_SUFFIX)} characters (the firewall rule "
                f"<name>{DENY_ALL_SUFFIX} must fit 63)")
        services = _require_private_cidr(self, "private_services_cidr", props.private_services_cidr)
        require(services.prefixlen <= 24, self, "private_services_cidr",
                "private services access needs at least a /24")

        self.network = ComputeNetwork(
            self, "network", project=props.project_id, name=props.name, auto_create_subnetworks=False,
            # GLOBAL: a regional subnet's routes reach every region, so a DR region's clients reach
            # a Cloud SQL instance promoted there without a network change.
            routing_mode="GLOBAL")
        # The implied deny-all-ingress rule, made explicit at the lowest priority: every allow rule (GKE's,
        # the load balancer's health checks) outranks it, and denied connections are logged.
        self.deny_all_ingress = ComputeFirewall(
            self, "deny-all-ingress", project=props.project_id, name=f"{props.name}{DENY_ALL_SUFFIX}",
            network=self.network.id, direction="INGRESS", priority=65535, source_ranges=["0.0.0.0/0"],
            deny=[ComputeFirewallDeny(protocol="all")],
            log_config=ComputeFirewallLogConfig(metadata="INCLUDE_ALL_METADATA"),
            description="Deny all ingress that no higher-priority rule allows (explicit, logged)")
        address = ComputeGlobalAddress(
            self, "private-services-range", project=props.project_id, name=f"{props.name}-private-services",
            purpose="VPC_PEERING", address_type="INTERNAL", address=str(services.network_address),
            prefix_length=services.prefixlen, network=self.network.id)
        self.private_services_connection = ServiceNetworkingConnection(
            self, "private-services", network=self.network.id, service="servicenetworking.googleapis.com",
            reserved_peering_ranges=[address.name])
        self.name = props.name
        self.self_link = network_self_link(props.project_id, props.name)


@dataclass(frozen=True, kw_only=True)
class GcpRegionalNetworkProps:
    project_id: str
    region: str
    network_name: str
    """The VPC (made by `GcpVpc` in the global stack, or an existing one)."""
    subnet_name: str
    subnet_cidr: str | None = None
    """Primary range of the nodes. Required unless `existing_subnet`. Default: none."""
    pods_cidr: str | None = None
    """Secondary range for pod IPs. Required unless `existing_subnet`. Default: none."""
    services_cidr: str | None = None
    """Secondary range for Service IPs. Required unless `existing_subnet`. Default: none."""
    pods_range_name: str | None = None
    """Name of the pods secondary range; default `<subnet_name>-pods`."""
    services_range_name: str | None = None
    """Name of the services secondary range; default `<subnet_name>-services`."""
    existing_subnet: bool = False
    """Use a subnet made outside mlfleet (it needs Private Google Access and the two ranges). Default: off."""
    nat: bool = True
    """Cloud NAT for egress of nodes without public IPs (image pulls from outside Google). Default: on."""
    flow_logs: bool = True
    """VPC flow logs on the created subnet; default on."""
    proxy_subnet_cidr: str | None = None
    """A proxy-only subnet (`REGIONAL_MANAGED_PROXY`, `ACTIVE`) for regional Envoy-based load balancers such as
    the serving gateway's regional external Application Load Balancer; a /26 or larger (/23 recommended).
    Default: none."""


class GcpRegionalNetwork(Construct):
    """One region's subnet (with pod and service ranges, Private Google Access), router and NAT."""

    def __init__(self, scope: Construct, id_: str, props: GcpRegionalNetworkProps):
        super().__init__(scope, id_)
        _validate_regional(self, props)
        project, region = props.project_id, props.region
        self.network_self_link = network_self_link(project, props.network_name)
        self.pods_range_name = props.pods_range_name or f"{props.subnet_name}-pods"
        self.services_range_name = props.services_range_name or f"{props.subnet_name}-services"
        self.region = region

        self.subnetwork = None
        if props.existing_subnet:
            self.subnetwork_self_link = subnetwork_self_link(project, region, props.subnet_name)
        else:
            self.subnetwork = ComputeSubnetwork(
                self, "subnet", project=project, region=region, name=props.subnet_name,
                network=self.network_self_link, ip_cidr_range=props.subnet_cidr, private_ip_google_access=True,
                secondary_ip_range=[
                    ComputeSubnetworkSecondaryIpRange(range_name=self.pods_range_name, ip_cidr_range=props.pods_cidr),
                    ComputeSubnetworkSecondaryIpRange(range_name=self.services_range_name,
                                                      ip_cidr_range=props.services_cidr)],
                log_config=ComputeSubnetworkLogConfig(aggregation_interval="INTERVAL_5_SEC", flow_sampling=0.5,
                                                      metadata="INCLUDE_ALL_METADATA")
                if props.flow_logs else None)
            self.subnetwork_self_link = self.subnetwork.id

        self.proxy_subnetwork = None
        if props.proxy_subnet_cidr is not None:
            # One ACTIVE proxy-only subnet per region and VPC: every regional load balancer's proxies share it.
            self.proxy_subnetwork = ComputeSubnetwork(
                self, "proxy-subnet", project=project, region=region, name=f"{props.subnet_name}-proxy",
                network=self.network_self_link, ip_cidr_range=props.proxy_subnet_cidr,
                purpose="REGIONAL_MANAGED_PROXY", role="ACTIVE")
        self.proxy_subnet_cidr = props.proxy_subnet_cidr
        """What the runtime's NetworkPolicy admits from the load balancer's proxies (None without the subnet)."""

        self.router = self.nat = None
        if props.nat:
            self.router = ComputeRouter(self, "router", project=project, region=region,
                                        name=f"{props.subnet_name}-router", network=self.network_self_link)
            self.nat = ComputeRouterNat(
                self, "nat", project=project, region=region, name=f"{props.subnet_name}-nat",
                router=self.router.name, nat_ip_allocate_option="AUTO_ONLY",
                source_subnetwork_ip_ranges_to_nat="ALL_SUBNETWORKS_ALL_IP_RANGES",
                log_config=ComputeRouterNatLogConfig(enable=True, filter="ERRORS_ONLY"))

        TerraformOutput(self, "gcp_subnetwork", value=self.subnetwork_self_link,
                        description="The region's subnetwork").override_logical_id("gcp_subnetwork")


def _require_project(scope: Construct, project_id: str) -> None:
    require(bool(GOOGLE_PROJECT_ID.fullmatch(project_id)), scope, "project_id",
            f"{project_id!r} is not a Google Cloud project id")


def _require_name(scope: Construct, prop: str, value: str) -> None:
    require(bool(GOOGLE_RESOURCE_NAME.fullmatch(value)), scope, prop,
            f"{value!r}: lowercase letters, digits and '-', starting with a letter, at most 63 characters")


def _require_private_cidr(scope: Construct, prop: str, value: str | None) -> ipaddress.IPv4Network:
    require(value is not None, scope, prop, "required when mlfleet makes the subnet")
    try:
        network = ipaddress.IPv4Network(value)
    except ValueError as error:
        raise PropsError(scope, prop, f"{value!r} is not an IPv4 CIDR block ({error})") from None
    require(any(network.subnet_of(r) for r in PRIVATE_RANGES), scope, prop,
            f"{value} is not in a private range (10/8, 172.16/12, 192.168/16, 100.64/10)")
    return network


def _validate_regional(scope: Construct, p: GcpRegionalNetworkProps) -> None:
    _require_project(scope, p.project_id)
    require(bool(GOOGLE_REGION.fullmatch(p.region)), scope, "region", f"{p.region!r} is not a Google Cloud region")
    if not Token.is_unresolved(p.network_name):
        _require_name(scope, "network_name", p.network_name)
    _require_name(scope, "subnet_name", p.subnet_name)
    for prop in ("pods_range_name", "services_range_name"):
        if getattr(p, prop) is not None:
            _require_name(scope, prop, getattr(p, prop))
    proxy = None
    if p.proxy_subnet_cidr is not None:
        proxy = _require_private_cidr(scope, "proxy_subnet_cidr", p.proxy_subnet_cidr)
        require(proxy.prefixlen <= 26, scope, "proxy_subnet_cidr", "a proxy-only subnet is at least a /26")
    if p.existing_subnet:
        for prop in ("subnet_cidr", "pods_cidr", "services_cidr"):
            require(getattr(p, prop) is None, scope, prop,
                    "an existing subnet keeps its own ranges: leave it unset (name the ranges instead)")
        return
    ranges = {prop: _require_private_cidr(scope, prop, getattr(p, prop))
              for prop in ("subnet_cidr", "pods_cidr", "services_cidr")}
    require(ranges["subnet_cidr"].prefixlen <= 29, scope, "subnet_cidr", "a subnet is at most a /29")
    require(ranges["pods_cidr"].prefixlen <= 24, scope, "pods_cidr",
            "GKE gives each node a /24 of pod IPs by default: use at least a /24 (a /14 to /20 is typical)")
    if proxy is not None:
        ranges["proxy_subnet_cidr"] = proxy
    names = list(ranges)
    for i, first in enumerate(names):
        for second in names[i + 1:]:
            require(not ranges[first].overlaps(ranges[second]), scope, second,
                    f"{ranges[second]} overlaps {first} ({ranges[first]})")
    pods = p.pods_range_name or f"{p.subnet_name}-pods"
    require((p.services_range_name or f"{p.subnet_name}-services") != pods, scope, "services_range_name",
            f"must differ from the pods range name ({pods!r})")
