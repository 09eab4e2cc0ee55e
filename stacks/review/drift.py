"""`mlfleet drift`: the live platform, read through boto3 (AWS) and the Google clients, against the
synthesized intent.

What is compared (what a failover or an RPO depends on):
- EKS node groups: scaling minimum and maximum, AMI type, capacity type, instance types,
  taints and labels (the desired size belongs to the autoscaler: the stacks ignore it too);
- artifact buckets: versioning, default encryption, public access block, and the replication
  rules of each source bucket (destinations, status, Replication Time Control, metrics);
- the Aurora global cluster: its member clusters and which one is the writer;
- Route 53: the failover records (type, TTL, values, routing policy, alias, health check)
  and the health checks they use (type, port, path, interval, threshold, search string).

Values Terraform resolves at apply (a key's ARN) cannot be compared with a literal; those are
checked for presence only. Every difference says where it is, what is live and what the code says.

An environment's Google Cloud regions and its `<env>-gcp-global` stack are read through the
Google clients (`drift_gcp.py`).
"""
from __future__ import annotations

import re

from botocore.exceptions import ClientError

from mlfleet.constructs.terraform_json import blocks, first_block, provider_region, resources, sorted_resources
from mlfleet.stacks.environment import Environment, naming
from mlfleet.stacks.environment.errors import MlfleetError
from mlfleet.stacks.review.drift_compare import Drift, compare
from mlfleet.stacks.review.drift_gcp import detect_gcp_drift

GCP_GLOBAL = "gcp-global"


def check_scope(env: Environment, only: str | None) -> None:
    """Refuse (a usage error) a region the environment does not have."""
    choices = [r.name for r in env.regions] + ["global"] + ([GCP_GLOBAL] if env.regions_on("gcp") else [])
    if only is not None and only not in choices:
        raise MlfleetError(f"environment {env.name} has no region {only!r}; choose one of {', '.join(choices)}")


def reads_gcp(env: Environment, only: str | None) -> bool:
    """Whether the scope has anything on Google Cloud to read."""
    return any(only in (None, r.name) for r in env.regions_on("gcp")) or (
        only == GCP_GLOBAL and bool(env.regions_on("gcp")))


def detect_drift(env: Environment, stacks: dict[str, dict], session, only: str | None = None,
                 gcp_clients=None) -> list[Drift]:
    """Every difference between the live platform and `stacks` (the synthesized intent): AWS
    through the boto3 `session`, Google Cloud through `gcp_clients` (`clients.google_cloud.GcpClients`)."""
    drifts: list[Drift] = []
    if reads_gcp(env, only):
        drifts += detect_gcp_drift(env, stacks, gcp_clients, only)
    for region in env.regions_on("aws"):
        if only not in (None, region.name):
            continue
        tf = stacks[naming.stack_name(env.name, region.name)]
        drifts += _node_groups(region.name, tf, session.client("eks", region_name=region.name))
        drifts += _buckets(region.name, tf, session.client("s3", region_name=region.name))
    if only in (None, "global"):
        tf = stacks[naming.global_stack_name(env.name)]
        # The global cluster exists only with AWS regions; its writer is the (AWS) primary.
        if resources(tf, "aws_rds_global_cluster"):
            drifts += _global_cluster(env, stacks, tf, session.client("rds", region_name=env.primary.name))
        drifts += _routing(tf, session.client("route53", region_name="us-east-1"))
    return drifts


def render_text(env: Environment, drifts: list[Drift], only: str | None) -> str:
    scope = f"{env.name}" + (f" ({only})" if only else "")
    if not drifts:
        lines = [f"no drift: the live platform of {scope} matches the code"]
    else:
        lines = [f"drift in {scope}: {len(drifts)} difference(s)"]
        for d in drifts:
            lines.append(f"  [{d.region}] {d.resource}: {d.attribute} is {d.live}, the code says {d.code}")
    return "\n".join(lines) + "\n"


# --- helpers ---------------------------------------------------------------------------------

def _unresolved(value) -> bool:
    return isinstance(value, str) and "${" in value


def _missing(error: ClientError, *codes: str) -> bool:
    return error.response.get("Error", {}).get("Code") in codes


# --- EKS -------------------------------------------------------------------------------------

