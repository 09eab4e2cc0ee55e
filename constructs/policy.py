"""mlfleet's policy pass: secure-by-default rules checked on every stack at synth.

`PolicyAspect` is a CDK Aspect. When it visits a stack it evaluates the rule pack on the
stack's resolved Terraform JSON (resources are related through references such as
`${aws_s3_bucket.x.id}`, which only resolve at the stack level) and records each finding,
acknowledged or not. The synth step fails on any unacknowledged finding before anything is
written. An acknowledgement carries a reason: in code (`acknowledgements.acknowledge`) or in
the environment file (`acknowledgements:`), and the review shows it.
"""
from __future__ import annotations

import fnmatch
import json
import re
from dataclasses import dataclass
from typing import Callable, Iterable, Iterator

import jsii
from cdktn import IAspect, TerraformStack
from constructs import IConstruct

from mlfleet.constructs.acknowledgements import acknowledgements_for


@dataclass(frozen=True)
class Rule:
    id: str
    title: str
    severity: str  # "high" | "medium" | "low"
    fix: str


RULES: dict[str, Rule] = {r.id: r for r in (
    Rule("MLF001", "storage is not encrypted with a customer-managed KMS key", "high",
         "encrypt with an mlfleet EncryptionKey (SSE-KMS, storage_encrypted, encrypted volumes)"),
    Rule("MLF002", "resource is reachable from the internet", "high",
         "block public access; keep endpoints private; no 0.0.0.0/0 ingress"),
    Rule("MLF003", "stateful resource can be deleted without protection", "high",
         "set deletion_protection, keep a final snapshot, never force_destroy"),
    Rule("MLF004", "GPU node group lacks the nvidia.com/gpu NoSchedule taint", "high",
         "taint GPU nodes so only pods that tolerate GPUs land there"),
    Rule("MLF005", "IAM policy allows a wildcard action", "high",
         "list the actions the identity needs; scope resources"),
    Rule("MLF006", "required tags are missing", "medium",
         "set owner and cost-center through the provider's default_tags"),
    Rule("MLF007", "instances do not require IMDSv2", "high",
         "set metadata_options.http_tokens = required in the launch template"),
)}
REQUIRED_TAGS = ("owner", "cost-center")


@dataclass(frozen=True)
class Finding:
    rule: str
    stack: str
    address: str        # Terraform address, e.g. aws_s3_bucket.artifacts_bucket_1A2B
    path: str           # construct path, e.g. prod-us-east-1/artifacts/bucket
    message: str
    acknowledged: str | None = None  # the reason, when acknowledged

    @property
    def severity(self) -> str:
        return RULES[self.rule].severity

    @property
    def fix(self) -> str:
        return RULES[self.rule].fix


@dataclass(frozen=True)
class ConfigAcknowledgement:
    """An acknowledgement from the environment file: a rule and a construct-path glob."""
    rule: str
    reason: str
    resource: str = "*"


@jsii.implements(IAspect)
class PolicyAspect:
    """Puts every stack it visits under the rule pack (see module docstring).

    References between resources resolve only in a stack's synthesized JSON, so the rules
    run there: after synth, `evaluate(stack_name, terraform_json)` returns the stack's
    findings with their acknowledgements and records them in `findings`.
    """

    def __init__(self, acknowledgements: Iterable[ConfigAcknowledgement] = ()):
        self._config_acks = list(acknowledgements)
        self._stacks: dict[str, TerraformStack] = {}
        self.findings: list[Finding] = []

    def visit(self, node: IConstruct) -> None:
        if isinstance(node, TerraformStack):
            self._stacks[node.node.id] = node

    @property
    def stack_names(self) -> list[str]:
        return list(self._stacks)

    def evaluate(self, stack_name: str, tf: dict) -> list[Finding]:
        stack = self._stacks[stack_name]
        results = [Finding(**{**f.__dict__, "acknowledged": self._acknowledgement(stack, f)})
                   for f in evaluate_terraform(stack_name, tf)]
        self.findings.extend(results)
        return results

    def _acknowledgement(self, stack: TerraformStack, finding: Finding) -> str | None:
        construct = _find(stack, finding.path)
        if construct is not None:
            found = acknowledgements_for(construct, finding.rule)
            if found:
                return found[0].reason
        for ack in self._config_acks:
            if ack.rule == finding.rule and fnmatch.fnmatchcase(finding.path, ack.resource):
                return ack.reason
        return None

    @property
    def violations(self) -> list[Finding]:
        return [f for f in self.findings if f.acknowledged is None]


def _find(stack: TerraformStack, path: str) -> IConstruct | None:
    """The construct at `path` (`<stack>/<id>/<id>…`), or None (e.g. a provider block)."""
    node: IConstruct = stack
    for part in path.split("/")[1:]:
        node = node.node.try_find_child(part)
        if node is None:
            return None
    return node


