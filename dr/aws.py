"""AWS actions the runbooks compose (boto3). Each reads the world before it changes it, so a
repeated call after a crash is a no-op; each cloud call goes through `ctx.call` (retries for
transient failures, time counted as waiting)."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

from mlfleet.dr.engine import RunContext, StepFailed
from mlfleet.dr.retry import GaveUp
from mlfleet.dr.target import Target
from mlfleet.stacks.environment import naming

LAG_METRIC = "AuroraGlobalDBRPOLag"


# -- registry database (Aurora global database) -------------------------------------------
def describe_global_cluster(target: Target, ctx: RunContext, via_region: str) -> dict:
    rds = target.client("rds", via_region)
    global_id = naming.global_cluster_id(target.env.name)
    clusters = ctx.call(f"describe global cluster {global_id}", rds.describe_global_clusters,
                        GlobalClusterIdentifier=global_id)["GlobalClusters"]
    if not clusters:
        raise StepFailed(f"global cluster {global_id} not found")
    return clusters[0]


def region_of(arn: str) -> str:
    return arn.split(":")[3]


def writer_region(cluster: dict) -> str | None:
    return next((region_of(m["DBClusterArn"]) for m in cluster.get("GlobalClusterMembers", []) if m["IsWriter"]), None)


@dataclass(frozen=True)
class Lag:
    """A replica's replication lag as its freshest datapoint says, and how old that datapoint is.
    `seconds` is None when the lag is unknown: no datapoint, or only one older than
    `env.dr.lag_max_age` (a replica that stopped reporting bounds no data loss)."""
    seconds: float | None
    age_s: float | None
    detail: str

    @property
    def known(self) -> bool:
        return self.seconds is not None


LAG_PERIODS_S = (1, 60)
"""Finest first. One-second buckets where the metric is published at high resolution (the
sandbox publishes several datapoints a second), so a recovered replica reads its fresh low value,
not the peak of the last minute; a metric CloudWatch refuses at that period is read per minute."""
_MAX_DATAPOINTS = 1440  # GetMetricStatistics answers at most this many datapoints per call


def replication_lag(target: Target, ctx: RunContext, region: str) -> Lag:
    """The freshest `AuroraGlobalDBRPOLag` datapoint of the region's secondary cluster, with its age."""
    max_age = float(target.env.dr.lag_max_age)
    cloudwatch = target.client("cloudwatch", region)
    cluster = naming.db_cluster_id(target.env.name, region)
    points: list[dict] = []
    window = 0.0
    for period in LAG_PERIODS_S:
        # Far enough back to say how old a stale datapoint is, within one call's datapoints.
        window = min(max(5 * max_age, 900.0), float(_MAX_DATAPOINTS * period))
        now = datetime.now(timezone.utc)
        try:
            points = ctx.call(f"read {LAG_METRIC} in {region}", cloudwatch.get_metric_statistics,
                              Namespace="AWS/RDS", MetricName=LAG_METRIC,
                              Dimensions=[{"Name": "DBClusterIdentifier", "Value": cluster}],
                              StartTime=now - timedelta(seconds=window), EndTime=now + timedelta(seconds=1),
                              Period=period, Statistics=["Maximum"])["Datapoints"]
        except GaveUp as exc:
            code = getattr(exc.cause, "response", {}).get("Error", {}).get("Code", "")
            if code.startswith("InvalidParameter") and period != LAG_PERIODS_S[-1]:
                continue  # not a high-resolution metric: its finest period is a minute
            raise
        break
    if not points:
        return Lag(None, None, f"unknown: no {LAG_METRIC} datapoint for {cluster} in the last {window:.0f} s")
    newest = max(points, key=lambda p: p["Timestamp"])
    age = max(0.0, (datetime.now(timezone.utc) - newest["Timestamp"]).total_seconds())
    if age > max_age:
        return Lag(None, age, f"unknown: the newest datapoint is {age:.0f} s old (dr.lag_max_age {max_age:g} s)")
    seconds = newest["Maximum"] / (1.0 if newest.get("Unit") == "Seconds" else 1000.0)
    return Lag(seconds, age, f"{seconds:.1f} s, measured {age:.0f} s ago")


