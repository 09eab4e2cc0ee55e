"""Read-only blocks that decide whether a failover may start, and what it will pin: who writes the
registry now, whether replication lag is within the RPO budget, whether the champion's artifacts are
in the target's replica, and (planned) whether replication has drained."""
from __future__ import annotations

from dataclasses import dataclass, field

from mlfleet.dr import aws, gcp
from mlfleet.dr.blocks.registry import registry_writer
from mlfleet.dr.engine import Block, Check, Facts, Gate, RunContext
from mlfleet.dr.target import Target


@dataclass(frozen=True)
class Declared(Facts):
    source: str = ""
    """The registry's writer when the run began."""
    target: str = ""
    mode: str = ""


class Declare(Block):
    facts_type = Declared
    read_only = True

    def __init__(self, target: Target, to_region: str, *, planned: bool):
        super().__init__("declare", "declare the failover and find the registry writer", phase=None)
        self.target, self.to_region, self.planned = target, to_region, planned
        self._writer: str | None = None

    def precondition(self, ctx: RunContext) -> Check:
        self._writer = registry_writer(self.target, ctx, via=self.to_region)
        if self._writer == self.to_region:
            return Gate(False, f"{self.to_region} is already the writer of the registry; nothing to fail over")
        return Check.passed(f"registry writer is {self._writer}")

    def action(self, ctx: RunContext) -> Declared:
        if not ctx.dry_run:
            ctx.timeline.mark("declared")
        mode = "planned" if self.planned else "unplanned"
        source = self._writer or registry_writer(self.target, ctx, via=self.to_region)
        return Declared(summary=f"{mode} failover {source} -> {self.to_region}", source=source,
                        target=self.to_region, mode=mode)


@dataclass(frozen=True)
class GatePassed(Facts):
    replication_lag_s: float | None = None
    lag_age_s: float | None = None
    rpo_budget_s: int = 0
    allow_data_loss: bool = False
    accepted_loss_s: float | None = None
    """The data-loss bound accepted with --allow-data-loss (None: nothing accepted beyond the budget)."""


def replication_lag(target: Target, ctx: RunContext, region: str) -> aws.Lag:
    """The target's replica lag, read from its own cloud's monitoring."""
    if target.env.region(region).cloud == "gcp":
        return gcp.sql_replica_lag(target, ctx, region)
    return aws.replication_lag(target, ctx, region)


class ReplicationGate(Block):
    facts_type = GatePassed
    read_only = True

    def __init__(self, target: Target, to_region: str, *, planned: bool, allow_data_loss: bool):
        super().__init__("replication-gate", "check replication lag against the RPO budget")
        self.target, self.to_region, self.planned, self.allow_data_loss = target, to_region, planned, allow_data_loss
        self._lag: aws.Lag | None = None

    def precondition(self, ctx: RunContext) -> Check:
        rpo = self.target.env.targets.rpo
        source = ctx.need(Declared).source
        if self.planned:
            try:  # the source's own registry endpoint must answer: a switchover needs both sides
                if self.target.env.region(source).cloud == "gcp":
                    gcp.sql_instance(self.target, ctx, source)
                else:
                    aws.describe_global_cluster(self.target, ctx, source)
            except Exception as exc:  # noqa: BLE001 - any failure means the source cannot take part
                return Gate(False, f"a planned switchover needs {source}, which does not answer "
                                   f"({str(exc).splitlines()[0]}); use --unplanned")
            return Check.passed(f"{source} reachable; switchover replicates everything first (RPO 0)")
        lag = self._lag = replication_lag(self.target, ctx, self.to_region)
        if not lag.known:
            detail = f"replication lag of {self.to_region} {lag.detail}: data loss cannot be bounded"
        elif lag.seconds is not None and lag.seconds <= rpo:
            return Check.passed(f"replication lag {lag.detail}, within the RPO budget {rpo}s")
        else:
            detail = f"replication lag {lag.detail} exceeds the RPO budget {rpo}s"
        if self.allow_data_loss:
            return Check.passed(detail + "; accepted with --allow-data-loss")
        return Gate(False, detail + "; refused (pass --allow-data-loss to accept the loss)")

    def action(self, ctx: RunContext) -> GatePassed:
        rpo = self.target.env.targets.rpo
        lag = self._lag
        beyond = lag is None and not self.planned or (lag is not None and (not lag.known or (lag.seconds or 0) > rpo))
        accepted = self.allow_data_loss and beyond and not self.planned
        facts = GatePassed(
            summary=("RPO 0: switchover" if self.planned else
                     f"lag {lag.detail if lag else 'unknown'}" + ("; loss accepted with --allow-data-loss"
                                                                 if accepted else "")),
            replication_lag_s=0.0 if self.planned else (lag.seconds if lag else None),
            lag_age_s=lag.age_s if lag else None, rpo_budget_s=rpo, allow_data_loss=self.allow_data_loss,
            accepted_loss_s=(lag.seconds if lag and lag.known else None) if accepted else None)
        if accepted and not ctx.dry_run:
            ctx.audit(action="replication-gate.allow-data-loss", target=self.to_region, result="accepted",
                      detail={"lag": lag.detail if lag else "unknown", "rpo_budget_s": rpo})
        return facts


