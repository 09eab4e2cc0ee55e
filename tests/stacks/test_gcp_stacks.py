"""Whole-environment checks of the Google Cloud examples on their synthesized JSON: the all-Google
`research` (GKE primary and standby) and the cross-cloud `hybrid` (AWS primary, GKE standby).
Every GPU pool tainted with drivers installed where the accelerator is offered, every bucket
turbo-replicated and CMEK-encrypted, every database protected with a DR replica, each region's
state in that region, and the two clouds agreeing on the names that join them."""
from __future__ import annotations

import json
import re

import pytest

from mlfleet.constructs.terraform_json import first_block
from mlfleet.stacks.app import synthesize
from mlfleet.stacks.environment import load_environment
from mlfleet.stacks.environment.gcp_offerings import GcpAcceleratorOfferings

from helpers.template import resources

GOOGLE_REGION = re.compile(r"\b(?:us|europe|asia|northamerica|southamerica|australia|me|africa)-[a-z]+\d+\b")


@pytest.fixture(scope="module")
def synthesized(tmp_path_factory):
    envs = [load_environment("research"), load_environment("hybrid")]
    return synthesize(envs, tmp_path_factory.mktemp("synth") / "cdktf.out")


def _gcp_regional(synthesized):
    for env_name in ("research", "hybrid"):
        env = load_environment(env_name)
        for region in env.regions_on("gcp"):
            yield env, region, synthesized.stacks[f"{env.name}-{region.name}"]


def test_stacks_per_cloud(synthesized):
    assert set(synthesized.stacks) == {
        "research-us-central1", "research-us-east4", "research-global", "research-gcp-global",
        "hybrid-us-east-1", "hybrid-us-central1", "hybrid-global", "hybrid-gcp-global",
        "research-us-central1-serving", "research-us-east4-serving", "hybrid-us-east-1-serving",
        "hybrid-us-central1-serving"}
    assert "google" in synthesized.stacks["hybrid-us-central1"]["provider"]
    assert "aws" not in synthesized.stacks["hybrid-us-central1"]["provider"]
    assert "aws" in synthesized.stacks["hybrid-us-east-1"]["provider"]


def test_each_google_region_keeps_its_state_and_resources_at_home(synthesized):
    for env, region, tf in _gcp_regional(synthesized):
        backend = tf["terraform"]["backend"]["gcs"]
        assert backend == {"bucket": f"{env.gcp.project_id}-tfstate-{region.name}",
                           "prefix": f"{env.name}/{region.name}"}
        (provider,) = tf["provider"]["google"]
        assert provider["region"] == region.name and provider["project"] == env.gcp.project_id
        assert provider["default_labels"]["owner"] and provider["default_labels"]["cost-center"]
        assert "terraform_remote_state" not in json.dumps(tf.get("data", {}))
        # Another region appears only as the replica's primary (by name) and in its alerts.
        for rtype, items in tf["resource"].items():
            for rid, body in items.items():
                others = set(GOOGLE_REGION.findall(json.dumps(body))) - {region.name}
                assert not others or rtype in {"google_sql_database_instance", "google_monitoring_alert_policy"}, \
                    (env.name, region.name, rtype, rid, others)


def test_global_state_lives_in_the_first_standby(synthesized):
    # Routing and the Google Cloud globals can be planned while the primary region is down.
    assert synthesized.stacks["research-global"]["terraform"]["backend"]["gcs"]["bucket"] == \
        "mlfleet-research-tfstate-us-east4"
    assert synthesized.stacks["research-gcp-global"]["terraform"]["backend"]["gcs"]["bucket"] == \
        "mlfleet-research-tfstate-us-east4"
    # hybrid's only standby is on Google Cloud: Route 53's state is there, not with the AWS primary.
    assert synthesized.stacks["hybrid-global"]["terraform"]["backend"]["gcs"]["bucket"] == \
        "mlfleet-hybrid-prod-tfstate-us-central1"


