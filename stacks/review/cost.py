"""Estimated monthly cost of the GPU pools and the stateful services, from the price tables in
stacks/review/data/prices.json (`prices.Prices`; each table's date, source and caveats travel with
every estimate that uses it).

Two scenarios: steady state (the primary at its minimum, each standby at its warm size) and
every region at its minimum (the standbys once scaled up by a failover). A pool with several
instance types is priced at its first, the type EKS prefers for on-demand capacity; a spot pool
at the spot price, every other capacity type at the on-demand price, except GKE queued
provisioning, which Dynamic Workload Scheduler bills at flex-start prices the tables do not hold.
"""
from __future__ import annotations

from dataclasses import dataclass

from mlfleet.constructs.terraform_json import blocks, first_block, provider_region, resources
from mlfleet.stacks.review.inventory import PoolCapacity, pool_capacity
from mlfleet.stacks.review.prices import Prices, PriceTable


@dataclass(frozen=True)
class CostLine:
    region: str
    item: str          # "GPU pool inference-gpu", "Aurora PostgreSQL db.r7g.xlarge", ...
    priced_as: str     # "g6e.2xlarge on-demand"
    hourly: float | None   # USD per unit-hour; None: not in the price table
    units_warm: int
    units_min: int
    cloud: str = "aws"

    def monthly(self, units: int, hours: int) -> float | None:
        return None if self.hourly is None else round(self.hourly * units * hours, 2)


@dataclass(frozen=True)
class CostEstimate:
    prices: Prices
    lines: list[CostLine]

    @property
    def hours_per_month(self) -> int:
        return self.prices.hours_per_month

    @property
    def tables(self) -> list[PriceTable]:
        """The price tables the estimate used, AWS first."""
        return [self.prices.table(c) for c in ("aws", "gcp") if any(line.cloud == c for line in self.lines)]

    def total(self, scenario: str) -> float:
        """Sum of what is priced; `scenario` is "warm" (steady state) or "min"."""
        return round(sum(line.monthly(getattr(line, f"units_{scenario}"), self.hours_per_month) or 0.0
                         for line in self.lines), 2)

    @property
    def unpriced(self) -> list[CostLine]:
        return [line for line in self.lines if line.hourly is None]


def estimate(stacks: dict[str, dict], prices: Prices | None = None) -> CostEstimate:
    prices = prices or Prices.load()
    lines: list[CostLine] = []
    for name, tf in sorted(stacks.items()):
        region = provider_region(tf)
        if region is None:
            continue
        for pool in pool_capacity(name, tf):
            lines.append(_pool_line(prices.table(pool.cloud), pool))
        lines += _aws_services(prices.table("aws"), region, tf)
        lines += _gcp_services(prices.table("gcp"), region, tf)
    return CostEstimate(prices, lines)


def _pool_line(table: PriceTable, pool: PoolCapacity) -> CostLine:
    instance_type = pool.instance_types[0]
    if pool.capacity_type == "QUEUED":
        return CostLine(pool.region, f"GPU pool {pool.pool}", f"{instance_type} flex-start, queued provisioning",
                        None, pool.nodes_warm, pool.nodes_min, pool.cloud)
    basis = "spot" if pool.capacity_type == "SPOT" else "on-demand"
    return CostLine(pool.region, f"GPU pool {pool.pool}", f"{instance_type} {basis}",
                    table.instance(pool.region, instance_type, pool.capacity_type), pool.nodes_warm, pool.nodes_min,
                    pool.cloud)


def _aws_services(table: PriceTable, region: str, tf: dict) -> list[CostLine]:
    lines = []
    classes: dict[str, int] = {}
    for body in resources(tf, "aws_rds_cluster_instance").values():
        classes[body.get("instance_class", "?")] = classes.get(body.get("instance_class", "?"), 0) + 1
    for instance_class, count in sorted(classes.items()):
        lines.append(CostLine(region, f"Aurora PostgreSQL {instance_class}", "on-demand",
                              table.service(region, "aurora_postgresql", instance_class), count, count))
    for kind, rtype, label in (("nat_gateway", "aws_nat_gateway", "NAT gateway"),
                               ("eks_cluster", "aws_eks_cluster", "EKS control plane")):
        count = len(resources(tf, rtype))
        if count:
            lines.append(CostLine(region, label, "hourly charge", table.service(region, kind), count, count))
    return lines


def _gcp_services(table: PriceTable, region: str, tf: dict) -> list[CostLine]:
    lines = []
    # The registry's instances: Cloud SQL's own, and the one a DMS job creates and keeps in step.
    instances = [("replica" if body.get("master_instance_name") else "primary", body.get("name", "?"),
                  first_block(body.get("settings")))
                 for body in resources(tf, "google_sql_database_instance").values()]
    instances += [("DMS replica", body.get("connection_profile_id", "?"), first_block(cloudsql[0].get("settings")))
                  for body in resources(tf, "google_database_migration_service_connection_profile").values()
                  if (cloudsql := blocks(body.get("cloudsql")))]
    for role, _, settings in sorted(instances, key=lambda i: i[1]):
        tier = settings.get("tier", "?")
        ha = settings.get("availability_type", "ZONAL") == "REGIONAL"
        plus = settings.get("edition") == "ENTERPRISE_PLUS"
        price = table.service(region, "cloud_sql_enterprise_plus", tier, "ha" if ha else "zonal") if plus else None
        lines.append(CostLine(region, f"Cloud SQL {'Enterprise Plus' if plus else 'Enterprise'} {tier} ({role})",
                              f"on-demand, {'HA (regional)' if ha else 'zonal'}", price, 1, 1, "gcp"))
    for kind, rtype, label, basis in (
            ("cloud_nat_gateway", "google_compute_router_nat", "Cloud NAT gateway",
             "hourly charge, upper bound (32+ VMs)"),
            ("gke_cluster", "google_container_cluster", "GKE cluster management", "hourly charge")):
        count = len(resources(tf, rtype))
        if count:
            lines.append(CostLine(region, label, basis, table.service(region, kind), count, count, "gcp"))
    return lines
