from __future__ import annotations

import cdktn
import pytest

from mlfleet.constructs.gcp.gke_gpu_node_pool import (
    GkeGpuNodePool,
    GkeGpuNodePoolProps,
    GpuSharing,
    ReservationAffinity,
)
from mlfleet.constructs.gcp.kms_key import crypto_key_id
from mlfleet.constructs.validation import PropsError

from helpers.template import only_resource

PROJECT, REGION = "mlfleet-prod", "us-central1"
KEY = crypto_key_id(PROJECT, REGION, "mlfleet-prod-usc1", "gke")
ZONES = ("us-central1-a", "us-central1-b", "us-central1-c")


def google(build):
    from cdktn_provider_google.provider import GoogleProvider

    def _build(stack):
        GoogleProvider(stack, "google", project="p", region=REGION)
        return build(stack)
    return _build


def props(**overrides) -> GkeGpuNodePoolProps:
    return GkeGpuNodePoolProps(**{**dict(
        project_id=PROJECT, cluster=f"projects/{PROJECT}/locations/{REGION}/clusters/mlfleet-prod-usc1", region=REGION,
        name="infer-gpu", node_locations=ZONES, machine_type="a2-highgpu-1g", accelerator_type="nvidia-tesla-a100",
        accelerator_count=1, node_service_account=f"mlfleet-prod-usc1-nodes@{PROJECT}.iam.gserviceaccount.com",
        boot_disk_kms_key=KEY, min_size=4, max_size=12), **overrides})


def test_standby_pool_is_tainted_shared_shielded_encrypted_warm_and_exports_its_sizes(synth):
    built = {}
    tf = synth(google(lambda s: built.setdefault("pool", GkeGpuNodePool(s, "pool", props(
        standby=True, warm_size=2, failover_size=6, driver_version="LATEST", mig_partition_size="3g.20gb",
        gpu_sharing=GpuSharing(strategy="TIME_SHARING", max_shared_clients_per_gpu=4), location_policy="ANY",
        reservation=ReservationAffinity(type="SPECIFIC", name=f"projects/{PROJECT}/reservations/a100-usc1"),
        labels={"mlfleet.io/workload": "inference"})))), with_provider=False)
    pool = only_resource(tf, "google_container_node_pool")
    node = pool["node_config"]
    assert node["taint"] == [{"key": "nvidia.com/gpu", "value": "present", "effect": "NO_SCHEDULE"}]
    assert node["guest_accelerator"] == [{
        "type": "nvidia-tesla-a100", "count": 1, "gpu_partition_size": "3g.20gb",
        "gpu_driver_installation_config": {"gpu_driver_version": "LATEST"},
        "gpu_sharing_config": {"gpu_sharing_strategy": "TIME_SHARING", "max_shared_clients_per_gpu": 4}}]
    assert node["reservation_affinity"] == {"consume_reservation_type": "SPECIFIC_RESERVATION",
                                            "key": "compute.googleapis.com/reservation-name",
                                            "values": [f"projects/{PROJECT}/reservations/a100-usc1"]}
    assert node["workload_metadata_config"] == {"mode": "GKE_METADATA"}
    assert node["shielded_instance_config"] == {"enable_secure_boot": True, "enable_integrity_monitoring": True}
    assert node["boot_disk_kms_key"] == KEY and node["disk_size_gb"] == 200
    assert node["labels"] == {"mlfleet.io/workload": "inference"} and "spot" not in node
    assert pool["node_locations"] == list(ZONES)
    # A standby runs warm, counted across zones; the autoscaler and runbooks own the count afterwards.
    assert pool["autoscaling"] == {"total_min_node_count": 2, "total_max_node_count": 12, "location_policy": "ANY"}
    assert pool["initial_node_count"] == 1  # per zone: 3 zones reach the warm total of 2
    assert pool["lifecycle"] == {"ignore_changes": ["initial_node_count", "node_count"]}
    assert pool["management"] == {"auto_repair": True, "auto_upgrade": True}
    assert pool["upgrade_settings"] == {"strategy": "SURGE", "max_surge": 0, "max_unavailable": 1}
    assert "queued_provisioning" not in pool

    assert tf["output"]["infer_gpu_warm_size"]["value"] == 2
    assert tf["output"]["infer_gpu_failover_size"]["value"] == 6
    assert tf["output"]["infer_gpu_node_pool_name"]["value"].endswith(".name}")
    assert (built["pool"].scaling_minimum, built["pool"].warm_size, built["pool"].failover_size) == (2, 2, 6)


