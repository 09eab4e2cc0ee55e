"""DR review rules (MLF020+): what no per-resource scanner can see, because the evidence spans
the environment's stacks (a global cluster in `<env>-global`, its members in the regional
stacks) or the environment's targets.

They run on the synthesized JSON of all the environment's stacks together, at review time,
on AWS and Google resource types alike. A finding is acknowledged by the environment file's
`acknowledgements` (rule and construct-path glob).
"""
from __future__ import annotations

from typing import Iterator

from mlfleet.constructs.policy import Rule
from mlfleet.constructs.terraform_json import (
    Body,
    address,
    addressed,
    blocks,
    construct_paths,
    first_block,
    output_value,
    provider_region,
    references,
    resources,
    sorted_resources,
)
from mlfleet.stacks.environment import Environment, naming
from mlfleet.stacks.review.findings import ReviewFinding, acknowledgement
from mlfleet.stacks.review.replication import registry_replica

# Below this RTO target a cold standby is a gamble: GPU capacity is not guaranteed to exist
# in the standby region when the primary's whole fleet is looking for it at once.
SHORT_RTO_SECONDS = 3600
# Google's predefined dual-regions; a custom dual-region is a `custom_placement_config`.
GCS_PREDEFINED_DUAL_REGIONS = frozenset({"ASIA1", "EUR4", "EUR5", "EUR7", "EUR8", "NAM4"})

DR_RULES: dict[str, Rule] = {r.id: r for r in (
    Rule("MLF020", "S3 replication without Replication Time Control and metrics", "high",
         "enable replication_time (15 minutes) and metrics on every replication rule; without them "
         "replication has no time bound and its lag is invisible"),
    Rule("MLF021", "global database without a secondary region", "high",
         "add a secondary cluster in a standby region to the global cluster"),
    Rule("MLF022", "short RTO target without warm standby or reserved capacity", "high",
         "keep warm_standby nodes in each standby region, or reserve capacity there"),
    Rule("MLF023", "dual-region bucket without turbo replication", "high",
         'set rpo = "ASYNC_TURBO" (15-minute replication objective) on the dual-region bucket'),
    Rule("MLF024", "Cloud SQL primary without a cross-region DR replica", "high",
         "create a read replica in another region whose master_instance_name is the primary"),
    Rule("MLF025", "standby region without a registry replica", "high",
         "give the standby a replica of the registry: an Aurora secondary in the global cluster (AWS), a Cloud "
         "SQL replica (Google Cloud primary), or a DMS migration job from Aurora (gcp.registry_source)"),
)}


def evaluate(env: Environment, stacks: dict[str, dict]) -> list[ReviewFinding]:
    """Every DR finding of the environment's stacks, acknowledged where the file says so."""
    paths = {(stack, resource): path for stack, tf in stacks.items() for resource, path in construct_paths(tf).items()}
    findings = []
    for check in (_replication_time_control, _global_cluster_secondaries, _short_rto_capacity,
                  _dual_region_turbo, _cloud_sql_dr_replica, _standby_registry_replica):
        for rule_id, stack, where, message in check(env, stacks):
            rule = DR_RULES[rule_id]
            path = paths.get((stack, where), where)
            findings.append(ReviewFinding("mlfleet", rule_id, rule.title, rule.severity, stack, where, path,
                                          message, rule.fix, acknowledgement(env, rule_id, path)))
    return sorted(findings, key=ReviewFinding.sort_key)


Hit = Iterator[tuple[str, str, str, str]]   # (rule, stack, address, message)


def _across(stacks: dict[str, dict], rtype: str) -> Iterator[tuple[str, str, Body]]:
    """(stack, address, body) of every `rtype` resource of the environment, by stack and logical id."""
    for stack, tf in sorted(stacks.items()):
        for name, body in sorted_resources(tf, rtype):
            yield stack, address(rtype, name), body


def _replication_time_control(env: Environment, stacks: dict[str, dict]) -> Hit:
    for stack, where, body in _across(stacks, "aws_s3_bucket_replication_configuration"):
        for rule in blocks(body.get("rule")):
            if rule.get("status") != "Enabled":
                continue
            destination = first_block(rule.get("destination"))
            missing = [name for name, block in (("Replication Time Control", "replication_time"),
                                                ("replication metrics", "metrics"))
                       if first_block(destination.get(block)).get("status") != "Enabled"]
            if missing:
                yield ("MLF020", stack, where, f"rule {rule.get('id', '?')} to {destination.get('bucket', '?')} "
                                               f"has no {' and no '.join(missing)}")


