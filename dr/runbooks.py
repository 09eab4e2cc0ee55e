"""The runbooks, composed from typed blocks (`mlfleet.dr.blocks`) for the clouds of the source and
the target: failover (a planned switchover or an unplanned failover) and failback.

Failover to region T from the current writer S:

    declare → replication gate (RPO budget) → champion in T's replica → [approval] → [planned: drain]
      ├─ scale T's GPU nodes (EKS node groups / GKE autoscaler minimums) ─────────────┐
      ├─ scale T's runtime Deployments                                                │
      ├─ promote T's registry (Aurora / Cloud SQL / DMS job) → [harden (DMS)]         │
      └─ pin the chosen versions in T's runtime → route traffic to T (data plane)     │
            ├─ reconcile the DNS records (best effort)                                │
            └─ first inference through the name → SLO check ──────────────────────────┴→ [failback: restore S]

The branches run side by side. Routing waits only for the pin (the target's warm pods pass failover
health) where every serving pool of T keeps warm nodes; where one does not, it also waits for the
nodes. This is the plan the review's RTO budget is computed from (`recovery_time.failover_phases`).
"""
from __future__ import annotations

from typing import Callable

from mlfleet.dr import approvals
from mlfleet.dr.blocks.approval import ManualApproval
from mlfleet.dr.blocks.capacity import SOURCE, RuntimeScale, SourceNodeScale, node_scale
from mlfleet.dr.blocks.checks import ChampionInReplica, Declare, DrainReplication, ReplicationGate
from mlfleet.dr.blocks.registry import AuroraPromotion, CloudSqlPromotion, HardenPromotedInstance
from mlfleet.dr.blocks.routing import ReconcileRecords, RouteTraffic
from mlfleet.dr.blocks.serving import FirstInference, PinChampion, SloCheck, failover_healthy
from mlfleet.dr.engine import Block, Runbook, RunContext
from mlfleet.dr.target import Target
from mlfleet.stacks.environment.recovery_time import projected_phases


