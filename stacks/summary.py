"""The per-stack summary printed after synth: what each stack will create, read back from
the synthesized Terraform JSON (not from the config), so it shows what will really be applied."""
from __future__ import annotations

from mlfleet.constructs.terraform_json import (
    backend,
    blocks,
    first_block,
    provider_region,
    resource_count,
    resources,
)
from mlfleet.stacks.app import SynthResult
from mlfleet.stacks.environment.offerings import GpuOfferings


def stack_facts(tf: dict) -> dict:
    return {
        "region": provider_region(tf),
        "state": _state(tf),
        "resources": resource_count(tf),
        "gpu_pools": sorted(_eks_gpu_pools(tf) + _gke_gpu_pools(tf), key=lambda p: p["name"] or ""),
        "buckets": sorted([b.get("bucket", "?") for b in resources(tf, "aws_s3_bucket").values()]
                          + [_gcs_bucket(b) for b in resources(tf, "google_storage_bucket").values()]),
        "databases": sorted(
            [f"{c.get('cluster_identifier')} (aurora-postgresql)" for c in resources(tf, "aws_rds_cluster").values()]
            + [f"{g.get('global_cluster_identifier')} (global)"
               for g in resources(tf, "aws_rds_global_cluster").values()]
            + [f"{i.get('name')} (cloud sql {i.get('database_version', '').lower()}"
               + (f", replica of {i['master_instance_name']})" if i.get("master_instance_name") else ")")
               for i in resources(tf, "google_sql_database_instance").values()]
            + [f"{j.get('migration_job_id')} (cloud sql kept in step with Aurora by DMS)"
               for j in resources(tf, "google_database_migration_service_migration_job").values()]),
        # Names made per element of a set (certificate validation) are known only at apply.
        "dns_records": sorted({r.get("name") for r in resources(tf, "aws_route53_record").values()
                               if "${" not in str(r.get("name"))}),
        "runtimes": [_runtime(d) for d in resources(tf, "kubernetes_deployment_v1").values()],
        "signing_keys": signing_keys(tf),
    }


def signing_keys(tf: dict) -> list[str]:
    """The manifest signing keys the stack creates: an asymmetric KMS key (with the regions of its
    replicas) or an asymmetric Cloud KMS key (with its protection level)."""
    aliases = {a.get("target_key_id", ""): a.get("name", "?") for a in resources(tf, "aws_kms_alias").values()
               if "provider" not in a}
    replicas = sorted(str(r.get("provider", "?")).removeprefix("aws.")
                      for r in resources(tf, "aws_kms_replica_key").values())
    found = []
    for rid, key in resources(tf, "aws_kms_key").items():
        if key.get("key_usage") == "SIGN_VERIFY":
            alias = aliases.get(f"${{aws_kms_key.{rid}.key_id}}", "?")
            found.append(f"{alias} (KMS {key.get('customer_master_key_spec')}"
                         + (", multi-Region" if key.get("multi_region") else "")
                         + (f", replicas in {', '.join(replicas)})" if replicas else ")"))
    for key in resources(tf, "google_kms_crypto_key").values():
        if key.get("purpose") == "ASYMMETRIC_SIGN":
            template = first_block(key.get("version_template"))
            found.append(f"{key.get('name')} (Cloud KMS {template.get('algorithm')}, "
                         f"{template.get('protection_level', 'SOFTWARE')})")
    return sorted(found)


def _runtime(deployment: dict) -> dict:
    spec = deployment.get("spec", {})
    pod = spec.get("template", {}).get("spec", {})
    container = (pod.get("container") or [{}])[0]
    pool = next(iter((pod.get("node_selector") or {}).values()), "?")
    return {"name": deployment.get("metadata", {}).get("name"), "image": container.get("image", "?"),
            "replicas": int(spec.get("replicas", 0)), "pool": pool,
            "gpus": int(container.get("resources", {}).get("limits", {}).get("nvidia.com/gpu", 0))}


def _eks_gpu_pools(tf: dict) -> list[dict]:
    offerings = GpuOfferings.load()
    pools = []
    for body in resources(tf, "aws_eks_node_group").values():
        scaling = blocks(body.get("scaling_config"))[0]
        types = body.get("instance_types", [])
        if not all(offerings.is_gpu_type(t) for t in types):
            continue  # the system pool, for cluster add-ons
        gpus = min(offerings.gpus(t) for t in types) if types else 0
        pools.append({
            "name": body.get("node_group_name"), "instance_types": types,
            "capacity_type": body.get("capacity_type", "ON_DEMAND"), "gpus_per_node": gpus,
            "min": scaling["min_size"], "desired": scaling["desired_size"], "max": scaling["max_size"],
        })
    return pools


def _gke_gpu_pools(tf: dict) -> list[dict]:
    pools = []
    for body in resources(tf, "google_container_node_pool").values():
        config = first_block(body.get("node_config"))
        accelerators = blocks(config.get("guest_accelerator"))
        if not accelerators:
            continue  # the cluster's system pool
        accelerator = accelerators[0]
        autoscaling = blocks(body.get("autoscaling"))[0]
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
    return pools


def _gcs_bucket(bucket: dict) -> str:
    """`gs://name (location pair, rpo)`: the pair only for a custom dual-region."""
    placement = bucket.get("custom_placement_config")
    pair = "+".join(first_block(placement).get("data_locations", [])) if placement else ""
    return f"gs://{bucket.get('name', '?')} ({bucket.get('location')} {pair}, {bucket.get('rpo', 'DEFAULT')})" \
        .replace(" ,", ",")


def _state(tf: dict) -> str | None:
    found = backend(tf)
    if found is None:
        return None
    kind, settings = found
    if kind == "s3":
        return f"s3://{settings.get('bucket')}/{settings.get('key')} ({settings.get('region')})"
    if kind == "gcs":
        return f"gs://{settings.get('bucket')}/{settings.get('prefix')}"
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
            for key in facts["signing_keys"]:
                lines.append(f"    manifest signing key {key}")
            for runtime in facts["runtimes"]:
                lines.append(f"    runtime {runtime['name']}: {runtime['replicas']} pod(s) x {runtime['gpus']} GPU "
                             f"on {runtime['pool']}, image {runtime['image']}")
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
