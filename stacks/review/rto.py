"""The recovery budget a configuration buys, against its targets.

RTO budget of losing the primary: the longest path through the plan the failover runbook executes
(`recovery_time.projected_phases`, the same graph of blocks): health-check detection (interval ×
failure threshold), then, side by side, registry promotion (of the replica the standby holds:
Aurora global failover, Cloud SQL replica promotion, or promotion of the DMS job that keeps Cloud
SQL in step with Aurora) and routing followed by the DNS TTL (resolvers keep the old answer that
long). Standby scale-up runs beside them; where every standby's serving pools keep warm runtime
pods (champion loaded; traffic moves only to a region that passes failover health), routing does
not wait for it, so it is off the critical path, and so is the runtime's scale-up to its failover
replicas. Otherwise routing waits for the nodes and the model load on them. The table lists every
part with its time and whether it is on the path; the total is the path. With several standbys the
worst plan counts, so the budget holds wherever the failover goes. A standby without a registry
replica cannot take registry writes at all: that part, and so the total, is not recoverable. A
person's approval, where the environment asks for one, is the person's time: not in the budget.

RPO, per kind of data, from the replication the stacks configure (`replication`):
- model artifacts: S3 Replication Time Control between AWS regions (15 minutes for 99.99 % of
  objects); the Storage Transfer job's repeat interval from AWS to Google Cloud; the dual-region
  bucket's turbo replication within Google Cloud (15 minutes);
- the registry: Aurora bounds its lag with `rds.global_db_rpo` (enforced: the writer holds
  commits beyond it), read from the synthesized parameter group; a Cloud SQL or DMS replica
  replicates asynchronously with no bound at all, but its replica-lag alert pages at a share of
  the target: that threshold is shown, watched rather than enforced.
The environment's RPO is the worst of them.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

from mlfleet.constructs.service_limits import (
    AURORA_MIN_GLOBAL_DB_RPO_SECONDS,
    GCS_DEFAULT_RPO_SECONDS,
    GCS_TURBO_RPO_SECONDS,
    S3_RTC_RPO_SECONDS,
)
from mlfleet.constructs.terraform_json import blocks, first_block, resources
from mlfleet.stacks.environment import Environment, naming, routing_control
from mlfleet.stacks.environment.recovery_time import (  # noqa: F401 - the review's figures, re-exported
    AURORA_GLOBAL_FAILOVER_SECONDS,
    CLOUD_SQL_PROMOTION_SECONDS,
    DMS_PROMOTION_SECONDS,
    GKE_SCALE_STEP_SECONDS,
    GPU_SCALE_STEP_SECONDS,
    MODEL_LOAD_SECONDS,
    REGISTRY_PROMOTION,
    SCALE_STEP,
    critical_path_s,
    projected_phases,
)
from mlfleet.stacks.review.inventory import pool_capacity
from mlfleet.stacks.review.replication import (
    RegistryReplica,
    artifact_path,
    data_locations,
    gcs_buckets,
    registry_replica,
    transfer_interval,
)
from mlfleet.stacks.review.serving import serving_endpoints

# The planning figures live in the environment core, which the runbooks' plans read too.
_PROMOTION = REGISTRY_PROMOTION
_SCALE_STEP = SCALE_STEP


@dataclass(frozen=True)
class BudgetPart:
    name: str
    seconds: int | None     # None with `missing`: nothing to recover from
    basis: str
    missing: bool = False
    on_critical_path: bool = True
    """On the plan's longest path; False: runs beside it (scale-up while warm pods serve)."""


# Budget part -> the plan's phases it stands for.
_PHASES_OF = {"health-check detection": ("detection",), "DNS TTL": ("dns-ttl",), "registry promotion":
              ("promote-registry",), "standby scale-up": ("scale-nodes",), "model load": ("model-load",),
              "runtime scale-up to failover replicas": ("scale-runtime",)}


