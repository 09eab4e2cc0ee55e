"""How each standby region receives the primary's data, read from the synthesized stacks: the
registry replica it holds and the path the model artifacts take to reach it.

The recovery budget, the DR rules and the picture all ask these two questions; the answers
depend on the clouds of the primary and of the standby:

| primary → standby | registry replica                         | artifacts                          |
|---|---|---|
| AWS → AWS         | Aurora secondary cluster (global cluster) | S3 replication                    |
| AWS → Google      | Cloud SQL kept in step by a DMS job       | Storage Transfer job (recurring)   |
| Google → Google   | Cloud SQL cross-region read replica       | the dual-region bucket itself      |
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from mlfleet.constructs.terraform_json import blocks, first_block, output_value, resources, sorted_resources
from mlfleet.stacks.environment import Environment, naming

RegistryKind = Literal["aurora", "cloud_sql", "dms"]
ArtifactKind = Literal["s3_replication", "storage_transfer", "gcs_dual_region"]


@dataclass(frozen=True)
class RegistryReplica:
    region: str
    kind: RegistryKind
    name: str          # Aurora cluster identifier, or the Cloud SQL instance's name


@dataclass(frozen=True)
class ArtifactPath:
    region: str        # the standby region the path serves
    kind: ArtifactKind


def registry_replica(env: Environment, stacks: dict[str, dict], region: str) -> RegistryReplica | None:
    """The registry replica the region's own stack holds, if any (None for a missing stack)."""
    tf = stacks.get(naming.stack_name(env.name, region), {})
    for body in resources(tf, "aws_rds_cluster").values():
        # A member of the environment's global cluster (named deterministically, never referenced).
        if body.get("global_cluster_identifier") == naming.global_cluster_id(env.name):
            return RegistryReplica(region, "aurora", body.get("cluster_identifier", "?"))
    for body in resources(tf, "google_sql_database_instance").values():
        if body.get("master_instance_name"):
            return RegistryReplica(region, "cloud_sql", body.get("name", "?"))
    for body in resources(tf, "google_database_migration_service_migration_job").values():
        if body.get("type") == "CONTINUOUS":
            instance = output_value(tf, "registry_replica_instance")
            return RegistryReplica(region, "dms", instance or body.get("migration_job_id", "?"))
    return None


def artifact_path(env: Environment, region: str) -> ArtifactPath:
    """How the primary's artifacts reach `region`, by the clouds of the two."""
    standby = env.region(region)
    if env.primary.cloud == "aws":
        return ArtifactPath(region, "s3_replication" if standby.cloud == "aws" else "storage_transfer")
    return ArtifactPath(region, "gcs_dual_region")


def transfer_interval(stacks: dict[str, dict]) -> int | None:
    """The repeat interval (seconds) of the Storage Transfer job that copies S3 to Cloud Storage;
    the longest if there are several, None if there is none."""
    intervals = [_seconds(first_block(job.get("schedule")).get("repeat_interval"))
                 for tf in stacks.values()
                 for job in resources(tf, "google_storage_transfer_job").values()
                 if first_block(job.get("transfer_spec")).get("aws_s3_data_source") and blocks(job.get("schedule"))]
    known = [i for i in intervals if i is not None]
    return max(known) if known else None


def gcs_buckets(stacks: dict[str, dict]) -> list[dict]:
    """Every Cloud Storage bucket of the environment (the artifact bucket lives in `<env>-gcp-global`)."""
    return [body for _, tf in sorted(stacks.items())
            for _, body in sorted_resources(tf, "google_storage_bucket")]


def data_locations(bucket: dict) -> list[str]:
    """The regions a dual-region bucket keeps its objects in; empty for any other bucket."""
    placement = first_block(bucket.get("custom_placement_config"))
    return [loc.upper() for loc in placement.get("data_locations") or []]


def _seconds(duration) -> int | None:
    match = re.fullmatch(r"(\d+)s", str(duration or ""))
    return int(match.group(1)) if match else None
