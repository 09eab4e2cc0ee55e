from __future__ import annotations

import cdktn
import pytest

from mlfleet.constructs.gcp.network import (
    GcpRegionalNetwork,
    GcpRegionalNetworkProps,
    GcpVpc,
    GcpVpcProps,
    network_self_link,
)
from mlfleet.constructs.validation import PropsError

from helpers.template import only_resource, resources

PROJECT = "mlfleet-prod"


def google(build):
    from cdktn_provider_google.provider import GoogleProvider

    def _build(stack):
        GoogleProvider(stack, "google", project="p", region="us-central1")
        return build(stack)
    return _build


def regional(**overrides) -> GcpRegionalNetworkProps:
    return GcpRegionalNetworkProps(**{**dict(
        project_id=PROJECT, region="us-central1", network_name="mlfleet", subnet_name="mlfleet-usc1",
        subnet_cidr="10.0.0.0/20", pods_cidr="10.64.0.0/14", services_cidr="10.68.0.0/20"), **overrides})


def test_vpc_and_regional_network_keep_nodes_private_with_nat_and_google_access(synth):
    built = {}

    def build(stack):
        built["vpc"] = GcpVpc(stack, "vpc", GcpVpcProps(project_id=PROJECT, name="mlfleet"))
        built["net"] = GcpRegionalNetwork(stack, "net", regional())

    tf = synth(google(build), with_provider=False)
    network = only_resource(tf, "google_compute_network")
    assert network["auto_create_subnetworks"] is False and network["routing_mode"] == "GLOBAL"
    psa_range = only_resource(tf, "google_compute_global_address")
    assert (psa_range["purpose"], psa_range["address"], psa_range["prefix_length"]) == ("VPC_PEERING", "10.250.0.0", 16)
    peering = only_resource(tf, "google_service_networking_connection")
    assert peering["service"] == "servicenetworking.googleapis.com"
    assert peering["reserved_peering_ranges"] == ["${google_compute_global_address.%s.name}"
                                                  % next(iter(resources(tf, "google_compute_global_address")))]

    # Only the new subnet is created; the regional stack names the VPC by its self link, not a reference.
    subnet = only_resource(tf, "google_compute_subnetwork")
    assert subnet["network"] == network_self_link(PROJECT, "mlfleet") == "projects/mlfleet-prod/global/networks/mlfleet"
    assert subnet["private_ip_google_access"] is True and subnet["ip_cidr_range"] == "10.0.0.0/20"
    assert subnet["secondary_ip_range"] == [
        {"range_name": "mlfleet-usc1-pods", "ip_cidr_range": "10.64.0.0/14"},
        {"range_name": "mlfleet-usc1-services", "ip_cidr_range": "10.68.0.0/20"}]
    assert subnet["log_config"]["metadata"] == "INCLUDE_ALL_METADATA"
    nat = only_resource(tf, "google_compute_router_nat")
    assert nat["source_subnetwork_ip_ranges_to_nat"] == "ALL_SUBNETWORKS_ALL_IP_RANGES"
    assert nat["nat_ip_allocate_option"] == "AUTO_ONLY" and nat["region"] == "us-central1"
    assert only_resource(tf, "google_compute_router")["network"] == subnet["network"]
    assert tf["output"]["gcp_subnetwork"]["value"].startswith("${google_compute_subnetwork.")


@pytest.fixture
def stack():
    return cdktn.TerraformStack(cdktn.Testing.app(), "test")


def test_the_vpc_denies_and_logs_all_ingress_no_other_rule_allows(stack):
    GcpVpc(stack, "vpc", GcpVpcProps(project_id=PROJECT, name="mlfleet"))
    tf = stack.to_terraform()["resource"]
    (firewall,) = tf["google_compute_firewall"].values()
    network = next(iter(tf["google_compute_network"]))
    assert firewall["network"] == "${google_compute_network.%s.id}" % network
    assert (firewall["direction"], firewall["priority"], firewall["source_ranges"]) == ("INGRESS", 65535, ["0.0.0.0/0"])
    assert firewall["deny"] == [{"protocol": "all"}] and "allow" not in firewall
    assert firewall["log_config"] == {"metadata": "INCLUDE_ALL_METADATA"}


