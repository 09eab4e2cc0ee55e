"""How long recovering a region takes in the cloud, phase by phase, from the environment alone.

A failover (or failback) to a region T is a graph of phases, each with its projected cloud time
and the phases it waits for (`after`): detection, the read-only gates, an approval where the
environment asks for one, the drain of a planned run, then registry promotion, node and runtime
scale-up and the champion's pin side by side, routing as soon as T's warm pods can serve, the
resolvers' TTL, the first inference. The RTO a plan projects is its longest path
(`critical_path_s`), which the run reports put beside the sandbox's measured phases and which the
review's RTO budget is made of.

The figures are planning figures with their sources; nothing here is measured. The environment
core holds them so that the review and the runbooks (which may not import the review) read the
same ones.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mlfleet.stacks.environment.model import Environment

# Aurora global database managed failover: "typically completes in about a minute" (Amazon
# Aurora User Guide, "Using failover in an Amazon Aurora global database").
AURORA_GLOBAL_FAILOVER_SECONDS = 60
# A switchover (planned, no data loss) of the same global database: the same order of time.
AURORA_GLOBAL_SWITCHOVER_SECONDS = 60
# Promoting a Cloud SQL cross-region replica (instances.promoteReplica), or the DMS migration job
# that keeps a Cloud SQL instance in step with Aurora (migrationJobs.promote): Google states no
# duration, and the instance may restart as it becomes a primary. Planning figure: 5 minutes.
CLOUD_SQL_PROMOTION_SECONDS = 300
DMS_PROMOTION_SECONDS = 300
# A scale-up step of an EKS managed node group: EC2 GPU instance launch, NVIDIA AMI boot and
# kubelet join, and the serving image pull (several GB of CUDA layers). The managed node group
# launches the missing nodes of a step in parallel. Measured figures vary from 3 to 8 minutes;
# 5 minutes is the planning figure.
GPU_SCALE_STEP_SECONDS = 300
# The same step of a GKE node pool (cluster autoscaler): Compute Engine VM creation, COS boot,
# the NVIDIA driver GKE installs at boot, and the image pull. Not measured here: the EKS figure.
GKE_SCALE_STEP_SECONDS = 300
# Fetching the champion from the regional artifact bucket, verifying its checksum, loading
# it onto the GPU and passing the golden canary: planning figure for models up to ~10 GB.
MODEL_LOAD_SECONDS = 120

# Registry replica kind -> (seconds, what promotes it).
REGISTRY_PROMOTION = {
    "aurora": (AURORA_GLOBAL_FAILOVER_SECONDS, "Aurora global database managed failover"),
    "cloud_sql": (CLOUD_SQL_PROMOTION_SECONDS,
                  "Cloud SQL cross-region replica promotion (planning figure: Google states no duration)"),
    "dms": (DMS_PROMOTION_SECONDS, "promotion of the DMS migration job, which makes its Cloud SQL instance the "
                                   "primary (planning figure: Google states no duration)"),
}
# Cloud -> (seconds, what one scale-up step is).
SCALE_STEP = {"aws": (GPU_SCALE_STEP_SECONDS, "launch, join and image pull step"),
              "gcp": (GKE_SCALE_STEP_SECONDS, "GKE scale-up step (VM, NVIDIA driver, image pull)")}

PERSON = "waits for a person"


@dataclass(frozen=True)
class ProjectedPhase:
    phase: str
    seconds: int | None
    """Projected cloud time; None: not recoverable (no registry replica to promote)."""
    basis: str
    on_critical_path: bool = False
    """On the plan's longest path (set by `projected_phases`)."""
    after: tuple[str, ...] = ()
    counted: bool = True
    """False for what recovery does not wait for: a person's approval (its time is theirs, not the
    plan's), or scale-up that continues while warm pods serve. It counts 0 on the path."""


def registry_kind(env: Environment, to_region: str, from_region: str | None = None) -> str | None:
    """What holds the registry in `to_region` for a run from `from_region` (default: the
    environment's primary, or for the primary itself the standbys): aurora, cloud_sql, dms, or None
    where nothing replicates the registry there."""
    to = env.region(to_region)
    sources = ([env.region(from_region)] if from_region else
               [env.primary] if to.role == "standby" else env.standbys)
    kinds = {_kind(env, source.cloud, to.cloud) for source in sources}
    if None in kinds or not kinds:
        return None
    return max(kinds, key=lambda k: REGISTRY_PROMOTION[k][0] if k else 0)


