"""GPU capacity and the runtime's replicas: EKS managed node groups scaled to their failover
size, a GKE pool's autoscaler minimum raised, and the runtime's Deployments scaled. Scaling runs
beside the registry's promotion; routing does not wait for it where warm pods already serve."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from mlfleet.dr import aws, gcp, kube
from mlfleet.dr.engine import Block, Check, Facts, RunContext
from mlfleet.dr.target import Target

SOURCE = "<source>"
"""A region to act in that is known only once the run has begun: the registry's writer the
declare block found (the region a failback leaves)."""


def _source(ctx: RunContext) -> str:
    from mlfleet.dr.blocks.checks import Declared

    return ctx.need(Declared).source


@dataclass(frozen=True)
class Scaled(Facts):
    region: str = ""
    sizes: dict = field(default_factory=dict)
    """Pool (or serving pool) → the size this block set."""
    changed: list = field(default_factory=list)


class EksNodeGroupScale(Block):
    facts_type = Scaled
    verify_timeout_s = 900.0

    def __init__(self, target: Target, region: str, sizes: dict[str, int], *, name: str, summary: str,
                 after: tuple[str, ...] | None = None, undo_sizes: dict[str, int] | None = None):
        super().__init__(name, summary, after=after)
        self.target, self.region, self.sizes, self.undo_sizes = target, region, sizes, undo_sizes

    def preview(self, ctx: RunContext) -> str:
        return f"EKS node groups in {self.region} -> {self.sizes}"

    def action(self, ctx: RunContext) -> Scaled:
        changed = aws.scale_node_groups(self.target, ctx, self.region, self.sizes)
        return Scaled(summary=", ".join(changed) or "already at size", region=self.region, sizes=dict(self.sizes),
                      changed=changed)

    def verify(self, ctx: RunContext, facts: Scaled) -> bool | str:
        return aws.node_groups_at(self.target, ctx, self.region, self.sizes)

    def still_holds(self, ctx: RunContext, facts: Scaled) -> Check:
        sizes = aws.node_group_sizes(self.target, ctx, self.region)
        off = [f"{pool} wants {sizes[pool]['desiredSize']}, not {want}" for pool, want in self.sizes.items()
               if sizes[pool]["desiredSize"] != want]
        return Check.passed() if not off else Check.failed(f"{self.region}'s node groups moved: {'; '.join(off)}")

    def compensate(self, ctx: RunContext, facts: Scaled) -> None:
        if self.undo_sizes is not None:
            aws.scale_node_groups(self.target, ctx, self.region, self.undo_sizes)

    @property
    def compensable(self) -> bool:
        return self.undo_sizes is not None


class GkePoolMinimum(Block):
    """A GKE pool under the autoscaler keeps what its limits say: the failover raises the floor."""

    facts_type = Scaled
    verify_timeout_s = 900.0

    def __init__(self, target: Target, region: str, minimums: dict[str, int], *, name: str, summary: str,
                 after: tuple[str, ...] | None = None, undo_minimums: dict[str, int] | None = None):
        super().__init__(name, summary, after=after)
        self.target, self.region, self.sizes, self.undo_sizes = target, region, minimums, undo_minimums

    def preview(self, ctx: RunContext) -> str:
        return f"GKE node pool minimums in {self.region} -> {self.sizes}"

    def action(self, ctx: RunContext) -> Scaled:
        # To exactly these floors: raised for a failover, lowered when a region returns to standby.
        changed = [*gcp.lower_pool_minimums(self.target, ctx, self.region, self.sizes),
                   *gcp.raise_pool_minimums(self.target, ctx, self.region, self.sizes)]
        changed = [c for c in changed if "->" in c]
        return Scaled(summary=", ".join(changed) or "already at size", region=self.region, sizes=dict(self.sizes),
                      changed=changed)

    def verify(self, ctx: RunContext, facts: Scaled) -> bool | str:
        return gcp.pools_at(self.target, ctx, self.region, self.sizes)

    def still_holds(self, ctx: RunContext, facts: Scaled) -> Check:
        sizes = gcp.pool_sizes(self.target, ctx, self.region)
        off = [f"{pool} keeps {sizes[pool]['minSize']}, not {want}" for pool, want in self.sizes.items()
               if sizes[pool]["minSize"] != want]
        return Check.passed() if not off else Check.failed(f"{self.region}'s node pools moved: {'; '.join(off)}")

    def compensate(self, ctx: RunContext, facts: Scaled) -> None:
        if self.undo_sizes is not None:
            gcp.lower_pool_minimums(self.target, ctx, self.region, self.undo_sizes)

    @property
    def compensable(self) -> bool:
        return self.undo_sizes is not None


def node_scale(target: Target, region: str, sizes: dict[str, int], *, name: str, summary: str,
               after: tuple[str, ...] | None = None, undo: dict[str, int] | None = None) -> Block:
    """The node-scaling block for the region's cloud."""
    kind = GkePoolMinimum if target.env.region(region).cloud == "gcp" else EksNodeGroupScale
    return kind(target, region, sizes, name=name, summary=summary, after=after, **(
        {"undo_minimums": undo} if kind is GkePoolMinimum else {"undo_sizes": undo}))


