"""The recovery budget a configuration buys, against its targets.

RTO budget of losing the primary = health-check detection (interval × failure threshold) +
DNS TTL (resolvers keep the old answer that long) + registry promotion (Aurora global
failover) + standby scale-up (zero when every pool's warm size already is its minimum) +
model load on the new nodes. The parts are added, not overlapped: a budget, not a forecast.

RPO: model artifacts replicate with S3 Replication Time Control (15 minutes for 99.99 % of
objects); the registry's Aurora global database bounds its lag with `rds.global_db_rpo`,
read here from the synthesized parameter group. The environment's RPO is the worse of the two.
"""
from __future__ import annotations

from dataclasses import dataclass

from mlfleet.stacks.config import AURORA_MIN_GLOBAL_DB_RPO_SECONDS, S3_RTC_RPO_SECONDS, Environment
from mlfleet.stacks.review.inventory import pool_capacity

# Aurora global database managed failover: "typically completes in about a minute" (Amazon
# Aurora User Guide, "Using failover in an Amazon Aurora global database").
AURORA_GLOBAL_FAILOVER_SECONDS = 60
# A scale-up step of an EKS managed node group: EC2 GPU instance launch, NVIDIA AMI boot and
# kubelet join, and the serving image pull (several GB of CUDA layers). The managed node group
# launches the missing nodes of a step in parallel. Measured figures vary from 3 to 8 minutes;
# 5 minutes is the planning figure.
GPU_SCALE_STEP_SECONDS = 300
# Fetching the champion from the regional artifact bucket, verifying its checksum, loading
# it onto the GPU and passing the golden canary: planning figure for models up to ~10 GB.
MODEL_LOAD_SECONDS = 120


@dataclass(frozen=True)
class BudgetPart:
    name: str
    seconds: int
    basis: str


@dataclass(frozen=True)
class RtoBudget:
    target: int
    parts: list[BudgetPart]     # empty: no standby region to fail over to

    @property
    def total(self) -> int:
        return sum(p.seconds for p in self.parts)

    @property
    def verdict(self) -> str:
        if not self.parts:
            return "n/a"
        return "pass" if self.total <= self.target else "fail"


@dataclass(frozen=True)
class RpoPart:
    data: str
    seconds: int | None
    basis: str


@dataclass(frozen=True)
class RpoBudget:
    target: int
    parts: list[RpoPart]
    acknowledgement: str | None    # the reason of an MLF010 acknowledgement, if any

    @property
    def deliverable(self) -> int | None:
        known = [p.seconds for p in self.parts if p.seconds is not None]
        if not self.parts:
            return None
        return None if len(known) < len(self.parts) else max(known)

    @property
    def verdict(self) -> str:
        if not self.parts:
            return "n/a"
        if self.deliverable is None or self.deliverable > self.target:
            return "fail (acknowledged)" if self.acknowledgement else "fail"
        return "pass"


def rto_budget(env: Environment, stacks: dict[str, dict]) -> RtoBudget:
    if not env.standbys:
        return RtoBudget(env.targets.rto, [])
    serving = env.serving
    standby_pools = [p for name, tf in stacks.items() for p in pool_capacity(name, tf)
                     if p.region in {r.name for r in env.standbys}]
    short = [p for p in standby_pools if p.nodes_warm < p.nodes_min]
    scale_basis = (f"{', '.join(sorted({f'{p.region} {p.pool} {p.nodes_warm}→{p.nodes_min}' for p in short}))}: "
                   f"one {GPU_SCALE_STEP_SECONDS // 60}-minute launch, join and image pull step"
                   if short else "every standby pool already runs its minimum")
    return RtoBudget(env.targets.rto, [
        BudgetPart("health-check detection", serving.health_check_interval * serving.health_check_failure_threshold,
                   f"{serving.health_check_interval} s interval × {serving.health_check_failure_threshold} failures"),
        BudgetPart("DNS TTL", serving.record_ttl, "record_ttl of the failover records"),
        BudgetPart("registry promotion", AURORA_GLOBAL_FAILOVER_SECONDS, "Aurora global database managed failover"),
        BudgetPart("standby scale-up", GPU_SCALE_STEP_SECONDS if short else 0, scale_basis),
        BudgetPart("model load", MODEL_LOAD_SECONDS if short else 0,
                   "fetch, verify and load the champion on new nodes" if short
                   else "warm nodes already serve the champion"),
    ])


def rpo_budget(env: Environment, stacks: dict[str, dict]) -> RpoBudget:
    ack = env.acknowledged("MLF010")
    if not env.standbys:
        return RpoBudget(env.targets.rpo, [], None)
    rules = [rule for tf in stacks.values()
             for body in tf.get("resource", {}).get("aws_s3_bucket_replication_configuration", {}).values()
             for rule in _blocks(body.get("rule"))]
    timed = bool(rules) and all(_enabled(rule, "replication_time") for rule in rules)
    artifacts = RpoPart("model artifacts (S3)", S3_RTC_RPO_SECONDS if timed else None,
                        "Replication Time Control, 15 minutes for 99.99 % of objects" if timed
                        else "replication without Replication Time Control has no time bound")
    settings = [int(p["value"]) for tf in stacks.values()
                for group in tf.get("resource", {}).get("aws_rds_cluster_parameter_group", {}).values()
                for p in _blocks(group.get("parameter")) if p.get("name") == "rds.global_db_rpo"]
    registry = RpoPart("model registry (Aurora)",
                       max(max(settings), AURORA_MIN_GLOBAL_DB_RPO_SECONDS) if settings else None,
                       f"rds.global_db_rpo = {max(settings)} s on the secondaries" if settings
                       else "no rds.global_db_rpo set: Aurora does not bound the lag")
    return RpoBudget(env.targets.rpo, [artifacts, registry], ack.reason if ack else None)


def _blocks(value) -> list:
    return value if isinstance(value, list) else ([value] if value else [])


def _enabled(rule: dict, block: str) -> bool:
    destination = (_blocks(rule.get("destination")) or [{}])[0]
    return any(b.get("status") == "Enabled" for b in _blocks(destination.get(block)))
