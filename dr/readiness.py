"""Readiness: every check that would block a failover, now, per region.

Each region of the environment reports its own checks, so one region that does not answer shows
failed lines for that region only and the others still report. A standby (a failover target)
reports its registry replica (present, reachable), replica lag with the datapoint's age, the
champion a failover would pin (one answer with the runbook: `aws.choose_versions`), standby
capacity, the runtime's failover health, the runtime image and its serving replicas; the registry's
writer reports its registry and serving replicas. Only a standby's failures block a failover to it.

The checks of one region come from a function per cloud (`CHECKS_BY_CLOUD`), so a cloud's checks
plug in beside the others."""
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


RegionChecks = Callable[[Target, RunContext, str, "str | None"], list[ReadinessCheck]]
"""(target, ctx, region, the registry's writer or None when no region could say) -> that region's checks."""


def readiness(target: Target, ctx: RunContext) -> list[ReadinessCheck]:
    """Every region's checks, in the environment's order of regions."""
    writer = find_writer(target, ctx)
    results: list[ReadinessCheck] = []
    for region in target.env.regions:
        results += CHECKS_BY_CLOUD[region.cloud](target, ctx, region.name, writer)
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


def _registry(target: Target, ctx: RunContext, region: str, writer: str | None) -> tuple[bool, str]:
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


def _standby_checks(target: Target, ctx: RunContext, name: str, writer: str | None) -> list[ReadinessCheck]:
    """The checks of one AWS standby; each reports its own failure."""
    env = target.env

    def lag() -> tuple[bool, str]:
        measured = aws.replication_lag(target, ctx, name)
        if measured.seconds is None:
            return False, measured.detail
        return measured.seconds <= env.targets.rpo, f"{measured.detail} (budget {env.targets.rpo} s)"

    def champion() -> tuple[bool, str]:
        return _champion(aws.choose_versions(target, ctx, name, source=writer))

    def capacity() -> tuple[bool, str]:
        sizes = aws.node_group_sizes(target, ctx, name)
        short = [f"{p.name}: max {sizes[p.name]['maxSize']} < {p.min_size}" if sizes[p.name]["maxSize"] < p.min_size
                 else f"{p.name}: {sizes[p.name]['status']}" for p in env.gpu_pools
                 if sizes[p.name]["maxSize"] < p.min_size or sizes[p.name]["status"] != "ACTIVE"]
        return not short, "; ".join(short) or ", ".join(f"{k} {v['desiredSize']} warm" for k, v in sizes.items())

    checks: list[tuple[str, Callable[[], tuple[bool, str]]]] = [
        ("registry", lambda: _registry(target, ctx, name, writer)), ("replica lag", lag),
        ("champion in replica", champion), ("standby capacity", capacity),
        ("runtime failover health", lambda: _health(target, name)),
        ("runtime image", lambda: aws.image_present(target, ctx, name)),
        ("serving replicas ready", lambda: _replicas_ready(target, ctx, name))]
    return [_guarded(name, check, measure) for check, measure in checks]


def _champion(choice: aws.ChampionChoice) -> tuple[bool, str]:
    """Ready when every model's current champion would be pinned; else what is held and why."""
    if choice.ready:
        return True, ", ".join(f"{m} v{v}" for m, v in choice.pins.items())
    return False, "; ".join(
        f"{m}: champion v{c.champion} held from replication (missing {', '.join(c.missing)}); "
        f"a failover now would pin v{c.pin}" for m, c in choice.models.items() if c.held)


def _health(target: Target, region: str) -> tuple[bool, str]:
    return serving.failover_health(target.serving_urls[region], target.env.serving.failover_health_path)


def aws_region_checks(target: Target, ctx: RunContext, region: str, writer: str | None) -> list[ReadinessCheck]:
    """An AWS region's checks: a standby's all of them; the writer's registry and serving replicas."""
    if role_of(target, region, writer) == STANDBY:
        return _standby_checks(target, ctx, region, writer)
    return [_guarded(region, "registry", lambda: _registry(target, ctx, region, writer), WRITER),
            _guarded(region, "serving replicas ready", lambda: _replicas_ready(target, ctx, region), WRITER)]


def _gcp_registry(target: Target, ctx: RunContext, region: str) -> tuple[bool, str]:
    """The region's Cloud SQL instance, read through its own SQL Admin endpoint."""
    instance = gcp.sql_instance(target, ctx, region)
    kind = {"CLOUD_SQL_INSTANCE": "a primary", "READ_REPLICA_INSTANCE": "a read replica"}.get(
        str(instance.get("instanceType")), str(instance.get("instanceType")))
    state = instance.get("state", "unknown")
    return state == "RUNNABLE", f"{instance.get('name')}: {kind}, {state}"


def _gcp_standby_checks(target: Target, ctx: RunContext, name: str, writer: str | None) -> list[ReadinessCheck]:
    """The checks of one Google Cloud standby; each reports its own failure."""
    env = target.env

    def lag() -> tuple[bool, str]:
        measured = gcp.sql_replica_lag(target, ctx, name)
        if measured.seconds is None:
            return False, measured.detail
        return measured.seconds <= env.targets.rpo, f"{measured.detail} (budget {env.targets.rpo} s)"

    def champion() -> tuple[bool, str]:
        return _champion(gcp.choose_versions(target, ctx, name))

    def capacity() -> tuple[bool, str]:
        sizes = gcp.pool_sizes(target, ctx, name)
        short = [f"{p.name}: max {sizes[p.name]['maxSize']} < {p.min_size}" if sizes[p.name]["maxSize"] < p.min_size
                 else f"{p.name}: {sizes[p.name]['status']}" for p in env.gpu_pools
                 if sizes[p.name]["maxSize"] < p.min_size or sizes[p.name]["status"] != "RUNNING"]
        return not short, "; ".join(short) or ", ".join(f"{k} min {v['minSize']}" for k, v in sizes.items())

    checks: list[tuple[str, Callable[[], tuple[bool, str]]]] = [
        ("registry", lambda: _gcp_registry(target, ctx, name)), ("replica lag", lag),
        ("champion in replica", champion), ("standby capacity", capacity),
        ("runtime failover health", lambda: _health(target, name)),
        ("serving replicas ready", lambda: _replicas_ready(target, ctx, name))]
    return [_guarded(name, check, measure) for check, measure in checks]


def gcp_region_checks(target: Target, ctx: RunContext, region: str, writer: str | None) -> list[ReadinessCheck]:
    """A Google Cloud region's checks: a standby's all of them; the writer's registry and replicas.
    (The runtime image comes from the region's Artifact Registry, by digest, which Binary
    Authorization holds the cluster to.)"""
    if role_of(target, region, writer) == STANDBY:
        return _gcp_standby_checks(target, ctx, region, writer)
    return [_guarded(region, "registry", lambda: _gcp_registry(target, ctx, region), WRITER),
            _guarded(region, "serving replicas ready", lambda: _replicas_ready(target, ctx, region), WRITER)]


CHECKS_BY_CLOUD: dict[str, RegionChecks] = {"aws": aws_region_checks, "gcp": gcp_region_checks}