def test_every_gke_gpu_pool_tainted_with_drivers_where_its_accelerator_is_offered(synthesized):
    offerings = GcpAcceleratorOfferings.load()
    seen = 0
    for env, region, tf in _gcp_regional(synthesized):
        pools = {f"{p.name}-gpu": p for p in env.gpu_pools}
        node_pools = resources(tf, "google_container_node_pool").values()
        gpu_pools = [p for p in node_pools if first_block(p["node_config"]).get("guest_accelerator")]
        assert {p["name"] for p in gpu_pools} == set(pools), (env.name, region.name)
        for body in gpu_pools:
            pool = pools[body["name"]]
            config = first_block(body["node_config"])
            accelerator = first_block(config["guest_accelerator"])
            assert accelerator["type"] == pool.gcp.accelerator_type
            assert accelerator["count"] == pool.gcp.accelerator_count
            driver = first_block(accelerator["gpu_driver_installation_config"])
            assert driver["gpu_driver_version"] in ("DEFAULT", "LATEST")
            assert {"key": "nvidia.com/gpu", "effect": "NO_SCHEDULE"}.items() <= first_block(config["taint"]).items()
            assert first_block(config["shielded_instance_config"]) == {"enable_integrity_monitoring": True,
                                                                "enable_secure_boot": True}
            assert first_block(config["workload_metadata_config"])["mode"] == "GKE_METADATA"
            assert config["boot_disk_kms_key"].startswith("${google_kms_crypto_key.")
            zones = body["node_locations"]
            assert zones and all(z.startswith(f"{region.name}-") for z in zones)
            assert all(pool.gcp.accelerator_type in offerings.zones[z] for z in zones)
            scaling = first_block(body["autoscaling"])
            expected = pool.min_size if region.role == "primary" else pool.warm_standby
            assert scaling["total_min_node_count"] == expected and scaling["total_max_node_count"] == pool.max_size
            seen += 1
        system = [p for p in node_pools if not first_block(p["node_config"]).get("guest_accelerator")]
        assert len(system) == 1 and "taint" not in first_block(system[0]["node_config"])  # add-ons run untainted
    assert seen == 5  # research: 2 pools x 2 regions; hybrid: 1 pool in its Google Cloud region


def test_queued_provisioning_pool_takes_no_reservation_and_scales_from_zero(synthesized):
    tf = synthesized.stacks["research-us-east4"]
    batch = next(p for p in resources(tf, "google_container_node_pool").values() if p["name"] == "batch-gpu")
    assert first_block(batch["queued_provisioning"])["enabled"] is True
    affinity = first_block(first_block(batch["node_config"])["reservation_affinity"])
    assert affinity["consume_reservation_type"] == "NO_RESERVATION"
    assert first_block(batch["autoscaling"])["total_min_node_count"] == 0
    assert first_block(batch["autoscaling"])["location_policy"] == "ANY"
    assert first_block(batch["management"])["auto_repair"] is False


def test_standby_pools_publish_warm_and_failover_sizes(synthesized):
    outputs = synthesized.stacks["hybrid-us-central1"]["output"]
    assert outputs["inference_gpu_warm_size"]["value"] == 2
    assert outputs["inference_gpu_failover_size"]["value"] == 4


def test_every_google_bucket_turbo_replicated_cmek_and_private(synthesized):
    buckets = [(n, b) for n, tf in synthesized.stacks.items() for b in resources(tf, "google_storage_bucket").values()]
    assert sorted(n for n, _ in buckets) == ["hybrid-gcp-global", "research-gcp-global"]
    for name, bucket in buckets:
        assert bucket["rpo"] == "ASYNC_TURBO", name
        assert len(first_block(bucket["custom_placement_config"])["data_locations"]) == 2
        assert first_block(bucket["encryption"])["default_kms_key_name"].startswith("${google_kms_crypto_key.")
        assert bucket["uniform_bucket_level_access"] is True and bucket["public_access_prevention"] == "enforced"
        assert first_block(bucket["versioning"])["enabled"] is True and bucket["force_destroy"] is False
    hybrid = next(b for n, b in buckets if n == "hybrid-gcp-global")
    assert first_block(hybrid["custom_placement_config"])["data_locations"] == ["us-central1", "us-east1"]