@dataclass(frozen=True)
class RtoBudget:
    target: int
    parts: list[BudgetPart]     # empty: no standby region to fail over to
    critical_path_s: int | None = None
    """The plan's longest path (None: not recoverable); what the budget is."""

    @property
    def total(self) -> int | None:
        """The longest path through the failover plan; None when a part is not recoverable."""
        if any(p.missing for p in self.parts):
            return None
        return self.critical_path_s

    @property
    def recoverable_total(self) -> int:
        """The sum of the parts that can be recovered (everything but the missing ones)."""
        return sum(p.seconds for p in self.parts if p.seconds is not None)

    @property
    def verdict(self) -> str:
        if not self.parts:
            return "n/a"
        return "pass" if self.total is not None and self.total <= self.target else "fail"


@dataclass(frozen=True)
class RpoPart:
    data: str
    seconds: int | None     # None: no bound (or, with `missing`, nothing replicated)
    basis: str
    missing: bool = False
    enforced: bool = True   # False: a monitoring threshold, not a bound the system holds


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
        return "pass" if all(p.enforced for p in self.parts) else "pass (watched, not enforced)"


def rto_budget(env: Environment, stacks: dict[str, dict]) -> RtoBudget:
    if not env.standbys:
        return RtoBudget(env.targets.rto, [])
    serving = env.serving
    standby_pools = [p for name, tf in stacks.items() for p in pool_capacity(name, tf)
                     if p.region in {r.name for r in env.standbys}]
    short = [p for p in standby_pools if p.nodes_warm < p.nodes_min]
    clouds = {p.cloud for p in short}
    step = max((_SCALE_STEP[c][0] for c in clouds), default=0)
    kind = _SCALE_STEP[clouds.pop()][1] if len(clouds) == 1 else "node launch, join and image pull step"
    scale_basis = (f"{', '.join(sorted({f'{p.region} {p.pool} {p.nodes_warm}→{p.nodes_min}' for p in short}))}: "
                   f"one {step // 60}-minute {kind}"
                   if short else "every standby pool already runs its minimum")
    parts = [
        BudgetPart("health-check detection", serving.health_check_interval * serving.health_check_failure_threshold,
                   f"{serving.health_check_interval} s interval × {serving.health_check_failure_threshold} failures"),
        BudgetPart("DNS TTL", serving.record_ttl, f"record_ttl of the {serving.routing} records; " + (
            "traffic moves by ARC routing controls (data plane)" if routing_control.enabled(env) else
            "the runbook moves traffic by a record change, which needs Route 53's control plane in us-east-1 "
            "(serving.routing_control: false)")),
        _registry_promotion(env, stacks),
        BudgetPart("standby scale-up", step, scale_basis),
        _runtime_part(env, stacks, bool(short)),
    ]
    # The worst standby's plan: its longest path is the budget, its phases mark the parts on it.
    plans = [projected_phases(env, r.name, planned=False) for r in env.standbys]
    paths = [critical_path_s(plan) for plan in plans]
    worst = max(range(len(plans)), key=lambda i: _longest(paths[i][0]))
    on_path = {p.phase for p in plans[worst] if p.on_critical_path}
    parts = [replace(part, on_critical_path=bool(set(_PHASES_OF.get(part.name, ())) & on_path)) for part in parts]
    return RtoBudget(env.targets.rto, parts, paths[worst][0])


def _longest(seconds: int | None) -> float:
    """A path's length for comparing plans: a plan that cannot complete is the worst."""
    return float("inf") if seconds is None else float(seconds)


def _runtime_part(env: Environment, stacks: dict[str, dict], short: bool) -> BudgetPart:
    """The runtime's part: zero where warm pods serve first in every standby; else the model load."""
    standbys = {r.name for r in env.standbys}
    warm = {e.region: e for e in serving_endpoints(env, stacks) if e.role == "standby"}
    serving_pools = {naming.node_group_name(p.name) for p in env.serving_pools}
    if standbys and set(warm) == standbys and all(
            serving_pools <= set(e.replicas) and min(e.replicas.values()) >= 1 for e in warm.values()):
        pods = sorted({n for e in warm.values() for n in e.replicas.values()})
        target = env.serving.replicas.on_failover
        return BudgetPart("runtime scale-up to failover replicas", 0,
                          f"not on the critical path: {'/'.join(map(str, pods))} warm pod(s) per pool, champion "
                          f"loaded, serve first; the runbook scales them to {target} while they serve, so no model "
                          "load counts")
    return BudgetPart("model load", MODEL_LOAD_SECONDS if short else 0,
                      "fetch, verify and load the champion on new nodes" if short
                      else "warm nodes already serve the champion")


