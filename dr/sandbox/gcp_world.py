"""An environment's Google Cloud regions in the sandbox, as their stacks would have left them
(names from `naming`, shapes from the constructs, as `tests/review/live_gcp.py` applies them):
per region the GKE cluster's GPU pools (autoscaler total minimum: the primary's `min_size`, a
standby's `warm_standby`), the registry's Cloud SQL instance (the primary, a cross-region replica
of it, or the destination of a DMS continuous job from Aurora); the dual-region artifact bucket;
Cloud KMS's public key of the manifest-signing key; and the replica-lag metric of every replica.

`TransferJob` simulates the Storage Transfer job of an AWS primary: every `interval_s` it copies
what is new or changed under the models prefix of the primary's S3 bucket into the Google bucket
(through the first data location; turbo replication carries it to the other).
"""
from __future__ import annotations

import threading
from typing import Callable

from mlfleet.dr.gcp import registry_kind
from mlfleet.dr.sandbox.fake_gcp import FakeGcp
from mlfleet.dr.sandbox.fake_monitoring import FakeMonitoring
from mlfleet.stacks.environment import GCS_MULTI_REGIONS, Environment, naming


def signing_key_name(env: Environment) -> str:
    """The Cloud KMS manifest-signing key (without its version), as `gcp_global_stack` names it."""
    assert env.gcp is not None
    pair = env.gcp_artifact_regions or ()
    location = GCS_MULTI_REGIONS[pair[0].split("-")[0]].lower()
    return (f"projects/{env.gcp.project_id}/locations/{location}/keyRings/{naming.gcp_key_ring(env.name, location)}"
            f"/cryptoKeys/{naming.gcp_manifest_signing_key(env.name)}")


def deploy_gcp(env: Environment, fake: FakeGcp, monitoring: FakeMonitoring, *, public_key_pem: str,
               lag_of: Callable[[str], float | None]) -> None:
    """Seed every Google Cloud region of `env` into the fakes (after a `clear`, on reset too)."""
    gcp_regions = env.regions_on("gcp")
    if not gcp_regions or env.gcp is None:
        return
    project = env.gcp.project_id
    with fake._lock:
        for store in (fake.node_pools, fake.sql_instances, fake.migration_jobs, fake.buckets):
            store.clear()
    fake.clear_storage()
    monitoring.clear()
    for region in gcp_regions:
        cluster = naming.gke_cluster_name(env.name, region.name)
        for pool in env.gpu_pools:
            shape = pool.gcp
            assert shape is not None  # the environment's checks give every pool a shape on Google Cloud
            total_min = pool.min_size if region.role == "primary" else pool.warm_standby
            fake.put_node_pool(project, region.name, cluster, {
                "name": naming.node_group_name(pool.name),
                "config": {"machineType": shape.machine_type, "accelerators": [
                    {"acceleratorCount": str(shape.accelerator_count), "acceleratorType": shape.accelerator_type}]},
                "autoscaling": {"enabled": True, "totalMinNodeCount": total_min, "totalMaxNodeCount": pool.max_size,
                                "locationPolicy": "ANY" if shape.queued_provisioning else shape.location_policy}})
        instance = naming.cloud_sql_instance(env.name, region.name)
        kind = registry_kind(env, region.name)
        if kind == "primary":
            fake.add_sql_instance(project, instance, replica_of=None, region=region.name)
        elif kind == "replica":
            fake.add_sql_instance(project, instance, replica_of=naming.cloud_sql_instance(env.name, env.primary.name),
                                  region=region.name)
        elif kind == "dms":
            # the job id is the instance name (cross_cloud_registry.AuroraToCloudSqlReplica)
            fake.add_migration_job(project, region.name, instance, instance)
        if kind in ("replica", "dms"):
            watch_replica_lag(env, monitoring, region.name, lag_of)
    pair = env.gcp_artifact_regions or ()
    fake.put_bucket({"name": naming.gcs_artifact_bucket(env.name, project),
                     "location": GCS_MULTI_REGIONS[pair[0].split("-")[0]], "locationType": "dual-region",
                     "rpo": "ASYNC_TURBO", "customPlacementConfig": {"dataLocations": [r.upper() for r in pair]},
                     "versioning": {"enabled": True},
                     "iamConfiguration": {"uniformBucketLevelAccess": {"enabled": True},
                                          "publicAccessPrevention": "enforced"}})
    fake.public_keys[signing_key_name(env)] = public_key_pem


def watch_replica_lag(env: Environment, monitoring: FakeMonitoring, region: str,
                      measure: Callable[[str], float | None] | None) -> None:
    """Publish the region's replica lag (`measure(region)`), or stop (None: it is a primary now)."""
    assert env.gcp is not None
    database_id = f"{env.gcp.project_id}:{naming.cloud_sql_instance(env.name, region)}"
    if measure is None:
        monitoring.unwatch(database_id)
    else:
        monitoring.watch_replica(database_id, region, lambda: measure(region))


class TransferJob:
    """The Storage Transfer job from an AWS primary's artifact bucket to the Google bucket."""

    def __init__(self, env: Environment, s3, fake: FakeGcp, *, faulted: Callable[[], bool],
                 interval_s: float = 2.0):
        self.env = env
        self.s3 = s3
        self.fake = fake
        self.faulted = faulted
        self.interval_s = interval_s
        self.source = naming.artifact_bucket(env.name, env.aws.account_id, env.primary.name)
        assert env.gcp is not None
        self.destination = naming.gcs_artifact_bucket(env.name, env.gcp.project_id)
        pair = env.gcp_artifact_regions or ()
        self.landing = pair[0].upper() if pair else None
        self._copied: dict[str, str] = {}  # key -> the ETag copied
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="storage-transfer", daemon=True)
        self.runs = 0

    def run_once(self) -> list[str]:
        """One transfer run: every new or changed object under the models prefix; the keys copied."""
        if self.faulted():
            return []
        copied = []
        paginator = self.s3.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.source, Prefix=self.env.artifact_store.models_prefix):
            for item in page.get("Contents", []):
                if self._copied.get(item["Key"]) == item["ETag"]:
                    continue
                data = self.s3.get_object(Bucket=self.source, Key=item["Key"])["Body"].read()
                self.fake.put_object(self.destination, item["Key"], data, location=self.landing)
                self._copied[item["Key"]] = item["ETag"]
                copied.append(item["Key"])
        self.runs += 1
        return copied

    def reset(self) -> None:
        self._copied.clear()

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self.run_once()
            except Exception:  # noqa: BLE001 - a failed run is retried at the next schedule, as the service does
                pass

    def start(self) -> "TransferJob":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