def test_every_cloud_sql_instance_protected_and_the_primary_has_a_dr_replica(synthesized):
    instances = {i["name"]: (n, i) for n, tf in synthesized.stacks.items()
                 for i in resources(tf, "google_sql_database_instance").values()}
    assert set(instances) == {"mlfleet-research-registry-us-central1", "mlfleet-research-registry-us-east4"}
    for _stack, instance in instances.values():
        settings = first_block(instance["settings"])
        assert instance["deletion_protection"] is True and settings["deletion_protection_enabled"] is True
        assert settings["edition"] == "ENTERPRISE_PLUS" and settings["availability_type"] == "REGIONAL"
        assert first_block(settings["ip_configuration"])["ipv4_enabled"] is False
        assert instance["encryption_key_name"].startswith("${google_kms_crypto_key.")
    _, primary = instances["mlfleet-research-registry-us-central1"]
    backups = first_block(first_block(primary["settings"])["backup_configuration"])
    assert backups["enabled"] is True and backups["point_in_time_recovery_enabled"] is True
    replica_stack, replica = instances["mlfleet-research-registry-us-east4"]
    assert replica_stack == "research-us-east4" and replica["region"] == "us-east4"
    assert replica["master_instance_name"] == "mlfleet-research-registry-us-central1"  # by name, not by state
    lag = [a for a in resources(synthesized.stacks[replica_stack], "google_monitoring_alert_policy").values()
           if "replica lag" in a["display_name"]]
    assert len(lag) == 1


def test_route53_fails_over_to_the_google_cloud_region(synthesized):
    tf = synthesized.stacks["hybrid-global"]
    checks = {c["fqdn"]: c for c in resources(tf, "aws_route53_health_check").values() if "fqdn" in c}
    assert set(checks) == {"us-east-1.models.hybrid.example.com", "us-central1.models.hybrid.example.com"}
    assert all(c["type"] == "HTTPS_STR_MATCH" and c["search_string"] == "MLFLEET_FAILOVER_OK" for c in checks.values())
    records = {first_block(r["failover_routing_policy"])["type"]: r
               for r in resources(tf, "aws_route53_record").values() if r.get("failover_routing_policy")}
    assert records["SECONDARY"]["records"] == ["us-central1.models.hybrid.example.com"]
    assert records["PRIMARY"]["records"] == ["us-east-1.models.hybrid.example.com"]
    # No AWS region besides the primary: the global cluster has nothing to join it (the review says so).
    assert len(resources(tf, "aws_rds_global_cluster")) == 1
    assert not resources(synthesized.stacks["research-global"], "aws_rds_global_cluster")


def test_the_clouds_agree_on_the_artifact_transfer(synthesized):
    (job,) = resources(synthesized.stacks["hybrid-gcp-global"], "google_storage_transfer_job").values()
    spec = first_block(job["transfer_spec"])
    source, sink = first_block(spec["aws_s3_data_source"]), first_block(spec["gcs_data_sink"])
    assert source["bucket_name"] == "mlfleet-hybrid-444444444444-us-east-1" and source["path"] == "models/"
    assert sink == {"bucket_name": "mlfleet-hybrid-prod-hybrid-models", "path": "models/mirror/us-east-1/"}
    assert first_block(job["schedule"])["repeat_interval"] == "3600s"

    primary = synthesized.stacks["hybrid-us-east-1"]
    (role,) = [r for r in resources(primary, "aws_iam_role").values()
               if r["name"] == "mlfleet-hybrid-us-east-1-gcs-transfer"]
    assert source["role_arn"] == f"arn:aws:iam::444444444444:role/{role['name']}"
    (trust,) = json.loads(role["assume_role_policy"])["Statement"]
    assert trust["Principal"] == {"Federated": "accounts.google.com"}
    assert trust["Condition"] == {"StringEquals": {"accounts.google.com:sub": "104444444444444444444"}}
    (policy,) = [p for p in resources(primary, "aws_iam_role_policy").values() if p["name"] == "mlfleet-gcs-transfer"]
    statements = json.loads(policy["policy"])["Statement"]
    assert {a for s in statements for a in ([s["Action"]] if isinstance(s["Action"], str) else s["Action"])} == \
        {"s3:GetBucketLocation", "s3:ListBucket", "s3:GetObject", "kms:Decrypt"}
    assert all("*" not in s["Action"] for s in statements)
    # Serving on Google Cloud reads approved/ only: mirrored copies are not served until review publishes them.
    grants = resources(synthesized.stacks["hybrid-gcp-global"], "google_storage_bucket_iam_member")
    serving = [g for g in grants.values() if "serving" in g["member"]]
    assert len(serving) == 1 and "models/approved/" in first_block(serving[0]["condition"])["expression"]
    agent = [g for g in grants.values() if "storage-transfer-service" in g["member"] and g.get("condition")]
    assert len(agent) == 1 and "models/mirror/us-east-1/" in first_block(agent[0]["condition"])["expression"]
    # Grants name the bucket by its name: Terraform must create the bucket first.
    assert all(g["depends_on"] == ["google_storage_bucket.artifacts_bucket_A41425E9"] for g in grants.values())


