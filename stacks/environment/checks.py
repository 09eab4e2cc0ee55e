"""Checks across fields of an environment: what no single field can say is wrong on its own.

Each check raises a `FieldError` that names the field it is about; `load` reports it with that path.
"""
from __future__ import annotations

import ipaddress
from typing import TYPE_CHECKING

from mlfleet.constructs.service_limits import (
    AURORA_MIN_GLOBAL_DB_RPO_SECONDS,
    GKE_CLUSTER_NAME_MAX,
    SERVICE_ACCOUNT_ID_MAX,
)
from mlfleet.stacks.environment import naming
from mlfleet.stacks.environment.gcp_offerings import GcpAcceleratorOfferings
from mlfleet.stacks.environment.offerings import GpuOfferings
from mlfleet.stacks.environment.placement import GCS_MULTI_REGIONS, gke_node_locations
from mlfleet.stacks.environment.recovery import artifact_rpo
from mlfleet.stacks.environment.regions import GcpRegion, Region

if TYPE_CHECKING:
    from mlfleet.stacks.environment.model import Environment
    from mlfleet.stacks.environment.pools import GpuPool


class FieldError(ValueError):
    """A cross-field error that knows which field it is about."""

    def __init__(self, loc: tuple[str | int, ...], message: str):
        self.loc = loc
        super().__init__(message)


def check_environment(env: Environment) -> None:
    """Raise FieldError for the first cross-field problem of `env`."""
    _check_regions(env)
    _check_clouds(env)
    _check_pools(env)
    _check_serving(env)
    _check_rpo(env)
    _check_model_registry(env)


def _check_regions(env: Environment) -> None:
    seen: dict[str, int] = {}
    for i, region in enumerate(env.regions):
        if region.name in seen:
            raise FieldError(("regions", i, "name"),
                             f"region {region.name} is listed twice (also regions.{seen[region.name]})")
        seen[region.name] = i
    primaries = [i for i, r in enumerate(env.regions) if r.role == "primary"]
    if len(primaries) != 1:
        raise FieldError(("regions",), f"exactly one region must have role primary, found {len(primaries)}")
    for i, region in enumerate(env.regions):
        if region.role == "primary" and getattr(region, "multi_region_key_arn", None):
            raise FieldError(("regions", i, "multi_region_key_arn"),
                             "only a standby replicates the primary's key; the primary creates it")
    # Every range of every region (VPCs, GKE subnets and their pod and Service ranges) is
    # distinct, so that regions and clouds can be peered or joined by VPN.
    networks = [(i, field, ipaddress.ip_network(cidr)) for i, r in enumerate(env.regions)
                for field, cidr in _region_ranges(env, r)]
    if env.gcp is not None:
        services = ipaddress.ip_network(env.gcp.private_services_cidr)
        for i, field, net in networks:
            if services.overlaps(net):
                raise FieldError(("gcp", "private_services_cidr"),
                                 f"{services} overlaps {net} ({field}) of regions.{i} ({env.regions[i].name})")
    for a, (i, field_i, net_i) in enumerate(networks):
        for j, field_j, net_j in networks[a + 1:]:
            if net_i.overlaps(net_j):
                where = f"regions.{i} ({env.regions[i].name})" if i != j else "this region"
                raise FieldError(("regions", j, "network", field_j),
                                 f"{net_j} overlaps {net_i} ({field_i}) of {where}; "
                                 "regional networks must not overlap so they can be peered")


def _region_ranges(env: Environment, region: Region) -> list[tuple[str, str]]:
    network = region.network
    if region.cloud == "aws":
        return [("cidr", network.effective_cidr)]
    ranges = [("cidr" if network.existing is None else "existing", network.effective_cidr)]
    ranges += [(f, getattr(network, f)) for f in ("pods_cidr", "services_cidr", "proxy_cidr") if getattr(network, f)]
    return ranges + [("control_plane_cidr", env.gke_control_plane_cidr(region))]


