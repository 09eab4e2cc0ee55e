"""GCP actions for a region on Google Cloud: scale the standby GKE node pools, set a regional
backend service's capacity, promote the registry (a Cloud SQL replica, or the DMS job that
keeps a Cloud SQL instance in step with Aurora) and give the new primary regional HA and
deletion protection; read the replica's lag (Cloud Monitoring), the champion in the dual-region
bucket (Cloud Storage) and write the drills' RPO markers there.

The clients are cached on the target (`Target.gcp_clients()`, `.gke()`, `.gcs(region)`,
`.monitoring()`): against a project the application default credentials, in the sandbox anonymous
credentials and its fake endpoints. GKE and Compute go through their client libraries over REST,
Cloud Monitoring through its library over gRPC (it ships no REST transport), Cloud Storage
through google-cloud-storage, Cloud SQL (SQL Admin API v1) and Database Migration (API v1) through
authenticated REST. Compute calls use the `*_unary` variants: the extended-operation helpers poll a
client built without our endpoint. Every call goes through `ctx.call`.

Enterprise Plus DR-replica switchover is not offered: the environment model has no setting that
configures it, so a Cloud SQL standby is promoted (`promoteReplica`)."""
from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING

from mlfleet.dr.aws import ChampionChoice, Lag, ModelChampion
from mlfleet.dr.engine import RunContext, StepFailed
from mlfleet.stacks.clients.google_cloud import NO_LIBRARY_RETRY, GcpClients, node_pool_path, rest
from mlfleet.stacks.environment import Environment, naming

if TYPE_CHECKING:
    from mlfleet.dr.target import Target

REPLICA_LAG_METRIC = "cloudsql.googleapis.com/database/replication/replica_lag"


def _clients(where) -> GcpClients:
    """A Target's cached clients, or GcpClients given directly (drift and older callers)."""
    return where if isinstance(where, GcpClients) else where.gcp_clients()


def registry_kind(env: Environment, region: str) -> str | None:
    """What the region's Cloud SQL instance is: `primary`, `replica` (of the Google Cloud primary),
    `dms` (the destination of a migration job from Aurora), or None (no Cloud SQL instance)."""
    if env.region(region).cloud != "gcp":
        return None
    if env.region(region).role == "primary":
        return "primary"
    if env.primary.cloud == "gcp":
        return "replica"
    return "dms" if env.gcp is not None and env.gcp.registry_source is not None else None


def _container(where):
    return where.gke() if not isinstance(where, GcpClients) else where.container()


def node_pool_autoscaling(clients: "GcpClients | Target", ctx: RunContext, path: str):
    """The pool's autoscaling limits (totals across its zones, as `GkeGpuNodePool` sets them)."""
    pool = ctx.call(f"get node pool {path}", _container(clients).get_node_pool, name=path, **NO_LIBRARY_RETRY)
    return pool.autoscaling


def raise_pool_minimum(clients: "GcpClients | Target", ctx: RunContext, path: str, minimum: int) -> str:
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
    operation = ctx.call(f"raise the minimum of {path}", _container(clients).set_node_pool_autoscaling,
                         request=container_v1.SetNodePoolAutoscalingRequest(name=path, autoscaling=autoscaling),
                         **NO_LIBRARY_RETRY)
    return f"{path} minimum {current.total_min_node_count} -> {minimum} ({operation.name})"


