"""Route 53 Application Recovery Controller (ARC) routing controls: when an environment moves
traffic with them, and the names the global stack gives them, so that the runbooks and the
sandbox find what the stack created (principle 1: names from the environment alone).

A routing control is an on/off switch per region, stored in a cluster of five regional
endpoints (ARC's data plane). Each region's Route 53 records are guarded by a calculated health
check that needs both the region's endpoint check and its routing-control check: turning
controls is a data-plane call that works while Route 53's control plane (record changes, served
from us-east-1) does not answer.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mlfleet.stacks.environment.model import Environment

ARC_CONTROL_PLANE_REGION = "us-west-2"
"""Where ARC's configuration API (clusters, control panels, routing controls, safety rules) is
served, whatever the environment's regions: read before a fault, never needed during one."""

CALCULATED_CHILDREN = 2
"""A record's calculated check is healthy when both children are: the region's endpoint check
and its routing control."""


WEIGHT = 100
"""The weight the global stack gives each region's record under weighted routing (every region
takes an equal share); a failover moves it all to the target (weights 0 elsewhere) and a failback
restores it."""


def routed_weights(env: Environment, to_region: str) -> dict[str, int]:
    """Under weighted routing, each region's record weight once traffic is routed to `to_region`:
    back at the primary (a failback) every region's deployed `WEIGHT`; elsewhere that region's
    alone, the others 0 (Route 53 answers a 0-weight record only when every other is unhealthy)."""
    home = to_region == env.primary.name
    return {r.name: WEIGHT if home or r.name == to_region else 0 for r in env.regions}


def enabled(env: Environment) -> bool:
    """Whether the environment's traffic moves by routing controls: two or more regions (failover
    or weighted records) with `serving.routing_control` on. Otherwise a failover changes the
    records (Route 53's control plane)."""
    return env.serving.routing_control and len(env.regions) >= 2


def cluster_name(env: str) -> str:
    return f"mlfleet-{env}"


def control_panel_name(env: str) -> str:
    return f"mlfleet-{env}"


def routing_control_name(env: str, region: str) -> str:
    return f"mlfleet-{env}-{region}"


def safety_rule_name(env: str) -> str:
    return f"mlfleet-{env}-at-least-one-region"