def _check_clouds(env: Environment) -> None:
    for cloud in env.clouds:
        for kind in ("training", "review"):
            if not env.identities.of_cloud(kind, cloud):
                raise FieldError(("identities", f"{kind}_principals"),
                                 f"no {cloud.upper()} principal for the {kind} identity: "
                                 + ("an IAM role or user ARN" if cloud == "aws"
                                    else "a user:, group: or serviceAccount: member"))
    gcp_regions = [(i, r) for i, r in enumerate(env.regions) if r.cloud == "gcp"]
    if not gcp_regions:
        if env.gcp is not None:
            raise FieldError(("gcp",), "no region has cloud: gcp; remove the gcp section or add a Google Cloud region")
        return
    if env.gcp is None:
        raise FieldError(("gcp",), f"{', '.join(r.name for _, r in gcp_regions)} on Google Cloud: give "
                                   "gcp.project_id, gcp.project_number and where alerts go")
    if env.primary.cloud == "gcp" and env.regions_on("aws"):
        i = next(i for i, r in enumerate(env.regions) if r.cloud == "aws")
        raise FieldError(("regions", i, "cloud"),
                         "an AWS standby of a Google Cloud primary is not supported: Aurora cannot follow "
                         "Cloud SQL, nor S3 replicate from Cloud Storage, without a migration service mlfleet "
                         "does not provision; make the AWS region the primary, or keep the standbys on Google Cloud")
    if env.gcp.registry_source is not None and env.primary.cloud != "aws":
        raise FieldError(("gcp", "registry_source"),
                         "only a Google Cloud standby of an AWS primary replicates from Aurora; "
                         "a Google Cloud primary's standbys are Cloud SQL replicas")
    if env.primary.cloud == "aws" and env.gcp.storage_transfer_subject_id is None:
        raise FieldError(("gcp", "storage_transfer_subject_id"),
                         "artifacts reach the Google Cloud standby through Storage Transfer Service, which "
                         "reads the AWS primary's bucket through an IAM role it assumes as the project's "
                         "transfer service agent: give that agent's subjectId (googleServiceAccounts.get)")
    _check_gcp_names(env)
    pair = env.gcp_artifact_regions
    assert pair is not None  # there are Google Cloud regions
    if len(pair) != 2:
        raise FieldError(("gcp", "artifact_regions"),
                         f"one Google Cloud region ({pair[0]}): name the dual-region pair of the artifact "
                         "bucket (that region and a second one on the same continent)")
    if pair[0] == pair[1] or pair[0].split("-")[0] != pair[1].split("-")[0]:
        raise FieldError(("gcp", "artifact_regions"),
                         f"{pair[0]} and {pair[1]} are not a dual-region: two different regions of one "
                         "multi-region (us, europe, asia)")
    if pair[0].split("-")[0] not in GCS_MULTI_REGIONS:
        raise FieldError(("gcp", "artifact_regions"),
                         f"{pair[0]} is not in a multi-region that holds configurable dual-regions (us, europe, asia)")
    if env.gcp.artifact_regions is not None:
        for _, region in gcp_regions:
            if region.role == "primary" and region.name not in pair:
                raise FieldError(("gcp", "artifact_regions"),
                                 f"the primary {region.name} writes the artifacts: it must be one of the pair")


def _check_gcp_names(env: Environment) -> None:
    too_long = [name for name, limit in
                [(f"{naming.gcp_identity_prefix(env.name)}-training", SERVICE_ACCOUNT_ID_MAX)]
                + [(n, lim) for r in env.regions_on("gcp")
                   for n, lim in ((naming.gke_cluster_name(env.name, r.name), GKE_CLUSTER_NAME_MAX),
                                  (naming.gke_node_service_account(env.name, r.name), SERVICE_ACCOUNT_ID_MAX))]
                if len(name) > limit]
    if too_long:
        raise FieldError(("name",), f"too long for Google Cloud ids derived from it ({', '.join(too_long)}); "
                                    f"GKE cluster names take {GKE_CLUSTER_NAME_MAX} characters, service "
                                    f"account ids {SERVICE_ACCOUNT_ID_MAX}: use a shorter environment name")


def _check_pools(env: Environment) -> None:
    names: set[str] = set()
    for p, pool in enumerate(env.gpu_pools):
        if pool.name in names:
            raise FieldError(("gpu_pools", p, "name"), f"pool name {pool.name} is used twice")
        names.add(pool.name)
        for region_name, reservation in pool.reservations.items():
            region = next((r for r in env.regions if r.name == region_name), None)
            if region is None:
                raise FieldError(("gpu_pools", p, "reservations", region_name),
                                 f"{region_name} is not one of this environment's regions")
            if reservation.cloud != region.cloud:
                raise FieldError(("gpu_pools", p, "reservations", region_name),
                                 f"{region_name} is on {region.cloud.upper()}: "
                                 + ("name the Compute Engine reservation (name)" if region.cloud == "gcp"
                                    else "give capacity_reservation_id or resource_group_arn"))
        if env.regions_on("aws"):
            _check_aws_pool(env, p, pool)
        if env.regions_on("gcp"):
            _check_gcp_pool(env, p, pool)


