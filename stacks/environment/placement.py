"""Where an environment's Google Cloud parts are placed: GPU node zones, control-plane ranges,
and the multi-region an artifact bucket's dual-region belongs to."""
from __future__ import annotations

import ipaddress
from typing import TYPE_CHECKING

from mlfleet.stacks.environment.gcp_offerings import GcpAcceleratorOfferings

if TYPE_CHECKING:
    from mlfleet.stacks.environment.model import Environment
    from mlfleet.stacks.environment.regions import GcpRegion

# Each GKE control plane takes a private /28 of its own in the VPC.
GKE_CONTROL_PLANE_BASE = ipaddress.ip_network("172.16.0.0/28")
# The multi-regions that hold configurable dual-regions, by the first part of their region names.
GCS_MULTI_REGIONS = {"us": "US", "europe": "EU", "asia": "ASIA"}


def gke_node_locations(region: GcpRegion, accelerator_type: str) -> tuple[str, ...]:
    """The zones a pool's GKE nodes use in `region`: those offering the accelerator (and chosen)."""
    offered = GcpAcceleratorOfferings.load().zones_offering(accelerator_type, region.name)
    return tuple(z for z in offered if region.zones is None or z in region.zones)


def gke_control_plane_cidr(env: Environment, region: GcpRegion) -> str:
    """The region's GKE control plane /28: given, or the n-th /28 of 172.16.0.0/24."""
    if region.network.control_plane_cidr:
        return region.network.control_plane_cidr
    index = [r.name for r in env.regions_on("gcp")].index(region.name)
    return str(ipaddress.ip_network(f"{GKE_CONTROL_PLANE_BASE.network_address + 16 * index}/28"))
