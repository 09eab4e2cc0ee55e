"""The rule pack on Google Cloud resources: the same rules as on AWS's."""
from __future__ import annotations

from mlfleet.constructs.policy.findings import REQUIRED_TAGS, Check, Hits
from mlfleet.constructs.terraform_json import address, addressed, all_resources, blocks, first_block, providers

_PUBLIC_MEMBERS = {"allUsers", "allAuthenticatedUsers"}
_PRIMITIVE_ROLES = {"roles/owner", "roles/editor", "roles/viewer"}
_OPEN_RANGES = {"0.0.0.0/0", "::/0"}


def _storage_and_databases(tf: dict) -> Hits:
    for bucket, body in addressed(tf, "google_storage_bucket"):
        if not first_block(body.get("encryption")).get("default_kms_key_name"):
            yield "MLF001", bucket, "bucket has no default Cloud KMS key (CMEK)"
        if body.get("public_access_prevention") != "enforced" or body.get("uniform_bucket_level_access") is not True:
            yield "MLF002", bucket, "public access prevention is not enforced with uniform bucket-level access"
        if body.get("force_destroy") is True:
            yield "MLF003", bucket, "force_destroy deletes every object with the bucket"
    for instance, body in addressed(tf, "google_sql_database_instance"):
        settings = first_block(body.get("settings"))
        if not body.get("encryption_key_name"):
            yield "MLF001", instance, "instance has no Cloud KMS key (CMEK)"
        ip = first_block(settings.get("ip_configuration"))
        if ip.get("ipv4_enabled") is not False or any(
                n.get("value") in _OPEN_RANGES for n in blocks(ip.get("authorized_networks"))):
            yield "MLF002", instance, "instance has a public IPv4 address"
        if body.get("deletion_protection") is False or settings.get("deletion_protection_enabled") is not True:
            yield "MLF003", instance, "deletion protection is not on in Terraform and in Cloud SQL"
    # Database Migration Service creates the Cloud SQL instance its destination profile describes.
    for profile, body in addressed(tf, "google_database_migration_service_connection_profile"):
        settings = first_block(first_block(body.get("cloudsql")).get("settings"))
        if not settings:
            continue
        if not settings.get("cmek_key_name"):
            yield "MLF001", profile, "the instance DMS creates has no Cloud KMS key (CMEK)"
        if first_block(settings.get("ip_config")).get("enable_ipv4") is not False:
            yield "MLF002", profile, "the instance DMS creates has a public IPv4 address"


def _kubernetes(tf: dict) -> Hits:
    for cluster, body in addressed(tf, "google_container_cluster"):
        encryption = first_block(body.get("database_encryption"))
        if encryption.get("state") != "ENCRYPTED" or not encryption.get("key_name"):
            yield "MLF001", cluster, "Kubernetes secrets are not encrypted with Cloud KMS"
        if first_block(body.get("private_cluster_config")).get("enable_private_nodes") is not True:
            yield "MLF002", cluster, "nodes have public IPs (private nodes are off)"
        if body.get("deletion_protection") is False:
            yield "MLF003", cluster, "deletion_protection is false"
    for pool, body in addressed(tf, "google_container_node_pool"):
        node = first_block(body.get("node_config"))
        taints = blocks(node.get("taint"))
        if blocks(node.get("guest_accelerator")) and not any(
                t.get("key") == "nvidia.com/gpu" and t.get("effect") == "NO_SCHEDULE" for t in taints):
            yield "MLF004", pool, "GPU node pool has no nvidia.com/gpu taint with effect NO_SCHEDULE"
        if first_block(node.get("workload_metadata_config")).get("mode") != "GKE_METADATA":
            yield "MLF007", pool, "pods can reach the node's metadata server (GKE metadata server is off)"
        if not node.get("boot_disk_kms_key"):
            yield "MLF001", pool, "node boot disks are not encrypted with a Cloud KMS key (CMEK)"


def _iam_and_firewall(tf: dict) -> Hits:
    for rtype, name, body in all_resources(tf):
        if not (rtype.startswith("google_") and (rtype.endswith("_iam_member") or rtype.endswith("_iam_binding"))):
            continue
        grant = address(rtype, name)
        listed = body.get("members")
        members = set(blocks(listed) if isinstance(listed, list) else []) | {body.get("member")}
        if members & _PUBLIC_MEMBERS:
            yield "MLF002", grant, f"grants {', '.join(sorted(members & _PUBLIC_MEMBERS))}"
        if body.get("role") in _PRIMITIVE_ROLES:
            yield "MLF005", grant, f"grants the primitive role {body['role']}"
    for firewall, body in addressed(tf, "google_compute_firewall"):
        if body.get("direction", "INGRESS") == "INGRESS" and set(body.get("source_ranges") or []) & _OPEN_RANGES:
            yield "MLF002", firewall, "ingress open to the internet"


def _labels(tf: dict) -> Hits:
    for provider in providers(tf, "google"):
        labels = provider.get("default_labels") or {}
        missing = [t for t in REQUIRED_TAGS if not labels.get(t)]
        if missing:
            alias = provider.get("alias", "default")
            yield "MLF006", f"provider.google.{alias}", f"default_labels lack {', '.join(missing)}"


CHECKS: tuple[Check, ...] = (_storage_and_databases, _kubernetes, _iam_and_firewall, _labels)
