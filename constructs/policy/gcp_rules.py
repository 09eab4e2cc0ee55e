"""The rule pack on Google Cloud resources: the same rules as on AWS's (IAM grants are gcp_iam_rules',
firewalls and other ranges exposure_rules')."""
from __future__ import annotations

from mlfleet.constructs.policy.findings import REQUIRED_TAGS, Check, Hits
from mlfleet.constructs.terraform_json import addressed, blocks, first_block, providers


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
        # Authorized networks that admit the internet are exposure_rules'.
        if ip.get("ipv4_enabled") is not False:
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


_PUBLIC_ACL_ENTITIES = ("allUsers", "allAuthenticatedUsers")
_PUBLIC_PREDEFINED_ACLS = {"publicRead", "publicReadWrite", "authenticatedRead"}


def _storage_acls(tf: dict) -> Hits:
    """Legacy ACLs that make a bucket or its objects public (IAM grants are gcp_iam_rules')."""
    for rtype in ("google_storage_bucket_acl", "google_storage_object_acl", "google_storage_default_object_acl",
                  "google_storage_bucket_access_control", "google_storage_object_access_control",
                  "google_storage_default_object_access_control", "google_storage_bucket_object"):
        for resource, body in addressed(tf, rtype):
            entities = [str(e).split(":", 1)[-1] for e in body.get("role_entity") or []] + [str(body.get("entity"))]
            public = sorted({e for e in entities if e in _PUBLIC_ACL_ENTITIES})
            if public:
                yield "MLF002", resource, f"ACL grants {', '.join(public)}"
            if body.get("predefined_acl") in _PUBLIC_PREDEFINED_ACLS:
                yield "MLF002", resource, f"predefined ACL {body['predefined_acl']} is public"


def _binary_authorization(tf: dict) -> Hits:
    for cluster, body in addressed(tf, "google_container_cluster"):
        mode = first_block(body.get("binary_authorization"))
        # `enabled` is the older form of the same setting.
        if mode.get("evaluation_mode") != "PROJECT_SINGLETON_POLICY_ENFORCE" and mode.get("enabled") is not True:
            yield "MLF047", cluster, "Binary Authorization does not enforce the project's policy"


def _labels(tf: dict) -> Hits:
    for provider in providers(tf, "google"):
        labels = provider.get("default_labels") or {}
        missing = [t for t in REQUIRED_TAGS if not labels.get(t)]
        if missing:
            alias = provider.get("alias", "default")
            yield "MLF006", f"provider.google.{alias}", f"default_labels lack {', '.join(missing)}"


CHECKS: tuple[Check, ...] = (_storage_and_databases, _storage_acls, _kubernetes, _labels,
                             _binary_authorization)