def replication_lag_s(target: Target, ctx: RunContext, region: str) -> float | None:
    """`replication_lag(...).seconds`, for callers that need only the number (None: unknown)."""
    return replication_lag(target, ctx, region).seconds


def request_promotion(target: Target, ctx: RunContext, to_region: str, *, planned: bool) -> str:
    """Switchover (planned, no data loss) or failover with AllowDataLoss (unplanned)."""
    rds = target.client("rds", to_region)
    cluster = describe_global_cluster(target, ctx, to_region)
    # a promotion under way comes first: the writer it is leaving is not yet the writer it is toward
    if cluster.get("Status") in ("switching-over", "failing-over"):
        state = cluster.get("FailoverState") or {}
        if region_of(state.get("ToDbClusterArn", "::::")) == to_region:
            return "promotion already in progress"
        raise StepFailed(f"global cluster is {cluster['Status']} toward {state.get('ToDbClusterArn')}")
    if writer_region(cluster) == to_region:
        return "already the writer"
    arn = next(m["DBClusterArn"] for m in cluster["GlobalClusterMembers"] if region_of(m["DBClusterArn"]) == to_region)
    global_id = cluster["GlobalClusterIdentifier"]
    if planned:
        ctx.call("switchover global cluster", rds.switchover_global_cluster,
                 GlobalClusterIdentifier=global_id, TargetDbClusterIdentifier=arn)
        return "switchover requested"
    ctx.call("failover global cluster", rds.failover_global_cluster,
             GlobalClusterIdentifier=global_id, TargetDbClusterIdentifier=arn, AllowDataLoss=True)
    return "failover (AllowDataLoss) requested"


def promotion_settled(target: Target, ctx: RunContext, via: str) -> bool | str:
    """True once no switchover or failover of the global cluster is under way (read through `via`)."""
    cluster = describe_global_cluster(target, ctx, via)
    status = cluster.get("Status")
    return True if status == "available" else f"status {status}, writer {writer_region(cluster)}"


def promotion_done(target: Target, ctx: RunContext, to_region: str) -> bool | str:
    cluster = describe_global_cluster(target, ctx, to_region)
    writer = writer_region(cluster)
    if writer == to_region and cluster.get("Status") == "available":
        return True
    return f"writer {writer}, status {cluster.get('Status')}"


def registry_writable(target: Target, ctx: RunContext, region: str) -> tuple[bool, str]:
    """Whether the region's registry cluster takes writes: through the endpoint RDS gives for it,
    one probe row into `naming.registry_probe_table()` (created if missing) in one transaction.
    (False, why) when the server is a standby (read-only, in recovery) or cannot be reached."""
    from mlfleet.dr.registry_probe import write_probe

    rds = target.client("rds", region)
    cluster_id = naming.db_cluster_id(target.env.name, region)
    clusters = ctx.call(f"describe DB cluster {cluster_id}", rds.describe_db_clusters,
                        DBClusterIdentifier=cluster_id)["DBClusters"]
    if not clusters or not clusters[0].get("Endpoint"):
        return False, f"{cluster_id} has no endpoint"
    host, port = clusters[0]["Endpoint"], int(clusters[0].get("Port") or 5432)
    return write_probe(target, ctx, region, host, port, target.registry_credentials(region, host, port))


# -- model artifacts ---------------------------------------------------------------------
@dataclass(frozen=True)
class ModelChampion:
    """One model's champion as a failover to a region would find it."""
    model: str
    champion: str
    """The current champion: per the writer's manifest when it could be read, else the replica's."""
    pin: str
    """The version a failover would pin now: the champion, or (held) the newest approved version
    that the region's replica holds completely and its manifest lists."""
    missing: tuple[str, ...] = ()
    """Keys the region's replica lacks for the champion (its files, or a manifest and signature
    still on their way): the champion is held from replication while any is missing."""

    @property
    def held(self) -> bool:
        return bool(self.missing)


@dataclass
class ChampionChoice:
    """The one answer to "what would a failover to this region pin", shared by readiness and the
    runbook's champion block. `ready`: every model's current champion would be pinned."""
    region: str = ""
    models: dict[str, ModelChampion] = field(default_factory=dict)
    pins: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @property
    def held(self) -> dict[str, list[str]]:
        """Model -> the keys its champion still waits for in the region's replica."""
        return {m: list(c.missing) for m, c in self.models.items() if c.held}

    @property
    def ready(self) -> bool:
        return not self.held

    @property
    def held_keys(self) -> list[str]:
        return sorted({key for keys in self.held.values() for key in keys})


