"""The environment as a picture: one column per region (primary first), its GPU pools, serving
endpoint (name, load balancer, runtime image, pods), artifact bucket and registry role, each in
its cloud's terms (EKS, S3, Aurora; GKE, Cloud Storage, Cloud SQL); Route 53 routing above,
replication lanes below, one per path that really carries data. Hand-written SVG, deterministic
(no dates, ids or floating-point noise), so it can be golden-tested and diffed.
"""
from __future__ import annotations

from dataclasses import dataclass
from xml.sax.saxutils import escape

from mlfleet.constructs.terraform_json import first_block, resources
from mlfleet.stacks.environment import Environment, naming
from mlfleet.stacks.review.inventory import CLOUD_NAMES, PoolCapacity, pool_capacity
from mlfleet.stacks.review.replication import (
    artifact_path,
    data_locations,
    gcs_buckets,
    registry_replica,
    transfer_interval,
)
from mlfleet.stacks.review.serving import ServingEndpoint, serving_endpoints

COLUMN = 320
MARGIN = 20
BOX_WIDTH = COLUMN - 2 * MARGIN
LINE = 16
_COLOURS = {"primary": "#1f6f43", "standby": "#3b5b92"}
MISSING = "#b3261e"     # a standby box for what is not there (no registry replica)
_ARTIFACT_LANES = {"s3_replication": "S3 replication", "gcs_dual_region": "dual-region replication"}
_REGISTRY_LANES = {"aurora": "Aurora global replication", "cloud_sql": "Cloud SQL cross-region replication",
                   "dms": "DMS logical replication"}


@dataclass(frozen=True)
class _Column:
    """What one region's column shows, in its cloud's terms."""
    cluster: list[str]
    artifacts: list[str]
    registry: list[str]
    registry_missing: bool = False


def render_svg(env: Environment, stacks: dict[str, dict]) -> str:
    regions = [env.primary, *env.standbys]
    columns = {r.name: MARGIN + i * COLUMN for i, r in enumerate(regions)}
    width = 2 * MARGIN + len(regions) * COLUMN - 2 * MARGIN
    body: list[str] = []
    routing = _routing_labels(env, stacks)
    endpoints = {e.region: e for e in serving_endpoints(env, stacks)}

    serving = env.serving
    body.append(_box(MARGIN, MARGIN, width - 2 * MARGIN, 44, "#555",
                     [f"Route 53  {serving.dns_name}", f"{serving.routing} routing, TTL {serving.record_ttl} s, "
                      f"health check every {serving.health_check_interval} s × "
                      f"{serving.health_check_failure_threshold}"]))
    top = MARGIN + 44 + 50
    bottoms: dict[str, dict[str, float]] = {}
    deepest = top
    for region in regions:
        x = columns[region.name]
        centre = x + BOX_WIDTH / 2
        body.append(_arrow(centre, MARGIN + 44, centre, top, routing.get(region.name, "")))
        colour = _COLOURS[region.role]
        # Name the cloud once Google Cloud is in play; an all-AWS picture reads as it always did.
        title = f"{region.name} ({region.role}, {CLOUD_NAMES[region.cloud]})" if env.regions_on("gcp") \
            else f"{region.name} ({region.role})"
        body.append(_box(x, top, BOX_WIDTH, 24, colour, [title], fill=colour, text="#fff"))
        column = (_gcp_column if region.cloud == "gcp" else _aws_column)(env, stacks, region)
        y = top + 34
        height = 10 + LINE * len(column.cluster)
        body.append(_box(x, y, BOX_WIDTH, height, colour, column.cluster))
        y += height + 10
        serving_lines = _serving_lines(endpoints.get(region.name))
        if serving_lines:
            body.append(_box(x, y, BOX_WIDTH, 10 + LINE * len(serving_lines), colour, serving_lines))
            y += 10 + LINE * len(serving_lines) + 10
        body.append(_box(x, y, BOX_WIDTH, 10 + LINE * len(column.artifacts), colour, column.artifacts))
        bucket_bottom = y + 10 + LINE * len(column.artifacts)
        y = bucket_bottom + 10
        if column.registry_missing:
            body.append(_box(x, y, BOX_WIDTH, 10 + LINE * len(column.registry), MISSING, column.registry, text=MISSING))
        else:
            body.append(_box(x, y, BOX_WIDTH, 10 + LINE * len(column.registry), colour, column.registry))
        db_bottom = y + 10 + LINE * len(column.registry)
        bottoms[region.name] = {"bucket": bucket_bottom, "db": db_bottom, "centre": centre}
        deepest = max(deepest, db_bottom)

    lane = deepest + 30
    primary = bottoms[env.primary.name]
    labels = {"bucket": {r.name: _artifact_lane(env, stacks, r.name) for r in env.standbys},
              "db": {r.name: _registry_lane(env, stacks, r.name) for r in env.standbys}}
    for kind in ("bucket", "db"):
        for standby in env.standbys:
            label = labels[kind][standby.name]
            if label is None:
                continue  # nothing travels there: the column says so
            target = bottoms[standby.name]
            offset = 6 if kind == "bucket" else -6
            body.append(
                f'<polyline points="{_n(primary["centre"] + offset)},{_n(primary[kind])} '
                f'{_n(primary["centre"] + offset)},{_n(lane)} {_n(target["centre"] + offset)},{_n(lane)} '
                f'{_n(target["centre"] + offset)},{_n(target[kind])}" fill="none" stroke="#888" '
                f'stroke-dasharray="{"6,3" if kind == "bucket" else "2,2"}" marker-end="url(#arrow)"/>')
            middle = (primary["centre"] + target["centre"]) / 2
            body.append(_text(middle, lane - 4, f"{label} → {standby.name}", "#444"))
            lane += 22
    height = lane + MARGIN
    header = (f'<svg xmlns="http://www.w3.org/2000/svg" width="{_n(width)}" height="{_n(height)}" '
              f'viewBox="0 0 {_n(width)} {_n(height)}" font-family="Helvetica, Arial, sans-serif" font-size="12">')
    defs = ('<defs><marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" '
            'orient="auto"><path d="M0,0 L10,5 L0,10 z" fill="#888"/></marker></defs>')
    title = f"<title>mlfleet environment {escape(env.name)}</title>"
    return "\n".join([header, title, defs, '<rect width="100%" height="100%" fill="#fff"/>', *body, "</svg>"]) + "\n"