def test_a_proxy_only_subnet_is_made_for_regional_load_balancers_when_asked(stack):
    net = GcpRegionalNetwork(stack, "net", regional(proxy_subnet_cidr="10.129.0.0/23"))
    subnets = {s["name"]: s for s in stack.to_terraform()["resource"]["google_compute_subnetwork"].values()}
    proxy = subnets["mlfleet-usc1-proxy"]
    assert (proxy["purpose"], proxy["role"], proxy["ip_cidr_range"], proxy["region"]) == (
        "REGIONAL_MANAGED_PROXY", "ACTIVE", "10.129.0.0/23", "us-central1")
    assert proxy["network"] == network_self_link(PROJECT, "mlfleet")
    # Google refuses secondary ranges and Private Google Access on a proxy-only subnet.
    assert "secondary_ip_range" not in proxy and "private_ip_google_access" not in proxy
    assert net.proxy_subnet_cidr == "10.129.0.0/23" and net.proxy_subnetwork is not None
    # Without the prop there is no proxy-only subnet.
    plain = GcpRegionalNetwork(stack, "plain", regional(subnet_name="mlfleet-use1", region="us-east1"))
    assert plain.proxy_subnetwork is None and plain.proxy_subnet_cidr is None


def test_an_existing_subnet_is_named_not_created(stack):
    existing = GcpRegionalNetwork(stack, "existing", regional(
        region="us-east1", subnet_name="shared-use1", subnet_cidr=None, pods_cidr=None, services_cidr=None,
        existing_subnet=True, nat=False, pods_range_name="gke-pods"))
    assert existing.subnetwork_self_link == "projects/mlfleet-prod/regions/us-east1/subnetworks/shared-use1"
    assert (existing.pods_range_name, existing.services_range_name) == ("gke-pods", "shared-use1-services")
    assert existing.subnetwork is None and existing.nat is None


@pytest.mark.parametrize("overrides, message", [
    (dict(project_id="Prod"), "project_id: 'Prod' is not a Google Cloud project id"),
    (dict(region="us-central1-a"), "region: 'us-central1-a' is not a Google Cloud region"),
    (dict(subnet_name="Subnet_1"), "subnet_name: 'Subnet_1'"),
    (dict(subnet_cidr=None), "subnet_cidr: required when mlfleet makes the subnet"),
    (dict(pods_cidr="10.64.0.0/33"), r"pods_cidr: '10.64.0.0/33' is not an IPv4 CIDR block"),
    (dict(subnet_cidr="8.8.0.0/20"), r"subnet_cidr: 8.8.0.0/20 is not in a private range"),
    (dict(services_cidr="10.0.8.0/24"), r"services_cidr: 10.0.8.0/24 overlaps subnet_cidr \(10.0.0.0/20\)"),
    (dict(pods_cidr="10.64.0.0/26"), "pods_cidr: GKE gives each node a /24"),
    (dict(pods_range_name="r", services_range_name="r"), "services_range_name: must differ from the pods range name"),
    (dict(existing_subnet=True), "subnet_cidr: an existing subnet keeps its own ranges"),
    (dict(proxy_subnet_cidr="10.129.0.0/27"), "proxy_subnet_cidr: a proxy-only subnet is at least a /26"),
    (dict(proxy_subnet_cidr="10.0.4.0/23"), r"proxy_subnet_cidr: 10.0.4.0/23 overlaps subnet_cidr \(10.0.0.0/20\)"),
    (dict(proxy_subnet_cidr="35.191.0.0/23"), "proxy_subnet_cidr: 35.191.0.0/23 is not in a private range"),
])
def test_invalid_regional_props_name_the_prop(stack, overrides, message):
    with pytest.raises(PropsError, match=message):
        GcpRegionalNetwork(stack, "net", regional(**overrides))


@pytest.mark.parametrize("overrides, message", [
    (dict(name="-vpc"), "name: '-vpc'"),
    (dict(private_services_cidr="10.250.0.0/25"),
     "private_services_cidr: private services access needs at least a /24"),
    (dict(private_services_cidr="34.0.0.0/16"), "private_services_cidr: 34.0.0.0/16 is not in a private range"),
    (dict(name="m" * 50), "name: 'm+' is too long: at most 46 characters"),
])
def test_invalid_vpc_props_name_the_prop(stack, overrides, message):
    with pytest.raises(PropsError, match=message):
        GcpVpc(stack, "vpc", GcpVpcProps(**{**dict(project_id=PROJECT, name="mlfleet"), **overrides}))