def _not_found(exc: BaseException) -> bool:
    """Whether an S3 call (as ctx.call raises it) failed because the key is not there."""
    cause = exc.cause if isinstance(exc, GaveUp) else exc
    return getattr(cause, "response", {}).get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound")


def _exists(s3, bucket: str, key: str, ctx: RunContext) -> bool:
    try:
        ctx.call(f"head s3://{bucket}/{key}", s3.head_object, Bucket=bucket, Key=key)
        return True
    except GaveUp as exc:  # a 404 means "not replicated", anything else is raised
        if _not_found(exc):
            return False
        raise


def _verify_signature(target: Target, ctx: RunContext, region: str, manifest: bytes, signature: bytes | None,
                      where: str) -> None:
    """StepFailed unless `signature` (None: absent) verifies `manifest` against the region's replica
    of the signing key, as the region's runtime checks it."""
    from mlfleet.dr.kms_signer import KmsManifestSigner, SigningFailed
    from mlfleet.runtime.signing import SignatureError

    if signature is None:
        raise StepFailed(f"{where}{naming.MANIFEST_SIGNATURE_FILE} is missing: the runtime refuses an unsigned "
                         "manifest (not replicated yet?)")
    signer = KmsManifestSigner(target.client("kms", region), naming.manifest_signing_key_alias(target.env.name),
                               region)
    try:
        ctx.call(f"verify the manifest's signature in {region}", signer.verify, manifest, signature)
    except GaveUp as exc:
        if isinstance(exc.cause, SignatureError):
            raise StepFailed(f"the manifest in {where} does not verify: {exc.cause}") from None
        if isinstance(exc.cause, SigningFailed):
            raise StepFailed(f"the manifest in {where} cannot be checked: {exc}") from None
        raise


def _approved_pair(target: Target, ctx: RunContext, region: str) -> tuple[bytes | None, bytes | None]:
    """The raw manifest and its signature (None: absent) in the approved area of the region's bucket."""
    s3 = target.client("s3", region)
    prefix = naming.approved_prefix(target.env.artifact_store.models_prefix)
    bodies: list[bytes | None] = []
    for name in (naming.MANIFEST_FILE, naming.MANIFEST_SIGNATURE_FILE):
        try:
            bodies.append(ctx.call(f"read {name} in {region}", s3.get_object, Bucket=target.bucket(region),
                                   Key=prefix + name)["Body"].read())
        except GaveUp as exc:
            if not _not_found(exc):
                raise
            bodies.append(None)
    return bodies[0], bodies[1]


def _read_verified_manifest(target: Target, ctx: RunContext, region: str, source: str | None):
    """(raw, Manifest) of the region's replica once its manifest verifies against its signature.

    Replication carries the manifest and its signature one object at a time, so for a moment after
    a promotion a replica holds the new manifest beside the old signature (or the other way round).
    While the writer's pair differs from the replica's, a pair that does not verify is on its way:
    it is read again until it verifies, at most `dr.drain_timeout`. A pair that does not verify
    though it is the writer's, or with no writer to compare, fails at once."""
    where = f"s3://{target.bucket(region)}/{naming.approved_prefix(target.env.artifact_store.models_prefix)}"
    verified: list = []

    def pair_verifies() -> bool | str:
        raw, signature = _approved_pair(target, ctx, region)
        try:
            if raw is None:
                raise StepFailed(f"{where}{naming.MANIFEST_FILE} is missing (not replicated yet?)")
            _verify_signature(target, ctx, region, raw, signature, where)
        except StepFailed as exc:
            if not source or source == region:
                raise
            try:  # compared with the very bytes that did not verify: a pair read half-way is in flight too
                in_flight = _approved_pair(target, ctx, source) != (raw, signature)
            except Exception:  # noqa: BLE001 - a writer that cannot be read cannot vouch for a pair in flight
                in_flight = False
            if not in_flight:
                raise
            return f"{exc}; {source}'s manifest and signature are still replicating"
        verified.append((raw, _parse_manifest(raw, where)))
        return True

    ctx.wait_until(f"the manifest and its signature in {region} to verify together (dr.drain_timeout)",
                   pair_verifies, float(target.env.dr.drain_timeout))
    return verified[-1]


