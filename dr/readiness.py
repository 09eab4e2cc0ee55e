"""Readiness: every check that would block a failover, now, per region.

Each region of the environment reports its own checks, so one region that does not answer shows
failed lines for that region only and the others still report. A standby (a failover target)
reports its registry replica (present, reachable), replica lag with the datapoint's age, the
champion a failover would pin (one answer with the runbook: `aws.choose_versions`), standby
capacity, the runtime's failover health, the runtime image and its serving replicas; the registry's
writer reports its registry and serving replicas. Only a standby's failures block a failover to it.

The checks are the same on every cloud; what they read in a region comes from that cloud's
`CloudReads` (`READS_BY_CLOUD`), so another cloud plugs in beside the others."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from mlfleet.dr import aws, gcp, kube, serving
from mlfleet.dr.engine import RunContext
from mlfleet.dr.target import Target

STANDBY, WRITER = "standby", "writer"


@dataclass(frozen=True)
class ReadinessCheck:
    region: str
    check: str
    ok: bool
    detail: str
    role: str = STANDBY
    """`standby` (a failover target: a failure blocks a failover to it) or `writer`."""

    def line(self) -> str:
        return f"  [{'ok ' if self.ok else 'FAIL'}] {self.region:<14} {self.check:<24} {self.detail}"


def readiness(target: Target, ctx: RunContext) -> list[ReadinessCheck]:
    """Every region's checks, in the environment's order of regions."""
    writer = find_writer(target, ctx)
    results: list[ReadinessCheck] = []
    for region in target.env.regions:
        results += region_checks(target, ctx, region.name, writer)
    return results


def find_writer(target: Target, ctx: RunContext) -> str | None:
    """The registry's writer, as the runbooks find it (`blocks.registry.registry_writer`), asked
    through a standby first (the primary is the region most likely to be the one that failed);
    None when no region can say."""
    from mlfleet.dr.blocks.registry import registry_writer

    via = (target.env.standbys or [target.env.primary])[0].name
    try:
        return registry_writer(target, ctx, via=via, strict=True)
    except Exception:  # noqa: BLE001 - each region's own registry check reports why
        return None


def role_of(target: Target, region: str, writer: str | None) -> str:
    """A region's role in a failover now: the writer, or a target. Without a writer (no region
    answered) the configured primary is taken as the writer."""
    return WRITER if region == (writer or target.env.primary.name) else STANDBY


def blocking(results: list[ReadinessCheck]) -> dict[str, int]:
    """Failover target -> its failed checks, for each target that has any."""
    counts: dict[str, int] = {}
    for result in results:
        if result.role == STANDBY and not result.ok:
            counts[result.region] = counts.get(result.region, 0) + 1
    return counts


def summary(results: list[ReadinessCheck]) -> list[str]:
    """The lines after the checks: each target that would block, the writer's failures, or ready."""
    lines = [f"{region}: {count} check(s) would block a failover to it" for region, count in blocking(results).items()]
    writer_failed: dict[str, int] = {}
    for result in results:
        if result.role == WRITER and not result.ok:
            writer_failed[result.region] = writer_failed.get(result.region, 0) + 1
    lines += [f"{region} (writer): {count} check(s) failed; they do not block a failover away from it"
              for region, count in writer_failed.items()]
    if not blocking(results):
        lines.append("ready: every standby can take a failover")
    return lines


