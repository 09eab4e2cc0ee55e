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
    for body in resources.get("google_container_node_pool", {}).values():
        config = (_blocks(body.get("node_config")) or [{}])[0]
        accelerators = _blocks(config.get("guest_accelerator"))
        if not accelerators:
            continue  # the cluster's system pool
        accelerator = accelerators[0]
        autoscaling = _blocks(body.get("autoscaling"))[0]
        zones = len(body.get("node_locations") or []) or 1
        pools.append({
            "name": body.get("name"), "instance_types": [config.get("machine_type")],
            "capacity_type": "SPOT" if config.get("spot") else
            ("QUEUED" if body.get("queued_provisioning") else "ON_DEMAND"),
            "gpus_per_node": accelerator.get("count", 0),
            "min": autoscaling.get("total_min_node_count", 0),
            "desired": max(autoscaling.get("total_min_node_count", 0), body.get("initial_node_count", 0) * zones),
            "max": autoscaling.get("total_max_node_count", 0),
        })
    providers = tf.get("provider", {})
    return {
        "region": (providers.get("aws") or providers.get("google") or [{}])[0].get("region"),
        "state": _state(tf),
        "resources": sum(len(v) for v in resources.values()),
        "gpu_pools": sorted(pools, key=lambda p: p["name"] or ""),
        "buckets": sorted([b.get("bucket", "?") for b in resources.get("aws_s3_bucket", {}).values()]
                          + [f"gs://{b.get('name', '?')} ({b.get('location')} "
                             f"{'+'.join(_blocks(b.get('custom_placement_config'))[0].get('data_locations', [])) if b.get('custom_placement_config') else ''}"
                             f", {b.get('rpo', 'DEFAULT')})".replace(" ,", ",")
                             for b in resources.get("google_storage_bucket", {}).values()]),
        "databases": sorted(
            [f"{c.get('cluster_identifier')} (aurora-postgresql)" for c in resources.get("aws_rds_cluster", {}).values()]
            + [f"{g.get('global_cluster_identifier')} (global)" for g in resources.get("aws_rds_global_cluster", {}).values()]
            + [f"{i.get('name')} (cloud sql {i.get('database_version', '').lower()}"
               + (f", replica of {i['master_instance_name']})" if i.get("master_instance_name") else ")")
               for i in resources.get("google_sql_database_instance", {}).values()]
            + [f"{j.get('migration_job_id')} (cloud sql kept in step with Aurora by DMS)"
               for j in resources.get("google_database_migration_service_migration_job", {}).values()]),
        "dns_records": sorted({r.get("name") for r in resources.get("aws_route53_record", {}).values()}),
    }


def _state(tf: dict) -> str | None:
    backends = tf.get("terraform", {}).get("backend", {})
    if "s3" in backends:
        b = backends["s3"]
        return f"s3://{b.get('bucket')}/{b.get('key')} ({b.get('region')})"
    if "gcs" in backends:
        b = backends["gcs"]
        return f"gs://{b.get('bucket')}/{b.get('prefix')}"
    return None


def render_summary(result: SynthResult) -> str:
    lines = [f"Synthesized {len(result.stacks)} stacks into {result.outdir.name}/"]
    for env in result.environments:
        lines.append("")
        cloud = (lambda r: f" ({r.cloud})") if env.cross_cloud else (lambda r: "")
        lines.append(f"environment {env.name}: primary {env.primary.name}{cloud(env.primary)}"
                     + (f", standby {', '.join(r.name + cloud(r) for r in env.standbys)}" if env.standbys else "")
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