def _parse_manifest(raw: bytes, where: str):
    from mlfleet.runtime.manifest import Manifest, ManifestError

    try:
        return Manifest.load(raw)
    except ManifestError as exc:
        raise StepFailed(f"manifest in {where}: {exc}") from None


def _read_manifest(target: Target, ctx: RunContext, region: str):
    """(raw bytes, parsed Manifest) of the approved area of the region's bucket."""
    s3 = target.client("s3", region)
    bucket = target.bucket(region)
    prefix = naming.approved_prefix(target.env.artifact_store.models_prefix)
    raw = ctx.call(f"read manifest in {region}", s3.get_object, Bucket=bucket,
                   Key=prefix + naming.MANIFEST_FILE)["Body"].read()
    return raw, _parse_manifest(raw, f"s3://{bucket}/{prefix}")


def _short_key(key: str, prefix: str) -> str:
    return key[len(prefix):] if key.startswith(prefix) else key


def choose_versions(target: Target, ctx: RunContext, region: str, *, source: str | None = None) -> ChampionChoice:
    """What a failover to `region` would pin, per model, and why: the champion if its files and
    the signed manifest naming it are in the region's replica; else it is held, with the keys it
    waits for, and the newest approved version the replica holds completely is what would serve.

    `source` (the registry's writer): its manifest decides the current champion, so a replica whose
    manifest has not caught up yet is held too (waiting for the manifest and its signature). When
    the source cannot be read (it may be the region that failed) the replica's manifest decides.
    StepFailed if a model has no complete version, or the region's manifest does not verify against
    its replica of the signing key (its runtime would refuse it)."""
    s3 = target.client("s3", region)
    bucket = target.bucket(region)
    prefix = naming.approved_prefix(target.env.artifact_store.models_prefix)
    raw, manifest = _read_verified_manifest(target, ctx, region, source)
    choice = ChampionChoice(region=region)
    current = manifest
    manifest_keys: list[str] = []
    if source and source != region:
        try:
            source_raw, current = _read_manifest(target, ctx, source)
        except Exception as exc:  # noqa: BLE001 - an unreachable writer leaves the replica's word
            current = manifest
            reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            choice.notes.append(f"{source}'s manifest could not be read ({reason}); "
                                f"the champions are those of {region}'s replica")
        else:
            if source_raw != raw:
                manifest_keys = [prefix + naming.MANIFEST_FILE, prefix + naming.MANIFEST_SIGNATURE_FILE]

    def missing_files(model: str, version: str, entry) -> list[str]:
        keys = [f"{prefix}{model}/{version}/{f}" for f in entry.versions[version].files]
        if entry.config_sha256:
            keys.append(f"{prefix}{model}/config.pbtxt")
        return [key for key in keys if not _exists(s3, bucket, key, ctx)]

    for model, entry in sorted(manifest.models.items()):
        wanted = current.models[model] if model in current.models else entry
        champion = wanted.champion
        missing: list[str] = []
        if champion != entry.champion or champion not in entry.versions:
            missing += manifest_keys  # the replica's manifest still names another champion
        if champion in wanted.versions:
            missing += missing_files(model, champion, wanted)
        pin = None
        if not missing:
            pin = champion
        else:
            candidates = [entry.champion] + sorted((v for v in entry.versions if v != entry.champion),
                                                   key=int, reverse=True)
            pin = next((v for v in candidates if v != champion and not missing_files(model, v, entry)), None)
            if pin is None:
                raise StepFailed(f"{model}: no approved version is fully replicated to {region} (champion "
                                 f"v{champion} waits for {', '.join(_short_key(k, prefix) for k in missing)})")
            choice.notes.append(
                f"{model}: champion v{champion} is not fully replicated to {region} (missing "
                f"{', '.join(_short_key(k, prefix) for k in missing)}); using v{pin}, the newest approved "
                "version that is")
        choice.models[model] = ModelChampion(model, champion, pin, tuple(missing))
        choice.pins[model] = pin
    return choice