# --- the rule pack, on resolved Terraform JSON --------------------------------------------

Check = Callable[[dict], Iterator[tuple[str, str, str]]]  # yields (rule, address, message)
_CHECKS: list[Check] = []


def _check(fn: Check) -> Check:
    _CHECKS.append(fn)
    return fn


def evaluate_terraform(stack_name: str, tf: dict) -> list[Finding]:
    """Every finding of the rule pack in one stack's Terraform JSON (unacknowledged)."""
    paths = {f"{rtype}.{name}": body.get("//", {}).get("metadata", {}).get("path", f"{rtype}.{name}")
             for rtype, items in tf.get("resource", {}).items() for name, body in items.items()}
    findings = []
    for check in _CHECKS:
        for rule, address, message in check(tf):
            findings.append(Finding(rule, stack_name, address, paths.get(address, address), message))
    return sorted(findings, key=lambda f: (f.rule, f.address))


def _resources(tf: dict, rtype: str) -> Iterator[tuple[str, dict]]:
    for name, body in tf.get("resource", {}).get(rtype, {}).items():
        yield f"{rtype}.{name}", body


def _refs(value, target_type: str) -> set[str]:
    """Addresses of `target_type` resources referenced anywhere in `value`."""
    pattern = r"\$\{(" + re.escape(target_type) + r"\.[A-Za-z0-9_-]+)\."
    return set(re.findall(pattern, json.dumps(value)))


def _blocks(value) -> list[dict]:
    """Terraform nested blocks synthesize as a dict or a list of dicts."""
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


@_check
def _s3_buckets(tf: dict):
    encrypted = set()
    for _, body in _resources(tf, "aws_s3_bucket_server_side_encryption_configuration"):
        rules = [d for r in _blocks(body.get("rule")) for d in _blocks(r.get("apply_server_side_encryption_by_default"))]
        if rules and all(d.get("sse_algorithm") in ("aws:kms", "aws:kms:dsse") and d.get("kms_master_key_id") for d in rules):
            encrypted |= _refs(body.get("bucket"), "aws_s3_bucket")
    blocked = set()
    for _, body in _resources(tf, "aws_s3_bucket_public_access_block"):
        if all(body.get(k) is True for k in ("block_public_acls", "block_public_policy",
                                               "ignore_public_acls", "restrict_public_buckets")):
            blocked |= _refs(body.get("bucket"), "aws_s3_bucket")
    for address, body in _resources(tf, "aws_s3_bucket"):
        if address not in encrypted:
            yield "MLF001", address, "bucket has no SSE-KMS default encryption with a customer key"
        if address not in blocked:
            yield "MLF002", address, "bucket has no public access block with all four settings on"
        if body.get("force_destroy") is True:
            yield "MLF003", address, "force_destroy deletes every object version with the bucket"


@_check
def _databases(tf: dict):
    for address, body in _resources(tf, "aws_rds_cluster"):
        if body.get("storage_encrypted") is not True and "global_cluster_identifier" not in body:
            yield "MLF001", address, "storage_encrypted is not true"
        if not body.get("kms_key_id"):
            yield "MLF001", address, "no customer-managed kms_key_id"
        if body.get("deletion_protection") is not True:
            yield "MLF003", address, "deletion_protection is not true"
        if body.get("skip_final_snapshot") is True:
            yield "MLF003", address, "skip_final_snapshot drops the last backup on delete"
    for address, body in _resources(tf, "aws_rds_global_cluster"):
        if body.get("storage_encrypted") is not True:
            yield "MLF001", address, "storage_encrypted is not true"
        if body.get("deletion_protection") is not True:
            yield "MLF003", address, "deletion_protection is not true"
    for address, body in _resources(tf, "aws_rds_cluster_instance"):
        if body.get("publicly_accessible") is True:
            yield "MLF002", address, "publicly_accessible is true"
    for address, body in _resources(tf, "aws_dynamodb_table"):
        sse = _blocks(body.get("server_side_encryption"))
        if not (sse and sse[0].get("enabled") is True and sse[0].get("kms_key_arn")):
            yield "MLF001", address, "no server-side encryption with a customer-managed key"
        if body.get("deletion_protection_enabled") is not True:
            yield "MLF003", address, "deletion_protection_enabled is not true"


@_check
def _topics_and_logs(tf: dict):
    for address, body in _resources(tf, "aws_sns_topic"):
        if not body.get("kms_master_key_id"):
            yield "MLF001", address, "topic is not encrypted with a KMS key"


