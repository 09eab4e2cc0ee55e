"""The difference between a base synth and this one: resources added, removed and changed,
with attribute paths, and which changes replace or delete stateful resources.

A change replaces a resource when it touches an attribute the provider cannot update in place
(`FORCES_REPLACEMENT`, a small table per type from the providers' schemas), or when a stateful
resource's logical id changes (Terraform sees a removal and an addition). Paths a resource's
`lifecycle.ignore_changes` lists are reported but never applied.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

from mlfleet.constructs.terraform_json import by_address

# Resources whose loss loses data or the ability to read it.
STATEFUL_TYPES = frozenset({
    "aws_s3_bucket", "aws_rds_cluster", "aws_rds_global_cluster", "aws_kms_key", "aws_dynamodb_table",
    "google_storage_bucket", "google_sql_database_instance", "google_kms_crypto_key",
    # The DMS destination profile describes the Cloud SQL instance DMS creates and keeps in step.
    "google_database_migration_service_connection_profile", "google_database_migration_service_migration_job",
})

# Attributes whose change forces a new resource (ForceNew in terraform-provider-aws 6 and
# terraform-provider-google 8), for the types mlfleet creates and those a change would hurt.
FORCES_REPLACEMENT: dict[str, frozenset[str]] = {
    "aws_s3_bucket": frozenset({"bucket", "bucket_prefix", "object_lock_enabled"}),
    "aws_rds_cluster": frozenset({"cluster_identifier", "engine", "engine_mode", "database_name", "master_username",
                                  "kms_key_id", "storage_encrypted", "db_subnet_group_name", "availability_zones",
                                  "snapshot_identifier"}),
    "aws_rds_global_cluster": frozenset({"global_cluster_identifier", "engine", "storage_encrypted", "database_name",
                                         "source_db_cluster_identifier"}),
    "aws_rds_cluster_instance": frozenset({"identifier", "cluster_identifier", "engine", "db_subnet_group_name"}),
    "aws_kms_key": frozenset({"multi_region", "customer_master_key_spec", "key_usage"}),
    "aws_dynamodb_table": frozenset({"name"}),
    "aws_eks_cluster": frozenset({"name"}),
    "aws_eks_node_group": frozenset({"node_group_name", "node_group_name_prefix", "cluster_name", "ami_type",
                                     "capacity_type", "instance_types", "subnet_ids", "node_role_arn", "disk_size"}),
    "aws_vpc": frozenset({"cidr_block"}),
    "aws_subnet": frozenset({"cidr_block", "availability_zone", "vpc_id"}),
    "google_storage_bucket": frozenset({"name", "location", "custom_placement_config", "project"}),
    "google_sql_database_instance": frozenset({"name", "region", "project"}),
    "google_kms_crypto_key": frozenset({"name", "key_ring"}),
    "google_container_node_pool": frozenset({"name", "cluster", "location", "node_config"}),
    # The resource's own name and place: the parts of its id.
    "google_database_migration_service_connection_profile": frozenset({"connection_profile_id", "location", "project"}),
    "google_database_migration_service_migration_job": frozenset({"migration_job_id", "location", "project"}),
}

# The attribute that names a stateful resource, to recognise one whose logical id changed.
_IDENTITY = {"aws_s3_bucket": "bucket", "aws_rds_cluster": "cluster_identifier",
             "aws_rds_global_cluster": "global_cluster_identifier", "aws_kms_key": "description",
             "aws_dynamodb_table": "name", "google_storage_bucket": "name", "google_sql_database_instance": "name",
             "google_kms_crypto_key": "name"}


@dataclass(frozen=True)
class ResourceChange:
    stack: str
    address: str
    action: str                 # "added" | "removed" | "changed" | "replaced"
    paths: tuple[str, ...] = ()  # changed attribute paths
    ignored: tuple[str, ...] = ()  # changed paths that lifecycle.ignore_changes leaves alone
    note: str = ""

    @property
    def rtype(self) -> str:
        return self.address.split(".", 1)[0]

    @property
    def stateful(self) -> bool:
        return self.rtype in STATEFUL_TYPES

    @property
    def destructive(self) -> bool:
        """Deletes or replaces a stateful resource: the loud warning."""
        return self.stateful and self.action in ("removed", "replaced")


@dataclass(frozen=True)
class Diff:
    base: str                    # what the base was, for the report
    stacks_added: list[str]
    stacks_removed: list[str]
    changes: list[ResourceChange] = field(default_factory=list)

    @property
    def warnings(self) -> list[ResourceChange]:
        return [c for c in self.changes if c.destructive]

    @property
    def empty(self) -> bool:
        return not (self.stacks_added or self.stacks_removed or self.changes)


def compare(base: dict[str, dict], head: dict[str, dict], base_label: str) -> Diff:
    changes: list[ResourceChange] = []
    for stack in sorted(set(base) | set(head)):
        before = by_address(base.get(stack, {}))
        after = by_address(head.get(stack, {}))
        removed = sorted(set(before) - set(after))
        added = sorted(set(after) - set(before))
        renamed = _renames(before, after, removed, added)
        for address in removed:
            note = (f"logical id changed to {renamed[address]}: destroyed and created again "
                    "(keep the construct id, or add a moved block)") if address in renamed else ""
            changes.append(ResourceChange(stack, address, "removed", note=note))
        for address in added:
            changes.append(ResourceChange(stack, address, "added"))
        for address in sorted(set(before) & set(after)):
            change = _changed(stack, address, before[address], after[address])
            if change:
                changes.append(change)
    return Diff(base_label, sorted(set(head) - set(base)), sorted(set(base) - set(head)), changes)


def _renames(before: dict, after: dict, removed: list[str], added: list[str]) -> dict[str, str]:
    found = {}
    for old in removed:
        rtype = old.split(".", 1)[0]
        key = _IDENTITY.get(rtype)
        if key is None:
            continue
        for new in added:
            if new.split(".", 1)[0] == rtype and after[new].get(key) == before[old].get(key):
                found[old] = new
                break
    return found


def flatten(value, prefix: str = "") -> dict[str, object]:
    """Leaf values by path (`rule[0].destination.bucket`), construct metadata (`//`) left out."""
    if isinstance(value, dict):
        out: dict[str, object] = {}
        for key, item in value.items():
            if key == "//":
                continue
            out.update(flatten(item, f"{prefix}.{key}" if prefix else key))
        return out or {prefix: {}}
    if isinstance(value, list):
        out = {}
        for index, item in enumerate(value):
            out.update(flatten(item, f"{prefix}[{index}]"))
        return out or {prefix: []}
    return {prefix: value}


def _plain(path: str) -> str:
    """Terraform writes a single nested block as `block[0]`; the JSON as an object."""
    return re.sub(r"\[\d+\]", "", path)


def _changed(stack: str, address: str, before: dict, after: dict) -> ResourceChange | None:
    old, new = flatten(before), flatten(after)
    paths = sorted(p for p in set(old) | set(new) if old.get(p, _MISSING) != new.get(p, _MISSING))
    if not paths:
        return None
    ignore = [_plain(p) for p in (after.get("lifecycle") or {}).get("ignore_changes") or []]
    ignored = tuple(p for p in paths if any(_plain(p) == i or _plain(p).startswith(i + ".") for i in ignore))
    applied = [p for p in paths if p not in ignored]
    forcing = FORCES_REPLACEMENT.get(address.split(".", 1)[0], frozenset())
    replacing = sorted({_plain(p).split(".", 1)[0] for p in applied} & forcing)
    action = "replaced" if replacing else "changed"
    note = f"{', '.join(replacing)} cannot change in place" if replacing else ""
    return ResourceChange(stack, address, action, tuple(paths), ignored, note)


_MISSING = object()
