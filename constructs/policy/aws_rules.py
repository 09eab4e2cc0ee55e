"""The rule pack on AWS resources (resolved Terraform JSON of one stack)."""
from __future__ import annotations

import json
import re

from mlfleet.constructs.policy.findings import REQUIRED_TAGS, Check, Hits
from mlfleet.constructs.terraform_json import addressed, blocks, data_sources, first_block, providers, references


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
        if body.get("storage_encrypted") is not True and "global_cluster_identifier" not in body:
            yield "MLF001", cluster, "storage_encrypted is not true"
        if not body.get("kms_key_id"):
            yield "MLF001", cluster, "no customer-managed kms_key_id"
        if body.get("deletion_protection") is not True:
            yield "MLF003", cluster, "deletion_protection is not true"
        if body.get("skip_final_snapshot") is True:
            yield "MLF003", cluster, "skip_final_snapshot drops the last backup on delete"
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


def _topics_and_logs(tf: dict) -> Hits:
    for topic, body in addressed(tf, "aws_sns_topic"):
        if not body.get("kms_master_key_id"):
            yield "MLF001", topic, "topic is not encrypted with a KMS key"


def _network_exposure(tf: dict) -> Hits:
    for subnet, body in addressed(tf, "aws_subnet"):
        if body.get("map_public_ip_on_launch") is True:
            yield "MLF002", subnet, "instances launched here get public IPs"
    for group, body in addressed(tf, "aws_security_group"):
        for rule in blocks(body.get("ingress")):
            if "0.0.0.0/0" in (rule.get("cidr_blocks") or []) or "::/0" in (rule.get("ipv6_cidr_blocks") or []):
                yield "MLF002", group, "ingress open to the internet"
    for rule_address, body in addressed(tf, "aws_vpc_security_group_ingress_rule"):
        if body.get("cidr_ipv4") == "0.0.0.0/0" or body.get("cidr_ipv6") == "::/0":
            yield "MLF002", rule_address, "ingress open to the internet"
    for cluster, body in addressed(tf, "aws_eks_cluster"):
        vpc = first_block(body.get("vpc_config"))
        if vpc.get("endpoint_public_access", True) is not False:
            yield "MLF002", cluster, "the Kubernetes API endpoint is public"
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
        meta = first_block(body.get("metadata_options"))
        if meta.get("http_tokens") != "required":
            yield "MLF007", template, "metadata_options.http_tokens is not 'required'"
        for mapping in blocks(body.get("block_device_mappings")):
            ebs = first_block(mapping.get("ebs"))
            if ebs.get("encrypted") not in (True, "true") or not ebs.get("kms_key_id"):
                yield "MLF001", template, f"volume {mapping.get('device_name')} is not KMS-encrypted"


_POLICY_ATTRIBUTES = {"aws_iam_role_policy": "policy", "aws_iam_policy": "policy"}


def _wildcard_actions(document: str) -> list[str]:
    try:
        doc = json.loads(document)
    except (TypeError, ValueError):
        return []  # unresolved token: the referenced document is checked where it is defined
    statements = doc.get("Statement", [])
    statements = statements if isinstance(statements, list) else [statements]
    bad = []
    for statement in statements:
        if statement.get("Effect", "Allow") != "Allow":
            continue
        if "NotAction" in statement:
            bad.append("NotAction")
        actions = statement.get("Action", [])
        for action in actions if isinstance(actions, list) else [actions]:
            if action == "*" or action.endswith(":*"):
                bad.append(action)
    return bad


def _iam(tf: dict) -> Hits:
    for rtype, attribute in _POLICY_ATTRIBUTES.items():
        for policy, body in addressed(tf, rtype):
            bad = _wildcard_actions(body.get(attribute, ""))
            if bad:
                yield "MLF005", policy, f"allows {', '.join(sorted(set(bad)))}"
    for role, body in addressed(tf, "aws_iam_role"):
        for inline in blocks(body.get("inline_policy")):
            bad = _wildcard_actions(inline.get("policy", ""))
            if bad:
                yield "MLF005", role, f"inline policy allows {', '.join(sorted(set(bad)))}"
    for name, doc in data_sources(tf, "aws_iam_policy_document").items():
        for statement in blocks(doc.get("statement")):
            if statement.get("effect", "Allow") == "Allow":
                bad = [a for a in statement.get("actions", []) if a == "*" or a.endswith(":*")]
                if bad:
                    yield "MLF005", f"data.aws_iam_policy_document.{name}", f"allows {', '.join(bad)}"


def _tags(tf: dict) -> Hits:
    for provider in providers(tf, "aws"):
        tags: dict = {}
        for block in blocks(provider.get("default_tags")):
            tags.update(block.get("tags", {}))
        missing = [t for t in REQUIRED_TAGS if not tags.get(t)]
        if missing:
            alias = provider.get("alias", "default")
            yield "MLF006", f"provider.aws.{alias}", f"default_tags lack {', '.join(missing)}"


CHECKS: tuple[Check, ...] = (_s3_buckets, _databases, _topics_and_logs, _network_exposure, _gpu_nodes, _iam, _tags)