def _guarded(region: str, check: str, measure: Callable[[], tuple[bool, str]], role: str = STANDBY) -> ReadinessCheck:
    try:
        ok, detail = measure()
    except Exception as exc:  # noqa: BLE001 - each check reports its own failure
        ok, detail = False, (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    return ReadinessCheck(region, check, ok, detail, role)


def _replicas_ready(target: Target, ctx: RunContext, region: str) -> tuple[bool, str]:
    found = kube.runtime_replicas(target, ctx, region)
    ok = all(r.desired >= 1 and r.ready >= r.desired for r in found.values())
    return ok, ", ".join(f"{pool} {r.ready}/{r.desired}" for pool, r in found.items())


def _aws_registry(target: Target, ctx: RunContext, region: str, writer: str | None) -> tuple[bool, str]:
    """The global cluster read through the region's own RDS endpoint, and the region's member in it."""
    cluster = aws.describe_global_cluster(target, ctx, region)
    member = next((m for m in cluster.get("GlobalClusterMembers", []) if aws.region_of(m["DBClusterArn"]) == region),
                  None)
    if member is None:
        return False, f"{region} has no cluster in the global cluster {cluster.get('GlobalClusterIdentifier')}"
    seen_writer = aws.writer_region(cluster)
    status = cluster.get("Status", "unknown")
    if member.get("IsWriter"):
        return True, f"the writer, reachable (global cluster {status})"
    return True, f"replica of the writer {seen_writer or writer}, reachable (global cluster {status})"


def _gcp_registry(target: Target, ctx: RunContext, region: str, writer: str | None) -> tuple[bool, str]:
    """The region's Cloud SQL instance, read through its own SQL Admin endpoint."""
    instance = gcp.sql_instance(target, ctx, region)
    kind = {"CLOUD_SQL_INSTANCE": "a primary", "READ_REPLICA_INSTANCE": "a read replica"}.get(
        str(instance.get("instanceType")), str(instance.get("instanceType")))
    state = instance.get("state", "unknown")
    return state == "RUNNABLE", f"{instance.get('name')}: {kind}, {state}"


@dataclass(frozen=True)
class CloudReads:
    """What readiness reads in a region of one cloud; the checks made of them are the same on
    every cloud."""
    registry: Callable[[Target, RunContext, str, "str | None"], tuple[bool, str]]
    replica_lag: Callable[[Target, RunContext, str], aws.Lag]
    choose_versions: Callable[[Target, RunContext, str, "str | None"], aws.ChampionChoice]
    pool_sizes: Callable[[Target, RunContext, str], dict[str, dict]]
    """pool -> {maxSize, status, ...} of the region's GPU pools."""
    pool_running: str
    """The status of a pool that can scale (EKS: ACTIVE, GKE: RUNNING)."""
    pool_size: Callable[[dict], str]
    """How a pool's size reads when it is ready."""
    runtime_image: Callable[[Target, RunContext, str], tuple[bool, str]] | None = None
    """None where the platform itself holds the image (GKE: Artifact Registry by digest, which
    Binary Authorization holds the cluster to)."""


READS_BY_CLOUD: dict[str, CloudReads] = {
    "aws": CloudReads(
        registry=_aws_registry, replica_lag=aws.replication_lag,
        choose_versions=lambda target, ctx, region, writer: aws.choose_versions(target, ctx, region, source=writer),
        pool_sizes=aws.node_group_sizes, pool_running="ACTIVE", pool_size=lambda size: f"{size['desiredSize']} warm",
        runtime_image=aws.image_present),
    "gcp": CloudReads(
        registry=_gcp_registry, replica_lag=gcp.sql_replica_lag,
        choose_versions=lambda target, ctx, region, writer: gcp.choose_versions(target, ctx, region),
        pool_sizes=gcp.pool_sizes, pool_running="RUNNING", pool_size=lambda size: f"min {size['minSize']}"),
}


def region_checks(target: Target, ctx: RunContext, region: str, writer: str | None) -> list[ReadinessCheck]:
    """A region's checks: a standby's all of them; the writer's registry and serving replicas."""
    reads = READS_BY_CLOUD[target.env.region(region).cloud]
    if role_of(target, region, writer) == WRITER:
        return [_guarded(region, "registry", lambda: reads.registry(target, ctx, region, writer), WRITER),
                _guarded(region, "serving replicas ready", lambda: _replicas_ready(target, ctx, region), WRITER)]
    env = target.env

    def lag() -> tuple[bool, str]:
        measured = reads.replica_lag(target, ctx, region)
        if measured.seconds is None:
            return False, measured.detail
        return measured.seconds <= env.targets.rpo, f"{measured.detail} (budget {env.targets.rpo} s)"

    def capacity() -> tuple[bool, str]:
        sizes = reads.pool_sizes(target, ctx, region)
        short = [f"{p.name}: max {sizes[p.name]['maxSize']} < {p.min_size}" if sizes[p.name]["maxSize"] < p.min_size
                 else f"{p.name}: {sizes[p.name]['status']}" for p in env.gpu_pools
                 if sizes[p.name]["maxSize"] < p.min_size or sizes[p.name]["status"] != reads.pool_running]
        return not short, "; ".join(short) or ", ".join(f"{k} {reads.pool_size(v)}" for k, v in sizes.items())

    checks: list[tuple[str, Callable[[], tuple[bool, str]]]] = [
        ("registry", lambda: reads.registry(target, ctx, region, writer)), ("replica lag", lag),
        ("champion in replica", lambda: _champion(reads.choose_versions(target, ctx, region, writer))),
        ("standby capacity", capacity),
        ("runtime failover health", lambda: _health(target, region))]
    if reads.runtime_image is not None:
        image = reads.runtime_image
        checks.append(("runtime image", lambda: image(target, ctx, region)))
    checks.append(("serving replicas ready", lambda: _replicas_ready(target, ctx, region)))
    return [_guarded(region, check, measure) for check, measure in checks]


def _champion(choice: aws.ChampionChoice) -> tuple[bool, str]:
    """Ready when every model's current champion would be pinned; else what is held and why."""
    if choice.ready:
        return True, ", ".join(f"{m} v{v}" for m, v in choice.pins.items())
    return False, "; ".join(
        f"{m}: champion v{c.champion} held from replication (missing {', '.join(c.missing)}); "
        f"a failover now would pin v{c.pin}" for m, c in choice.models.items() if c.held)


def _health(target: Target, region: str) -> tuple[bool, str]:
    return serving.failover_health(target.serving_urls[region], target.env.serving.failover_health_path)
