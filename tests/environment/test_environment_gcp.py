"""The environment model with Google Cloud regions: the cross-cloud and all-Google examples load,
and every kind of bad Google Cloud input stops with exit code 2, the field's path and the reason,
before anything is written."""
from __future__ import annotations

import copy

import pytest
import yaml

from mlfleet.constructs.service_limits import STORAGE_TRANSFER_RPO_SECONDS
from mlfleet.stacks.environment import ENVIRONMENTS_DIR, artifact_rpo, gke_node_locations, load_environment
from mlfleet.stacks.environment.gcp_offerings import GcpAcceleratorOfferings

from helpers.cli import synth_invalid


def _example(name: str) -> dict:
    return yaml.safe_load((ENVIRONMENTS_DIR / f"{name}.yaml").read_text())


def test_cross_cloud_example_has_an_aws_primary_and_a_gcp_standby():
    hybrid = load_environment("hybrid")
    assert (hybrid.primary.name, hybrid.primary.cloud) == ("us-east-1", "aws")
    assert [(r.name, r.cloud) for r in hybrid.standbys] == [("us-central1", "gcp")]
    assert hybrid.cross_cloud and hybrid.clouds == ["aws", "gcp"]
    assert artifact_rpo(hybrid)[0] == STORAGE_TRANSFER_RPO_SECONDS
    assert hybrid.identities.of_cloud("training", "aws") == ["arn:aws:iam::444444444444:role/ml-training-pipeline"]
    assert hybrid.identities.of_cloud("review", "gcp") == ["group:ml-model-review@example.com"]


def test_all_google_example_places_nodes_where_the_accelerator_is_offered():
    research = load_environment("research")
    assert research.clouds == ["gcp"] and research.primary.name == "us-central1"
    offerings = GcpAcceleratorOfferings.load()
    for region in research.regions:
        for pool in research.gpu_pools:
            zones = gke_node_locations(region, pool.gcp.accelerator_type)
            assert zones, (region.name, pool.name)
            assert all(z.startswith(f"{region.name}-") for z in zones)
            assert all(pool.gcp.accelerator_type in offerings.zones[z] for z in zones)


def test_chosen_zones_narrow_the_node_locations():
    data = _example("research")
    offered = GcpAcceleratorOfferings.load().zones_offering("nvidia-l4", "us-central1")
    data["regions"][0]["zones"] = [offered[0]]
    data["gpu_pools"] = data["gpu_pools"][:1]
    from mlfleet.stacks.environment import parse_environment
    env = parse_environment(data, "test")
    assert gke_node_locations(env.regions[0], "nvidia-l4") == (offered[0],)


def _unoffered_zone(accelerator: str, region: str) -> str:
    offered = set(GcpAcceleratorOfferings.load().zones_offering(accelerator, region))
    return next(f"{region}-{c}" for c in "abcdefgh" if f"{region}-{c}" not in offered)


def _unoffered_accelerator(region: str) -> str:
    offerings = GcpAcceleratorOfferings.load()
    return next(t for t in sorted(offerings.accelerator_types) if not offerings.zones_offering(t, region))


