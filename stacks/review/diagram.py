"""The environment as a picture: one column per region (primary first), its GPU pools, artifact
bucket and registry role; Route 53 routing above, replication lanes below. Hand-written SVG,
deterministic (no dates, ids or floating-point noise), so it can be golden-tested and diffed.
"""
from __future__ import annotations

from xml.sax.saxutils import escape

from mlfleet.stacks import naming
from mlfleet.stacks.config import Environment
from mlfleet.stacks.review.inventory import pool_capacity

COLUMN = 320
MARGIN = 20
BOX_WIDTH = COLUMN - 2 * MARGIN
LINE = 16
_COLOURS = {"primary": "#1f6f43", "standby": "#3b5b92"}


def render_svg(env: Environment, stacks: dict[str, dict]) -> str:
    regions = [env.primary, *env.standbys]
    columns = {r.name: MARGIN + i * COLUMN for i, r in enumerate(regions)}
    width = 2 * MARGIN + len(regions) * COLUMN - 2 * MARGIN
    body: list[str] = []
    routing = _routing_labels(env, stacks)

    body.append(_box(MARGIN, MARGIN, width - 2 * MARGIN, 44, "#555",
                     [f"Route 53  {env.serving.dns_name}", f"{env.serving.routing} routing, TTL {env.serving.record_ttl} s, "
                      f"health check every {env.serving.health_check_interval} s × {env.serving.health_check_failure_threshold}"]))
    top = MARGIN + 44 + 50
    bottoms: dict[str, dict[str, float]] = {}
    deepest = top
    for region in regions:
        x = columns[region.name]
        centre = x + BOX_WIDTH / 2
        body.append(_arrow(centre, MARGIN + 44, centre, top, routing.get(region.name, "")))
        colour = _COLOURS[region.role]
        body.append(_box(x, top, BOX_WIDTH, 24, colour, [f"{region.name} ({region.role})"], fill=colour, text="#fff"))
        tf = stacks.get(naming.stack_name(env.name, region.name), {})
        pools = pool_capacity(naming.stack_name(env.name, region.name), tf)
        y = top + 34
        lines = [f"EKS {naming.cluster_name(env.name, region.name)}"]
        for p in pools:
            lines += [f"pool {p.pool} ({p.capacity_type.lower().replace('_', '-')})",
                      f"  {', '.join(p.instance_types)}",
                      f"  nodes warm {p.nodes_warm} / min {p.nodes_min} / max {p.nodes_max}"]
        height = 10 + LINE * len(lines)
        body.append(_box(x, y, BOX_WIDTH, height, colour, lines))
        y += height + 10
        buckets = sorted(b.get("bucket", "?") for b in tf.get("resource", {}).get("aws_s3_bucket", {}).values())
        body.append(_box(x, y, BOX_WIDTH, 10 + LINE * (1 + len(buckets)), colour, ["S3 artifacts", *buckets]))
        bucket_bottom = y + 10 + LINE * (1 + len(buckets))
        y = bucket_bottom + 10
        instances = len(tf.get("resource", {}).get("aws_rds_cluster_instance", {}))
        db_role = "writer" if region.role == "primary" else "secondary (read-only)"
        body.append(_box(x, y, BOX_WIDTH, 10 + 2 * LINE, colour,
                         [f"Aurora registry: {db_role}", f"{instances} instance(s)"]))
        db_bottom = y + 10 + 2 * LINE
        bottoms[region.name] = {"bucket": bucket_bottom, "db": db_bottom, "centre": centre}
        deepest = max(deepest, db_bottom)

    lane = deepest + 30
    primary = bottoms[env.primary.name]
    for kind, label in (("bucket", "S3 replication"), ("db", "Aurora global replication")):
        for standby in env.standbys:
            target = bottoms[standby.name]
            offset = 6 if kind == "bucket" else -6
            body.append(
                f'<polyline points="{_n(primary["centre"] + offset)},{_n(primary[kind])} '
                f'{_n(primary["centre"] + offset)},{_n(lane)} {_n(target["centre"] + offset)},{_n(lane)} '
                f'{_n(target["centre"] + offset)},{_n(target[kind])}" fill="none" stroke="#888" '
                f'stroke-dasharray="{"6,3" if kind == "bucket" else "2,2"}" marker-end="url(#arrow)"/>')
            body.append(_text((primary["centre"] + target["centre"]) / 2, lane - 4, f"{label} → {standby.name}", "#444"))
            lane += 22
    height = lane + MARGIN
    header = (f'<svg xmlns="http://www.w3.org/2000/svg" width="{_n(width)}" height="{_n(height)}" '
              f'viewBox="0 0 {_n(width)} {_n(height)}" font-family="Helvetica, Arial, sans-serif" font-size="12">')
    defs = ('<defs><marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" '
            'orient="auto"><path d="M0,0 L10,5 L0,10 z" fill="#888"/></marker></defs>')
    title = f"<title>mlfleet environment {escape(env.name)}</title>"
    return "\n".join([header, title, defs, '<rect width="100%" height="100%" fill="#fff"/>', *body, "</svg>"]) + "\n"


def _routing_labels(env: Environment, stacks: dict[str, dict]) -> dict[str, str]:
    """How Route 53 reaches each region, from the global stack's records."""
    records = stacks.get(naming.global_stack_name(env.name), {}).get("resource", {}).get("aws_route53_record", {})
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