def _kind(env: Environment, source_cloud: str, to_cloud: str) -> str | None:
    if source_cloud == "aws" and to_cloud == "aws":
        return "aurora"
    if source_cloud == "gcp" and to_cloud == "gcp":
        return "cloud_sql"
    if source_cloud == "aws" and to_cloud == "gcp" and env.gcp is not None and env.gcp.registry_source is not None:
        return "dms"
    return None  # Cloud SQL follows Aurora only through DMS; nothing brings the registry back to Aurora


def projected_phases(env: Environment, to_region: str, *, planned: bool, approval: bool = False,
                     from_region: str | None = None) -> list[ProjectedPhase]:
    """The plan of a failover (failback: a planned one to the primary) to `to_region`, phase by
    phase, with `on_critical_path` set. `approval`: the run waits for a person's approval."""
    serving = env.serving
    detection = 0 if planned else serving.health_check_interval * serving.health_check_failure_threshold
    phases = [
        ProjectedPhase("detection", detection,
                       "a planned run: no detection" if planned else
                       f"{serving.health_check_interval} s interval × {serving.health_check_failure_threshold} "
                       "failures of the health check"),
        ProjectedPhase("declare", 0, "read-only: the registry's writer", after=("detection",)),
        ProjectedPhase("replication-gate", 0, "read-only: replication lag against the RPO", after=("declare",)),
        ProjectedPhase("champion-in-replica", 0, "read-only: the champion's files in the target's replica",
                       after=("replication-gate",)),
    ]
    # The checks, the approval and the drain run in sequence: each needs what the one before found.
    gates: tuple[str, ...] = ("champion-in-replica",)
    if approval:
        phases.append(ProjectedPhase("approval", 0, PERSON, after=gates, counted=False))
        gates = ("approval",)
    if planned:
        phases.append(ProjectedPhase(
            "drain-replication", 0, f"bounded by dr.drain_timeout ({env.dr.drain_timeout} s): waits until "
                                    "artifact and registry replication to the target has drained",
            after=gates))
        gates = ("drain-replication",)
    warm = warm_serving(env, to_region)
    scale = _scale_nodes(env, to_region, warm, gates)
    phases += [
        _promote_registry(env, to_region, planned, from_region, gates),
        scale,
        ProjectedPhase("scale-runtime", 0,
                       f"warm pods serve while the runtime scales to {serving.replicas.on_failover} per pool"
                       if warm else "the runtime's pods start on the new nodes (the model load counts)",
                       after=gates),
        ProjectedPhase("pin-champion", 0, "a call to each runtime, which verifies the pinned champion",
                       after=gates),
    ]
    route_after: tuple[str, ...] = ("pin-champion",)
    if not warm:
        short = bool(scale.seconds)
        phases.append(ProjectedPhase(
            "model-load", MODEL_LOAD_SECONDS if short else 0,
            "fetch, verify and load the champion on new nodes" if short
            else "the nodes already run; the champion loads with the pods", after=("scale-nodes",)))
        route_after += ("model-load",)
    phases += [
        ProjectedPhase("route", 0, f"{serving.routing} routing flips (a routing control or a record change); the "
                                   "call itself counts 0", after=route_after),
        ProjectedPhase("dns-ttl", serving.record_ttl, "record_ttl: resolvers keep the old answer that long",
                       after=("route",)),
        ProjectedPhase("first-inference", 0, "one inference per model in the new region", after=("dns-ttl",)),
        ProjectedPhase("slo-check", 0, "consecutive inferences and failover health", after=("first-inference",)),
    ]
    critical = critical_phases(phases)
    return [replace(p, on_critical_path=p.phase in critical) for p in phases]


def warm_serving(env: Environment, to_region: str) -> bool:
    """Every serving pool of the region keeps a warm node with runtime pods: routing need not
    wait for scale-up (the primary runs its minimum)."""
    if env.region(to_region).role == "primary":
        return True
    return env.serving.replicas.standby >= 1 and all(p.warm_standby >= 1 for p in env.serving_pools)