def lower_pool_minimum(clients: "GcpClients | Target", ctx: RunContext, path: str, minimum: int) -> str:
    """Return a pool's autoscaler floor to `minimum` (a standby's warm size after a failback, or the
    compensation of a raise); the autoscaler removes the nodes above it once they are idle."""
    current = node_pool_autoscaling(clients, ctx, path)
    if not current.enabled or current.total_min_node_count <= minimum:
        return f"{path} already keeps at most {current.total_min_node_count} nodes as its floor"
    from google.cloud import container_v1

    autoscaling = container_v1.NodePoolAutoscaling(
        enabled=True, total_min_node_count=minimum, total_max_node_count=current.total_max_node_count,
        location_policy=current.location_policy)
    operation = ctx.call(f"lower the minimum of {path}", _container(clients).set_node_pool_autoscaling,
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


def promote_sql_replica(clients: "GcpClients | Target", ctx: RunContext, project: str, instance: str) -> str:
    clients = _clients(clients)
    url = f"{clients.sql_base}/v1/projects/{project}/instances/{instance}"
    found = ctx.call(f"get Cloud SQL instance {instance}", rest, clients, "GET", url)
    if found.get("instanceType") != "READ_REPLICA_INSTANCE":
        return f"{instance} is already a primary"
    if found.get("state") != "RUNNABLE":  # a promotion asked for earlier (a run that died) is under way
        return f"{instance} is {found.get('state')}: its promotion is already under way"
    operation = ctx.call(f"promote Cloud SQL replica {instance}", rest, clients, "POST", f"{url}/promoteReplica")
    return f"{instance} promoted ({_operation_started(operation, f'promoteReplica of {instance}')})"


def promote_migration_job(clients: "GcpClients | Target", ctx: RunContext, project: str, region: str, job: str) -> str:
    """End a DMS continuous job: its Cloud SQL destination stops following Aurora and becomes a
    primary (`cross_cloud_registry.AuroraToCloudSqlReplica`)."""
    clients = _clients(clients)
    url = f"{clients.dms_base}/v1/projects/{project}/locations/{region}/migrationJobs/{job}"
    current = ctx.call(f"get migration job {job}", rest, clients, "GET", url)
    if current.get("state") == "COMPLETED" or current.get("phase") == "PROMOTE_IN_PROGRESS":
        return f"{job} is already promoted ({current.get('state')}, {current.get('phase')})"
    if current.get("state") != "RUNNING":
        raise StepFailed(f"migration job {job} is {current.get('state')}, not RUNNING: nothing to promote")
    operation = ctx.call(f"promote migration job {job}", rest, clients, "POST", f"{url}:promote", {})
    return f"{job} promoted ({_operation_started(operation, f'promote of {job}')})"


def harden_promoted_instance(clients: "GcpClients | Target", ctx: RunContext, project: str, instance: str) -> str:
    """What a new registry primary needs that its replica life did not: regional high
    availability and deletion protection (a DMS destination is created without either)."""
    clients = _clients(clients)
    url = f"{clients.sql_base}/v1/projects/{project}/instances/{instance}"
    settings = ctx.call(f"get Cloud SQL instance {instance}", rest, clients, "GET", url).get("settings", {})
    wanted = {"availabilityType": "REGIONAL", "deletionProtectionEnabled": True}
    missing = {k: v for k, v in wanted.items() if settings.get(k) != v}
    if not missing:
        return f"{instance} already regional and protected"
    operation = ctx.call(f"patch Cloud SQL instance {instance}", rest, clients, "PATCH", url, {"settings": missing})
    return f"{instance} {', '.join(sorted(missing))} set ({_operation_started(operation, f'patch of {instance}')})"



# -- the registry (Cloud SQL) -----------------------------------------------------------------
def _instance_url(target: Target, region: str) -> str:
    return (f"{target.gcp_clients().sql_base}/v1/projects/{target.gcp_project}/instances/"
            f"{naming.cloud_sql_instance(target.env.name, region)}")


def sql_instance(target: Target, ctx: RunContext, region: str) -> dict:
    """The region's Cloud SQL instance as the SQL Admin API describes it."""
    instance = naming.cloud_sql_instance(target.env.name, region)
    return ctx.call(f"get Cloud SQL instance {instance}", rest, target.gcp_clients(), "GET",
                    _instance_url(target, region))


def sql_writer_region(target: Target, ctx: RunContext) -> str | None:
    """The Google Cloud region whose Cloud SQL instance is a primary (takes writes); else the region
    a reachable replica names as its primary; None while the registry's writer is not on Google
    Cloud (a DMS destination still following Aurora). An unreachable region is skipped."""
    names = {naming.cloud_sql_instance(target.env.name, r.name): r.name for r in target.env.regions_on("gcp")}
    named = None
    for region in names.values():
        if registry_kind(target.env, region) is None:
            continue
        try:
            instance = sql_instance(target, ctx, region)
        except Exception:  # noqa: BLE001 - a region down: another instance may still say who writes
            continue
        if instance.get("instanceType") == "CLOUD_SQL_INSTANCE":
            return region
        named = named or names.get(instance.get("masterInstanceName", ""))
    return named


def sql_replica_lag(target: Target, ctx: RunContext, region: str) -> Lag:
    """`cloudsql.googleapis.com/database/replication/replica_lag` of the region's instance, from
    its freshest datapoint (Cloud Monitoring), with that datapoint's age."""
    from google.cloud import monitoring_v3

    instance = naming.cloud_sql_instance(target.env.name, region)
    max_age = float(target.env.dr.lag_max_age)
    now = time.time()
    interval = monitoring_v3.TimeInterval(end_time={"seconds": int(now) + 1},
                                          start_time={"seconds": int(now - max(2 * max_age, 300))})
    request = monitoring_v3.ListTimeSeriesRequest(
        name=f"projects/{target.gcp_project}", interval=interval,
        filter=f'metric.type="{REPLICA_LAG_METRIC}" AND resource.labels.database_id="{target.gcp_project}:{instance}"',
        view=monitoring_v3.ListTimeSeriesRequest.TimeSeriesView.FULL)
    client = target.monitoring()
    series = ctx.call(f"read replica_lag of {instance}",
                      lambda: list(client.list_time_series(request=request, retry=None, timeout=10)))
    points = [(point.interval.end_time.timestamp(), point.value.double_value)
              for each in series for point in each.points]
    if not points:
        return Lag(None, None, f"no replica_lag datapoint for {instance} in the last {max(2 * max_age, 300):.0f}s")
    at, seconds = max(points)
    age = max(0.0, time.time() - at)
    if age > max_age:
        return Lag(None, age, f"the newest replica_lag of {instance} is {age:.0f}s old "
                              f"(more than dr.lag_max_age {max_age:.0f}s): unknown")
    return Lag(seconds, age, f"{instance} {seconds:.2f}s behind ({age:.1f}s ago)")


def promote_registry(target: Target, ctx: RunContext, region: str) -> str:
    """Make the region's Cloud SQL instance the registry's primary: promote its DMS migration job
    (a destination following Aurora), else its cross-region replica."""
    kind = registry_kind(target.env, region)
    instance = naming.cloud_sql_instance(target.env.name, region)
    if kind == "dms":
        return promote_migration_job(target, ctx, target.gcp_project, region, instance)
    if kind is None:
        raise StepFailed(f"{region} has no Cloud SQL registry instance")
    return promote_sql_replica(target, ctx, target.gcp_project, instance)


def registry_promotion_done(target: Target, ctx: RunContext, region: str) -> bool | str:
    """True once the region's instance is a primary and RUNNABLE (and its DMS job, if any,
    COMPLETED); else what it is at."""
    instance = sql_instance(target, ctx, region)
    what = f"{instance.get('name')} is {instance.get('instanceType')}, {instance.get('state')}"
    if instance.get("instanceType") != "CLOUD_SQL_INSTANCE" or instance.get("state") != "RUNNABLE":
        return what
    if registry_kind(target.env, region) == "dms":
        job = naming.cloud_sql_instance(target.env.name, region)
        url = (f"{target.gcp_clients().dms_base}/v1/projects/{target.gcp_project}/locations/{region}/"
               f"migrationJobs/{job}")
        state = ctx.call(f"get migration job {job}", rest, target.gcp_clients(), "GET", url)
        if state.get("state") != "COMPLETED":
            return f"migration job {job} is {state.get('state')} ({state.get('phase')})"
    return True


def _registry_endpoint(target: Target, ctx: RunContext, region: str) -> tuple[str, int, dict[str, str]]:
    """Host, port and login of the region's registry: the sandbox's server from its state file, or
    the instance's private address with an IAM database login (the access token as password)."""
    if target.kind == "sandbox":
        from psycopg.conninfo import conninfo_to_dict

        dsn = target.registry_dsns.get(region)
        if not dsn:
            raise StepFailed(f"the sandbox's state file names no registry database for {region}")
        params = conninfo_to_dict(dsn)
        login: dict[str, str] = {k: str(params[k]) for k in ("user", "password", "dbname") if k in params}
        return str(params["host"]), int(params.get("port") or 5432), login
    instance = sql_instance(target, ctx, region)
    address = next((a["ipAddress"] for a in instance.get("ipAddresses", []) if a.get("type") == "PRIVATE"), None)
    if address is None:
        raise StepFailed(f"{instance.get('name')} has no private address")
    credentials = target.gcp_clients().sql_session().credentials
    import google.auth.transport.requests

    credentials.refresh(google.auth.transport.requests.Request())
    from mlfleet.dr.target import REGISTRY_DR_USER

    return address, 5432, {"user": REGISTRY_DR_USER, "password": credentials.token,
                           "dbname": naming.registry_database(), "sslmode": "require"}


def registry_writable(target: Target, ctx: RunContext, region: str) -> tuple[bool, str]:
    """Whether the region's Cloud SQL registry takes writes: one probe row into
    `naming.registry_probe_table()` in one transaction through its PostgreSQL server."""
    from mlfleet.dr.registry_probe import write_probe

    host, port, login = _registry_endpoint(target, ctx, region)
    return write_probe(target, ctx, region, host, port, login)


# -- GPU capacity (GKE node pools) ------------------------------------------------------------
def _pool_path(target: Target, region: str, pool: str) -> str:
    return node_pool_path(target.gcp_project, region, naming.gke_cluster_name(target.env.name, region),
                          naming.node_group_name(pool))


def pool_sizes(target: Target, ctx: RunContext, region: str) -> dict[str, dict]:
    """Each GPU pool's autoscaler limits (`minSize`, `maxSize`: totals across zones) and status."""
    sizes = {}
    for pool in target.env.gpu_pools:
        path = _pool_path(target, region, pool.name)
        found = ctx.call(f"get node pool {path}", target.gke().get_node_pool, name=path, **NO_LIBRARY_RETRY)
        sizes[pool.name] = {"minSize": found.autoscaling.total_min_node_count,
                            "maxSize": found.autoscaling.total_max_node_count,
                            "status": found.status.name if hasattr(found.status, "name") else str(found.status)}
    return sizes


def raise_pool_minimums(target: Target, ctx: RunContext, region: str, minimums: dict[str, int]) -> list[str]:
    """`raise_pool_minimum` for each named pool of the region; what each did."""
    return [raise_pool_minimum(target, ctx, _pool_path(target, region, pool), minimum)
            for pool, minimum in sorted(minimums.items())]


def lower_pool_minimums(target: Target, ctx: RunContext, region: str, minimums: dict[str, int]) -> list[str]:
    """`lower_pool_minimum` for each named pool of the region; what each did."""
    return [lower_pool_minimum(target, ctx, _pool_path(target, region, pool), minimum)
            for pool, minimum in sorted(minimums.items())]


def pools_at(target: Target, ctx: RunContext, region: str, minimums: dict[str, int]) -> bool | str:
    """True once every named pool's autoscaler keeps at least its minimum and the pool is RUNNING."""
    sizes = pool_sizes(target, ctx, region)
    short = [f"{pool} min {sizes[pool]['minSize']} ({sizes[pool]['status']}), wanted {minimum}"
             for pool, minimum in sorted(minimums.items())
             if sizes[pool]["minSize"] < minimum or sizes[pool]["status"] != "RUNNING"]
    return True if not short else "; ".join(short)


# -- artifacts (Cloud Storage) ----------------------------------------------------------------
def _read(target: Target, ctx: RunContext, region: str, name: str) -> bytes | None:
    from google.api_core.exceptions import NotFound

    bucket = target.gcs(region).bucket(target.gcs_bucket())
    try:
        return ctx.call(f"read gs://{bucket.name}/{name} in {region}", bucket.blob(name).download_as_bytes,
                        timeout=30, retry=None)
    except Exception as exc:  # a 404 means "not there (yet)", anything else is raised
        if isinstance(getattr(exc, "cause", exc), NotFound):
            return None
        raise


def _exists(target: Target, ctx: RunContext, region: str, name: str) -> bool:
    bucket = target.gcs(region).bucket(target.gcs_bucket())
    return bool(ctx.call(f"head gs://{bucket.name}/{name} in {region}", bucket.blob(name).exists,
                         timeout=30, retry=None))


def _public_key(target: Target, ctx: RunContext):
    """Version 1 of the environment's Cloud KMS manifest-signing key, what the runtimes verify with."""
    from cryptography.hazmat.primitives.serialization import load_pem_public_key

    env = target.env
    pair = env.gcp_artifact_regions or ()
    from mlfleet.stacks.environment import GCS_MULTI_REGIONS

    location = GCS_MULTI_REGIONS[pair[0].split("-")[0]].lower()
    key = (f"projects/{target.gcp_project}/locations/{location}/keyRings/{naming.gcp_key_ring(env.name, location)}"
           f"/cryptoKeys/{naming.gcp_manifest_signing_key(env.name)}/cryptoKeyVersions/1")
    base = target.gcp_endpoint if target.kind == "sandbox" else "https://cloudkms.googleapis.com"
    document = ctx.call(f"read the public key of {key}", rest, target.gcp_clients(), "GET",
                        f"{base}/v1/{key}/publicKey")
    return load_pem_public_key(document["pem"].encode())


def choose_versions(target: Target, ctx: RunContext, region: str) -> ChampionChoice:
    """For each model: the champion if all its files are in the region's copy of the Google bucket,
    else the newest approved version whose files all are; StepFailed if a model has none, or if the
    manifest does not verify against the Cloud KMS signing key (its runtime would refuse it).
    The same ChampionChoice as aws.choose_versions (held: the champion's files still missing)."""
    from mlfleet.runtime.manifest import Manifest, ManifestError
    from mlfleet.runtime.signing import SignatureError, verify_manifest

    prefix = naming.approved_prefix(target.env.artifact_store.models_prefix)
    where = f"gs://{target.gcs_bucket()}/{prefix}"
    raw = _read(target, ctx, region, prefix + naming.MANIFEST_FILE)
    if raw is None:
        raise StepFailed(f"{where}{naming.MANIFEST_FILE} is not in {region}'s copy")
    try:
        manifest = Manifest.load(raw)
    except ManifestError as exc:
        raise StepFailed(f"manifest in {where}: {exc}") from None
    signature = _read(target, ctx, region, prefix + naming.MANIFEST_SIGNATURE_FILE)
    try:
        verify_manifest(raw, signature, _public_key(target, ctx))
    except SignatureError as exc:
        raise StepFailed(f"the manifest in {where} does not verify in {region}: {exc}") from None
    choice = ChampionChoice(region=region)
    for model, entry in sorted(manifest.models.items()):
        candidates = [entry.champion] + sorted((v for v in entry.versions if v != entry.champion),
                                               key=int, reverse=True)
        champion_missing: tuple[str, ...] = ()
        for version in candidates:
            files = [f"{prefix}{model}/{version}/{f}" for f in entry.versions[version].files]
            if entry.config_sha256:
                files.append(f"{prefix}{model}/config.pbtxt")
            missing = tuple(name for name in files if not _exists(target, ctx, region, name))
            if version == entry.champion:
                champion_missing = missing
            if not missing:
                choice.pins[model] = version
                choice.models[model] = ModelChampion(model, entry.champion, version, champion_missing)
                if version != entry.champion:
                    choice.notes.append(f"{model}: champion v{entry.champion} is not fully in {region}'s copy of "
                                        f"gs://{target.gcs_bucket()}; using v{version}, the newest approved that is")
                break
        else:
            raise StepFailed(f"{model}: no approved version has all its files in {region}'s copy of {where}")
    return choice


def pending_replication(target: Target, ctx: RunContext, region: str) -> list[str]:
    """Objects written in the region's copy that the other copy does not hold yet: Cloud Storage
    does not expose per-object replication state, so an object is pending when this copy lists it
    and the pair's copy does not (ASYNC_TURBO's 15-minute target bounds it)."""
    pair = [r for r in (target.env.gcp_artifact_regions or ()) if r != region]
    if not pair:
        return []
    prefix = target.env.artifact_store.models_prefix

    def names(where: str) -> set[str]:
        client = target.gcs(where)
        return {b.name for b in ctx.call(f"list gs://{target.gcs_bucket()} in {where}",
                                         lambda: list(client.list_blobs(target.gcs_bucket(), prefix=prefix,
                                                                        retry=None, timeout=30)))}

    return sorted(names(region) - names(pair[0]))


def write_marker(target: Target, region: str, key: str, body: dict) -> None:
    """An artifact-store write in the region's copy, the drills' RPO marker (no retries: a failed
    write is data)."""
    blob = target.gcs(region).bucket(target.gcs_bucket()).blob(key)
    blob.upload_from_string(json.dumps(body).encode(), content_type="application/json", retry=None, timeout=5)


def marker_present(target: Target, region: str, key: str) -> bool:
    try:
        return bool(target.gcs(region).bucket(target.gcs_bucket()).blob(key).exists(retry=None, timeout=5))
    except Exception:  # noqa: BLE001 - absent or unreachable: either way it is not there now
        return False
