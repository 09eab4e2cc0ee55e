"""The per-stack summary printed after synth: what each stack will create, read back from
the synthesized Terraform JSON (not from the config), so it shows what will really be applied."""
from __future__ import annotations

from mlfleet.stacks.app import SynthResult
from mlfleet.stacks.offerings import GpuOfferings


def _blocks(value) -> list:
    return value if isinstance(value, list) else ([value] if value else [])


def stack_facts(tf: dict) -> dict:
    resources = tf.get("resource", {})
    offerings = GpuOfferings.load()
    pools = []
    for body in resources.get("aws_eks_node_group", {}).values():
        scaling = _blocks(body.get("scaling_config"))[0]
        types = body.get("instance_types", [])
        if not all(offerings.is_gpu_type(t) for t in types):
            continue  # the system pool, for cluster add-ons
        gpus = min(offerings.gpus(t) for t in types) if types else 0
        pools.append({
            "name": body.get("node_group_name"), "instance_types": types,
            "capacity_type": body.get("capacity_type", "ON_DEMAND"), "gpus_per_node": gpus,
            "min": scaling["min_size"], "desired": scaling["desired_size"], "max": scaling["max_size"],
        })
    backend = next(iter(tf.get("terraform", {}).get("backend", {}).values()), {})
    return {
        "region": tf.get("provider", {}).get("aws", [{}])[0].get("region"),
        "state": f"s3://{backend.get('bucket')}/{backend.get('key')} ({backend.get('region')})" if backend else None,
        "resources": sum(len(v) for v in resources.values()),
        "gpu_pools": sorted(pools, key=lambda p: p["name"] or ""),
        "buckets": sorted(b.get("bucket", "?") for b in resources.get("aws_s3_bucket", {}).values()),
        "databases": sorted(
            [f"{c.get('cluster_identifier')} (aurora-postgresql)" for c in resources.get("aws_rds_cluster", {}).values()]
            + [f"{g.get('global_cluster_identifier')} (global)" for g in resources.get("aws_rds_global_cluster", {}).values()]),
        "dns_records": sorted({r.get("name") for r in resources.get("aws_route53_record", {}).values()}),
    }


def render_summary(result: SynthResult) -> str:
    lines = [f"Synthesized {len(result.stacks)} stacks into {result.outdir.name}/"]
    for env in result.environments:
        lines.append("")
        lines.append(f"environment {env.name}: primary {env.primary.name}"
                     + (f", standby {', '.join(r.name for r in env.standbys)}" if env.standbys else "")
                     + f"; RTO {env.targets.rto}s, RPO {env.targets.rpo}s")
        for name, tf in result.stacks.items():
            if not name.startswith(f"{env.name}-"):
                continue
            facts = stack_facts(tf)
            lines.append(f"  {name}  ({facts['resources']} resources, state {facts['state']})")
            for pool in facts["gpu_pools"]:
                lines.append(
                    f"    gpu pool {pool['name']}: {'/'.join(pool['instance_types'])} "
                    f"{pool['capacity_type'].lower()}, {pool['gpus_per_node']} GPU/node, nodes "
                    f"min {pool['min']} desired {pool['desired']} max {pool['max']} "
                    f"(GPUs {pool['desired'] * pool['gpus_per_node']}..{pool['max'] * pool['gpus_per_node']})")
            for bucket in facts["buckets"]:
                lines.append(f"    bucket {bucket}")
            for db in facts["databases"]:
                lines.append(f"    database {db}")
            for record in facts["dns_records"]:
                lines.append(f"    dns {record}")
    acknowledged = [f for f in result.findings if f.acknowledged]
    if acknowledged:
        lines.append("")
        lines.append(f"policy: {len(acknowledged)} acknowledged exception(s)")
        for f in acknowledged:
            lines.append(f"  {f.rule} {f.stack}: {f.path}: {f.message} — acknowledged: {f.acknowledged}")
    else:
        lines.append("")
        lines.append("policy: no findings")
    return "\n".join(lines) + "\n"