def _aws_column(env: Environment, stacks: dict[str, dict], region) -> _Column:
    tf = stacks.get(naming.stack_name(env.name, region.name), {})
    cluster = [f"EKS {naming.cluster_name(env.name, region.name)}"]
    for p in pool_capacity(naming.stack_name(env.name, region.name), tf):
        cluster += [_pool_title(p), f"  {', '.join(p.instance_types)}", _pool_sizes(p)]
    buckets = sorted(b.get("bucket", "?") for b in resources(tf, "aws_s3_bucket").values())
    instances = len(resources(tf, "aws_rds_cluster_instance"))
    if region.role == "standby" and registry_replica(env, stacks, region.name) is None:
        return _Column(cluster, ["S3 artifacts", *buckets], _NO_REPLICA, registry_missing=True)
    db_role = "writer" if region.role == "primary" else "secondary (read-only)"
    return _Column(cluster, ["S3 artifacts", *buckets], [f"Aurora registry: {db_role}", f"{instances} instance(s)"])


def _gcp_column(env: Environment, stacks: dict[str, dict], region) -> _Column:
    tf = stacks.get(naming.stack_name(env.name, region.name), {})
    names = sorted(c.get("name", "?") for c in resources(tf, "google_container_cluster").values())
    cluster = [f"GKE {', '.join(names) or '?'}"]
    for p in pool_capacity(naming.stack_name(env.name, region.name), tf):
        cluster += [_pool_title(p), f"  {p.instance_types[0]}, {p.gpus_per_node}× {p.gpu}", _pool_sizes(p)]
    # The artifact bucket is the environment's, in <env>-gcp-global: one dual-region bucket.
    artifacts = ["Cloud Storage artifacts"]
    for bucket in gcs_buckets(stacks):
        where = "+".join(data_locations(bucket)) or str(bucket.get("location", "?"))
        artifacts += [f"gs://{bucket.get('name', '?')}",
                      f"  {where}" + (", turbo" if bucket.get("rpo") == "ASYNC_TURBO" else "")]
    if region.role == "primary":
        instances = [b for b in resources(tf, "google_sql_database_instance").values()
                     if not b.get("master_instance_name")]
        return _Column(cluster, artifacts, ["Cloud SQL registry: primary", _tiers(instances)])
    replica = registry_replica(env, stacks, region.name)
    if replica is None:
        return _Column(cluster, artifacts, _NO_REPLICA, registry_missing=True)
    how = "Cloud SQL registry via DMS" if replica.kind == "dms" else "Cloud SQL registry: replica"
    return _Column(cluster, artifacts, [f"{how} (read-only)", replica.name])


