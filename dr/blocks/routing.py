"""Routing: move the serving name's traffic to the target on Route 53's data plane (routing
controls), so a failover never needs a control-plane call into the lost region; then make the
records agree once Route 53's API answers (reconcile, which never blocks a recovery)."""
from __future__ import annotations

from dataclasses import dataclass

from mlfleet.dr import routing
from mlfleet.dr.engine import Block, Check, Facts, RunContext
from mlfleet.dr.target import Target
from mlfleet.stacks.environment import routing_control


@dataclass(frozen=True)
class Routed(Facts):
    region: str = ""
    previous: str = ""


class RouteTraffic(Block):
    facts_type = Routed
    verify_timeout_s = 120.0

    def __init__(self, target: Target, region: str, *, after: tuple[str, ...] | None = None):
        super().__init__("route", f"route {target.env.serving.dns_name} to {region}", after=after,
                         phase="routing_flipped")
        self.target, self.region = target, region

    def preview(self, ctx: RunContext) -> str:
        if routing.uses_routing_controls(self.target):
            return (f"routing controls (Route 53 ARC data plane): {self.region} ON, every other region OFF; "
                    "no record change")
        return f"{_records_change(self.target, self.region)} (a Route 53 control-plane change)"

    def action(self, ctx: RunContext) -> Routed:
        previous = routing.served_region(self.target, ctx) or ""
        summary = routing.route_to(self.target, ctx, self.region, avoid=_left(ctx))
        return Routed(summary=summary, region=self.region, previous=previous)

    def verify(self, ctx: RunContext, facts: Routed) -> bool | str:
        served = routing.served_region(self.target, ctx)
        return (True if served in routing.expected_answers(self.target, self.region) else
                f"{self.target.env.serving.dns_name} resolves to {served}")

    def still_holds(self, ctx: RunContext, facts: Routed) -> Check:
        served = routing.served_region(self.target, ctx)
        return (Check.passed() if served in routing.expected_answers(self.target, self.region) else
                Check.failed(f"{self.target.env.serving.dns_name} resolves to {served}, not {self.region} "
                             "as this run left it"))

    def compensate(self, ctx: RunContext, facts: Routed) -> None:
        if facts.previous and facts.previous != self.region:
            routing.route_to(self.target, ctx, facts.previous)


def _records_change(target: Target, region: str) -> str:
    if target.env.serving.routing == "failover":
        return f"failover records: PRIMARY -> {region}"
    weights = routing_control.routed_weights(target.env, region)
    return "weighted records: " + ", ".join(f"{r} {w}" for r, w in sorted(weights.items(), key=lambda kv: -kv[1]))


def _left(ctx: RunContext) -> tuple[str, ...]:
    """The region the run leaves: its ARC endpoint is tried last (it may be the one lost)."""
    from mlfleet.dr.blocks.checks import Declared

    declared = ctx.find(Declared)
    return (declared.source,) if declared and declared.source else ()


class ReconcileRecords(Block):
    """Best effort: a Route 53 API that does not answer leaves it pending, and the run goes on."""

    def __init__(self, target: Target, region: str, *, after: tuple[str, ...] | None = None):
        super().__init__("reconcile-records", "make the DNS records agree with where traffic goes", after=after)
        self.target, self.region = target, region

    def preview(self, ctx: RunContext) -> str:
        return (f"{_records_change(self.target, self.region)} and every routing control ON, once Route 53's API "
                "answers (never blocks the recovery)")

    def action(self, ctx: RunContext) -> Facts:
        return Facts(summary=routing.reconcile_records(self.target, ctx, self.region))