def _scale_nodes(env: Environment, to_region: str, warm: bool, after: tuple[str, ...]) -> ProjectedPhase:
    region = env.region(to_region)
    short = [] if region.role == "primary" else [p for p in env.gpu_pools if p.warm_standby < p.min_size]
    step, kind = SCALE_STEP[region.cloud]
    if not short:
        basis = ("the primary runs its minimum" if region.role == "primary"
                 else "every pool already runs its minimum")
        return ProjectedPhase("scale-nodes", 0, basis, after=after)
    sizes = ", ".join(f"{to_region} {p.name} {p.warm_standby}→{p.min_size}" for p in short)
    return ProjectedPhase("scale-nodes", step,
                          f"{sizes}: one {step // 60}-minute {kind}"
                          + ("; warm pods serve while scale-up continues" if warm else ""),
                          after=after, counted=not warm)


def _promote_registry(env: Environment, to_region: str, planned: bool, from_region: str | None,
                      after: tuple[str, ...]) -> ProjectedPhase:
    kind = registry_kind(env, to_region, from_region)
    if kind is None:
        return ProjectedPhase("promote-registry", None,
                              f"no registry replica in {to_region} follows the writer: the registry cannot take "
                              "writes there", after=after)
    seconds, basis = REGISTRY_PROMOTION[kind]
    if planned and kind == "aurora":
        seconds, basis = AURORA_GLOBAL_SWITCHOVER_SECONDS, "Aurora global database switchover (no data loss)"
    return ProjectedPhase("promote-registry", seconds, basis, after=after)


def critical_path_s(phases: list[ProjectedPhase]) -> tuple[int | None, list[str]]:
    """The plan's longest path: its seconds (None when a phase is not recoverable: the plan cannot
    complete) and the phases on it that take time, in order. A phase not `counted` (a person's
    wait, scale-up that continues while warm pods serve) counts 0 and is not named."""
    finish = _earliest_finish(phases)
    if not finish:
        return 0, []
    by_name = {p.phase: p for p in phases}
    name = max(finish, key=lambda n: finish[n])  # the first of the longest, in written order
    total = finish[name]
    path = []
    while True:
        if _takes_time(by_name[name]):
            path.append(name)
        before = [d for d in by_name[name].after if finish[d] == finish[name] - _duration(by_name[name])]
        if not before:
            break
        name = before[0]
    unrecoverable = any(p.counted and p.seconds is None for p in phases)
    return (None if unrecoverable else total), path[::-1]


def critical_phases(phases: list[ProjectedPhase]) -> set[str]:
    """Every phase that takes time on a longest path (several paths may tie)."""
    finish = _earliest_finish(phases)
    total = max(finish.values(), default=0)
    latest = {p.phase: total for p in phases}
    for phase in reversed(_topological(phases)):
        for dependency in phase.after:
            latest[dependency] = min(latest[dependency], latest[phase.phase] - _duration(phase))
    return {p.phase for p in phases if _takes_time(p) and finish[p.phase] == latest[p.phase]}


def _takes_time(phase: ProjectedPhase) -> bool:
    return phase.counted and (phase.seconds is None or phase.seconds > 0)


def _duration(phase: ProjectedPhase) -> int:
    return (phase.seconds or 0) if phase.counted else 0


def _earliest_finish(phases: list[ProjectedPhase]) -> dict[str, int]:
    finish: dict[str, int] = {}
    for phase in _topological(phases):
        finish[phase.phase] = max((finish[d] for d in phase.after), default=0) + _duration(phase)
    return finish


def _topological(phases: list[ProjectedPhase]) -> list[ProjectedPhase]:
    """Dependencies first, otherwise in written order; unknown dependencies and cycles are errors."""
    names = {p.phase for p in phases}
    for phase in phases:
        unknown = [d for d in phase.after if d not in names]
        if unknown:
            raise ValueError(f"phase {phase.phase} comes after unknown phase(s) {', '.join(unknown)}")
    placed: list[ProjectedPhase] = []
    done: set[str] = set()
    remaining = list(phases)
    while remaining:
        ready = next((p for p in remaining if set(p.after) <= done), None)
        if ready is None:
            raise ValueError(f"phases {', '.join(p.phase for p in remaining)} depend on each other in a cycle")
        placed.append(ready)
        done.add(ready.phase)
        remaining.remove(ready)
    return placed
