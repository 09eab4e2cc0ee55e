"""The rule pack on AWS resources (resolved Terraform JSON of one stack)."""
from __future__ import annotations

import re

from mlfleet.constructs.policy.findings import REQUIRED_TAGS, Check, Hits
from mlfleet.constructs.terraform_json import addressed, blocks, first_block, providers, references


def _s3_buckets(tf: dict) -> Hits:
    encrypted = set()
    for _, body in addressed(tf, "aws_s3_bucket_server_side_encryption_configuration"):
        rules = [d for r in blocks(body.get("rule")) for d in blocks(r.get("apply_server_side_encryption_by_default"))]
        if rules and all(d.get("sse_algorithm") in ("aws:kms", "aws:kms:dsse") and d.get("kms_master_key_id")
                         for d in rules):
            encrypted |= references(body.get("bucket"), "aws_s3_bucket")
    blocked = set()
    for _, body in addressed(tf, "aws_s3_bucket_public_access_block"):
        if all(body.get(k) is True for k in ("block_public_acls", "block_public_policy",
                                               "ignore_public_acls", "restrict_public_buckets")):
            blocked |= references(body.get("bucket"), "aws_s3_bucket")
    for bucket, body in addressed(tf, "aws_s3_bucket"):
        if bucket not in encrypted:
            yield "MLF001", bucket, "bucket has no SSE-KMS default encryption with a customer key"
        if bucket not in blocked:
            yield "MLF002", bucket, "bucket has no public access block with all four settings on"
        if body.get("force_destroy") is True:
            yield "MLF003", bucket, "force_destroy deletes every object version with the bucket"


def _databases(tf: dict) -> Hits:
    for cluster, body in addressed(tf, "aws_rds_cluster"):
        # A global cluster member inherits the global cluster's encryption (checked there).
        yield from _stored_data(cluster, body, encrypted_elsewhere=bool(body.get("global_cluster_identifier")))
    for cluster, body in addressed(tf, "aws_rds_global_cluster"):
        if body.get("storage_encrypted") is not True:
            yield "MLF001", cluster, "storage_encrypted is not true"
        if body.get("deletion_protection") is not True:
            yield "MLF003", cluster, "deletion_protection is not true"
    for instance, body in addressed(tf, "aws_rds_cluster_instance"):
        if body.get("publicly_accessible") is True:
            yield "MLF002", instance, "publicly_accessible is true"
    for table, body in addressed(tf, "aws_dynamodb_table"):
        sse = blocks(body.get("server_side_encryption"))
        if not (sse and sse[0].get("enabled") is True and sse[0].get("kms_key_arn")):
            yield "MLF001", table, "no server-side encryption with a customer-managed key"
        if body.get("deletion_protection_enabled") is not True:
            yield "MLF003", table, "deletion_protection_enabled is not true"


_PUBLIC_CANNED_ACLS = {"public-read", "public-read-write", "authenticated-read"}
_PUBLIC_GRANTEES = ("http://acs.amazonaws.com/groups/global/AllUsers",
                    "http://acs.amazonaws.com/groups/global/AuthenticatedUsers")


def _s3_acls(tf: dict) -> Hits:
    """ACLs that grant everyone (or every AWS account) access to a bucket or an object."""
    for rtype in ("aws_s3_bucket_acl", "aws_s3_object", "aws_s3_bucket"):
        for resource, body in addressed(tf, rtype):
            if body.get("acl") in _PUBLIC_CANNED_ACLS:
                yield "MLF002", resource, f"canned ACL {body['acl']} grants access to everyone"
            grants = [g for policy in blocks(body.get("access_control_policy")) for g in blocks(policy.get("grant"))]
            public = sorted({str(first_block(g.get("grantee")).get("uri")) for g in grants
                             if first_block(g.get("grantee")).get("uri") in _PUBLIC_GRANTEES})
            if public:
                yield "MLF002", resource, f"ACL grants {', '.join(u.rsplit('/', 1)[1] for u in public)}"


def _db_instances(tf: dict) -> Hits:
    for instance, body in addressed(tf, "aws_db_instance"):
        if body.get("publicly_accessible") is True:
            yield "MLF002", instance, "publicly_accessible is true"
        yield from _stored_data(instance, body, encrypted_elsewhere=False)


def _stored_data(address: str, body: dict, *, encrypted_elsewhere: bool) -> Hits:
    """What an RDS cluster and a DB instance alike must hold: encryption with a customer key,
    deletion protection and a final snapshot."""
    if body.get("storage_encrypted") is not True and not encrypted_elsewhere:
        yield "MLF001", address, "storage_encrypted is not true"
    if not body.get("kms_key_id"):
        yield "MLF001", address, "no customer-managed kms_key_id"
    if body.get("deletion_protection") is not True:
        yield "MLF003", address, "deletion_protection is not true"
    if body.get("skip_final_snapshot") is True:
        yield "MLF003", address, "skip_final_snapshot drops the last backup on delete"


def _postgres_tls(tf: dict) -> Hits:
    """PostgreSQL (Aurora or RDS) that accepts unencrypted connections: its parameter group does not
    set rds.force_ssl = 1, or it has none (the engine's default group allows plaintext)."""
    groups = {**dict(addressed(tf, "aws_rds_cluster_parameter_group")), **dict(addressed(tf, "aws_db_parameter_group"))}
    used: set[str] = set()
    for rtype, attribute, gtype in (("aws_rds_cluster", "db_cluster_parameter_group_name",
                                     "aws_rds_cluster_parameter_group"),
                                    ("aws_db_instance", "parameter_group_name", "aws_db_parameter_group")):
        for database, body in addressed(tf, rtype):
            if "postgres" not in str(body.get("engine", "")):
                continue
            named = references(body.get(attribute), gtype)
            if not body.get(attribute):
                yield "MLF046", database, f"no {attribute}: the default group does not force TLS"
            used |= named
    postgres = {g for g, body in groups.items() if "postgres" in str(body.get("family", ""))}
    for group in sorted(used | postgres):
        forced = [p for p in blocks(groups[group].get("parameter"))
                  if p.get("name") == "rds.force_ssl" and str(p.get("value")) == "1"]
        if not forced:
            yield "MLF046", group, "rds.force_ssl is not 1: clients may connect without TLS"