@dataclass(frozen=True)
class ChampionChosen(Facts):
    pins: dict = field(default_factory=dict)
    """Model → the version the target's runtime will serve."""
    held: dict = field(default_factory=dict)
    """Model → artifacts of its champion not yet in the target's replica."""
    notes: list = field(default_factory=list)


def choose_versions(target: Target, ctx: RunContext, region: str, source: str | None = None) -> aws.ChampionChoice:
    """What the region's replica can serve: one answer for readiness, the plan and the run
    (`source`: the writer, whose manifest names the current champion)."""
    if target.env.region(region).cloud == "gcp":
        return gcp.choose_versions(target, ctx, region)
    aws_source = source if source and target.env.region(source).cloud == "aws" else None
    return aws.choose_versions(target, ctx, region, source=aws_source)


class ChampionInReplica(Block):
    facts_type = ChampionChosen
    read_only = True

    def __init__(self, target: Target, to_region: str, *, planned: bool):
        super().__init__("champion-in-replica", f"check the champion's artifacts in {to_region}'s replica")
        self.target, self.to_region, self.planned = target, to_region, planned
        self._choice: aws.ChampionChoice | None = None

    def precondition(self, ctx: RunContext) -> Check:
        choice = self._choice = choose_versions(self.target, ctx, self.to_region, ctx.need(Declared).source)
        pins = ", ".join(f"{m} v{v}" for m, v in choice.pins.items())
        held = getattr(choice, "held", {}) or {}
        if held and self.planned:
            # A planned failover waits for replication (drain) instead of serving an older version.
            return Check.passed(f"{pins}; champion artifacts still replicating ({_keys(held)}): "
                                "the drain waits for them")
        return Check.passed(pins + ("; " + "; ".join(choice.notes) if choice.notes else ""))

    def action(self, ctx: RunContext) -> ChampionChosen:
        choice = self._choice or choose_versions(self.target, ctx, self.to_region, ctx.need(Declared).source)
        for note in choice.notes:
            ctx.progress(f"  note: {note}")
        return ChampionChosen(summary=", ".join(f"{m} v{v}" for m, v in choice.pins.items()), pins=dict(choice.pins),
                              held={m: list(k) for m, k in (getattr(choice, "held", {}) or {}).items()},
                              notes=list(choice.notes))


def _keys(held: dict) -> str:
    return "; ".join(f"{model}: {', '.join(keys)}" for model, keys in held.items())


class DrainReplication(Block):
    """Planned only: wait until the source's artifacts, the champion's above all, are in the target."""

    def __init__(self, target: Target, to_region: str, *, after: tuple[str, ...] | None = None):
        super().__init__("drain-replication", "wait until artifact replication has caught up", after=after)
        self.target, self.to_region = target, to_region
        self.verify_timeout_s = float(target.env.dr.drain_timeout)

    def preview(self, ctx: RunContext) -> str:
        held = (ctx.find(ChampionChosen) or ChampionChosen()).held
        return (f"wait up to {self.target.env.dr.drain_timeout}s (dr.drain_timeout) for "
                + (f"the champion's artifacts ({_keys(held)}) and " if held else "")
                + "every pending object to replicate")

    def action(self, ctx: RunContext) -> Facts:
        return Facts(summary="replication drained")

    def verify(self, ctx: RunContext, facts: Facts) -> bool | str:
        source = ctx.need(Declared).source
        held = (ctx.find(ChampionChosen) or ChampionChosen()).held
        keys = sorted({key for model_keys in held.values() for key in model_keys})
        if self.target.env.region(source).cloud == "aws" and self.target.env.region(self.to_region).cloud == "aws":
            waiting = aws.undelivered(self.target, ctx, source, self.to_region, keys) if keys else []
            pending = aws.pending_replication(self.target, ctx, source)
            if waiting or pending:
                named = waiting or pending
                return (f"{len(named)} object(s) still replicating {source} -> {self.to_region}, "
                        f"e.g. {', '.join(named[:3])}")
            return True
        if self.target.env.region(self.to_region).cloud == "gcp":
            pending = gcp.pending_replication(self.target, ctx, source) if self.target.env.region(
                source).cloud == "gcp" else []
            if pending:
                return f"{len(pending)} object(s) still replicating to {self.to_region}, e.g. {', '.join(pending[:3])}"
        still = choose_versions(self.target, ctx, self.to_region, source).held
        return True if not still else f"champion artifacts not yet in {self.to_region}: {_keys(still)}"