def pending_replication(target: Target, ctx: RunContext, region: str) -> list[str]:
    """Keys in the region's bucket whose replication is still PENDING (or FAILED)."""
    s3 = target.client("s3", region)
    bucket = target.bucket(region)
    pending = []
    listing = ctx.call(f"list s3://{bucket}", s3.list_objects_v2, Bucket=bucket)
    for item in listing.get("Contents", []):
        head = ctx.call(f"head {item['Key']}", s3.head_object, Bucket=bucket, Key=item["Key"])
        if head.get("ReplicationStatus") in ("PENDING", "FAILED"):
            pending.append(item["Key"])
    return pending


def undelivered(target: Target, ctx: RunContext, source_region: str, target_region: str,
                keys: list[str]) -> list[str]:
    """Those of `keys` that replication has not yet delivered from the source's bucket to the
    target's: absent there, or still PENDING on the source (an overwritten manifest is present in
    the replica in its old version). StepFailed for a key that will never arrive: FAILED, or not in
    the source either."""
    source_s3, source_bucket = target.client("s3", source_region), target.bucket(source_region)
    target_s3, target_bucket = target.client("s3", target_region), target.bucket(target_region)
    waiting = []
    for key in keys:
        try:
            head = ctx.call(f"head s3://{source_bucket}/{key}", source_s3.head_object, Bucket=source_bucket, Key=key)
        except Exception as exc:
            cause = getattr(exc, "cause", exc)
            if getattr(cause, "response", {}).get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                raise StepFailed(f"{key} is missing in s3://{source_bucket} too: replication cannot deliver it") \
                    from None
            raise
        status = head.get("ReplicationStatus")
        if status == "FAILED":
            raise StepFailed(f"replication of s3://{source_bucket}/{key} to {target_region} FAILED")
        if status == "PENDING" or not _exists(target_s3, target_bucket, key, ctx):
            waiting.append(key)
    return waiting


def drain_until_replicated(target: Target, ctx: RunContext, source_region: str, target_region: str,
                           keys: list[str] | None = None, timeout_s: float | None = None) -> str:
    """Wait until replication has delivered `keys` (default: every object PENDING in the source
    now) to the target's bucket, at most `timeout_s` (default `env.dr.drain_timeout`). StepFailed
    names the keys still on their way and the bound."""
    import time

    bound = float(target.env.dr.drain_timeout if timeout_s is None else timeout_s)
    names = list(pending_replication(target, ctx, source_region) if keys is None else keys)
    if not names:
        return "nothing to drain"
    deadline = time.monotonic() + bound
    with ctx.clock.waiting():
        while True:
            left = undelivered(target, ctx, source_region, target_region, names)
            if not left:
                return f"{len(names)} object(s) replicated to {target_region}"
            if time.monotonic() >= deadline:
                shown = ", ".join(left[:10]) + (f" and {len(left) - 10} more" if len(left) > 10 else "")
                raise StepFailed(f"replication {source_region} -> {target_region} did not deliver {len(left)} "
                                 f"object(s) within {bound:g} s (dr.drain_timeout): {shown}")
            time.sleep(ctx.poll_interval_s)


# -- GPU capacity (EKS node groups) -------------------------------------------------------
def node_group_sizes(target: Target, ctx: RunContext, region: str) -> dict[str, dict]:
    eks = target.client("eks", region)
    cluster = naming.cluster_name(target.env.name, region)
    sizes = {}
    for pool in target.env.gpu_pools:
        group = ctx.call(f"describe node group {pool.name} in {region}", eks.describe_nodegroup,
                         clusterName=cluster, nodegroupName=naming.node_group_name(pool.name))["nodegroup"]
        sizes[pool.name] = {**group["scalingConfig"], "status": group.get("status", "ACTIVE")}
    return sizes


def scale_node_groups(target: Target, ctx: RunContext, region: str, desired: dict[str, int]) -> list[str]:
    eks = target.client("eks", region)
    cluster = naming.cluster_name(target.env.name, region)
    current = node_group_sizes(target, ctx, region)
    changed = []
    for pool in target.env.gpu_pools:
        want = desired[pool.name]
        have = current[pool.name]
        if have["desiredSize"] == want and have["minSize"] == want:
            continue
        ctx.call(f"scale node group {pool.name} in {region}", eks.update_nodegroup_config,
                 clusterName=cluster, nodegroupName=naming.node_group_name(pool.name),
                 scalingConfig={"minSize": want, "maxSize": max(have["maxSize"], want), "desiredSize": want})
        changed.append(f"{pool.name} {have['desiredSize']}->{want}")
    return changed