def _check_aws_pool(env: Environment, p: int, pool: GpuPool) -> None:
    offerings = GpuOfferings.load()
    regions = env.regions_on("aws")
    if not pool.instance_types:
        raise FieldError(("gpu_pools", p, "instance_types"),
                         f"give the pool's EC2 instance types for {', '.join(r.name for r in regions)}")
    for t, instance_type in enumerate(pool.instance_types):
        if not offerings.is_gpu_type(instance_type):
            raise FieldError(("gpu_pools", p, "instance_types", t),
                             f"{instance_type} is not an NVIDIA GPU instance type")
        for region in regions:
            if not offerings.offered(instance_type, region.name):
                raise FieldError(("gpu_pools", p, "instance_types", t),
                                 f"{instance_type} is not offered in {region.name} "
                                 f"(GPU offerings table of {offerings.generated_at})")
    aws_reservations = {n for n, r in pool.reservations.items() if r.cloud == "aws"}
    if pool.efa_interfaces and aws_reservations:
        raise FieldError(("gpu_pools", p, "efa_interfaces"),
                         "EFA puts nodes in a cluster placement group, which cannot target "
                         "capacity reservations; drop EFA or the reservations")
    if pool.capacity_type == "CAPACITY_BLOCK":
        missing = sorted({r.name for r in regions} - aws_reservations)
        if missing:
            raise FieldError(("gpu_pools", p, "reservations"),
                             f"a CAPACITY_BLOCK pool needs a reservation in every region; missing {', '.join(missing)}")


def _check_gcp_pool(env: Environment, p: int, pool: GpuPool) -> None:
    offerings = GcpAcceleratorOfferings.load()
    regions = [r for r in env.regions if isinstance(r, GcpRegion)]
    shape = pool.gcp
    if shape is None:
        raise FieldError(("gpu_pools", p, "gcp"),
                         f"give the pool's machine and accelerator for {', '.join(r.name for r in regions)} "
                         "(gcp: {machine_type, accelerator_type, accelerator_count})")
    loc = ("gpu_pools", p, "gcp")
    if not offerings.is_accelerator(shape.accelerator_type):
        raise FieldError((*loc, "accelerator_type"),
                         f"{shape.accelerator_type} is not an NVIDIA accelerator type of Google Cloud "
                         f"(accelerator table of {offerings.generated_at})")
    most = offerings.max_per_instance(shape.accelerator_type)
    if shape.accelerator_count > most:
        raise FieldError((*loc, "accelerator_count"),
                         f"a VM takes at most {most} {shape.accelerator_type}")
    for region in regions:
        if not gke_node_locations(region, shape.accelerator_type):
            chosen = f" among the chosen zones {', '.join(region.zones)}" if region.zones else ""
            raise FieldError((*loc, "accelerator_type"),
                             f"{shape.accelerator_type} is not offered in {region.name}{chosen} "
                             f"(accelerator table of {offerings.generated_at})")
    if pool.capacity_type == "CAPACITY_BLOCK":
        raise FieldError(("gpu_pools", p, "capacity_type"),
                         "Google Cloud has no Capacity Blocks: use gcp.queued_provisioning (Dynamic Workload "
                         "Scheduler) or a reservation")
    if shape.mig_partition_size and shape.gpu_sharing and shape.gpu_sharing.strategy == "MPS":
        raise FieldError((*loc, "gpu_sharing"), "MPS does not combine with MIG partitions; use TIME_SHARING")
    gcp_reserved = sorted(n for n, r in pool.reservations.items() if r.cloud == "gcp")
    if shape.queued_provisioning:
        if shape.reservation_affinity != "NONE" or gcp_reserved:
            drop = f" and drop the reservations of {', '.join(gcp_reserved)}" if gcp_reserved else ""
            raise FieldError((*loc, "queued_provisioning"),
                             "queued provisioning is valid only with reservation affinity NONE: set "
                             "gcp.reservation_affinity: NONE" + drop)
        if pool.spot:
            raise FieldError((*loc, "queued_provisioning"),
                             "queued provisioning obtains nodes through Dynamic Workload Scheduler, not spot")
        if pool.min_size or pool.warm_standby:
            raise FieldError((*loc, "queued_provisioning"),
                             "a queued-provisioning pool scales from zero: nodes come only with "
                             "ProvisioningRequests (min_size 0, warm_standby 0)")
    if pool.spot and gcp_reserved:
        raise FieldError(("gpu_pools", p, "reservations", gcp_reserved[0]),
                         "a reservation holds on-demand capacity, not spot")