def _node_groups(region: str, tf: dict, eks) -> list[Drift]:
    clusters = [body.get("name") for _, body in sorted_resources(tf, "aws_eks_cluster")]
    if not clusters:
        return []
    cluster = clusters[0]
    drifts = []
    for _, body in sorted_resources(tf, "aws_eks_node_group"):
        name = body.get("node_group_name")
        resource = f"node group {name} in EKS cluster {cluster}"
        try:
            live = eks.describe_nodegroup(clusterName=cluster, nodegroupName=name)["nodegroup"]
        except ClientError as exc:
            if _missing(exc, "ResourceNotFoundException"):
                drifts.append(Drift(region, resource, "existence", "missing", "exists"))
                continue
            raise
        scaling = first_block(body.get("scaling_config"))
        live_scaling = live.get("scalingConfig", {})
        drifts += compare(region, resource, [
            ("scaling minimum", live_scaling.get("minSize"), scaling.get("min_size")),
            ("scaling maximum", live_scaling.get("maxSize"), scaling.get("max_size")),
            ("AMI type", live.get("amiType"), body.get("ami_type")),
            ("capacity type", live.get("capacityType"), body.get("capacity_type", "ON_DEMAND")),
            ("instance types", sorted(live.get("instanceTypes") or []), sorted(body.get("instance_types") or [])),
            ("labels", live.get("labels") or {}, body.get("labels") or {}),
            ("taints", sorted(_taint(t) for t in live.get("taints") or []),
             sorted(_taint(t) for t in blocks(body.get("taint")))),
        ])
    return drifts


def _taint(taint: dict) -> str:
    return f"{taint.get('key')}={taint.get('value', '')}:{taint.get('effect')}"


# --- S3 --------------------------------------------------------------------------------------

def _for_bucket(tf: dict, rtype: str, logical: str) -> dict | None:
    """The `rtype` resource whose `bucket` references the bucket with logical id `logical`."""
    for _, body in sorted_resources(tf, rtype):
        if body.get("bucket") == f"${{aws_s3_bucket.{logical}.id}}":
            return body
    return None


def _buckets(region: str, tf: dict, s3) -> list[Drift]:
    drifts = []
    for logical, body in sorted_resources(tf, "aws_s3_bucket"):
        name = body.get("bucket")
        resource = f"bucket {name}"
        try:
            s3.head_bucket(Bucket=name)
        except ClientError as exc:
            if _missing(exc, "404", "NoSuchBucket", "NotFound"):
                drifts.append(Drift(region, resource, "existence", "missing", "exists"))
                continue
            raise
        versioning = _for_bucket(tf, "aws_s3_bucket_versioning", logical)
        if versioning is not None:
            code = first_block(versioning.get("versioning_configuration")).get("status")
            live = s3.get_bucket_versioning(Bucket=name).get("Status")
            drifts += compare(region, resource, [("versioning", live, code)])
        for rtype, read in (("aws_s3_bucket_server_side_encryption_configuration", _encryption),
                            ("aws_s3_bucket_public_access_block", _public_access),
                            ("aws_s3_bucket_replication_configuration", _replication)):
            drifts += read(region, resource, s3, name, _for_bucket(tf, rtype, logical))
    return drifts


def _encryption(region: str, resource: str, s3, name: str, code: dict | None) -> list[Drift]:
    if code is None:
        return []
    try:
        rules = s3.get_bucket_encryption(Bucket=name)["ServerSideEncryptionConfiguration"]["Rules"]
    except ClientError as exc:
        if not _missing(exc, "ServerSideEncryptionConfigurationNotFoundError"):
            raise
        rules = []
    live = (rules[0] if rules else {}).get("ApplyServerSideEncryptionByDefault", {})
    wanted = (first_block(code.get("rule")).get("apply_server_side_encryption_by_default") or {})
    wanted = first_block(wanted)
    pairs = [("default encryption", live.get("SSEAlgorithm"), wanted.get("sse_algorithm"))]
    key = wanted.get("kms_master_key_id")
    if _unresolved(key):
        pairs.append(("KMS key", "set" if live.get("KMSMasterKeyID") else None, "set"))
    elif key:
        pairs.append(("KMS key", live.get("KMSMasterKeyID"), key))
    return compare(region, resource, pairs)


def _public_access(region: str, resource: str, s3, name: str, code: dict | None) -> list[Drift]:
    if code is None:
        return []
    try:
        live = s3.get_public_access_block(Bucket=name)["PublicAccessBlockConfiguration"]
    except ClientError as exc:
        if not _missing(exc, "NoSuchPublicAccessBlockConfiguration"):
            raise
        live = {}
    keys = {"block_public_acls": "BlockPublicAcls", "block_public_policy": "BlockPublicPolicy",
            "ignore_public_acls": "IgnorePublicAcls", "restrict_public_buckets": "RestrictPublicBuckets"}
    return compare(region, resource, [(f"public access block {k}", live.get(v, False), bool(code.get(k)))
                                       for k, v in keys.items()])


