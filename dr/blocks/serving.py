"""The serving runtime's blocks: pin the chosen versions in the target's runtime (verified by its
failover health), infer through the routed name, and hold the SLO."""
from __future__ import annotations

import time
from dataclasses import dataclass, field

from mlfleet.dr import kube_portforward, routing, serving
from mlfleet.dr.blocks.checks import ChampionChosen, choose_versions
from mlfleet.dr.engine import Block, Check, Facts, RunContext, StepFailed
from mlfleet.dr.target import Target

SLO_PROBES = 10


def failover_healthy(target: Target, region: str) -> tuple[bool, str]:
    return serving.failover_health(target.serving_urls[region], target.env.serving.failover_health_path)


@dataclass(frozen=True)
class Pinned(Facts):
    region: str = ""
    pins: dict = field(default_factory=dict)
    pinned_pods: dict = field(default_factory=dict)
    skipped_pods: list = field(default_factory=list)


class PinChampion(Block):
    facts_type = Pinned
    verify_timeout_s = 120.0

    def __init__(self, target: Target, region: str, *, planned: bool, after: tuple[str, ...] | None = None,
                 name: str = "pin-champion"):
        super().__init__(name, f"pin the chosen versions in {region}'s runtime", after=after)
        self.target, self.region, self.planned = target, region, planned

    def precondition(self, ctx: RunContext) -> Check:
        # The target's runtime must be able to serve: a faulted target is refused by the plan, not
        # found out by the run.
        ok, detail = failover_healthy(self.target, self.region)
        return Check.passed(f"{self.region}'s runtime answers failover health") if ok else Check.failed(
            f"{self.region}'s runtime fails failover health: {detail}")

    def preview(self, ctx: RunContext) -> str:
        pins = (ctx.find(ChampionChosen) or ChampionChosen()).pins
        return (f"pin {pins} in {self.region}"
                + (" on every ready runtime pod (port-forward)" if self.target.pin_through_port_forward else ""))

    def _pins(self, ctx: RunContext) -> dict[str, str]:
        if self.name != "pin-champion":  # the pods that came later get what the first pin chose
            first = ctx.find(Pinned)
            if first is not None:
                return dict(first.pins)
        chosen = ctx.need(ChampionChosen)
        if chosen.held and self.planned:  # the drain waited for the champion: choose again
            from mlfleet.dr.blocks.checks import Declared

            return dict(choose_versions(self.target, ctx, self.region, ctx.need(Declared).source).pins)
        return dict(chosen.pins)

    def action(self, ctx: RunContext) -> Pinned:
        pins = self._pins(ctx)
        if self.target.pin_through_port_forward:  # a cluster: management only on each pod's loopback
            pinned = {model: kube_portforward.pin_region(self.target, ctx, self.region, model, version)
                      for model, version in pins.items()}
            skipped = sorted({pod for result in pinned.values() for pod in result.skipped})
            return Pinned(summary="pinned " + ", ".join(r.summary(m, pins[m]) for m, r in pinned.items()),
                          region=self.region, pins=pins, skipped_pods=skipped,
                          pinned_pods={m: r.pinned + r.unchanged for m, r in pinned.items()})
        url = self.target.serving_urls[self.region]
        for model, version in pins.items():
            if ctx.call(f"read pin of {model}", serving.current_pin, url, model) != version:
                ctx.call(f"pin {model} v{version}", serving.pin, url, model, version, self.target.admin_token)
        return Pinned(summary="pinned " + ", ".join(f"{m} v{v}" for m, v in pins.items()), region=self.region,
                      pins=pins)

    def verify(self, ctx: RunContext, facts: Pinned) -> bool | str:
        ok, detail = failover_healthy(self.target, self.region)
        return True if ok else detail

    def still_holds(self, ctx: RunContext, facts: Pinned) -> Check:
        if self.target.pin_through_port_forward:
            return Check.passed()  # re-read per pod by the pin itself, which is idempotent
        url = self.target.serving_urls[self.region]
        off = [f"{m} pinned to {serving.current_pin(url, m)}, not v{v}" for m, v in facts.pins.items()
               if serving.current_pin(url, m) != v]
        return Check.passed() if not off else Check.failed(f"{self.region}'s runtime moved: {'; '.join(off)}")


@dataclass(frozen=True)
class Inferred(Facts):
    region: str = ""
    inference: dict = field(default_factory=dict)


class FirstInference(Block):
    """One inference per model through the routed name, as a client would resolve it (data plane)."""

    facts_type = Inferred
    verify_timeout_s = 60.0

    def __init__(self, target: Target, region: str, *, after: tuple[str, ...] | None = None):
        super().__init__("first-inference", f"infer through {target.env.serving.dns_name}", after=after)
        self.target, self.region = target, region

    def preview(self, ctx: RunContext) -> str:
        return "one inference per model (read only)"

    def action(self, ctx: RunContext) -> Inferred:
        served = routing.served_region(self.target, ctx)
        if served is None or served not in routing.expected_answers(self.target, self.region):
            raise StepFailed(f"{self.target.env.serving.dns_name} resolves to {served}, not {self.region}")
        url = self.target.serving_urls[served]  # where a client lands (weighted back home: any region)
        pins = ctx.need(Pinned).pins
        results, deadline = {}, time.monotonic() + self.verify_timeout_s
        for model in pins:
            while True:
                try:
                    results[model] = ctx.call(f"infer {model} in {served}", serving.infer, url, model)
                    break
                except Exception:
                    if time.monotonic() > deadline:
                        raise
                    ctx.clock.sleep(ctx.poll_interval_s)
        ctx.timeline.mark("first_inference")
        return Inferred(summary=f"{', '.join(results)} answered in {served}", region=served,
                        inference=results)


class SloCheck(Block):
    def __init__(self, target: Target, region: str, *, after: tuple[str, ...] | None = None):
        super().__init__("slo-check", "check serving holds", after=after, phase="slo_recovered")
        self.target, self.region = target, region

    def preview(self, ctx: RunContext) -> str:
        return "inferences (read only)"

    def action(self, ctx: RunContext) -> Facts:
        url = self.target.serving_urls[self.region]
        for _ in range(SLO_PROBES):
            for model in ctx.need(Pinned).pins:
                ctx.call(f"infer {model}", serving.infer, url, model)
        ok, detail = failover_healthy(self.target, self.region)
        if not ok:
            raise StepFailed(f"{self.region} not failover-healthy after the flip: {detail}")
        return Facts(summary=f"{SLO_PROBES} consecutive inferences per model succeeded")