@_check
def _network_exposure(tf: dict):
    for address, body in _resources(tf, "aws_subnet"):
        if body.get("map_public_ip_on_launch") is True:
            yield "MLF002", address, "instances launched here get public IPs"
    for address, body in _resources(tf, "aws_security_group"):
        for rule in _blocks(body.get("ingress")):
            if "0.0.0.0/0" in (rule.get("cidr_blocks") or []) or "::/0" in (rule.get("ipv6_cidr_blocks") or []):
                yield "MLF002", address, "ingress open to the internet"
    for address, body in _resources(tf, "aws_vpc_security_group_ingress_rule"):
        if body.get("cidr_ipv4") == "0.0.0.0/0" or body.get("cidr_ipv6") == "::/0":
            yield "MLF002", address, "ingress open to the internet"
    for address, body in _resources(tf, "aws_eks_cluster"):
        vpc = (_blocks(body.get("vpc_config")) or [{}])[0]
        if vpc.get("endpoint_public_access", True) is not False:
            yield "MLF002", address, "the Kubernetes API endpoint is public"
        if not _blocks(body.get("encryption_config")):
            yield "MLF001", address, "Kubernetes secrets are not envelope-encrypted with KMS"


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
    for template in _refs(body.get("launch_template"), "aws_launch_template"):
        if templates.get(template, {}).get("instance_type"):
            instance_types.append(templates[template]["instance_type"])
    for value in [ami_type, *instance_types]:
        if "${" in value:
            return f"{value} is only known at apply, so the group may be a GPU group"
    gpu_types = [t for t in instance_types if is_gpu_instance_type(t)]
    return f"GPU instance types {', '.join(gpu_types)}" if gpu_types else None


@_check
def _gpu_nodes(tf: dict):
    templates = dict(_resources(tf, "aws_launch_template"))
    for address, body in _resources(tf, "aws_eks_node_group"):
        taints = _blocks(body.get("taint"))
        gpu_reason = _gpu_node_group_reason(body, templates)
        if gpu_reason and not any(t.get("key") == "nvidia.com/gpu" and t.get("effect") == "NO_SCHEDULE"
                                  for t in taints):
            yield ("MLF004", address,
                   f"GPU node group ({gpu_reason}) has no nvidia.com/gpu taint with effect NO_SCHEDULE")
        if not _refs(body.get("launch_template"), "aws_launch_template"):
            yield "MLF007", address, "no launch template, so IMDSv2 and volume encryption are not enforced"
    for address, body in templates.items():
        meta = (_blocks(body.get("metadata_options")) or [{}])[0]
        if meta.get("http_tokens") != "required":
            yield "MLF007", address, "metadata_options.http_tokens is not 'required'"
        for mapping in _blocks(body.get("block_device_mappings")):
            ebs = (_blocks(mapping.get("ebs")) or [{}])[0]
            if ebs.get("encrypted") not in (True, "true") or not ebs.get("kms_key_id"):
                yield "MLF001", address, f"volume {mapping.get('device_name')} is not KMS-encrypted"


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


@_check
def _iam(tf: dict):
    for rtype, attribute in _POLICY_ATTRIBUTES.items():
        for address, body in _resources(tf, rtype):
            bad = _wildcard_actions(body.get(attribute, ""))
            if bad:
                yield "MLF005", address, f"allows {', '.join(sorted(set(bad)))}"
    for address, body in _resources(tf, "aws_iam_role"):
        for inline in _blocks(body.get("inline_policy")):
            bad = _wildcard_actions(inline.get("policy", ""))
            if bad:
                yield "MLF005", address, f"inline policy allows {', '.join(sorted(set(bad)))}"
    for address, doc in tf.get("data", {}).get("aws_iam_policy_document", {}).items():
        for statement in _blocks(doc.get("statement")):
            if statement.get("effect", "Allow") == "Allow":
                bad = [a for a in statement.get("actions", []) if a == "*" or a.endswith(":*")]
                if bad:
                    yield "MLF005", f"data.aws_iam_policy_document.{address}", f"allows {', '.join(bad)}"


@_check
def _tags(tf: dict):
    for i, provider in enumerate(tf.get("provider", {}).get("aws", [])):
        tags: dict = {}
        for block in _blocks(provider.get("default_tags")):
            tags.update(block.get("tags", {}))
        missing = [t for t in REQUIRED_TAGS if not tags.get(t)]
        if missing:
            alias = provider.get("alias", "default")
            yield "MLF006", f"provider.aws.{alias}", f"default_tags lack {', '.join(missing)}"


# --- Google Cloud resources: the same rules ------------------------------------------------

_PUBLIC_MEMBERS = {"allUsers", "allAuthenticatedUsers"}
_PRIMITIVE_ROLES = {"roles/owner", "roles/editor", "roles/viewer"}
_OPEN_RANGES = {"0.0.0.0/0", "::/0"}


