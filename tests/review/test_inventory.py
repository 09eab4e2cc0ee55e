"""GPU capacity read back from the synthesized stacks: EKS node groups and GKE node pools alike."""
from __future__ import annotations

import copy

from mlfleet.stacks.environment import naming
from mlfleet.stacks.environment.gcp_offerings import GcpAcceleratorOfferings
from mlfleet.stacks.review.inventory import pool_capacity


def test_gke_pools_carry_their_accelerator_and_autoscaler_totals(examples):
    env, stacks, _ = examples["research"]
    offerings = GcpAcceleratorOfferings.load()
    for region in env.regions:
        name = naming.stack_name(env.name, region.name)
        pools = {p.pool: p for p in pool_capacity(name, stacks[name])}
        # One entry per GPU pool of the environment; the system pool has no accelerator.
        assert sorted(pools) == sorted(naming.node_group_name(p.name) for p in env.gpu_pools)
        for pool in env.gpu_pools:
            found = pools[naming.node_group_name(pool.name)]
            shape = pool.gcp
            assert found.cloud == "gcp" and found.instance_types == (shape.machine_type,)
            assert found.gpu == offerings.accelerator_types[shape.accelerator_type].description
            assert found.gpus_per_node == shape.accelerator_count
            standby = region.role == "standby" and not shape.queued_provisioning
            assert (found.nodes_warm, found.nodes_min, found.nodes_max) == (
                pool.warm_standby if standby else pool.min_size, pool.min_size, pool.max_size)
            assert found.capacity_type == ("QUEUED" if shape.queued_provisioning else pool.capacity_type)


def test_an_accelerator_the_table_does_not_know_is_named_as_compute_engine_names_it(examples):
    env, stacks, _ = examples["research"]
    name = naming.stack_name(env.name, env.primary.name)
    tf = copy.deepcopy(stacks[name])
    for body in tf["resource"]["google_container_node_pool"].values():
        for accelerator in body["node_config"].get("guest_accelerator") or []:
            accelerator["type"] = "nvidia-future-gpu"
    assert {p.gpu for p in pool_capacity(name, tf)} == {"nvidia-future-gpu"}


def test_eks_pools_are_aws(examples):
    env, stacks, _ = examples["hybrid"]
    name = naming.stack_name(env.name, env.primary.name)
    pools = pool_capacity(name, stacks[name])
    assert pools and {p.cloud for p in pools} == {"aws"} and "?" not in {p.gpu for p in pools}