def _serving_lines(endpoint: ServingEndpoint | None) -> list[str]:
    """The region's serving endpoint: name, load balancer, runtime image and pods per pool."""
    if endpoint is None:
        return []
    after = f" (→ {endpoint.failover_replicas} on failover)" if endpoint.failover_replicas is not None else ""
    pods = ", ".join(f"{pool} {n}" for pool, n in endpoint.replicas.items())
    # Short enough for a column: "regional external ALB".
    balancer = (endpoint.load_balancer or "no load balancer").replace("Application LB", "ALB")
    return [f"serving endpoint ({balancer})", f"  {endpoint.hostname or '?'}",
            f"  runtime {endpoint.digest}", f"  pods {pods}{after}"]


_NO_REPLICA = ["No registry replica", "a failover here takes no registry writes"]


def _pool_title(p: PoolCapacity) -> str:
    return f"pool {p.pool} ({p.capacity_type.lower().replace('_', '-')})"


def _pool_sizes(p: PoolCapacity) -> str:
    return f"  nodes warm {p.nodes_warm} / min {p.nodes_min} / max {p.nodes_max}"


def _tiers(instances: list[dict]) -> str:
    settings = [first_block(b.get("settings")) for b in instances]
    return ", ".join(f"{s.get('tier', '?')}" + (" HA" if s.get("availability_type") == "REGIONAL" else "")
                     for s in settings) or "no instance"


def _artifact_lane(env: Environment, stacks: dict[str, dict], region: str) -> str | None:
    kind = artifact_path(env, region).kind
    if kind == "gcs_dual_region" and any(b.get("rpo") == "ASYNC_TURBO" for b in gcs_buckets(stacks)):
        return "dual-region turbo replication"
    if kind != "storage_transfer":
        return _ARTIFACT_LANES[kind]
    interval = transfer_interval(stacks)
    return None if interval is None else f"Storage Transfer every {_every(interval)}"


def _registry_lane(env: Environment, stacks: dict[str, dict], region: str) -> str | None:
    replica = registry_replica(env, stacks, region)
    return None if replica is None else _REGISTRY_LANES[replica.kind]


def _every(seconds: int) -> str:
    return f"{seconds // 3600} h" if seconds % 3600 == 0 else f"{seconds // 60} min"


def _routing_labels(env: Environment, stacks: dict[str, dict]) -> dict[str, str]:
    """How Route 53 reaches each region, from the global stack's records."""
    records = resources(stacks.get(naming.global_stack_name(env.name), {}), "aws_route53_record")
    labels = {}
    for body in records.values():
        region = body.get("set_identifier")
        if region not in {r.name for r in env.regions}:
            continue
        failover = (body.get("failover_routing_policy") or {}).get("type")
        weight = (body.get("weighted_routing_policy") or {}).get("weight")
        label = failover.lower() if failover else f"weight {weight}" if weight is not None else "simple"
        if body.get("name") != env.serving.dns_name:
            label = f"secondary via {body.get('name')}, {label}"
        labels[region] = label
    return labels


def _n(value: float) -> str:
    return f"{value:.0f}"


def _text(x: float, y: float, content: str, colour: str = "#222", anchor: str = "middle") -> str:
    return f'<text x="{_n(x)}" y="{_n(y)}" fill="{colour}" text-anchor="{anchor}">{escape(content)}</text>'


def _box(x: float, y: float, w: float, h: float, stroke: str, lines: list[str],
         fill: str = "#f7f7f7", text: str = "#222") -> str:
    parts = [f'<rect x="{_n(x)}" y="{_n(y)}" width="{_n(w)}" height="{_n(h)}" rx="4" fill="{fill}" stroke="{stroke}"/>']
    for i, line in enumerate(lines):
        parts.append(_text(x + 8, y + 17 + i * LINE, line, text, "start"))
    return "\n".join(parts)


def _arrow(x1: float, y1: float, x2: float, y2: float, label: str) -> str:
    line = (f'<line x1="{_n(x1)}" y1="{_n(y1)}" x2="{_n(x2)}" y2="{_n(y2)}" stroke="#888" '
            f'marker-end="url(#arrow)"/>')
    return line + ("\n" + _text(x1 + 6, (y1 + y2) / 2 + 4, label, "#444", "start") if label else "")
