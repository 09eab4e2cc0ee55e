"""GCP actions for a region on Google Cloud: scale the standby GKE node pool, set a regional
backend service's capacity, promote the registry (a Cloud SQL replica, or the DMS job that
keeps a Cloud SQL instance in step with Aurora) and give the new primary regional HA and
deletion protection.

The clients are `mlfleet.stacks.clients.google_cloud`'s (drift reads through them too): GKE and
Compute through their client libraries over REST, Cloud SQL (SQL Admin API v1) and Database
Migration (API v1) through authenticated REST. Compute calls use the `*_unary` variants: the
extended-operation helpers poll a client built without our endpoint."""
from __future__ import annotations

from mlfleet.dr.engine import RunContext, StepFailed
from mlfleet.stacks.clients.google_cloud import NO_LIBRARY_RETRY, GcpClients, rest


def node_pool_autoscaling(clients: GcpClients, ctx: RunContext, path: str):
    """The pool's autoscaling limits (totals across its zones, as `GkeGpuNodePool` sets them)."""
    pool = ctx.call(f"get node pool {path}", clients.container().get_node_pool, name=path, **NO_LIBRARY_RETRY)
    return pool.autoscaling


def raise_pool_minimum(clients: GcpClients, ctx: RunContext, path: str, minimum: int) -> str:
    """Scale a standby pool for a failover by raising its autoscaler's total minimum.

    A GKE pool under the autoscaler keeps what its limits say: a node count set directly
    (setSize) is removed again once idle, so a failover raises the floor instead, and the
    autoscaler brings up and keeps the nodes in whichever zones have the capacity."""
    current = node_pool_autoscaling(clients, ctx, path)
    if not current.enabled:
        raise StepFailed(f"{path} has no autoscaler: mlfleet's GKE pools scale through their total minimum")
    if current.total_min_node_count >= minimum:
        return f"{path} already holds at least {current.total_min_node_count} nodes"
    if minimum > current.total_max_node_count:
        raise StepFailed(f"{path} may hold at most {current.total_max_node_count} nodes, not {minimum}")
    from google.cloud import container_v1

    autoscaling = container_v1.NodePoolAutoscaling(
        enabled=True, total_min_node_count=minimum, total_max_node_count=current.total_max_node_count,
        location_policy=current.location_policy)
    operation = ctx.call(f"raise the minimum of {path}", clients.container().set_node_pool_autoscaling,
                         request=container_v1.SetNodePoolAutoscalingRequest(name=path, autoscaling=autoscaling),
                         **NO_LIBRARY_RETRY)
    return f"{path} minimum {current.total_min_node_count} -> {minimum} ({operation.name})"


def set_backend_capacity(clients: GcpClients, ctx: RunContext, project: str, region: str, service: str,
                         capacity: float) -> str:
    """Set every backend's capacityScaler (0 drains a region, 1 gives it full share)."""
    from google.cloud import compute_v1

    api = clients.backend_services()
    current = ctx.call(f"get backend service {service}", api.get, project=project, region=region,
                       backend_service=service, **NO_LIBRARY_RETRY)
    if all(abs(b.capacity_scaler - capacity) < 1e-9 for b in current.backends):
        return f"{service} already at capacity {capacity}"
    patch = compute_v1.BackendService(
        fingerprint=current.fingerprint,
        backends=[compute_v1.Backend(group=b.group, capacity_scaler=capacity) for b in current.backends])
    operation = ctx.call(f"patch backend service {service}", api.patch_unary, project=project, region=region,
                         backend_service=service, backend_service_resource=patch, **NO_LIBRARY_RETRY)
    return f"{service} capacity {capacity} ({operation.name})"


def _operation_started(operation: dict, what: str) -> str:
    if operation.get("status", "RUNNING") not in ("DONE", "RUNNING", "PENDING") or operation.get("error"):
        raise StepFailed(f"{what}: {operation}")
    return operation.get("name", "?")


def promote_sql_replica(clients: GcpClients, ctx: RunContext, project: str, instance: str) -> str:
    url = f"{clients.sql_base}/v1/projects/{project}/instances/{instance}"
    if ctx.call(f"get Cloud SQL instance {instance}", rest, clients, "GET", url).get("instanceType") \
            != "READ_REPLICA_INSTANCE":
        return f"{instance} is already a primary"
    operation = ctx.call(f"promote Cloud SQL replica {instance}", rest, clients, "POST", f"{url}/promoteReplica")
    return f"{instance} promoted ({_operation_started(operation, f'promoteReplica of {instance}')})"


def promote_migration_job(clients: GcpClients, ctx: RunContext, project: str, region: str, job: str) -> str:
    """End a DMS continuous job: its Cloud SQL destination stops following Aurora and becomes a
    primary (`cross_cloud_registry.AuroraToCloudSqlReplica`)."""
    url = f"{clients.dms_base}/v1/projects/{project}/locations/{region}/migrationJobs/{job}"
    current = ctx.call(f"get migration job {job}", rest, clients, "GET", url)
    if current.get("state") == "COMPLETED" or current.get("phase") == "PROMOTE_IN_PROGRESS":
        return f"{job} is already promoted ({current.get('state')}, {current.get('phase')})"
    if current.get("state") != "RUNNING":
        raise StepFailed(f"migration job {job} is {current.get('state')}, not RUNNING: nothing to promote")
    operation = ctx.call(f"promote migration job {job}", rest, clients, "POST", f"{url}:promote", {})
    return f"{job} promoted ({_operation_started(operation, f'promote of {job}')})"


def harden_promoted_instance(clients: GcpClients, ctx: RunContext, project: str, instance: str) -> str:
    """What a new registry primary needs that its replica life did not: regional high
    availability and deletion protection (a DMS destination is created without either)."""
    url = f"{clients.sql_base}/v1/projects/{project}/instances/{instance}"
    settings = ctx.call(f"get Cloud SQL instance {instance}", rest, clients, "GET", url).get("settings", {})
    wanted = {"availabilityType": "REGIONAL", "deletionProtectionEnabled": True}
    missing = {k: v for k, v in wanted.items() if settings.get(k) != v}
    if not missing:
        return f"{instance} already regional and protected"
    operation = ctx.call(f"patch Cloud SQL instance {instance}", rest, clients, "PATCH", url, {"settings": missing})
    return f"{instance} {', '.join(sorted(missing))} set ({_operation_started(operation, f'patch of {instance}')})"