def failover(target: Target, to_region: str, *, planned: bool, allow_data_loss: bool = False,
             restore_previous: bool = False, name: str | None = None, drill: bool = False) -> Runbook:
    """The blocks of `projected_phases`' plan for this move, each after the blocks its phase waits
    for (phases that are time, not work — detection, the resolvers' TTL, a model load — pass their
    dependencies on), then reconciling the records and, for a failback, restoring the region left."""
    env = target.env
    target.region(to_region)
    name = name or "failover"
    mode = "failback" if name == "failback" else f"{'planned' if planned else 'unplanned'}-failover"
    approval = approvals.approval_required(env, mode, drill=drill)
    plan = projected_phases(env, to_region, planned=planned, approval=approval)

    failover_sizes = {p.name: p.min_size for p in env.gpu_pools}
    standby_sizes = {p.name: p.warm_standby for p in env.gpu_pools}
    serve = _replicas(env, to_region, serving=True)
    factories: dict[str, Callable[[tuple[str, ...]], list[Block]]] = {
        "declare": lambda after: [Declare(target, to_region, planned=planned)],
        "replication-gate": lambda after: [ReplicationGate(target, to_region, planned=planned,
                                                           allow_data_loss=allow_data_loss)],
        "champion-in-replica": lambda after: [ChampionInReplica(target, to_region, planned=planned)],
        "approval": lambda after: [ManualApproval(target, mode, after=after)],
        "drain-replication": lambda after: [DrainReplication(target, to_region, after=after)],
        "promote-registry": lambda after: _registry_blocks(target, to_region, planned=planned, after=after),
        "scale-nodes": lambda after: [node_scale(target, to_region, failover_sizes, name="scale-nodes", after=after,
                                                 undo=standby_sizes,
                                                 summary=f"scale {to_region}'s GPU nodes to failover size")],
        "scale-runtime": lambda after: [RuntimeScale(target, to_region, serve, name="scale-runtime", after=after,
                                                     undo_replicas=_replicas(env, to_region, serving=False),
                                                     summary=f"scale {to_region}'s runtime to {serve} pods per "
                                                             "serving pool")],
        "pin-champion": lambda after: [PinChampion(target, to_region, planned=planned, after=after)],
        "route": lambda after: [RouteTraffic(target, to_region, after=after)],
        "first-inference": lambda after: [FirstInference(target, to_region, after=after)],
        "slo-check": lambda after: [SloCheck(target, to_region, after=after)],
    }
    blocks: list[Block] = []
    through: dict[str, tuple[str, ...]] = {}  # phase -> the blocks that stand for it as a dependency
    for phase in plan:
        after = tuple(dict.fromkeys(b for d in phase.after for b in through[d]))
        made = factories[phase.phase](after) if phase.phase in factories else []
        if made:
            made[0].after = after  # the phase's dependencies (any further blocks follow the first)
            blocks += made
        through[phase.phase] = (made[0].name,) if made else after
    blocks.append(ReconcileRecords(target, to_region, after=("route",)))
    # Routing went ahead on the warm pods; the pods the scale-up brought get the same pin.
    blocks.append(PinChampion(target, to_region, planned=planned, after=("scale-runtime", "pin-champion"),
                              name="pin-scaled-runtime"))
    if restore_previous:
        blocks += _restore_source(target)

    def target_unhealthy(ctx: RunContext) -> str | None:
        # As Route 53 judges an endpoint: failing only after FailureThreshold reads in a row, so
        # that one slow answer does not abort a failover the target can take.
        for attempt in range(env.serving.health_check_failure_threshold):
            if attempt:
                ctx.clock.sleep(ctx.poll_interval_s)
            ok, detail = failover_healthy(target, to_region)
            if ok:
                return None
        return (f"{to_region}'s runtime fails failover health ({env.serving.health_check_failure_threshold} "
                f"reads in a row): {detail}")

    key = f"{name}:{env.name}:{to_region}:{'planned' if planned else 'unplanned'}"
    return Runbook(name, blocks, key=key, stop_conditions=[("target-failover-health", target_unhealthy)],
                   lock_region=to_region)


def _registry_blocks(target: Target, to_region: str, *, planned: bool, after: tuple[str, ...]) -> list[Block]:
    """The registry's promotion for the clouds of the writer and the target."""
    env = target.env
    if env.region(to_region).cloud == "gcp":
        blocks: list[Block] = [CloudSqlPromotion(target, to_region, planned=planned, after=after)]
        if env.primary.cloud == "aws":  # a DMS destination: created without HA or deletion protection
            blocks.append(HardenPromotedInstance(target, to_region))
        return blocks
    return [AuroraPromotion(target, to_region, planned=planned, after=after)]


def _restore_source(target: Target) -> list[Block]:
    """Failback: the region that served meanwhile returns to standby size, its runtime first (its
    pods leave before the nodes under them shrink), once traffic and the registry have left it."""
    return [
        RuntimeScale(target, SOURCE, lambda region: _replicas(target.env, region, serving=False),
                     name="restore-standby-runtime", after=("slo-check", "promote-registry"),
                     summary="return the previous writer's runtime to its standby replicas"),
        SourceNodeScale(target, {p.name: p.warm_standby for p in target.env.gpu_pools}, name="restore-standby-size",
                        after=("restore-standby-runtime",),
                        summary="return the previous writer's GPU nodes to standby size"),
    ]


def _replicas(env, region: str, *, serving: bool) -> int:
    """Runtime pods per serving pool in `region`: what its role says, or, for a standby that
    takes the traffic, `on_failover`. The primary serves with (and returns to) `primary`."""
    replicas = env.serving.replicas
    if serving and region != env.primary.name:
        return replicas.on_failover
    return replicas.deployed(env.region(region).role)


def failback(target: Target, *, drill: bool = False) -> Runbook:
    """Back to the environment's configured primary: a planned switchover, then the region that
    served meanwhile returns to standby size."""
    return failover(target, target.env.primary.name, planned=True, restore_previous=True, name="failback",
                    drill=drill)