def _first(value) -> dict:
    return (_blocks(value) or [{}])[0]


@_check
def _google_storage_and_databases(tf: dict):
    for address, body in _resources(tf, "google_storage_bucket"):
        if not _first(body.get("encryption")).get("default_kms_key_name"):
            yield "MLF001", address, "bucket has no default Cloud KMS key (CMEK)"
        if body.get("public_access_prevention") != "enforced" or body.get("uniform_bucket_level_access") is not True:
            yield "MLF002", address, "public access prevention is not enforced with uniform bucket-level access"
        if body.get("force_destroy") is True:
            yield "MLF003", address, "force_destroy deletes every object with the bucket"
    for address, body in _resources(tf, "google_sql_database_instance"):
        settings = _first(body.get("settings"))
        if not body.get("encryption_key_name"):
            yield "MLF001", address, "instance has no Cloud KMS key (CMEK)"
        ip = _first(settings.get("ip_configuration"))
        if ip.get("ipv4_enabled") is not False or any(
                n.get("value") in _OPEN_RANGES for n in _blocks(ip.get("authorized_networks"))):
            yield "MLF002", address, "instance has a public IPv4 address"
        if body.get("deletion_protection") is False or settings.get("deletion_protection_enabled") is not True:
            yield "MLF003", address, "deletion protection is not on in Terraform and in Cloud SQL"
    # Database Migration Service creates the Cloud SQL instance its destination profile describes.
    for address, body in _resources(tf, "google_database_migration_service_connection_profile"):
        settings = _first(_first(body.get("cloudsql")).get("settings"))
        if not settings:
            continue
        if not settings.get("cmek_key_name"):
            yield "MLF001", address, "the instance DMS creates has no Cloud KMS key (CMEK)"
        if _first(settings.get("ip_config")).get("enable_ipv4") is not False:
            yield "MLF002", address, "the instance DMS creates has a public IPv4 address"


@_check
def _google_kubernetes(tf: dict):
    for address, body in _resources(tf, "google_container_cluster"):
        encryption = _first(body.get("database_encryption"))
        if encryption.get("state") != "ENCRYPTED" or not encryption.get("key_name"):
            yield "MLF001", address, "Kubernetes secrets are not encrypted with Cloud KMS"
        if _first(body.get("private_cluster_config")).get("enable_private_nodes") is not True:
            yield "MLF002", address, "nodes have public IPs (private nodes are off)"
        if body.get("deletion_protection") is False:
            yield "MLF003", address, "deletion_protection is false"
    for address, body in _resources(tf, "google_container_node_pool"):
        node = _first(body.get("node_config"))
        taints = _blocks(node.get("taint"))
        if _blocks(node.get("guest_accelerator")) and not any(
                t.get("key") == "nvidia.com/gpu" and t.get("effect") == "NO_SCHEDULE" for t in taints):
            yield "MLF004", address, "GPU node pool has no nvidia.com/gpu taint with effect NO_SCHEDULE"
        if _first(node.get("workload_metadata_config")).get("mode") != "GKE_METADATA":
            yield "MLF007", address, "pods can reach the node's metadata server (GKE metadata server is off)"
        if not node.get("boot_disk_kms_key"):
            yield "MLF001", address, "node boot disks are not encrypted with a Cloud KMS key (CMEK)"


@_check
def _google_iam_and_firewall(tf: dict):
    for rtype, items in tf.get("resource", {}).items():
        if not (rtype.startswith("google_") and (rtype.endswith("_iam_member") or rtype.endswith("_iam_binding"))):
            continue
        for name, body in items.items():
            address = f"{rtype}.{name}"
            members = set(_blocks(body.get("members")) if isinstance(body.get("members"), list) else []) | {body.get("member")}
            if members & _PUBLIC_MEMBERS:
                yield "MLF002", address, f"grants {', '.join(sorted(members & _PUBLIC_MEMBERS))}"
            if body.get("role") in _PRIMITIVE_ROLES:
                yield "MLF005", address, f"grants the primitive role {body['role']}"
    for address, body in _resources(tf, "google_compute_firewall"):
        if body.get("direction", "INGRESS") == "INGRESS" and set(body.get("source_ranges") or []) & _OPEN_RANGES:
            yield "MLF002", address, "ingress open to the internet"


@_check
def _google_labels(tf: dict):
    for provider in tf.get("provider", {}).get("google", []):
        labels = provider.get("default_labels") or {}
        missing = [t for t in REQUIRED_TAGS if not labels.get(t)]
        if missing:
            yield "MLF006", f"provider.google.{provider.get('alias', 'default')}", f"default_labels lack {', '.join(missing)}"