def test_an_all_google_environment_needs_no_transfer(synthesized):
    assert not resources(synthesized.stacks["research-gcp-global"], "google_storage_transfer_job")
    assert not [r for r in resources(synthesized.stacks["research-global"], "aws_iam_role").values()]


def test_the_registry_reaches_google_cloud_through_dms(synthesized):
    tf = synthesized.stacks["hybrid-us-central1"]
    (job,) = resources(tf, "google_database_migration_service_migration_job").values()
    assert job["type"] == "CONTINUOUS" and job["location"] == "us-central1"
    profiles = {p["connection_profile_id"]: p
                for p in resources(tf, "google_database_migration_service_connection_profile").values()}
    source = profiles["mlfleet-hybrid-registry-us-central1-source"]["postgresql"]
    assert source["host"] == load_environment("hybrid").gcp.registry_source.host
    cloudsql = first_block(profiles["mlfleet-hybrid-registry-us-central1"]["cloudsql"])
    assert cloudsql["settings"]["ip_config"]["enable_ipv4"] is False
    (secret,) = tf["data"]["google_secret_manager_secret_version"].values()
    assert secret["secret"] == "mlfleet-hybrid-registry-replication"
    # The Aurora side: logical replication on, and DMS's range (the VPC's private services) admitted.
    primary = synthesized.stacks["hybrid-us-east-1"]
    (group,) = resources(primary, "aws_rds_cluster_parameter_group").values()
    parameters = {p["name"]: p for p in group["parameter"]}
    assert parameters["rds.logical_replication"] == {"name": "rds.logical_replication", "value": "1",
                                                     "apply_method": "pending-reboot"}
    assert "pglogical" in parameters["shared_preload_libraries"]["value"].split(",")
    (db_group,) = [g for g in resources(primary, "aws_security_group").values() if g["name"].endswith("-db")]
    assert db_group["ingress"][0]["cidr_blocks"] == ["10.60.0.0/16", "10.250.0.0/16"]
    (vpc_range,) = resources(synthesized.stacks["hybrid-gcp-global"], "google_compute_global_address").values()
    assert f"{vpc_range['address']}/{vpc_range['prefix_length']}" == "10.250.0.0/16"


def test_an_existing_vpc_release_channel_and_control_plane_networks(tmp_path):
    import yaml

    from mlfleet.stacks.environment import ENVIRONMENTS_DIR, parse_environment

    data = yaml.safe_load((ENVIRONMENTS_DIR / "research.yaml").read_text())
    data["gcp"].update(existing_vpc="shared-ml", release_channel="STABLE", soft_delete_days=14,
                       control_plane_networks={"ops-vpn": "10.200.0.0/24"})
    stacks = synthesize([parse_environment(data, "research+existing-vpc")], tmp_path / "out").stacks
    assert not resources(stacks["research-gcp-global"], "google_compute_network")
    (bucket,) = resources(stacks["research-gcp-global"], "google_storage_bucket").values()
    assert first_block(bucket["soft_delete_policy"])["retention_duration_seconds"] == 14 * 86400
    assert not resources(stacks["research-gcp-global"], "google_service_networking_connection")
    for region in ("us-central1", "us-east4"):
        tf = stacks[f"research-{region}"]
        subnets = [s for s in resources(tf, "google_compute_subnetwork").values()
                   if s.get("purpose") != "REGIONAL_MANAGED_PROXY"]
        (subnet,) = subnets
        assert subnet["network"] == "projects/mlfleet-research/global/networks/shared-ml"
        (cluster,) = resources(tf, "google_container_cluster").values()
        assert first_block(cluster["release_channel"])["channel"] == "STABLE"
        blocks = first_block(cluster["master_authorized_networks_config"])["cidr_blocks"]
        assert [(b["display_name"], b["cidr_block"]) for b in blocks] == [("ops-vpn", "10.200.0.0/24")]
    (sql,) = resources(stacks["research-us-central1"], "google_sql_database_instance").values()
    assert first_block(first_block(sql["settings"])["ip_configuration"])["private_network"] == \
        "projects/mlfleet-research/global/networks/shared-ml"


