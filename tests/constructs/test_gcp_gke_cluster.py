from __future__ import annotations

import cdktn
import pytest

from mlfleet.constructs.gcp.gke_cluster import GkeCluster, GkeClusterProps
from mlfleet.constructs.gcp.kms_key import crypto_key_id
from mlfleet.constructs.validation import PropsError

from helpers.template import only_resource, resources

PROJECT, NUMBER, REGION = "mlfleet-prod", "123456789012", "us-central1"
KEY = crypto_key_id(PROJECT, REGION, "mlfleet-prod-usc1", "gke")
NETWORK = f"projects/{PROJECT}/global/networks/mlfleet"


def google(build):
    from cdktn_provider_google.provider import GoogleProvider

    def _build(stack):
        GoogleProvider(stack, "google", project="p", region=REGION)
        return build(stack)
    return _build


def props(**overrides) -> GkeClusterProps:
    return GkeClusterProps(**{**dict(
        project_id=PROJECT, project_number=NUMBER, region=REGION, name="mlfleet-prod-usc1", network=NETWORK,
        subnetwork=f"projects/{PROJECT}/regions/{REGION}/subnetworks/mlfleet-usc1", pods_range_name="mlfleet-usc1-pods",
        services_range_name="mlfleet-usc1-services", kms_key_id=KEY), **overrides})


def test_cluster_is_regional_private_workload_identity_dataplane_v2_and_encrypts_secrets(synth):
    built = {}
    tf = synth(google(lambda s: built.setdefault("c", GkeCluster(s, "gke", props(
        authorized_networks={"vpn": "10.8.0.0/16"}, release_channel="STABLE", labels={"env": "prod"})))),
        with_provider=False)
    cluster = only_resource(tf, "google_container_cluster")
    assert cluster["location"] == REGION and cluster["networking_mode"] == "VPC_NATIVE"
    assert cluster["private_cluster_config"] == {
        "enable_private_nodes": True, "enable_private_endpoint": True, "master_ipv4_cidr_block": "172.16.0.0/28",
        "master_global_access_config": {"enabled": True}}
    assert cluster["master_authorized_networks_config"] == {
        "gcp_public_cidrs_access_enabled": False, "cidr_blocks": [{"cidr_block": "10.8.0.0/16", "display_name": "vpn"}]}
    assert cluster["workload_identity_config"] == {"workload_pool": "mlfleet-prod.svc.id.goog"}
    assert cluster["master_auth"] == {"client_certificate_config": {"issue_client_certificate": False}}
    assert cluster["release_channel"] == {"channel": "STABLE"}
    assert cluster["datapath_provider"] == "ADVANCED_DATAPATH" and cluster["enable_shielded_nodes"] is True
    assert cluster["database_encryption"] == {"state": "ENCRYPTED", "key_name": KEY}
    assert cluster["deletion_protection"] is True and cluster["remove_default_node_pool"] is True
    assert cluster["ip_allocation_policy"] == {"cluster_secondary_range_name": "mlfleet-usc1-pods",
                                               "services_secondary_range_name": "mlfleet-usc1-services"}

    # Nodes run as a dedicated account with GKE's minimal role, never the Compute default account.
    account = only_resource(tf, "google_service_account")
    assert account["account_id"] == "mlfleet-prod-usc1-nodes"
    account_email = "${google_service_account.%s.email}" % next(iter(resources(tf, "google_service_account")))
    roles = {m["role"] for m in resources(tf, "google_project_iam_member").values()
             if m["member"] == f"serviceAccount:{account_email}"}
    assert roles == {"roles/container.defaultNodeServiceAccount", "roles/artifactregistry.reader"}
    pool = only_resource(tf, "google_container_node_pool")
    for node_config in (cluster["node_config"], pool["node_config"]):
        assert node_config["service_account"] == account_email
        assert node_config["workload_metadata_config"] == {"mode": "GKE_METADATA"}
        assert node_config["shielded_instance_config"] == {"enable_secure_boot": True,
                                                           "enable_integrity_monitoring": True}
        assert node_config["boot_disk_kms_key"] == KEY
    assert pool["autoscaling"] == {"min_node_count": 1, "max_node_count": 3}
    cluster_id = next(iter(resources(tf, "google_container_cluster")))
    assert pool["cluster"] == "${google_container_cluster.%s.id}" % cluster_id

    # The GKE and Compute service agents may use the key before the cluster needs it.
    grants = resources(tf, "google_kms_crypto_key_iam_member")
    assert {g["member"] for g in grants.values()} == {
        f"serviceAccount:service-{NUMBER}@container-engine-robot.iam.gserviceaccount.com",
        f"serviceAccount:service-{NUMBER}@compute-system.iam.gserviceaccount.com"}
    assert {g["role"] for g in grants.values()} == {"roles/cloudkms.cryptoKeyEncrypterDecrypter"}
    assert {f"google_kms_crypto_key_iam_member.{name}" for name in grants} <= set(cluster["depends_on"])
    assert tf["output"]["gke_cluster_name"]["value"].endswith(".name}")
    assert tf["output"]["gke_cluster_location"]["value"] == REGION
    assert built["c"].workload_pool == "mlfleet-prod.svc.id.goog"