def _replication(region: str, resource: str, s3, name: str, code: dict | None) -> list[Drift]:
    try:
        live_rules = s3.get_bucket_replication(Bucket=name)["ReplicationConfiguration"].get("Rules", [])
    except ClientError as exc:
        if not _missing(exc, "ReplicationConfigurationNotFoundError"):
            raise
        live_rules = []
    if code is None and not live_rules:
        return []

    def destination(rule: dict) -> str:
        return (rule.get("Destination") or {}).get("Bucket", "?")

    live = {destination(r): r for r in live_rules}
    wanted = {}
    for rule in blocks((code or {}).get("rule")):
        target = first_block(rule.get("destination"))
        wanted[target.get("bucket", "?")] = (rule, target)
    drifts = []
    for bucket_arn in sorted(set(wanted) - set(live)):
        drifts.append(Drift(region, resource, f"replication to {bucket_arn}", "missing", "enabled"))
    for bucket_arn in sorted(set(live) - set(wanted)):
        drifts.append(Drift(region, resource, f"replication to {bucket_arn}", "present", "not in the code"))
    for bucket_arn in sorted(set(live) & set(wanted)):
        rule, target = wanted[bucket_arn]
        live_rule = live[bucket_arn]
        live_target = live_rule.get("Destination") or {}
        code_time = first_block(target.get("replication_time")).get("status", "Disabled")
        code_metrics = first_block(target.get("metrics")).get("status", "Disabled")
        drifts += compare(region, resource, [
            (f"replication to {bucket_arn}: status", live_rule.get("Status"), rule.get("status")),
            (f"replication to {bucket_arn}: Replication Time Control",
             (live_target.get("ReplicationTime") or {}).get("Status", "Disabled"), code_time),
            (f"replication to {bucket_arn}: metrics", (live_target.get("Metrics") or {}).get("Status", "Disabled"),
             code_metrics),
        ])
    return drifts


# --- Aurora global cluster --------------------------------------------------------------------

_CLUSTER_ARN = re.compile(r"^arn:aws[a-z-]*:rds:([a-z0-9-]+):\d+:cluster:(.+)$")


def _global_cluster(env: Environment, stacks: dict[str, dict], tf: dict, rds) -> list[Drift]:
    drifts = []
    for _, body in sorted_resources(tf, "aws_rds_global_cluster"):
        identifier = body.get("global_cluster_identifier")
        resource = f"Aurora global cluster {identifier}"
        try:
            found = rds.describe_global_clusters(GlobalClusterIdentifier=identifier)["GlobalClusters"]
        except ClientError as exc:
            if _missing(exc, "GlobalClusterNotFoundFault"):
                found = []
            else:
                raise
        if not found:
            drifts.append(Drift("global", resource, "existence", "missing", "exists"))
            continue
        live_members, live_writer = set(), None
        for member in found[0].get("GlobalClusterMembers", []):
            match = _CLUSTER_ARN.fullmatch(member.get("DBClusterArn", ""))
            if match:
                live_members.add(f"{match.group(2)} ({match.group(1)})")
                if member.get("IsWriter"):
                    live_writer = f"{match.group(2)} ({match.group(1)})"
        code_members = {f"{c.get('cluster_identifier')} ({provider_region(stacks[name])})"
                        for name, stack in stacks.items() for _, c in sorted_resources(stack, "aws_rds_cluster")
                        if c.get("global_cluster_identifier") == identifier}
        primary = naming.db_cluster_id(env.name, env.primary.name)
        code_writer = f"{primary} ({env.primary.name})"
        drifts += compare("global", resource, [("members", sorted(live_members), sorted(code_members)),
                                                 ("writer", live_writer, code_writer)])
    return drifts


# --- Route 53 ---------------------------------------------------------------------------------

_HEALTH_CHECK_REF = re.compile(r"^\$\{aws_route53_health_check\.([A-Za-z0-9_-]+)\.id\}$")


def _fqdn(name: str | None) -> str:
    return (name or "").rstrip(".").lower()


