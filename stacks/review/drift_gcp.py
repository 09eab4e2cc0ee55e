"""`mlfleet drift` on Google Cloud: the live platform, read through the Google clients, against
the synthesized intent of the environment's Google Cloud regions and `<env>-gcp-global`.

What is compared (what a failover or an RPO depends on):
- GKE node pools: the autoscaler's total minimum and maximum and location policy, the zones,
  the machine and accelerator, the taints (the node count belongs to the autoscaler);
- Cloud SQL instances: which primary a replica follows, availability, deletion protection,
  public IPv4, tier;
- the DMS job that keeps a standby's Cloud SQL in step with an AWS primary: it must run;
- the artifact bucket: turbo replication, the dual-region pair, versioning, uniform access,
  public access prevention, a default key.

GKE goes through google-cloud-container; Cloud SQL, Database Migration and Cloud Storage
through authenticated REST (`clients.google_cloud.GcpClients`, which the DR runbooks use too). A Google
resource that does not exist is a drift, never an error.
"""
from __future__ import annotations

from mlfleet.constructs.terraform_json import blocks, first_block, sorted_resources
from mlfleet.stacks.clients.google_cloud import NO_LIBRARY_RETRY, GcpClients, get_or_none, node_pool_path
from mlfleet.stacks.environment import Environment, naming
from mlfleet.stacks.review.drift_compare import Drift, compare

STORAGE = "https://storage.googleapis.com"
# container.v1 NodePoolAutoscaling.LocationPolicy as the REST client decodes it.
LOCATION_POLICIES = {0: None, 1: "BALANCED", 2: "ANY"}
LIMITS = {"total_min_node_count": "autoscaling total minimum", "total_max_node_count": "autoscaling total maximum",
          "min_node_count": "autoscaling minimum per zone", "max_node_count": "autoscaling maximum per zone"}


def detect_gcp_drift(env: Environment, stacks: dict[str, dict], clients: GcpClients,
                     only: str | None = None) -> list[Drift]:
    assert env.gcp is not None  # the model requires `gcp:` whenever a region is on Google Cloud
    project = env.gcp.project_id
    drifts: list[Drift] = []
    for region in env.regions_on("gcp"):
        if only not in (None, region.name):
            continue
        tf = stacks[naming.stack_name(env.name, region.name)]
        cluster = naming.gke_cluster_name(env.name, region.name)
        drifts += _node_pools(region.name, project, cluster, tf, clients)
        drifts += _sql_instances(region.name, project, tf, clients)
        drifts += _migration_jobs(region.name, project, tf, clients)
    if only in (None, "gcp-global"):
        drifts += _buckets(stacks[naming.gcp_global_stack_name(env.name)], clients)
    return drifts


# --- GKE -------------------------------------------------------------------------------------

def _node_pools(region: str, project: str, cluster: str, tf: dict, clients: GcpClients) -> list[Drift]:
    from google.api_core.exceptions import NotFound

    container = clients.container()
    drifts = []
    for _, body in sorted_resources(tf, "google_container_node_pool"):
        name = body.get("name")
        resource = f"node pool {name} in GKE cluster {cluster}"
        try:
            live = container.get_node_pool(name=node_pool_path(project, region, cluster, name), **NO_LIBRARY_RETRY)
        except NotFound:
            drifts.append(Drift(region, resource, "existence", "missing", "exists"))
            continue
        scaling = first_block(body.get("autoscaling"))
        config = first_block(body.get("node_config"))
        accelerators = blocks(config.get("guest_accelerator"))
        # GPU pools set totals across their zones; the system pool sets limits per zone.
        limits = ("total_min_node_count", "total_max_node_count") if "total_min_node_count" in scaling \
            else ("min_node_count", "max_node_count")
        drifts += compare(region, resource, [
            (LIMITS[limit], getattr(live.autoscaling, limit), scaling.get(limit)) for limit in limits] + [
            ("location policy", LOCATION_POLICIES.get(int(live.autoscaling.location_policy)),
             scaling.get("location_policy", LOCATION_POLICIES.get(int(live.autoscaling.location_policy)))),
            ("zones", sorted(live.locations), sorted(body.get("node_locations") or live.locations)),
            ("machine type", live.config.machine_type, config.get("machine_type")),
            ("accelerators", sorted(f"{a.accelerator_count}x{a.accelerator_type}" for a in live.config.accelerators),
             sorted(f"{a.get('count')}x{a.get('type')}" for a in accelerators)),
            ("taints", sorted(f"{t.key}={t.value}:{_effect(t.effect)}" for t in live.config.taints),
             sorted(f"{t.get('key')}={t.get('value', '')}:{t.get('effect')}" for t in blocks(config.get("taint")))),
        ])
    return drifts