@pytest.fixture
def stack():
    return cdktn.TerraformStack(cdktn.Testing.app(), "test")


def test_the_gateway_api_is_on_and_dataplane_v2_enforces_network_policy(stack):
    GkeCluster(stack, "gke", props())
    cluster = next(iter(stack.to_terraform()["resource"]["google_container_cluster"].values()))
    # The serving gateway's Gateway, HTTPRoute and policies need GKE's Gateway API CRDs and controller.
    assert cluster["gateway_api_config"] == {"channel": "CHANNEL_STANDARD"}
    # The runtime's NetworkPolicy is enforced by Dataplane V2, not by the Calico add-on.
    assert cluster["datapath_provider"] == "ADVANCED_DATAPATH" and "network_policy" not in cluster


def test_pods_run_only_what_the_project_binary_authorization_policy_admits(stack):
    GkeCluster(stack, "gke", props())
    cluster = next(iter(stack.to_terraform()["resource"]["google_container_cluster"].values()))
    assert cluster["binary_authorization"] == {"evaluation_mode": "PROJECT_SINGLETON_POLICY_ENFORCE"}
    # Same-node pod traffic crosses the VPC, where the subnet's flow logs record it.
    assert cluster["enable_intranode_visibility"] is True
    assert "authenticator_groups_config" not in cluster


def test_google_groups_for_rbac_names_the_workspace_security_group(stack):
    GkeCluster(stack, "gke", props(rbac_security_group="gke-security-groups@example.com"))
    cluster = next(iter(stack.to_terraform()["resource"]["google_container_cluster"].values()))
    assert cluster["authenticator_groups_config"] == {"security_group": "gke-security-groups@example.com"}


@pytest.mark.parametrize("overrides, message", [
    (dict(rbac_security_group="ml-admins@example.com"),
     "rbac_security_group: 'ml-admins@example.com' is not gke-security-groups@<domain>"),
    (dict(project_number="12ab"), "project_number: '12ab' is not a project number"),
    (dict(name="mlfleet-production-us-central1-serving-cluster"), "name: .* at most 40"),
    (dict(name="mlfleet-production-us-east1"),
     "node_service_account_id: 'mlfleet-production-us-east1-nodes' is not a service "
                                           "account id .*the default from name is too long"),
    (dict(kms_key_id=crypto_key_id(PROJECT, "us-east1", "r", "k")), "kms_key_id: the key is in 'us-east1'"),
    (dict(master_ipv4_cidr="172.16.0.0/24"), "master_ipv4_cidr: 172.16.0.0/24 is not a private /28"),
    (dict(authorized_networks={"all": "0.0.0.0/0"}), r"authorized_networks\['all'\]: 0.0.0.0/0 opens"),
    (dict(release_channel="NIGHTLY"), "release_channel: 'NIGHTLY' is not one of"),
    (dict(system_nodes_per_zone_min=0), "system_nodes_per_zone_min: must be at least 1"),
    (dict(maintenance_start_time="3am"), "maintenance_start_time: '3am' is not a time HH:MM"),
    (dict(network="mlfleet"), "network: 'mlfleet' is not a VPC self link"),
    (dict(pods_range_name="Pods"), "pods_range_name: 'Pods' is not a secondary range name"),
])
def test_invalid_props_name_the_prop(stack, overrides, message):
    with pytest.raises(PropsError, match=message):
        GkeCluster(stack, "gke", props(**overrides))