def _routing(tf: dict, route53) -> list[Drift]:
    checks = {name: body for name, body in sorted_resources(tf, "aws_route53_health_check")}
    records = sorted_resources(tf, "aws_route53_record")
    if not records:
        return []
    drifts: list[Drift] = []
    live_checks = {}
    for page in route53.get_paginator("list_health_checks").paginate():
        for check in page["HealthChecks"]:
            live_checks[check["Id"]] = check["HealthCheckConfig"]
    by_fqdn = {_fqdn(c.get("FullyQualifiedDomainName")): c for c in live_checks.values()
               if c.get("FullyQualifiedDomainName")}
    for _, body in sorted(checks.items()):
        if body.get("fqdn"):  # an endpoint's check (the calculated and routing-control ones probe nothing)
            drifts += _health_check(body, by_fqdn.get(_fqdn(body.get("fqdn"))))
    for zone_id in sorted({body.get("zone_id") for _, body in records}):
        try:
            live = [r for page in route53.get_paginator("list_resource_record_sets").paginate(HostedZoneId=zone_id)
                    for r in page["ResourceRecordSets"]]
        except ClientError as exc:
            if _missing(exc, "NoSuchHostedZone"):
                drifts.append(Drift("global", f"hosted zone {zone_id}", "existence", "missing", "exists"))
                continue
            raise
        drifts += _records(zone_id, [b for _, b in records if b.get("zone_id") == zone_id], live, checks, live_checks)
    return drifts


def _health_check(code: dict, live: dict | None) -> list[Drift]:
    resource = f"Route 53 health check for {code.get('fqdn')}"
    if live is None:
        return [Drift("global", resource, "existence", "missing", "exists")]
    return compare("global", resource, [
        ("type", live.get("Type"), code.get("type")),
        ("port", live.get("Port"), code.get("port")),
        ("path", live.get("ResourcePath"), code.get("resource_path")),
        ("request interval", live.get("RequestInterval"), code.get("request_interval")),
        ("failure threshold", live.get("FailureThreshold"), code.get("failure_threshold")),
        ("search string", live.get("SearchString"), code.get("search_string")),
    ])


def _code_endpoint(name: str, checks: dict) -> str | None:
    """The endpoint a record's check probes: its own FQDN, or (a calculated check guarding it
    with a routing control) that of the child that probes one."""
    check = checks.get(name, {})
    if check.get("fqdn"):
        return check["fqdn"]
    children = [_HEALTH_CHECK_REF.fullmatch(c) for c in check.get("child_healthchecks") or []]
    return next((found for c in children if c for found in [_code_endpoint(c.group(1), checks)] if found), None)


def _live_endpoint(check_id: str | None, live_checks: dict) -> str | None:
    check = live_checks.get(check_id or "", {})
    if check.get("FullyQualifiedDomainName"):
        return check["FullyQualifiedDomainName"]
    return next((found for child in check.get("ChildHealthChecks") or []
                 for found in [_live_endpoint(child, live_checks)] if found), None)


def _records(zone_id: str, code_records: list[dict], live: list[dict], checks: dict, live_checks: dict) -> list[Drift]:
    def key(name, rtype, identifier) -> tuple:
        return (_fqdn(name), rtype, identifier or "")

    live_by_key = {key(r["Name"], r["Type"], r.get("SetIdentifier")): r for r in live}
    names = {_fqdn(b.get("name")) for b in code_records}
    drifts = []
    seen = set()
    for body in code_records:
        k = key(body.get("name"), body.get("type"), body.get("set_identifier"))
        seen.add(k)
        resource = f"record {k[0]} {k[1]}" + (f" ({k[2]})" if k[2] else "") + f" in zone {zone_id}"
        record = live_by_key.get(k)
        if record is None:
            drifts.append(Drift("global", resource, "existence", "missing", "exists"))
            continue
        alias = (blocks(body.get("alias")) or [None])[0]
        live_alias = record.get("AliasTarget")
        check_ref = _HEALTH_CHECK_REF.fullmatch(body.get("health_check_id") or "")
        code_check = _code_endpoint(check_ref.group(1), checks) if check_ref else body.get("health_check_id")
        live_check = _live_endpoint(record.get("HealthCheckId"), live_checks)
        drifts += compare("global", resource, [
            ("TTL", record.get("TTL"), body.get("ttl")),
            ("values", sorted(_fqdn(v["Value"]) for v in record.get("ResourceRecords") or []),
             sorted(_fqdn(v) for v in body.get("records") or [])),
            ("failover", record.get("Failover"), (body.get("failover_routing_policy") or {}).get("type")),
            ("weight", record.get("Weight"), (body.get("weighted_routing_policy") or {}).get("weight")),
            ("alias target", _fqdn(live_alias.get("DNSName")) if live_alias else None,
             _fqdn(alias.get("name")) if alias else None),
            ("health check (by FQDN)", _fqdn(live_check) or None, _fqdn(code_check) or None),
        ])
    for k in sorted(live_by_key):
        if k[0] in names and k not in seen and k[1] not in ("NS", "SOA"):
            drifts.append(Drift("global", f"record {k[0]} {k[1]}" + (f" ({k[2]})" if k[2] else "") +
                                f" in zone {zone_id}", "existence", "present", "not in the code"))
    return drifts