def node_groups_at(target: Target, ctx: RunContext, region: str, desired: dict[str, int]) -> bool | str:
    sizes = node_group_sizes(target, ctx, region)
    off = [f"{name} {s['desiredSize']}/{desired[name]} {s['status']}" for name, s in sizes.items()
           if s["desiredSize"] != desired[name] or s["status"] != "ACTIVE"]
    return True if not off else "; ".join(off)


# -- the runtime image (ECR, replicated from the primary) -----------------------------------
def image_present(target: Target, ctx: RunContext, region: str) -> tuple[bool, str]:
    """Whether the environment's runtime image, by digest, is in the region's ECR repository:
    a region whose pods cannot pull it cannot take the traffic."""
    image = target.env.serving.image
    repository = naming.image_repository(target.env.name, image.name)
    ecr = target.client("ecr", region)
    try:
        ctx.call(f"describe image in {region}", ecr.describe_images, repositoryName=repository,
                 imageIds=[{"imageDigest": image.digest}])
    except Exception as exc:
        cause = getattr(exc, "cause", exc)
        code = getattr(cause, "response", {}).get("Error", {}).get("Code")
        if code == "ImageNotFoundException":
            return False, f"runtime image {image.digest} missing from {region}'s registry ({repository}): " \
                          "ECR replication has not delivered it"
        if code == "RepositoryNotFoundException":
            return False, f"{region} has no repository {repository} for the runtime image {image.digest}"
        raise
    return True, f"runtime image {image.digest} present in {region}'s registry ({repository})"


# -- routing (Route 53 failover records) -------------------------------------------------
def _records(target: Target, ctx: RunContext) -> list[dict]:
    route53 = target.client("route53", "us-east-1")
    names = {target.env.serving.dns_name + ".", f"standby.{target.env.serving.dns_name}."}
    records = ctx.call("list records", route53.list_resource_record_sets,
                       HostedZoneId=target.hosted_zone_id)["ResourceRecordSets"]
    return [r for r in records if r["Name"] in names and "SetIdentifier" in r]


def routed_region(target: Target, ctx: RunContext) -> str | None:
    """The region the records send traffic to: the PRIMARY failover record's; under weighted
    routing the one region whose record has a weight (None while several share the traffic)."""
    if target.env.serving.routing == "weighted":
        carrying = [r["SetIdentifier"] for r in _weighted_records(target, ctx) if int(r["Weight"]) > 0]
        return carrying[0] if len(carrying) == 1 else None
    for record in _records(target, ctx):
        if record.get("Failover") == "PRIMARY":
            return record["SetIdentifier"]
    return None


def _weighted_records(target: Target, ctx: RunContext) -> list[dict]:
    name = target.env.serving.dns_name + "."
    return [r for r in _records(target, ctx) if r["Name"] == name and "Weight" in r]


def route_records_to(target: Target, ctx: RunContext, to_region: str) -> str:
    """Make the records send traffic to `to_region` (Route 53's control plane): the failover
    records' PRIMARY, or under weighted routing the weights (`weigh_routing`). Idempotent."""
    if target.env.serving.routing == "weighted":
        return weigh_routing(target, ctx, to_region)
    routed = routed_region(target, ctx)
    if routed is None:
        raise StepFailed(f"no PRIMARY record for {target.env.serving.dns_name} in zone {target.hosted_zone_id}")
    return flip_routing(target, ctx, routed, to_region)