def _global_cluster_secondaries(env: Environment, stacks: dict[str, dict]) -> Hit:
    # A cross-cloud registry keeps its standby copies outside the global cluster (DMS into Cloud
    # SQL): a single-region global cluster loses nothing when every standby holds such a replica.
    replicas = [registry_replica(env, stacks, r.name) for r in env.standbys]
    if replicas and all(r is not None and r.kind != "aurora" for r in replicas):
        return
    members: dict[str, set[str]] = {}
    for stack, _, body in _across(stacks, "aws_rds_cluster"):
        if body.get("global_cluster_identifier"):
            members.setdefault(body["global_cluster_identifier"], set()).add(provider_region(stacks[stack]) or stack)
    for stack, where, body in _across(stacks, "aws_rds_global_cluster"):
        regions = members.get(body.get("global_cluster_identifier"), set())
        if len(regions) < 2:
            held = f"only {', '.join(sorted(regions))}" if regions else "no member cluster"
            yield ("MLF021", stack, where,
                   f"global cluster {body.get('global_cluster_identifier')} has {held}: "
                   "losing that region loses the registry")


def _short_rto_capacity(env: Environment, stacks: dict[str, dict]) -> Hit:
    if env.targets.rto >= SHORT_RTO_SECONDS:
        return
    if not env.standbys:
        yield ("MLF022", f"{env.name}-global", "environment",
               f"RTO target {env.targets.rto} s with no standby region to fail over to")
        return
    standby_regions = {r.name for r in env.standbys}
    for stack, tf in sorted(stacks.items()):
        if provider_region(tf) not in standby_regions or not resources(tf, "aws_eks_node_group"):
            continue
        templates = dict(addressed(tf, "aws_launch_template"))
        for _, where, body in _across({stack: tf}, "aws_eks_node_group"):
            name = body.get("node_group_name", "")
            failover = output_value(tf, f"{name.replace('-', '_')}_failover_size", 0)
            warm = first_block(body.get("scaling_config")).get("min_size", 0)
            if failover and not warm and not _reserved(body, templates):
                yield ("MLF022", stack, where,
                       f"node group {name} keeps no warm node and has no reservation, but a failover needs "
                       f"{failover} node(s) within the {env.targets.rto} s RTO target")


def _reserved(node_group: dict, templates: dict[str, dict]) -> bool:
    """Whether the group's capacity is reserved: a Capacity Block, or a launch template (by address)
    with a capacity reservation."""
    return any(blocks(templates.get(template, {}).get("capacity_reservation_specification"))
               for template in references(node_group.get("launch_template"), "aws_launch_template")) \
        or node_group.get("capacity_type") == "CAPACITY_BLOCK"


def _dual_region_turbo(env: Environment, stacks: dict[str, dict]) -> Hit:
    for stack, where, body in _across(stacks, "google_storage_bucket"):
        placement = first_block(body.get("custom_placement_config"))
        dual = len(placement.get("data_locations") or []) == 2 \
            or str(body.get("location", "")).upper() in GCS_PREDEFINED_DUAL_REGIONS
        if dual and body.get("rpo") != "ASYNC_TURBO":
            yield ("MLF023", stack, where,
                   f"dual-region bucket {body.get('name', '?')} replicates with the default RPO (up to 12 hours)")


def _cloud_sql_dr_replica(env: Environment, stacks: dict[str, dict]) -> Hit:
    instances = list(_across(stacks, "google_sql_database_instance"))
    for stack, where, body in instances:
        if body.get("master_instance_name"):
            continue
        name = body.get("name")
        # A replica names its primary literally or through a reference to the primary's name.
        primary = {name, f"${{{where}.name}}", f"${{{where}.id}}"} - {None}
        replicas = [b for _, _, b in instances if b.get("master_instance_name") in primary]
        if not any(r.get("region") != body.get("region") for r in replicas):
            found = "only same-region replicas" if replicas else "no replica"
            yield ("MLF024", stack, where, f"Cloud SQL primary {name or where} has {found}")


def _standby_registry_replica(env: Environment, stacks: dict[str, dict]) -> Hit:
    for region in env.standbys:
        stack = naming.stack_name(env.name, region.name)
        if stack not in stacks or registry_replica(env, stacks, region.name) is not None:
            continue  # a stack outside this review says nothing about the region
        yield ("MLF025", stack, f"{stack}/registry",
               f"standby {region.name} holds no replica of the registry (no Aurora secondary in the global cluster, "
               "no Cloud SQL replica, no DMS migration job): a failover there cannot take registry writes")
