"""Estimated monthly cost of the GPU pools and the stateful services, from the price tables in
stacks/review/data/prices.json (`prices.Prices`; each table's date, source and caveats travel with
every estimate that uses it).

Two scenarios: steady state (the primary at its minimum, each standby at its warm size) and
every region at its minimum (the standbys once scaled up by a failover). A pool with several
instance types is priced at its first, the type EKS prefers for on-demand capacity; a spot pool
at the spot price, every other capacity type at the on-demand price, except GKE queued
provisioning, which Dynamic Workload Scheduler bills at flex-start prices the tables do not hold.

The serving plane: each region's load balancer at its hourly charge (an AWS Network Load Balancer
with a nominal one NLCU, since its capacity units follow traffic the review cannot know; a GKE
Gateway's regional external Application Load Balancer by its forwarding rule) and the runtime
image's storage in each region's registry (ECR, Artifact Registry) at a nominal size.

The manifest signing keys: an asymmetric KMS key is billed by the month, the multi-Region primary
and each replica alike (in the replica's region); a Cloud KMS key by its active key version and
protection level. Their requests are not priced: a signature per approval and a public key read
per serving apply stay far below any KMS bill (and within AWS's free 20,000 requests a month).

Routing controls: the Route 53 ARC cluster that holds them, per cluster-hour (`ARC_CLUSTER_HOURLY_USD`).
"""
from __future__ import annotations

from dataclasses import dataclass

from mlfleet.constructs.terraform_json import blocks, first_block, provider_region, resources
from mlfleet.stacks.review.inventory import PoolCapacity, pool_capacity
from mlfleet.stacks.review.prices import Prices, PriceTable
from mlfleet.stacks.review.serving import is_nlb_service

# The runtime image as stored in each region's registry: CUDA, torch and the runtime's layers.
# Nominal, not measured: the real image's size is whatever the build produced.
NOMINAL_IMAGE_GB = 10
# One NLCU covers, for TLS listeners, 50 new connections per second, 3,000 active connections or
# 1 GB processed per hour (whichever is highest is billed): nominal light traffic, not a forecast.
NOMINAL_NLCU = 1
# Route 53 Application Recovery Controller: 2.50 USD per cluster-hour, whatever the number of
# routing controls and state changes (Amazon Route 53 pricing page, "Application Recovery
# Controller"; transcribed by hand on 2026-12-01). ARC is global: one price everywhere.
ARC_CLUSTER_HOURLY_USD = 2.50


@dataclass(frozen=True)
class CostLine:
    region: str
    item: str          # "GPU pool inference-gpu", "Aurora PostgreSQL db.r7g.xlarge", ...
    priced_as: str     # "g6e.2xlarge on-demand"
    hourly: float | None   # USD per unit-hour; None: not in the price table (or priced by the month)
    units_warm: int
    units_min: int
    cloud: str = "aws"
    per_month: float | None = None   # USD per unit-month, for what is billed by the month (storage, GB)

    def monthly(self, units: int, hours: int) -> float | None:
        if self.per_month is not None:
            return round(self.per_month * units, 2)
        return None if self.hourly is None else round(self.hourly * units * hours, 2)

    @property
    def priced(self) -> bool:
        return self.hourly is not None or self.per_month is not None


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
        return [line for line in self.lines if not line.priced]


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
        lines += _serving(prices, region, tf)
        lines += _signing_keys(prices, region, tf)
        lines += _recovery_clusters(region, tf)
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


def _serving(prices: Prices, region: str, tf: dict) -> list[CostLine]:
    """The serving plane's load balancer and the runtime image's registry storage in one stack."""
    lines = []
    aws, gcp = prices.table("aws"), prices.table("gcp")
    nlbs = sum(1 for body in resources(tf, "kubernetes_service_v1").values() if is_nlb_service(body))
    if nlbs:
        lines += [CostLine(region, "Network Load Balancer", "hourly charge", aws.service(region, "nlb", "hourly"),
                           nlbs, nlbs),
                  CostLine(region, "Network Load Balancer capacity", f"nominal {NOMINAL_NLCU} NLCU per hour (traffic "
                           "decides the real number)", aws.service(region, "nlb", "nlcu"),
                           nlbs * NOMINAL_NLCU, nlbs * NOMINAL_NLCU)]
    gateways = sum(1 for body in resources(tf, "kubernetes_manifest").values()
                   if (body.get("manifest") or {}).get("kind") == "Gateway")
    if gateways:
        lines.append(CostLine(region, "regional external Application LB", "forwarding rule, hourly charge",
                              gcp.service(region, "load_balancing", "forwarding_rule"), gateways, gateways, "gcp"))
    # The primary's ECR repository, or (a standby) the replicas its creation template shapes.
    if resources(tf, "aws_ecr_repository") or resources(tf, "aws_ecr_repository_creation_template"):
        lines.append(_storage(aws, region, "ECR image storage (GB)", "ecr_storage_gb_month", "aws"))
    if resources(tf, "google_artifact_registry_repository"):
        lines.append(_storage(gcp, region, "Artifact Registry image storage (GB)", "artifact_registry_gb_month", "gcp"))
    return lines


def _signing_keys(prices: Prices, region: str, tf: dict) -> list[CostLine]:
    """The manifest signing keys a stack creates, each billed by the month where it lives."""
    aws, gcp = prices.table("aws"), prices.table("gcp")
    lines = []
    if any(k.get("key_usage") == "SIGN_VERIFY" for k in resources(tf, "aws_kms_key").values()):
        lines.append(_key_line(aws, region, "aws"))
        lines += [_key_line(aws, str(r.get("provider", "?")).removeprefix("aws."), "aws", replica=True)
                  for r in resources(tf, "aws_kms_replica_key").values()]
    for key in resources(tf, "google_kms_crypto_key").values():
        if key.get("purpose") == "ASYMMETRIC_SIGN":
            level = first_block(key.get("version_template")).get("protection_level", "SOFTWARE")
            price = gcp.service(region, "kms_key_version_month", f"{level.lower()}_ec")
            lines.append(CostLine(region, "Cloud KMS manifest signing key", f"EC P-256 {level} key version, per month",
                                  None, 1, 1, "gcp", per_month=price))
    return lines


def _recovery_clusters(region: str, tf: dict) -> list[CostLine]:
    """The ARC cluster that holds the routing controls, billed per hour (shown in the stack's region)."""
    count = len(resources(tf, "aws_route53recoverycontrolconfig_cluster"))
    return [CostLine(region, "Route 53 ARC cluster (routing controls)",
                     "per cluster-hour, global list price of 2026-12-01", ARC_CLUSTER_HOURLY_USD, count, count)
            ] if count else []


def _key_line(table: PriceTable, region: str, cloud: str, *, replica: bool = False) -> CostLine:
    return CostLine(region, "KMS manifest signing key" + (" (replica)" if replica else ""),
                    "asymmetric key, per key-month (requests not priced)", None, 1, 1, cloud,
                    per_month=table.service(region, "kms_key_month"))


def _storage(table: PriceTable, region: str, item: str, kind: str, cloud: str) -> CostLine:
    return CostLine(region, item, f"nominal {NOMINAL_IMAGE_GB} GB runtime image, per GB-month", None,
                    NOMINAL_IMAGE_GB, NOMINAL_IMAGE_GB, cloud, per_month=table.service(region, kind))

