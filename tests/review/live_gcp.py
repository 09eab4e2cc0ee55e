"""Test helper: apply an environment's synthesized Google Cloud intent to the fake Google
endpoint, as a `terraform apply` would have left it (documents in the Google APIs' own shapes,
from the Terraform JSON), so drift tests start from a platform that matches the code."""
from __future__ import annotations

from mlfleet.constructs.terraform_json import blocks, first_block, sorted_resources
from mlfleet.stacks.environment import naming


def _items(tf: dict, rtype: str) -> list[dict]:
    return [body for _, body in sorted_resources(tf, rtype)]


def apply_gcp_intent(env, stacks: dict[str, dict], fake) -> None:
    project = env.gcp.project_id
    for region in env.regions_on("gcp"):
        tf = stacks[naming.stack_name(env.name, region.name)]
        cluster = naming.gke_cluster_name(env.name, region.name)
        for body in _items(tf, "google_container_node_pool"):
            fake.put_node_pool(project, region.name, cluster, _node_pool(body))
        for body in _items(tf, "google_sql_database_instance"):
            _sql_instance(fake, project, body)
        for body in _items(tf, "google_database_migration_service_migration_job"):
            fake.add_migration_job(project, region.name, body["migration_job_id"], body["migration_job_id"])
    for body in _items(stacks[naming.gcp_global_stack_name(env.name)], "google_storage_bucket"):
        fake.put_bucket(_bucket(body))


def _node_pool(body: dict) -> dict:
    config, scaling = first_block(body.get("node_config")), first_block(body.get("autoscaling"))
    return {
        "name": body["name"], "locations": list(body.get("node_locations") or []),
        "config": {
            "machineType": config.get("machine_type", "e2-medium"),
            "accelerators": [{"acceleratorCount": str(a["count"]), "acceleratorType": a["type"]}
                             for a in blocks(config.get("guest_accelerator"))],
            "taints": [{"key": t["key"], "value": t.get("value", ""), "effect": t["effect"]}
                       for t in blocks(config.get("taint"))]},
        "autoscaling": {"enabled": True, "totalMinNodeCount": scaling.get("total_min_node_count", 0),
                        "totalMaxNodeCount": scaling.get("total_max_node_count", 0),
                        "minNodeCount": scaling.get("min_node_count", 0),
                        "maxNodeCount": scaling.get("max_node_count", 0),
                        "locationPolicy": scaling.get("location_policy", "BALANCED")}}


def _sql_instance(fake, project: str, body: dict) -> None:
    settings = first_block(body.get("settings"))
    fake.add_sql_instance(project, body["name"], replica_of=body.get("master_instance_name"), region=body["region"],
                          availability=settings.get("availability_type"),
                          deletion_protection=settings.get("deletion_protection_enabled"))
    live = fake.sql_instances[(project, body["name"])]["settings"]
    live.update(tier=settings.get("tier"),
                ipConfiguration={"ipv4Enabled": first_block(settings.get("ip_configuration")).get("ipv4_enabled")})


def _bucket(body: dict) -> dict:
    return {
        "name": body["name"], "location": body.get("location"), "rpo": body.get("rpo", "DEFAULT"),
        "customPlacementConfig": {
            "dataLocations": list(first_block(body.get("custom_placement_config")).get("data_locations", []))},
        "versioning": {"enabled": first_block(body.get("versioning")).get("enabled", False)},
        "iamConfiguration": {"uniformBucketLevelAccess": {"enabled": body.get("uniform_bucket_level_access", False)},
                             "publicAccessPrevention": body.get("public_access_prevention", "inherited")},
        "encryption": {"defaultKmsKeyName": "projects/p/locations/us/keyRings/r/cryptoKeys/artifacts"}}