HYBRID_INVALID = {
    "rbac group GKE does not read": (lambda d: d["gcp"].update(rbac_security_group="ml-admins@example.com"),
                                     "gcp.rbac_security_group: String should match pattern"),
    "gcp region without a project": (lambda d: d.pop("gcp"),
                                     "gcp: us-central1 on Google Cloud: give gcp.project_id"),
    "google region without its cloud": (lambda d: d["regions"][1].pop("cloud"),
                                        "regions[1].name: 'us-central1' is not an AWS region name (like us-east-1); "
                                        "a Google Cloud region needs cloud: gcp"),
    "aws region name on google cloud": (lambda d: d["regions"][1].update(name="us-west-2"),
                                        "regions[1].name: 'us-west-2' is not a Google Cloud region name"),
    "unknown cloud": (lambda d: d["regions"][1].update(cloud="azure"),
                      "regions[1]: cloud must be aws (the default) or gcp"),
    "typo in a gcp network": (lambda d: d["regions"][1]["network"].update(pods_cdir="10.100.0.0/14"),
                              "regions[1].network.pods_cdir: unknown key (a typo?)"),
    "gcp network without pod range": (lambda d: d["regions"][1]["network"].pop("pods_cidr"),
                                      "regions[1].network: give cidr, pods_cidr and services_cidr"),
    "pods range overlaps the aws vpc": (lambda d: d["regions"][1]["network"].update(pods_cidr="10.60.0.0/14"),
                                        "regions[1].network.pods_cidr: 10.60.0.0/14 overlaps 10.60.0.0/16 (cidr) of "
                                        "regions.0 (us-east-1)"),
    "services range overlaps its own nodes": (
        lambda d: d["regions"][1]["network"].update(services_cidr="10.61.0.0/22"),
        "regions[1].network.services_cidr: 10.61.0.0/22 overlaps 10.61.0.0/20 (cidr) of this region"),
    "pool without a google machine": (lambda d: d["gpu_pools"][0].pop("gcp"),
                                      "gpu_pools[0].gcp: give the pool's machine and accelerator for us-central1"),
    "accelerator not in the table": (lambda d: d["gpu_pools"][0]["gcp"].update(accelerator_type="nvidia-x99"),
                                     "gpu_pools[0].gcp.accelerator_type: nvidia-x99 is not an NVIDIA accelerator "
                                     "type of Google Cloud"),
    "accelerator not offered in the region": (
        lambda d: (d["regions"][1].update(name="us-east1")
                   or d["gcp"].update(artifact_regions=["us-east1", "us-central1"]))
        or d["gpu_pools"][0]["gcp"].update(accelerator_type=_unoffered_accelerator("us-east1")),
        "is not offered in us-east1 (accelerator table of"),
    "accelerator not offered in the chosen zones": (
        lambda d: d["regions"][1].update(zones=[_unoffered_zone("nvidia-l4", "us-central1")]),
        "gpu_pools[0].gcp.accelerator_type: nvidia-l4 is not offered in us-central1 among the chosen zones"),
    "zone of another region": (lambda d: d["regions"][1].update(zones=["us-east1-b"]),
                               "regions[1]: zone 'us-east1-b' is not a zone of us-central1"),
    "more GPUs than a VM takes": (lambda d: d["gpu_pools"][0]["gcp"].update(accelerator_count=16),
                                  "gpu_pools[0].gcp.accelerator_count: a VM takes at most 8 nvidia-l4"),
    "queued provisioning with affinity ANY": (
        lambda d: d["gpu_pools"][0].update(min_size=0, warm_standby=0) or
        d["gpu_pools"][0]["gcp"].update(queued_provisioning=True),
        "gpu_pools[0].gcp.queued_provisioning: queued provisioning is valid only with reservation affinity NONE"),
    "queued provisioning with a named reservation": (
        lambda d: d["gpu_pools"][0].update(min_size=0, warm_standby=0,
                                           reservations={"us-central1": {"name": "l4-reserved"}}) or
        d["gpu_pools"][0]["gcp"].update(queued_provisioning=True, reservation_affinity="NONE"),
        "and drop the reservations of us-central1"),
    "queued provisioning with a warm minimum": (
        lambda d: d["gpu_pools"][0]["gcp"].update(queued_provisioning=True, reservation_affinity="NONE"),
        "gpu_pools[0].gcp.queued_provisioning: a queued-provisioning pool scales from zero"),
    "aws reservation on a gcp region": (
        lambda d: d["gpu_pools"][0].update(
            reservations={"us-central1": {"capacity_reservation_id": "cr-0a1b2c3d4e5f60718"}}),
        "gpu_pools[0].reservations.us-central1: us-central1 is on GCP: name the Compute Engine reservation"),
    "capacity blocks on google cloud": (
        lambda d: d["gpu_pools"][0].update(capacity_type="CAPACITY_BLOCK", reservations={
            "us-east-1": {"capacity_reservation_id": "cr-0a1b2c3d4e5f60718"}}),
        "gpu_pools[0].capacity_type: Google Cloud has no Capacity Blocks"),
    "no google principal": (
        lambda d: d["identities"].update(training_principals=[d["identities"]["training_principals"][0]]),
        "identities.training_principals: no GCP principal for the training identity"),
    "no transfer agent": (lambda d: d["gcp"].pop("storage_transfer_subject_id"),
                          "gcp.storage_transfer_subject_id: artifacts reach the Google Cloud standby through "
                          "Storage Transfer Service"),
    "one gcp region without a pair": (lambda d: d["gcp"].pop("artifact_regions"),
                                      "gcp.artifact_regions: one Google Cloud region (us-central1): name the "
                                      "dual-region pair"),
    "pair across continents": (lambda d: d["gcp"].update(artifact_regions=["us-central1", "europe-west4"]),
                               "gcp.artifact_regions: us-central1 and europe-west4 are not a dual-region"),
    "rpo tighter than the hourly transfer": (
        lambda d: d["targets"].update(rpo="15m"),
        "targets.rpo: RPO target 900s is tighter than Storage Transfer Service's hourly copy to Google Cloud "
        "can deliver (3600s)"),
    "private services range overlaps a region": (
        lambda d: d["gcp"].update(private_services_cidr="10.60.128.0/20"),
        "gcp.private_services_cidr: 10.60.128.0/20 overlaps 10.60.0.0/16 (cidr) of regions.0 (us-east-1)"),
    "registry source not a host": (lambda d: d["gcp"]["registry_source"].update(host="10.60.0.10:5432"),
                                   "gcp.registry_source.host: String should match pattern"),
    "control plane open to the internet": (lambda d: d["gcp"].update(control_plane_networks={"anyone": "0.0.0.0/0"}),
                                           "gcp.control_plane_networks.anyone: 0.0.0.0/0 is not a private range"),
    "control plane inside the nodes' range": (
        lambda d: d["regions"][1]["network"].update(control_plane_cidr="10.61.0.16/28"),
        "regions[1].network.control_plane_cidr: 10.61.0.16/28 overlaps 10.61.0.0/20 (cidr) of this region"),
    "aws vpc over the default control planes": (
        lambda d: d["regions"][0]["network"].update(cidr="172.16.0.0/16"),
        "regions[1].network.control_plane_cidr: 172.16.0.0/28 overlaps 172.16.0.0/16 (cidr) of regions.0"),
    "alerts to nobody": (lambda d: d["gcp"].pop("alert_emails"),
                         "gcp: give alert_emails or notification_channels"),
    "name too long for google ids": (lambda d: d.update(name="hybrid-platform-prod"),
                                     "name: too long for Google Cloud ids derived from it"),
}