def test_synth_summary_reads_the_google_stacks(synthesized):
    from mlfleet.stacks.summary import render_summary

    text = render_summary(synthesized)
    assert "environment hybrid: primary us-east-1 (aws), standby us-central1 (gcp)" in text
    assert "hybrid-us-central1  (" in text
    assert "state gs://mlfleet-hybrid-prod-tfstate-us-central1/hybrid/us-central1" in text
    assert re.search(r"gpu pool inference-gpu: g2-standard-8 on_demand, 1 GPU/node, nodes min 2 .* max 12", text)
    assert "gpu pool batch-gpu: a3-highgpu-8g queued, 8 GPU/node, nodes min 0 desired 0 max 4" in text
    assert "bucket gs://mlfleet-hybrid-prod-hybrid-models (US us-central1+us-east1, ASYNC_TURBO)" in text
    assert "database mlfleet-hybrid-registry-us-central1 (cloud sql kept in step with Aurora by DMS)" in text
    assert ("database mlfleet-research-registry-us-east4 (cloud sql postgres_16, replica of "
            "mlfleet-research-registry-us-central1)") in text


def test_each_gke_control_plane_has_its_own_range_in_the_vpc(synthesized):
    def control_plane_range(region: str) -> str:
        (cluster,) = resources(synthesized.stacks[f"research-{region}"], "google_container_cluster").values()
        return first_block(cluster["private_cluster_config"])["master_ipv4_cidr_block"]

    ranges = {region: control_plane_range(region) for region in ("us-central1", "us-east4")}
    assert ranges == {"us-central1": "172.16.0.0/28", "us-east4": "172.16.0.16/28"}


def test_the_project_audits_storage_access_and_admits_only_the_pinned_runtime(synthesized):
    for env_name in ("research", "hybrid"):
        env = load_environment(env_name)
        project = env.gcp.project_id
        stack = synthesized.stacks[f"{env.name}-gcp-global"]
        (audit,) = resources(stack, "google_project_iam_audit_config").values()
        assert audit["service"] == "storage.googleapis.com"
        assert [c["log_type"] for c in audit["audit_log_config"]] == ["DATA_READ", "DATA_WRITE"]
        (policy,) = resources(stack, "google_binary_authorization_policy").values()
        assert policy["default_admission_rule"]["evaluation_mode"] == "ALWAYS_DENY"
        assert sorted(p["name_pattern"] for p in policy["admission_whitelist_patterns"]) == sorted(
            f"{r.name}-docker.pkg.dev/{project}/mlfleet-{env.name}/{env.serving.image.name}@sha256:*"
            for r in env.regions_on("gcp"))
        for region in env.regions_on("gcp"):
            (cluster,) = resources(synthesized.stacks[f"{env.name}-{region.name}"], "google_container_cluster").values()
            assert cluster["binary_authorization"] == {"evaluation_mode": "PROJECT_SINGLETON_POLICY_ENFORCE"}
            # The serving stack deploys exactly what the policy admits: the runtime by digest.
            serving = synthesized.stacks[f"{env.name}-{region.name}-serving"]
            images = {d["spec"]["template"]["spec"]["container"][0]["image"]
                      for d in resources(serving, "kubernetes_deployment_v1").values()}
            assert images == {f"{region.name}-docker.pkg.dev/{project}/mlfleet-{env.name}/{env.serving.image.name}"
                              f"@{env.serving.image.digest}"}
        (firewall,) = resources(stack, "google_compute_firewall").values()
        assert firewall["deny"] == [{"protocol": "all"}] and firewall["priority"] == 65535