def test_queued_provisioning_pool_scales_from_zero_without_reservations_or_repair(stack):
    pool = GkeGpuNodePool(stack, "pool", props(
        queued_provisioning=True, min_size=0, location_policy="ANY", reservation=ReservationAffinity(type="NONE")))
    config = stack.to_terraform()["resource"]["google_container_node_pool"]
    body = next(iter(config.values()))
    assert body["queued_provisioning"] == {"enabled": True}
    assert body["management"]["auto_repair"] is False
    assert body["node_config"]["reservation_affinity"] == {"consume_reservation_type": "NO_RESERVATION"}
    assert body["initial_node_count"] == 0 and pool.failover_size is None


@pytest.fixture
def stack():
    return cdktn.TerraformStack(cdktn.Testing.app(), "test")


@pytest.mark.parametrize("overrides, message", [
    (dict(queued_provisioning=True, min_size=0, location_policy="ANY"),
     "reservation.type: queued provisioning is valid only with reservation affinity NONE, not ANY"),
    (dict(queued_provisioning=True, min_size=0, location_policy="ANY",
          reservation=ReservationAffinity(type="SPECIFIC", name="r1")),
     "reservation.type: queued provisioning is valid only with reservation affinity NONE, not SPECIFIC"),
    (dict(queued_provisioning=True, reservation=ReservationAffinity(type="NONE"), location_policy="ANY"),
     "min_size: a queued-provisioning pool scales from zero"),
    (dict(queued_provisioning=True, min_size=0, reservation=ReservationAffinity(type="NONE")),
     "location_policy: queued provisioning needs location_policy ANY"),
    (dict(queued_provisioning=True, min_size=0, reservation=ReservationAffinity(type="NONE"), spot=True,
          location_policy="ANY"), "spot: queued provisioning obtains nodes through Dynamic Workload Scheduler"),
    (dict(node_locations=()), "node_locations: give at least one zone where the accelerator is offered"),
    (dict(node_locations=("us-east1-b",)), r"node_locations\[0\]: 'us-east1-b' is not a zone of us-central1"),
    (dict(node_locations=("us-central1-a", "us-central1-a")), "node_locations: lists a zone twice"),
    (dict(reservation=ReservationAffinity(type="SPECIFIC")), "reservation.name: None is not a reservation name"),
    (dict(reservation=ReservationAffinity(type="ANY", name="r1")), "reservation.name: only a SPECIFIC"),
    (dict(reservation=ReservationAffinity(type="SPECIFIC", name="r1"), spot=True), "reservation: a reservation holds"),
    (dict(reservation=ReservationAffinity(type="SOME")), "reservation.type: 'SOME' is not one of"),
    (dict(gpu_sharing=GpuSharing(strategy="MPS", max_shared_clients_per_gpu=64)),
     "gpu_sharing.max_shared_clients_per_gpu: must be 2 to 48"),
    (dict(gpu_sharing=GpuSharing(strategy="SLICES", max_shared_clients_per_gpu=2)), "gpu_sharing.strategy: 'SLICES'"),
    (dict(mig_partition_size="1g.10gb", accelerator_type="nvidia-l4"), "mig_partition_size: nvidia-l4 has no MIG"),
    (dict(mig_partition_size="half"), "mig_partition_size: 'half' is not a MIG partition size"),
    (dict(driver_version="535"), "driver_version: '535' is not one of DEFAULT, LATEST"),
    (dict(accelerator_type="tpu-v5"), "accelerator_type: 'tpu-v5' is not an NVIDIA accelerator type"),
    (dict(accelerator_count=0), "accelerator_count: a node has 1 to 16 GPUs"),
    (dict(min_size=13), r"min_size: 13 is not between 0 and max_size \(12\)"),
    (dict(warm_size=1), "warm_size: only a standby pool has a warm size"),
    (dict(standby=True, warm_size=5), r"warm_size: 5 is not between 0 and min_size \(4\)"),
    (dict(standby=True, failover_size=2), r"failover_size: 2 is not between min_size \(4\) and max_size \(12\)"),
    (dict(boot_disk_kms_key=crypto_key_id(PROJECT, "us", "r", "k")), "boot_disk_kms_key: the key is in 'us'"),
    (dict(node_service_account="default"), "node_service_account: 'default' is not a user-managed service account"),
    (dict(labels={"mlfleet.io/workload": "bad value"}), r"labels\['mlfleet.io/workload'\]: 'bad value'"),
    (dict(gpu_taint_value=""), "gpu_taint_value: '' is not a taint value"),
    (dict(name="Infer"), "name: 'Infer'"),
    (dict(location_policy="NEAREST"), "location_policy: 'NEAREST' is not one of BALANCED, ANY"),
])
def test_invalid_props_name_the_prop(stack, overrides, message):
    with pytest.raises(PropsError, match=message):
        GkeGpuNodePool(stack, "pool", props(**overrides))