def _registry_promotion(env: Environment, stacks: dict[str, dict]) -> BudgetPart:
    replicas = {r.name: registry_replica(env, stacks, r.name) for r in env.standbys}
    missing = [region for region, replica in replicas.items() if replica is None]
    if missing:
        return BudgetPart("registry promotion", None, _no_replica(env, missing), missing=True)
    held = {region: replica for region, replica in replicas.items() if replica is not None}
    kinds = {replica.kind for replica in held.values()}
    seconds = max(_PROMOTION[kind][0] for kind in kinds)
    basis = (_PROMOTION[kinds.pop()][1] if len(kinds) == 1
             else "; ".join(f"{region}: {_PROMOTION[replica.kind][1]}" for region, replica in held.items()))
    return BudgetPart("registry promotion", seconds, basis)


def _no_replica(env: Environment, regions: list[str]) -> str:
    where = ", ".join(regions)
    cross_cloud = env.primary.cloud == "aws" and all(env.region(r).cloud == "gcp" for r in regions)
    why = ("Cloud SQL follows Aurora only through a DMS migration job (gcp.registry_source), which this "
           "environment does not configure" if cross_cloud else "the region's stack holds no replica of the registry")
    return (f"no registry replica in {where}: {why}; the registry stays in {env.primary.name} and is lost with it, "
            "so a failover there serves models but cannot take registry writes")


def rpo_budget(env: Environment, stacks: dict[str, dict]) -> RpoBudget:
    ack = env.acknowledged("MLF010")
    if not env.standbys:
        return RpoBudget(env.targets.rpo, [], None)
    paths: dict[str, list[str]] = {}
    for region in env.standbys:
        paths.setdefault(artifact_path(env, region.name).kind, []).append(region.name)
    parts = [_ARTIFACTS[kind](env, stacks) for kind in _ARTIFACTS if kind in paths]
    replicas = {r.name: registry_replica(env, stacks, r.name) for r in env.standbys}
    if any(r is not None and r.kind == "aurora" for r in replicas.values()):
        parts.append(_aurora_registry(stacks))
    asynchronous = [r for r in replicas.values() if r is not None and r.kind in ("cloud_sql", "dms")]
    if asynchronous:
        parts.append(_asynchronous_registry(env, stacks, asynchronous))
    missing = [region for region, replica in replicas.items() if replica is None]
    if missing:
        parts.append(RpoPart(f"model registry (no replica in {', '.join(missing)})", None,
                             "nothing replicates the registry there: what it held is lost with "
                             f"{env.primary.name}", missing=True))
    return RpoBudget(env.targets.rpo, parts, ack.reason if ack else None)


def _s3_artifacts(env: Environment, stacks: dict[str, dict]) -> RpoPart:
    rules = [rule for tf in stacks.values()
             for body in resources(tf, "aws_s3_bucket_replication_configuration").values()
             for rule in blocks(body.get("rule"))]
    timed = bool(rules) and all(_enabled(rule, "replication_time") for rule in rules)
    return RpoPart("model artifacts (S3)", S3_RTC_RPO_SECONDS if timed else None,
                   "Replication Time Control, 15 minutes for 99.99 % of objects" if timed
                   else "replication without Replication Time Control has no time bound")


def _transfer_artifacts(env: Environment, stacks: dict[str, dict]) -> RpoPart:
    interval = transfer_interval(stacks)
    return RpoPart("model artifacts (S3 → Cloud Storage)", interval,
                   f"a Storage Transfer job copies the models prefix every {interval} s: what the primary wrote "
                   "since the last run is lost (the run's own duration comes on top)" if interval is not None
                   else "no recurring Storage Transfer job copies the primary's artifacts to Google Cloud")