def weigh_routing(target: Target, ctx: RunContext, to_region: str) -> str:
    """Weighted routing: the records' weights set to `routing_control.routed_weights` (back at the
    primary every region's deployed share, elsewhere the target's alone), in one atomic change batch."""
    from mlfleet.stacks.environment import routing_control

    records = {r["SetIdentifier"]: r for r in _weighted_records(target, ctx)}
    if to_region not in records:
        raise StepFailed(f"no weighted record for {to_region} ({target.env.serving.dns_name}) in zone "
                         f"{target.hosted_zone_id}")
    weights = routing_control.routed_weights(target.env, to_region)
    want = {region: weights.get(region, 0) for region in records}
    changes = [{"Action": "UPSERT", "ResourceRecordSet": {**record, "Weight": want[region]}}
               for region, record in sorted(records.items()) if int(record["Weight"]) != want[region]]
    shown = ", ".join(f"{region} {weight}" for region, weight in sorted(want.items(), key=lambda kv: -kv[1]))
    if not changes:
        return f"weights already {shown}"
    route53 = target.client("route53", "us-east-1")
    ctx.call("set the weighted records' weights", route53.change_resource_record_sets,
             HostedZoneId=target.hosted_zone_id,
             ChangeBatch={"Comment": f"mlfleet: route {target.env.serving.dns_name} to {to_region}",
                          "Changes": changes})
    return f"weights {shown}"


def health_check_id(target: Target, ctx: RunContext, region: str) -> str | None:
    return next((r.get("HealthCheckId") for r in _records(target, ctx) if r["SetIdentifier"] == region), None)


def region_healthy(target: Target, ctx: RunContext, check_id: str) -> tuple[bool, str]:
    route53 = target.client("route53", "us-east-1")
    observations = ctx.call("read health check", route53.get_health_check_status,
                            HealthCheckId=check_id)["HealthCheckObservations"]
    statuses = [o["StatusReport"]["Status"] for o in observations]
    healthy = sum(s.startswith("Success") for s in statuses) > len(statuses) / 2
    return healthy, statuses[0] if statuses else "no observations"


def flip_routing(target: Target, ctx: RunContext, from_region: str, to_region: str) -> str:
    """Swap the two regions' places in the failover records, in one atomic change batch: the
    PRIMARY record names `to_region`, and `from_region` takes `to_region`'s standby place."""
    if target.env.serving.routing != "failover":
        raise StepFailed("routing is 'weighted': there are no failover records to flip (route_records_to "
                         "sets the weights)")
    records = _records(target, ctx)
    if next((r["SetIdentifier"] for r in records if r.get("Failover") == "PRIMARY"), None) == to_region:
        return f"PRIMARY already routes to {to_region}"
    by_region = {r["SetIdentifier"]: r for r in records}
    if from_region not in by_region or to_region not in by_region:
        raise StepFailed(f"no failover records for {from_region} and {to_region} in zone {target.hosted_zone_id}")
    old_from, old_to = by_region[from_region], by_region[to_region]
    swap_keys = ("SetIdentifier", "ResourceRecords", "HealthCheckId")
    new_from = {**old_from, **{k: old_to[k] for k in swap_keys if k in old_to}}
    new_to = {**old_to, **{k: old_from[k] for k in swap_keys if k in old_from}}
    # UPSERT, not CREATE, for the new pair: equally atomic in one batch, and moto refuses to
    # CREATE a record identical to one it created earlier (as a failback does).
    changes = [{"Action": "DELETE", "ResourceRecordSet": old_from}, {"Action": "DELETE", "ResourceRecordSet": old_to},
               {"Action": "UPSERT", "ResourceRecordSet": new_from}, {"Action": "UPSERT", "ResourceRecordSet": new_to}]
    route53 = target.client("route53", "us-east-1")
    ctx.call("flip failover records", route53.change_resource_record_sets, HostedZoneId=target.hosted_zone_id,
             ChangeBatch={"Comment": f"mlfleet: route {target.env.serving.dns_name} to {to_region}",
                          "Changes": changes})
    return f"PRIMARY {from_region} -> {to_region}"


def write_marker(target: Target, region: str, key: str, body: dict) -> None:
    """An artifact-store write the drills use to measure RPO (no retries: a failed write is data)."""
    target.client("s3", region).put_object(Bucket=target.bucket(region), Key=key, Body=json.dumps(body).encode())


def marker_present(target: Target, region: str, key: str) -> bool:
    try:
        target.client("s3", region).head_object(Bucket=target.bucket(region), Key=key)
        return True
    except Exception:  # noqa: BLE001 - absent or unreachable: either way it is not there now
        return False