@pytest.mark.parametrize("case", sorted(HYBRID_INVALID))
def test_invalid_google_cloud_input_names_the_field(case, tmp_path, capsys):
    mutate, expected = HYBRID_INVALID[case]
    data = copy.deepcopy(_example("hybrid"))
    mutate(data)
    assert expected in synth_invalid(tmp_path, capsys, data)


def test_gcp_primary_with_an_aws_standby_is_refused(tmp_path, capsys):
    data = _example("hybrid")
    data["regions"][0]["role"], data["regions"][1]["role"] = "standby", "primary"
    err = synth_invalid(tmp_path, capsys, data)
    assert "regions[0].cloud: an AWS standby of a Google Cloud primary is not supported" in err


def test_registry_source_needs_an_aws_primary(tmp_path, capsys):
    data = _example("research")
    data["gcp"]["registry_source"] = {"host": "db.example.com"}
    assert "gcp.registry_source: only a Google Cloud standby of an AWS primary replicates from Aurora" in \
        synth_invalid(tmp_path, capsys, data)


def test_gcp_section_without_gcp_regions_is_refused(tmp_path, capsys):
    data = yaml.safe_load((ENVIRONMENTS_DIR / "staging.yaml").read_text())
    data["gcp"] = _example("hybrid")["gcp"]
    assert "gcp: no region has cloud: gcp" in synth_invalid(tmp_path, capsys, data)


def test_spot_pool_with_a_google_reservation_is_refused(tmp_path, capsys):
    data = _example("research")
    data["gpu_pools"][0].update(capacity_type="SPOT", reservations={"us-east4": {"name": "l4-reserved"}})
    err = synth_invalid(tmp_path, capsys, data)
    assert "gpu_pools[0].reservations.us-east4: a reservation holds on-demand capacity, not spot" in err