def _topics_and_logs(tf: dict) -> Hits:
    for topic, body in addressed(tf, "aws_sns_topic"):
        if not body.get("kms_master_key_id"):
            yield "MLF001", topic, "topic is not encrypted with a KMS key"


def _network_exposure(tf: dict) -> Hits:
    # Ingress ranges and public endpoints are exposure_rules'.
    for subnet, body in addressed(tf, "aws_subnet"):
        if body.get("map_public_ip_on_launch") is True:
            yield "MLF002", subnet, "instances launched here get public IPs"
    for cluster, body in addressed(tf, "aws_eks_cluster"):
        if not blocks(body.get("encryption_config")):
            yield "MLF001", cluster, "Kubernetes secrets are not envelope-encrypted with KMS"


# NVIDIA GPU instance families (the part of an instance type before the dot).
GPU_INSTANCE_FAMILY = re.compile(r"g4dn|g5g?|g6[ef]?|gr6f?|g7e?|p3(dn)?|p4de?|p5(e|en)?|p6e?-[a-z0-9]+")


def is_gpu_instance_type(instance_type: str) -> bool:
    return bool(GPU_INSTANCE_FAMILY.fullmatch(instance_type.split(".", 1)[0]))


def _gpu_node_group_reason(body: dict, templates: dict[str, dict]) -> str | None:
    """Why a node group may run GPU nodes, or None when it does not: an NVIDIA (or legacy AL2 GPU)
    AMI type, a GPU instance type, or an AMI or instance type only known at apply (fail closed)."""
    ami_type = body.get("ami_type") or ""
    if "NVIDIA" in ami_type or "GPU" in ami_type:
        return f"ami_type {ami_type}"
    # A Capacity Block's instance type is on the launch template, not the node group.
    instance_types = body.get("instance_types") or []
    instance_types = [instance_types] if isinstance(instance_types, str) else list(instance_types)
    for template in references(body.get("launch_template"), "aws_launch_template"):
        if templates.get(template, {}).get("instance_type"):
            instance_types.append(templates[template]["instance_type"])
    for value in [ami_type, *instance_types]:
        if "${" in value:
            return f"{value} is only known at apply, so the group may be a GPU group"
    gpu_types = [t for t in instance_types if is_gpu_instance_type(t)]
    return f"GPU instance types {', '.join(gpu_types)}" if gpu_types else None


def _gpu_nodes(tf: dict) -> Hits:
    templates = dict(addressed(tf, "aws_launch_template"))
    for group, body in addressed(tf, "aws_eks_node_group"):
        taints = blocks(body.get("taint"))
        gpu_reason = _gpu_node_group_reason(body, templates)
        if gpu_reason and not any(t.get("key") == "nvidia.com/gpu" and t.get("effect") == "NO_SCHEDULE"
                                  for t in taints):
            yield ("MLF004", group,
                   f"GPU node group ({gpu_reason}) has no nvidia.com/gpu taint with effect NO_SCHEDULE")
        if not references(body.get("launch_template"), "aws_launch_template"):
            yield "MLF007", group, "no launch template, so IMDSv2 and volume encryption are not enforced"
    for template, body in templates.items():
        for mapping in blocks(body.get("block_device_mappings")):
            ebs = first_block(mapping.get("ebs"))
            if ebs.get("encrypted") not in (True, "true") or not ebs.get("kms_key_id"):
                yield "MLF001", template, f"volume {mapping.get('device_name')} is not KMS-encrypted"


def _instance_metadata(tf: dict) -> Hits:
    """IMDSv2 with a hop limit of 1 on every launch template and instance. A container's request
    to IMDS crosses one more hop than the node's own: with a limit of 2 or more, pods reach the
    node's credentials. Unset, the AMI's default applies (2 on current EKS AMIs)."""
    for rtype in ("aws_launch_template", "aws_instance"):
        for resource, body in addressed(tf, rtype):
            meta = first_block(body.get("metadata_options"))
            if meta.get("http_endpoint") == "disabled":
                continue
            if meta.get("http_tokens") != "required":
                yield "MLF007", resource, "metadata_options.http_tokens is not 'required'"
            hops = meta.get("http_put_response_hop_limit")
            if not str(hops).isdigit() or int(hops) > 1:
                yield ("MLF007", resource, f"metadata_options.http_put_response_hop_limit is {hops or 'unset'}: "
                       "pods reach the node's IMDS beyond a limit of 1")


def _tags(tf: dict) -> Hits:
    for provider in providers(tf, "aws"):
        tags: dict = {}
        for block in blocks(provider.get("default_tags")):
            tags.update(block.get("tags", {}))
        missing = [t for t in REQUIRED_TAGS if not tags.get(t)]
        if missing:
            alias = provider.get("alias", "default")
            yield "MLF006", f"provider.aws.{alias}", f"default_tags lack {', '.join(missing)}"


CHECKS: tuple[Check, ...] = (_s3_buckets, _s3_acls, _databases, _db_instances, _topics_and_logs, _network_exposure,
                             _gpu_nodes, _instance_metadata, _tags, _postgres_tls)