def _dual_region_artifacts(env: Environment, stacks: dict[str, dict]) -> RpoPart:
    assert env.gcp is not None  # the model requires `gcp:` whenever a region is on Google Cloud
    name = naming.gcs_artifact_bucket(env.name, env.gcp.project_id)
    bucket = next((b for b in gcs_buckets(stacks) if b.get("name") == name), None)
    pair = " and ".join(data_locations(bucket)) if bucket else ""
    label = "model artifacts (Cloud Storage dual-region)"
    if bucket is None or not pair or len(data_locations(bucket)) < 2:
        return RpoPart(label, None, f"gs://{name} is not a dual-region bucket: its objects are lost with its region")
    if bucket.get("rpo") == "ASYNC_TURBO":
        return RpoPart(label, GCS_TURBO_RPO_SECONDS,
                       f"turbo replication of gs://{name} between {pair}: 15 minutes for 100 % of new objects")
    return RpoPart(label, GCS_DEFAULT_RPO_SECONDS,
                   f"default replication of gs://{name} between {pair}: every object within 12 hours")


_ARTIFACTS = {"s3_replication": _s3_artifacts, "storage_transfer": _transfer_artifacts,
              "gcs_dual_region": _dual_region_artifacts}


def _aurora_registry(stacks: dict[str, dict]) -> RpoPart:
    settings = [int(p["value"]) for tf in stacks.values()
                for group in resources(tf, "aws_rds_cluster_parameter_group").values()
                for p in blocks(group.get("parameter")) if p.get("name") == "rds.global_db_rpo"]
    return RpoPart("model registry (Aurora)",
                   max(max(settings), AURORA_MIN_GLOBAL_DB_RPO_SECONDS) if settings else None,
                   f"rds.global_db_rpo = {max(settings)} s on the secondaries" if settings
                   else "no rds.global_db_rpo set: Aurora does not bound the lag")


def _asynchronous_registry(env: Environment, stacks: dict[str, dict], replicas: list[RegistryReplica]) -> RpoPart:
    """Cloud SQL or DMS replicas: no bound, only the replica-lag alert of each one's region."""
    alerts = {r.name: _lag_alert(stacks.get(naming.stack_name(env.name, r.region), {}), r.name) for r in replicas}
    dms = any(r.kind == "dms" for r in replicas)
    label = "model registry (Aurora → Cloud SQL, DMS)" if dms else "model registry (Cloud SQL)"
    how = ("logical replication by DMS over the network path between the clouds (a VPN mlfleet does not "
           "provision), asynchronous and bounded by nothing" if dms
           else "asynchronous replication, which Cloud SQL does not bound")
    unwatched = sorted(name for name, threshold in alerts.items() if threshold is None)
    if unwatched:
        return RpoPart(label, None, f"{how}; no replica-lag alert watches {', '.join(unwatched)}")
    watched = {name: threshold for name, threshold in alerts.items() if threshold is not None}
    name, threshold = max(watched.items(), key=lambda kv: kv[1])
    share = f" ({100 * threshold / env.targets.rpo:g} % of the RPO target)"
    return RpoPart(label, int(threshold),
                   f"{how}; the replica-lag alert on {name} pages above {threshold:g} s{share} or when the replica "
                   "stops reporting: watched, not enforced", enforced=False)


def _lag_alert(tf: dict, instance: str) -> float | None:
    """The threshold (seconds) of the alert on `instance`'s replica lag in the region's stack."""
    # Here, not at the top: the module loads Google's provider bindings, which an AWS-only review never needs.
    from mlfleet.constructs.gcp.monitoring import REPLICA_LAG_METRIC

    for policy in resources(tf, "google_monitoring_alert_policy").values():
        for condition in blocks(policy.get("conditions")):
            threshold = first_block(condition.get("condition_threshold"))
            query = threshold.get("filter", "")
            if REPLICA_LAG_METRIC in query and f':{instance}"' in query:
                return threshold.get("threshold_value")
    return None


def _enabled(rule: dict, block: str) -> bool:
    destination = first_block(rule.get("destination"))
    return any(b.get("status") == "Enabled" for b in blocks(destination.get(block)))