class RuntimeScale(Block):
    """Every serving pool's runtime Deployment to `replicas` (the same Kubernetes API on EKS and GKE).
    `region` may be SOURCE, and `replicas` a function of the region then."""

    facts_type = Scaled
    verify_timeout_s = 600.0

    def __init__(self, target: Target, region: str, replicas: int | Callable[[str], int], *, name: str, summary: str,
                 after: tuple[str, ...] | None = None, undo_replicas: int | None = None):
        super().__init__(name, summary, after=after)
        self.target, self._region, self._replicas, self.undo_replicas = target, region, replicas, undo_replicas

    def _where(self, ctx: RunContext) -> tuple[str, int]:
        region = _source(ctx) if self._region == SOURCE else self._region
        return region, self._replicas(region) if callable(self._replicas) else self._replicas

    def preview(self, ctx: RunContext) -> str:
        region, replicas = self._where(ctx)
        return f"runtime Deployments in {region} -> {replicas} replicas"

    def action(self, ctx: RunContext) -> Scaled:
        region, replicas = self._where(ctx)
        changed = kube.scale_runtime(self.target, ctx, region, replicas)
        return Scaled(summary=", ".join(changed) or f"already at {replicas} replicas", region=region,
                      sizes={"replicas": replicas}, changed=changed)

    def verify(self, ctx: RunContext, facts: Scaled) -> bool | str:
        return kube.runtime_at(self.target, ctx, facts.region, facts.sizes["replicas"])

    def still_holds(self, ctx: RunContext, facts: Scaled) -> Check:
        found = kube.runtime_replicas(self.target, ctx, facts.region)
        want = facts.sizes["replicas"]
        off = [f"{pool} wants {r.desired}, not {want}" for pool, r in found.items() if r.desired != want]
        return Check.passed() if not off else Check.failed(f"{facts.region}'s runtime moved: {'; '.join(off)}")

    def compensate(self, ctx: RunContext, facts: Scaled) -> None:
        if self.undo_replicas is not None:
            kube.scale_runtime(self.target, ctx, facts.region, self.undo_replicas)

    @property
    def compensable(self) -> bool:
        return self.undo_replicas is not None


class SourceNodeScale(Block):
    """The GPU nodes of the region the run leaves (known once it has begun), on that region's cloud."""

    facts_type = Scaled

    def __init__(self, target: Target, sizes: dict[str, int], *, name: str, summary: str,
                 after: tuple[str, ...] | None = None):
        super().__init__(name, summary, after=after)
        self.target, self.sizes = target, sizes

    def _inner(self, ctx: RunContext) -> Block:
        return node_scale(self.target, _source(ctx), self.sizes, name=self.name, summary=self.summary)

    def preview(self, ctx: RunContext) -> str:
        return self._inner(ctx).preview(ctx)

    def action(self, ctx: RunContext) -> Facts:
        return self._inner(ctx).action(ctx)

    def still_holds(self, ctx: RunContext, facts: Scaled) -> Check:
        return self._inner(ctx).still_holds(ctx, facts)