def gpus_per_node(pool: GpuPool, cloud: str) -> int:
    """What one node of `pool` offers pods as `nvidia.com/gpu` on `cloud`: the smallest of its EC2
    types' GPUs, or the Google accelerator count, each shared GPU counting once per client."""
    if cloud == "aws":
        offerings = GpuOfferings.load()
        return min(offerings.gpus(t) for t in pool.instance_types)
    assert pool.gcp is not None  # _check_gcp_pool gives every pool a shape on Google Cloud
    sharing = pool.gcp.gpu_sharing
    return pool.gcp.accelerator_count * (sharing.max_shared_clients_per_gpu if sharing else 1)


def _check_serving(env: Environment) -> None:
    serving = env.serving
    names = [p.name for p in env.gpu_pools]
    for i, name in enumerate(serving.pools or []):
        if name not in names:
            raise FieldError(("serving", "pools", i), f"{name} is not one of gpu_pools ({', '.join(names)})")
        if name in (serving.pools or [])[:i]:
            raise FieldError(("serving", "pools", i), f"{name} is listed twice")
    if not env.serving_pools:
        raise FieldError(("serving", "pools"),
                         "no pool has min_size >= 1 to serve on: name the pools that serve in serving.pools")
    replicas, gpus = serving.replicas, serving.resources.gpus
    for pool in env.serving_pools:
        p = names.index(pool.name)
        if pool.gcp is not None and pool.gcp.queued_provisioning:
            raise FieldError(("serving", "pools"), f"{pool.name} is a queued-provisioning pool: it has no nodes "
                             "until a batch job asks for them, so it cannot serve")
        for cloud in env.clouds:
            per_node = gpus_per_node(pool, cloud)
            fits = [("primary", replicas.primary, pool.max_size, "max_size")]
            if env.standbys:
                fits += [("failover", replicas.on_failover, pool.max_size, "max_size"),
                         ("standby", replicas.standby, pool.warm_standby, "warm_standby")]
            for role, count, nodes, size_field in fits:
                if count * gpus > nodes * per_node:
                    raise FieldError(("serving", "replicas", role),
                                     f"{count} replicas x {gpus} GPU(s) do not fit gpu_pools.{p} ({pool.name}) "
                                     f"on {cloud.upper()}: {size_field} {nodes} x {per_node} GPU(s) per node "
                                     f"= {nodes * per_node}")
    if serving.certificate_domain is not None:
        zone_suffix = serving.dns_name.split(".", 1)[1]
        if not (serving.certificate_domain == zone_suffix or serving.certificate_domain.endswith("." + zone_suffix)):
            raise FieldError(("serving", "certificate_domain"),
                             f"{serving.certificate_domain} is outside {zone_suffix}, the domain of dns_name: "
                             "its certificate is validated by DNS in hosted_zone_id")


def _check_rpo(env: Environment) -> None:
    if len(env.regions) == 1:
        return  # nothing is replicated; the review reports RPO as not applicable
    if env.regions_on("aws") and not env.artifact_store.replication_time_control:
        raise FieldError(("artifact_store", "replication_time_control"),
                         "a multi-region environment needs Replication Time Control to state an RPO")
    deliverable, how = artifact_rpo(env)
    if env.targets.rpo < deliverable and env.acknowledged("MLF010") is None:
        raise FieldError(("targets", "rpo"),
                         f"RPO target {env.targets.rpo}s is tighter than {how} "
                         f"can deliver ({deliverable}s) for model artifacts; raise it, or acknowledge "
                         "rule MLF010 in acknowledgements with a reason")
    if env.regions_on("aws") and env.targets.rpo < AURORA_MIN_GLOBAL_DB_RPO_SECONDS:
        raise FieldError(("targets", "rpo"),
                         f"Aurora global databases cannot enforce an RPO under {AURORA_MIN_GLOBAL_DB_RPO_SECONDS}s")



def _check_model_registry(env: Environment) -> None:
    uri = env.model_registry.tracking_uri
    if uri is not None and len(env.regions) > 1 and "{region}" not in uri:
        raise FieldError(("model_registry", "tracking_uri"),
                         f"{uri} names one MLflow for {len(env.regions)} regions: each region runs its own on its "
                         "registry database (promotion uses the writer's), so write {region} where the name differs")