def _effect(value) -> str:
    # container.v1 NodeTaint.Effect: 1 NO_SCHEDULE, 2 PREFER_NO_SCHEDULE, 3 NO_EXECUTE.
    return {1: "NO_SCHEDULE", 2: "PREFER_NO_SCHEDULE", 3: "NO_EXECUTE"}.get(int(value), str(value))


# --- Cloud SQL, DMS and Cloud Storage (REST) ------------------------------------------------

def _against_rest(region: str, tf: dict, rtype: str, clients: GcpClients, where, pairs) -> list[Drift]:
    """Each `rtype` resource of the code against its live REST document: `where(body)` names it
    and gives its URL, `pairs(body, live)` the (attribute, live, code) to compare."""
    drifts = []
    for _, body in sorted_resources(tf, rtype):
        resource, url = where(body)
        live = get_or_none(clients, url)
        if live is None:
            drifts.append(Drift(region, resource, "existence", "missing", "exists"))
        else:
            drifts += compare(region, resource, pairs(body, live))
    return drifts


def _sql_instances(region: str, project: str, tf: dict, clients: GcpClients) -> list[Drift]:
    def pairs(body: dict, live: dict) -> list:
        settings = first_block(body.get("settings"))
        ip = first_block(settings.get("ip_configuration"))
        live_settings = live.get("settings", {})
        return [
            ("follows", live.get("masterInstanceName"), body.get("master_instance_name")),
            ("availability", live_settings.get("availabilityType"), settings.get("availability_type")),
            ("deletion protection", live_settings.get("deletionProtectionEnabled"),
             settings.get("deletion_protection_enabled")),
            ("public IPv4", live_settings.get("ipConfiguration", {}).get("ipv4Enabled"), ip.get("ipv4_enabled")),
            ("tier", live_settings.get("tier"), settings.get("tier")),
        ]

    return _against_rest(region, tf, "google_sql_database_instance", clients, lambda body: (
        f"Cloud SQL instance {body.get('name')}",
        f"{clients.sql_base}/v1/projects/{project}/instances/{body.get('name')}"), pairs)


def _migration_jobs(region: str, project: str, tf: dict, clients: GcpClients) -> list[Drift]:
    # A continuous job that is not RUNNING has stopped replicating the registry.
    return _against_rest(region, tf, "google_database_migration_service_migration_job", clients, lambda body: (
        f"DMS migration job {body.get('migration_job_id')}",
        f"{clients.dms_base}/v1/projects/{project}/locations/{region}/migrationJobs/{body.get('migration_job_id')}"),
        lambda body, live: [("state", live.get("state"), "RUNNING"), ("type", live.get("type"), body.get("type"))])


def _buckets(tf: dict, clients: GcpClients) -> list[Drift]:
    def pairs(body: dict, live: dict) -> list:
        placement = first_block(body.get("custom_placement_config"))
        access = live.get("iamConfiguration", {})
        return [
            ("replication", live.get("rpo", "DEFAULT"), body.get("rpo", "DEFAULT")),
            ("dual-region pair", sorted(live.get("customPlacementConfig", {}).get("dataLocations", [])),
             sorted(placement.get("data_locations") or [])),
            ("versioning", live.get("versioning", {}).get("enabled", False),
             first_block(body.get("versioning")).get("enabled", False)),
            ("uniform bucket-level access", access.get("uniformBucketLevelAccess", {}).get("enabled", False),
             body.get("uniform_bucket_level_access", False)),
            ("public access prevention", access.get("publicAccessPrevention", "inherited"),
             body.get("public_access_prevention", "inherited")),
            # The key's id is resolved at apply: its presence is what the code can say.
            ("default key", bool(live.get("encryption", {}).get("defaultKmsKeyName")),
             bool(first_block(body.get("encryption")).get("default_kms_key_name"))),
        ]

    base = clients.endpoint or STORAGE
    return _against_rest("gcp-global", tf, "google_storage_bucket", clients, lambda body: (
        f"bucket gs://{body.get('name')}", f"{base}/storage/v1/b/{body.get('name')}"), pairs)
