"""What the synthesized stacks create: resources by type, and GPU capacity per region.

Read from the Terraform JSON (through `stack_facts`), not from the config, so the review shows
what would really be applied. A standby's pool is created at its warm size; the size a failover
scales it to is the stack's `<pool>_failover_size` output. EKS node groups and GKE node pools
read alike; a GKE pool's sizes are its autoscaler's totals across the pool's zones, and its GPU
is the node pool's guest accelerator, named by its description in the Google Cloud table.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from mlfleet.constructs.terraform_json import first_block, output_value, provider_region, resource_types, resources
from mlfleet.stacks.environment.gcp_offerings import GcpAcceleratorOfferings
from mlfleet.stacks.environment.offerings import GpuOfferings
from mlfleet.stacks.summary import stack_facts

# How the review names each cloud (`Region.cloud`).
CLOUD_NAMES = {"aws": "AWS", "gcp": "Google Cloud"}


@dataclass(frozen=True)
class PoolCapacity:
    stack: str
    region: str
    pool: str                  # node group (EKS) or node pool (GKE) name
    instance_types: tuple[str, ...]    # EC2 instance types, or the GKE machine type
    gpu: str                   # accelerator model, e.g. L40S, NVIDIA L4
    capacity_type: str         # ON_DEMAND, SPOT, CAPACITY_BLOCK; QUEUED on GKE (queued provisioning)
    gpus_per_node: int
    nodes_warm: int            # what runs before any failover (the primary: its minimum)
    nodes_min: int             # what serves once this region is primary
    nodes_max: int
    cloud: str = "aws"         # aws or gcp

    @property
    def gpus_warm(self) -> int:
        return self.nodes_warm * self.gpus_per_node

    @property
    def gpus_min(self) -> int:
        return self.nodes_min * self.gpus_per_node

    @property
    def gpus_max(self) -> int:
        return self.nodes_max * self.gpus_per_node


def resources_by_type(tf: dict) -> dict[str, int]:
    return dict(sorted(Counter({rtype: len(items) for rtype, items in resource_types(tf).items()}).items()))


def pool_capacity(stack: str, tf: dict) -> list[PoolCapacity]:
    region = provider_region(tf) or "?"
    accelerators = gke_accelerators(tf)
    pools = []
    for pool in stack_facts(tf)["gpu_pools"]:
        prefix = (pool["name"] or "").replace("-", "_")
        failover = output_value(tf, f"{prefix}_failover_size")
        types = tuple(pool["instance_types"])
        # A stack is on one cloud: a pool named by a GKE node pool is that node pool.
        gke = pool["name"] in accelerators
        pools.append(PoolCapacity(
            stack=stack, region=region, pool=pool["name"], instance_types=types,
            gpu=_gcp_gpu(accelerators[pool["name"]]) if gke else _aws_gpu(types),
            capacity_type=pool["capacity_type"], gpus_per_node=pool["gpus_per_node"],
            nodes_warm=pool["min"], nodes_min=pool["min"] if failover is None else int(failover),
            nodes_max=pool["max"], cloud="gcp" if gke else "aws"))
    return pools


def gke_accelerators(tf: dict) -> dict[str, str]:
    """GKE GPU node pool name → its accelerator type (e.g. nvidia-l4); the system pool has none."""
    found = {}
    for body in resources(tf, "google_container_node_pool").values():
        config = first_block(body.get("node_config"))
        accelerator = first_block(config.get("guest_accelerator"))
        if accelerator.get("type"):
            found[body.get("name")] = accelerator["type"]
    return found


def _aws_gpu(types: tuple[str, ...]) -> str:
    offerings = GpuOfferings.load()
    return "/".join(sorted({offerings.instance_types[t].gpu for t in types if offerings.is_gpu_type(t)})) or "?"


def _gcp_gpu(accelerator_type: str) -> str:
    known = GcpAcceleratorOfferings.load().accelerator_types.get(accelerator_type)
    # A type the table does not know is still named, as Compute Engine names it.
    return known.description if known else accelerator_type
