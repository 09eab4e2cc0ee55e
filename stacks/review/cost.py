"""Estimated monthly cost of the GPU pools and the stateful services, from the price table
shipped in stacks/data/prices.json (its date, source and caveats travel with every estimate).

Two scenarios: steady state (the primary at its minimum, each standby at its warm size) and
every region at its minimum (the standbys once scaled up by a failover). A pool with several
instance types is priced at its first, the type EKS prefers for on-demand capacity; a spot pool
at the spot price, every other capacity type at the on-demand price.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from mlfleet.stacks.review.inventory import PoolCapacity, pool_capacity, stack_region

PRICE_TABLE = Path(__file__).resolve().parent.parent / "data" / "prices.json"


@dataclass(frozen=True)
class PriceTable:
    generated_at: str
    source: str
    estimate: str
    hours_per_month: int
    regions: dict

    @staticmethod
    @lru_cache(maxsize=2)
    def load(path: Path = PRICE_TABLE) -> PriceTable:
        raw = json.loads(path.read_text())
        return PriceTable(raw["generated_at"], raw["source"], raw["estimate"], raw["hours_per_month"], raw["regions"])

    def ec2(self, region: str, instance_type: str, capacity_type: str) -> float | None:
        prices = self.regions.get(region, {}).get("ec2", {}).get(instance_type)
        if prices is None:
            return None
        return prices["spot"] if capacity_type == "SPOT" else prices["on_demand"]

    def service(self, region: str, kind: str, size: str | None = None) -> float | None:
        entry = self.regions.get(region, {}).get(kind)
        return entry.get(size) if isinstance(entry, dict) else entry


@dataclass(frozen=True)
class CostLine:
    region: str
    item: str          # "gpu pool inference-gpu", "Aurora db.r7g.xlarge", ...
    priced_as: str     # "g6e.2xlarge on-demand"
    hourly: float | None   # USD per unit-hour; None: not in the price table
    units_warm: int
    units_min: int

    def monthly(self, units: int, hours: int) -> float | None:
        return None if self.hourly is None else round(self.hourly * units * hours, 2)


@dataclass(frozen=True)
class CostEstimate:
    table: PriceTable
    lines: list[CostLine]

    def total(self, scenario: str) -> float:
        """Sum of what is priced; `scenario` is "warm" (steady state) or "min"."""
        return round(sum(line.monthly(getattr(line, f"units_{scenario}"), self.table.hours_per_month) or 0.0
                         for line in self.lines), 2)

    @property
    def unpriced(self) -> list[CostLine]:
        return [line for line in self.lines if line.hourly is None]


def estimate(stacks: dict[str, dict], table: PriceTable | None = None) -> CostEstimate:
    table = table or PriceTable.load()
    lines: list[CostLine] = []
    for name, tf in sorted(stacks.items()):
        region = stack_region(tf)
        resources = tf.get("resource", {})
        if region is None:
            continue
        for pool in pool_capacity(name, tf):
            lines.append(_pool_line(table, pool))
        classes: dict[str, int] = {}
        for body in resources.get("aws_rds_cluster_instance", {}).values():
            classes[body.get("instance_class", "?")] = classes.get(body.get("instance_class", "?"), 0) + 1
        for instance_class, count in sorted(classes.items()):
            lines.append(CostLine(region, f"Aurora PostgreSQL {instance_class}", "on-demand",
                                  table.service(region, "aurora_postgresql", instance_class), count, count))
        for kind, rtype, label in (("nat_gateway", "aws_nat_gateway", "NAT gateway"),
                                   ("eks_cluster", "aws_eks_cluster", "EKS control plane")):
            count = len(resources.get(rtype, {}))
            if count:
                lines.append(CostLine(region, label, "hourly charge", table.service(region, kind), count, count))
    return CostEstimate(table, lines)


def _pool_line(table: PriceTable, pool: PoolCapacity) -> CostLine:
    instance_type = pool.instance_types[0]
    basis = "spot" if pool.capacity_type == "SPOT" else "on-demand"
    return CostLine(pool.region, f"GPU pool {pool.pool}", f"{instance_type} {basis}",
                    table.ec2(pool.region, instance_type, pool.capacity_type), pool.nodes_warm, pool.nodes_min)
