"""What the synthesized stacks create: resources by type, and GPU capacity per region.

Read from the Terraform JSON (through `stack_facts`), not from the config, so the review shows
what would really be applied. A standby's node group is created at its warm size; the size a
failover scales it to is the stack's `<pool>_failover_size` output.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from mlfleet.stacks.offerings import GpuOfferings
from mlfleet.stacks.summary import stack_facts


@dataclass(frozen=True)
class PoolCapacity:
    stack: str
    region: str
    pool: str                  # node group name
    instance_types: tuple[str, ...]
    gpu: str                   # accelerator model, e.g. L40S
    capacity_type: str
    gpus_per_node: int
    nodes_warm: int            # what runs before any failover (the primary: its minimum)
    nodes_min: int             # what serves once this region is primary
    nodes_max: int

    @property
    def gpus_warm(self) -> int:
        return self.nodes_warm * self.gpus_per_node

    @property
    def gpus_min(self) -> int:
        return self.nodes_min * self.gpus_per_node

    @property
    def gpus_max(self) -> int:
        return self.nodes_max * self.gpus_per_node


def stack_region(tf: dict) -> str | None:
    providers = tf.get("provider", {}).get("aws") or tf.get("provider", {}).get("google") or [{}]
    return providers[0].get("region")


def resources_by_type(tf: dict) -> dict[str, int]:
    return dict(sorted(Counter({rtype: len(items) for rtype, items in tf.get("resource", {}).items()}).items()))


def pool_capacity(stack: str, tf: dict) -> list[PoolCapacity]:
    offerings = GpuOfferings.load()
    outputs = tf.get("output", {})
    region = stack_region(tf) or "?"
    pools = []
    for pool in stack_facts(tf)["gpu_pools"]:
        prefix = (pool["name"] or "").replace("-", "_")
        failover = outputs.get(f"{prefix}_failover_size", {}).get("value")
        types = tuple(pool["instance_types"])
        pools.append(PoolCapacity(
            stack=stack, region=region, pool=pool["name"], instance_types=types,
            gpu="/".join(sorted({offerings.instance_types[t].gpu for t in types if offerings.is_gpu_type(t)})) or "?",
            capacity_type=pool["capacity_type"], gpus_per_node=pool["gpus_per_node"],
            nodes_warm=pool["min"], nodes_min=pool["min"] if failover is None else int(failover),
            nodes_max=pool["max"]))
    return pools
