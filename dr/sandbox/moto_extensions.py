"""Simulation added to moto 5.2.5 for what the runbooks need and moto lacks. Everything here is
a simulation with the sandbox's own timings, never a real cloud's (see dr/SANDBOX.md).

Installed in the sandbox process only, by patching moto's response and backend classes:

- RDS `SwitchoverGlobalCluster` / `FailoverGlobalCluster`: the global cluster goes to
  `switching-over` / `failing-over` with a `FailoverState`; after `promotion_s` the sandbox's
  real registry servers (registry_db.py) switch over or fail over, and once they have, the
  writer moves to the target member. A switchover needs the current writer's region up.
- Aurora replication lag: `AuroraGlobalDBRPOLag` datapoints (ms) published to CloudWatch for
  every secondary cluster, with the replay lag measured on its real standby.
- DescribeDBClusters: each registry cluster's `Endpoint`, `ReaderEndpoint` and `Port` are its
  region's real server (127.0.0.1 and its port).
- S3 replication: an object put into a bucket with a replication configuration is copied to
  each rule's destination after `replication_lag_s`, unless its source region is down or its
  key matches a held prefix; `x-amz-replication-status` is PENDING, then COMPLETED on the
  source and REPLICA on the copy.
- Route 53 health checks: a prober requests each check's `IPAddress:Port/ResourcePath` every
  `probe_interval_s`; a check turns unhealthy after `FailureThreshold` consecutive failures
  (and healthy again after as many successes). `GetHealthCheckStatus` reports what it saw.
  A RECOVERY_CONTROL check follows its routing control (ON: healthy), a CALCULATED check counts
  its healthy children against its `HealthThreshold` (`check_healthy`).
- Route 53 ARC (arc.py): requests signed for `route53-recovery-control-config` or
  `route53-recovery-cluster` are served by the sandbox's `ArcWorld` inside the moto server.
- KMS `Sign` with `MessageType=DIGEST` (moto hashes the digest again, so the signature would not
  verify) and KMS's 4096-byte limit on a RAW message: the promotion signs a large manifest by its
  SHA-256 digest, as KMS requires.
- ECR images by digest (`seed_image`): moto computes a digest from a pushed manifest and does
  not replicate, so the runtime image is written into each region's repository with the
  environment's digest, as ECR replication would have left it.
"""
from __future__ import annotations

import logging
import threading
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Callable

from mlfleet.dr.sandbox.arc import ArcWorld
from mlfleet.dr.sandbox.faults import FaultBook

if TYPE_CHECKING:
    from mlfleet.dr.sandbox.registry_db import RegistryDatabases

DEFAULT_ACCOUNT = "123456789012"


@dataclass
class Settings:
    replication_lag_s: float = 0.3
    db_replay_delay_s: float = 0.0
    """`recovery_min_apply_delay` of the registry's standbys: replay runs this far behind the writer."""
    promotion_s: float = 0.3
    probe_interval_s: float = 0.25
    pod_ready_s: float = 0.2
    """How long a new runtime pod of the fake Kubernetes API takes to turn ready (start, load its model)."""
    held_prefixes: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._observers: list[Callable[[set[str]], None]] = []  # not a field: asdict leaves it out

    def observe(self, callback: Callable[[set[str]], None]) -> None:
        """`callback(names)` after each update, so that a setting acts on real servers at once."""
        self._observers.append(callback)

    def update(self, values: dict) -> None:
        for name, value in values.items():
            if not hasattr(self, name) or name.startswith("_"):
                raise ValueError(f"unknown sandbox setting {name!r}")
            if name != "held_prefixes" and float(value) < 0:
                raise ValueError(f"sandbox setting {name} cannot be negative ({value})")
        for name, value in values.items():
            setattr(self, name, list(value) if name == "held_prefixes" else float(value))
        for observer in self._observers:
            observer(set(values))


class Extensions:
    def __init__(self, faults: FaultBook, settings: Settings, account_id: str = DEFAULT_ACCOUNT, *,
                 registry: RegistryDatabases | None = None, registry_clusters: dict[str, str] | None = None):
        """`registry`: the real registry servers; `registry_clusters`: DB cluster id -> its region."""
        self.faults = faults
        self.settings = settings
        self.account_id = account_id
        self.registry = registry
        self.registry_clusters = dict(registry_clusters or {})
        self.promotion_errors: list[str] = []
        """Promotions the real servers refused or failed: the global cluster stays as it was."""
        self.new_writer_listeners: list[Callable[[str], None]] = []
        """Called with the region of the new writer after each promotion (the sandbox's MLflow servers)."""
        self._health: dict[str, dict] = {}
        self.arc = ArcWorld(account_id)
        """Route 53 ARC's clusters, control panels, routing controls and their states."""
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._promotions: list[threading.Timer] = []

    # -- lifecycle -------------------------------------------------------------------------
    def install(self) -> None:
        """Patch moto's classes to answer with this instance (again after another sandbox in the
        same process patched them); the prober and the lag publisher start on the first call only."""
        _install_rds(self)
        _install_s3(self)
        _install_route53(self)
        _install_arc()
        _install_kms()
        if self._threads:
            return
        for target, name in ((self._probe_loop, "health-prober"), (self._lag_loop, "db-lag")):
            thread = threading.Thread(target=target, name=name, daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=5)

    def reset(self) -> None:
        """Health verdicts forgotten; a promotion still pending is cancelled (or finished first)."""
        self._health.clear()
        for timer in self._promotions:
            timer.cancel()
            timer.join(timeout=60)
        self._promotions.clear()
        self.promotion_errors.clear()
        self.arc.clear()

    # -- Route 53 health checks -------------------------------------------------------------
    def health(self, check_id: str) -> dict | None:
        return self._health.get(check_id)

    def health_check(self, check_id: str):
        """moto's HealthCheck object, or None."""
        from moto.route53.models import route53_backends

        try:
            return route53_backends[self.account_id]["global"].health_checks.get(check_id)
        except KeyError:
            return None

    def check_healthy(self, check_id: str, *, depth: int = 0) -> bool | None:
        """Route 53's verdict on a check as its data plane uses it (None: no such check): an
        endpoint check's prober verdict (healthy until probed, as a new check is), a
        RECOVERY_CONTROL check's routing control ON, a CALCULATED check's healthy children at
        least its HealthThreshold (Inverted flips either)."""
        check = self.health_check(check_id)
        if check is None:
            return None
        kind = (check.type_ or "HTTP").upper()
        if kind == "RECOVERY_CONTROL":
            healthy = self.arc.state(getattr(check, "mlfleet_routing_control_arn", "") or "") == "ON"
        elif kind == "CALCULATED":
            children = _child_ids(check.children)
            up = sum(bool(depth < 3 and self.check_healthy(child, depth=depth + 1)) for child in children)
            threshold = int(check.health_threshold if check.health_threshold is not None else len(children))
            healthy = up >= threshold
        else:
            healthy = bool((self._health.get(check_id) or {"healthy": True})["healthy"])
        return not healthy if check.inverted else healthy

    def _probe_loop(self) -> None:
        from moto.route53.models import route53_backends

        while not self._stop.wait(self.settings.probe_interval_s):
            try:
                checks = list(route53_backends[self.account_id]["global"].health_checks.values())
            except KeyError:
                continue
            for check in checks:
                if (check.type_ or "HTTP").upper().startswith(("HTTP", "TCP")):  # the others have no endpoint
                    self._probe(check)

    def _probe(self, check) -> None:
        kind = (check.type_ or "HTTP").upper()
        scheme = "https" if kind.startswith("HTTPS") else "http"
        host = check.ip_address or check.fqdn
        url = f"{scheme}://{host}:{check.port}{check.resource_path or '/'}"
        ok, observed = False, ""
        try:
            with urllib.request.urlopen(url, timeout=min(1.0, self.settings.probe_interval_s * 4)) as response:
                text = response.read(5120).decode("utf-8", "replace")
                ok = 200 <= response.status < 400 and (
                    not kind.endswith("STR_MATCH") or (check.search_string or "") in text)
                observed = f"HTTP Status Code: {response.status}" + ("" if ok else ", search string not found")
        except urllib.error.HTTPError as exc:
            observed = f"HTTP Status Code: {exc.code}"
        except (urllib.error.URLError, OSError) as exc:
            observed = f"connection failed: {getattr(exc, 'reason', exc)}"
        state = self._health.setdefault(check.id, {"healthy": True, "streak": 0})
        threshold = int(check.failure_threshold or 3)
        if ok == state["healthy"]:
            state["streak"] = 0
        else:
            state["streak"] += 1
            if state["streak"] >= threshold:
                state["healthy"], state["streak"] = ok, 0
        state.update(last_ok=ok, observed=observed, checked=datetime.now(timezone.utc), ip=host)

    # -- Aurora replication lag -------------------------------------------------------------
    def _lag_loop(self) -> None:
        """The replay lag measured on each secondary's real standby; none while it (or the writer)
        does not answer, as a region that is down reports nothing."""
        from moto.cloudwatch.models import cloudwatch_backends
        from moto.rds.models import rds_backends

        while not self._stop.wait(max(0.2, self.settings.probe_interval_s)):
            if self.registry is None:
                continue
            try:
                clusters = list(rds_backends[self.account_id]["us-east-1"].global_clusters.values())
            except KeyError:
                continue
            for global_cluster in clusters:
                for member in list(global_cluster.members):
                    region = self.registry_clusters.get(member.db_cluster_identifier)
                    lag = None if region is None else self.registry.replay_lag_s(region)
                    if lag is None:
                        continue
                    cloudwatch_backends[self.account_id][member.region].put_metric_data(
                        "AWS/RDS", [{"MetricName": "AuroraGlobalDBRPOLag", "Value": lag * 1000,
                                     "Unit": "Milliseconds",
                                     "Dimensions": [{"Name": "DBClusterIdentifier",
                                                     "Value": member.db_cluster_identifier}]}])

    # -- the real registry servers ----------------------------------------------------------
    def promote_registry(self, kind: str, target_cluster: str) -> None:
        """What a switchover or failover does to the real servers (in the promotion's thread)."""
        registry = self.registry
        target = self.registry_clusters.get(target_cluster)
        if registry is None or target is None:
            return
        if registry.writer() == target:
            return  # already done (a resumed request)
        if kind == "switchover":
            if not registry.is_running(target):
                registry.rejoin(target)  # an old writer after a failover rejoins first, as Aurora re-adds it
            registry.switchover(target)
            return
        registry.failover(target)

    def rejoin_old_writer(self, old_cluster: str | None) -> None:
        """After a failover, the old writer comes back as a secondary at once if its region is up
        (as Aurora re-adds it); otherwise when its region returns (the sandbox's fault hook)."""
        old = self.registry_clusters.get(old_cluster or "")
        if self.registry is None or old is None or self.faults.region_down(old) or self.registry.is_running(old):
            return
        try:
            self.registry.rejoin(old)
        except Exception as exc:  # noqa: BLE001 - the promotion stands; the old writer stays detached
            logging.getLogger(__name__).warning("the old writer %s did not rejoin: %s", old, exc)
            self.promotion_errors.append(f"rejoin of {old}: {exc}")

    def registry_endpoint(self, cluster_id: str) -> tuple[str, int] | None:
        region = self.registry_clusters.get(cluster_id)
        if self.registry is None or region is None:
            return None
        from mlfleet.dr.sandbox.registry_db import HOST

        return HOST, self.registry.port(region)


def _region_of_arn(arn: str) -> str:
    parts = arn.split(":")
    return parts[3] if len(parts) > 3 else ""


_ACTIVE: list[Extensions] = []
"""The Extensions of the active sandbox: moto's classes are patched once per process, and its
backends are the process's. Several sandboxes in one process (tests) take turns: the one reset
last is active (`Sandbox.reset` re-installs its extensions)."""


def _install_rds_endpoints(ext: Extensions) -> None:
    from moto.rds.models import DBCluster, RDSBackend

    _ACTIVE[:] = [ext]
    if getattr(RDSBackend.create_db_cluster, "_mlfleet", False):
        return
    original_create = RDSBackend.create_db_cluster
    original_endpoint, original_reader = DBCluster.endpoint, DBCluster.reader_endpoint

    def real(cluster) -> tuple[str, int] | None:
        return _ACTIVE[0].registry_endpoint(cluster.db_cluster_identifier) if _ACTIVE else None

    def create_db_cluster(self, kwargs: dict):
        cluster = original_create(self, kwargs)
        found = real(cluster)
        if found is not None:
            cluster.port = found[1]
        return cluster

    def endpoint(self) -> str:
        found = real(self)
        return found[0] if found else original_endpoint.fget(self)  # type: ignore[attr-defined]

    def reader_endpoint(self) -> str:
        found = real(self)
        return found[0] if found else original_reader.fget(self)  # type: ignore[attr-defined]

    create_db_cluster._mlfleet = True  # type: ignore[attr-defined]  # marks the patch as installed
    RDSBackend.create_db_cluster = create_db_cluster  # type: ignore[method-assign]
    DBCluster.endpoint = property(endpoint)  # type: ignore[method-assign, assignment]
    DBCluster.reader_endpoint = property(reader_endpoint)  # type: ignore[method-assign, assignment]


def _install_rds(ext: Extensions) -> None:
    from moto.core.responses import ActionResult
    from moto.rds.exceptions import RDSClientError
    from moto.rds.responses import RDSResponse

    _install_rds_endpoints(ext)

    def switch(self, kind: str) -> ActionResult:
        params = self.params
        global_id = params.get("GlobalClusterIdentifier", "")
        target = params.get("TargetDbClusterIdentifier", "")
        global_cluster = self.global_backend.global_clusters.get(global_id)
        if global_cluster is None:
            raise RDSClientError("GlobalClusterNotFoundFault", f"Global cluster {global_id} not found")
        member = next((m for m in global_cluster.members
                       if target in (m.db_cluster_arn, m.db_cluster_identifier)), None)
        if member is None:
            raise RDSClientError("InvalidParameterValue", f"{target} is not a member of global cluster {global_id}")
        if global_cluster.status != "available":
            raise RDSClientError("InvalidGlobalClusterStateFault",
                                 f"global cluster {global_id} is {global_cluster.status}")
        writer = next((m for m in global_cluster.members if m.is_writer), None)
        if member is writer:
            raise RDSClientError("InvalidParameterValue", f"{target} is already the primary cluster")
        if kind == "switchover" and writer is not None and ext.faults.region_down(writer.region):
            raise RDSClientError("InvalidGlobalClusterStateFault",
                                 f"switchover needs the primary cluster, and {writer.region} is unavailable; "
                                 "use FailoverGlobalCluster with AllowDataLoss")
        if ext.faults.region_down(member.region):
            raise RDSClientError("InvalidDBClusterStateFault",
                                 f"{target} is unavailable: its region {member.region} is down")
        allow_loss = str(params.get("AllowDataLoss", "false")).lower() == "true"
        if kind == "failover" and not allow_loss and str(params.get("Switchover", "false")).lower() != "true":
            raise RDSClientError("InvalidParameterCombination", "set AllowDataLoss or Switchover")
        global_cluster.status = "failing-over" if kind == "failover" else "switching-over"
        global_cluster.failover_state = {
            "Status": "pending", "FromDbClusterArn": writer.db_cluster_arn if writer else "",
            "ToDbClusterArn": member.db_cluster_arn, "IsDataLossAllowed": allow_loss}

        def promote() -> None:
            try:
                ext.promote_registry(kind, member.db_cluster_identifier)
            except Exception as exc:  # noqa: BLE001 - the servers refused: the cluster stays as it was
                logging.getLogger(__name__).warning("registry %s to %s failed: %s", kind, target, exc)
                ext.promotion_errors.append(f"{kind} to {member.db_cluster_identifier}: {exc}")
                global_cluster.status = "available"
                global_cluster.failover_state = None
                return
            if writer is not None:
                writer.is_writer = False
            member.is_writer = True
            global_cluster.status = "available"
            global_cluster.failover_state = None
            if kind == "failover":
                ext.rejoin_old_writer(writer.db_cluster_identifier if writer is not None else None)
            region = ext.registry_clusters.get(member.db_cluster_identifier)
            for listener in ext.new_writer_listeners:
                try:
                    if region is not None:
                        listener(region)
                except Exception as exc:  # noqa: BLE001 - the promotion stands; the listener's part is reported
                    ext.promotion_errors.append(f"after the promotion of {region}: {exc}")

        timer = threading.Timer(ext.settings.promotion_s, promote)
        timer.daemon = True
        ext._promotions.append(timer)
        timer.start()
        return ActionResult({"GlobalCluster": global_cluster})

    # moto has no such actions: they are added to its RDS responses.
    RDSResponse.switchover_global_cluster = lambda self: switch(self, "switchover")  # type: ignore[attr-defined]
    RDSResponse.failover_global_cluster = lambda self: switch(self, "failover")  # type: ignore[attr-defined]


def _install_s3(ext: Extensions) -> None:
    from moto.s3.models import FakeKey, S3Backend

    if getattr(S3Backend.put_object, "_mlfleet", False):
        return
    original_put = S3Backend.put_object
    original_headers = FakeKey.response_dict

    def response_dict(self) -> dict:
        # `response_dict` is a property; read off the class, mypy types it as the getter.
        headers = original_headers.fget(self)  # type: ignore[attr-defined]
        status = getattr(self, "mlfleet_replication_status", None)
        if status:
            headers["x-amz-replication-status"] = status
        return headers

    def put_object(self, bucket_name: str, key_name: str, value: bytes, *args, **kwargs):
        key = original_put(self, bucket_name, key_name, value, *args, **kwargs)
        bucket = self.get_bucket(bucket_name)
        rules = [r for r in (getattr(bucket, "replication", None) or {}).get("Rule", [])
                 if r.get("Status") == "Enabled"]
        destinations = [r["Destination"]["Bucket"].split(":::")[-1] for r in rules
                        if key_name.startswith(_rule_prefix(r))]
        if destinations:
            key.mlfleet_replication_status = "PENDING"  # type: ignore[attr-defined]  # the sandbox's own mark
            _schedule(_ACTIVE[0] if _ACTIVE else ext, self, bucket, key, destinations)
        return key

    # Patched in place: the sandbox's moto server serves these very classes.
    put_object._mlfleet = True  # type: ignore[attr-defined]  # marks the patch as installed
    S3Backend.put_object = put_object  # type: ignore[method-assign]
    FakeKey.response_dict = property(response_dict)  # type: ignore[method-assign, assignment]


def _rule_prefix(rule: dict) -> str:
    filter_ = rule.get("Filter") or {}
    return filter_.get("Prefix") or (filter_.get("And") or {}).get("Prefix") or rule.get("Prefix") or ""


def _schedule(ext: Extensions, backend, bucket, key, destinations: list[str], delay: float | None = None) -> None:
    def replicate() -> None:
        if ext._stop.is_set():
            return
        held = any(key.name.startswith(p) for p in ext.settings.held_prefixes)
        if held or ext.faults.region_down(bucket.region_name):
            _schedule(ext, backend, bucket, key, destinations, delay=0.1)  # waits for the region to return
            return
        if backend.buckets.get(bucket.name) is not bucket:
            return  # the sandbox was reset
        for destination in destinations:
            if destination not in backend.buckets:
                key.mlfleet_replication_status = "FAILED"
                return
            copy = backend.put_object(destination, key.name, key.value, disable_notification=True)
            copy.mlfleet_replication_status = "REPLICA"
        key.mlfleet_replication_status = "COMPLETED"

    timer = threading.Timer(ext.settings.replication_lag_s if delay is None else delay, replicate)
    timer.daemon = True
    timer.start()


def _child_ids(children) -> list[str]:
    """A calculated check's children as moto parsed them: a list, or {"ChildHealthCheck": [...]}."""
    if isinstance(children, dict):
        children = next(iter(children.values()), [])
    if isinstance(children, str):
        return [children]
    return list(children or [])


def _install_route53(ext: Extensions) -> None:
    from moto.core.responses import ActionResult
    from moto.route53.responses import Route53

    original_create = getattr(Route53.create_health_check, "_mlfleet_original", Route53.create_health_check)

    def create_health_check(self) -> ActionResult:
        # moto drops RoutingControlArn: kept on the check for RECOVERY_CONTROL verdicts.
        config = self._get_param("HealthCheckConfig") or {}
        result = original_create(self)
        reference = self._get_param("CallerReference")
        created = next((c for c in self.backend.health_checks.values() if c.caller_reference == reference), None)
        if created is not None and config.get("RoutingControlArn"):
            created.mlfleet_routing_control_arn = config["RoutingControlArn"]
        return result

    create_health_check._mlfleet_original = original_create  # type: ignore[attr-defined]

    def get_health_check_status(self) -> ActionResult:
        check_id = self._get_param("HealthCheckId")
        check = self.backend.get_health_check(check_id)
        state = ext.health(check_id)
        if (check.type_ or "").upper() in ("RECOVERY_CONTROL", "CALCULATED"):
            # Route 53 itself reports no checker observations for these; the sandbox gives its verdict.
            word = "Success" if ext.check_healthy(check_id) else "Failure"
            status, checked, ip = f"{word}: {check.type_.lower()} check", datetime.now(timezone.utc), "127.0.0.1"
        elif state is None:
            status, checked, ip = "Unknown: not probed yet", datetime.now(timezone.utc), "127.0.0.1"
        else:
            # Route 53's verdict after FailureThreshold consecutive results, as seen by one checker.
            word = "Success" if state["healthy"] else "Failure"
            status, checked, ip = f"{word}: {state['observed']}", state["checked"], state["ip"]
        return ActionResult({"HealthCheckObservations": [
            {"Region": "us-east-1", "IPAddress": ip, "StatusReport": {"Status": status, "CheckedTime": checked}}]})

    Route53.get_health_check_status = get_health_check_status  # type: ignore[method-assign]  # patched in place
    Route53.create_health_check = create_health_check  # type: ignore[method-assign]


def _install_arc() -> None:
    """Requests signed for ARC's two services go to the running sandbox's ArcWorld; the moto
    server's dispatcher is patched in place (the server may already be running)."""
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication

    from mlfleet.dr.sandbox import arc
    from mlfleet.dr.sandbox.faults import signing_scope

    original_call = DomainDispatcherApplication.__call__
    if getattr(original_call, "_mlfleet", False):
        return

    def call(self, environ, start_response):
        _, service = signing_scope(environ.get("HTTP_AUTHORIZATION", ""))
        if service in arc.SERVICES and _ACTIVE:
            return _ACTIVE[0].arc.wsgi(service, environ, start_response)
        return original_call(self, environ, start_response)

    call._mlfleet = True  # type: ignore[attr-defined]
    DomainDispatcherApplication.__call__ = call  # type: ignore[method-assign]


def seed_image(region: str, repository: str, digest: str, account_id: str = DEFAULT_ACCOUNT) -> None:
    """The image `digest` in `repository` of `region`, written into moto's ECR backend with that
    digest (moto would compute its own from the manifest). The manifest is a stand-in: nothing in
    the sandbox pulls it."""
    import json

    from moto.ecr.models import ecr_backends

    manifest = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                           "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "size": 0,
                                      "digest": digest}, "layers": []})
    ecr_backends[account_id][region].put_image(repository, manifest, image_tag=None,  # type: ignore[arg-type]
                                               image_manifest_mediatype="application/vnd.oci.image.manifest.v1+json",
                                               digest=digest)


def remove_image(region: str, repository: str, digest: str, account_id: str = DEFAULT_ACCOUNT) -> bool:
    """Take the image out of one region's repository (replication that never arrived, or a
    lifecycle rule that expired it); False if it was not there."""
    from moto.ecr.models import ecr_backends

    repo = ecr_backends[account_id][region].repositories[repository]
    kept = [image for image in repo.images if image.get_image_digest() != digest]
    removed = len(kept) != len(repo.images)
    repo.images = kept
    return removed


def _install_kms() -> None:
    import base64
    import json

    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.asymmetric.utils import Prehashed
    from moto.kms.exceptions import ValidationException
    from moto.kms.responses import KmsResponse

    from mlfleet.dr.kms_signer import KMS_RAW_MESSAGE_LIMIT

    original_sign = KmsResponse.sign
    if getattr(original_sign, "_mlfleet", False):
        return
    digests = {"ECDSA_SHA_256": hashes.SHA256(), "ECDSA_SHA_384": hashes.SHA384(), "ECDSA_SHA_512": hashes.SHA512()}

    def sign(self) -> str:
        message = self._get_param("Message")
        if isinstance(message, str):
            message = message.encode("utf-8")
        if (self._get_param("MessageType") or "RAW") != "DIGEST":
            if len(message) > KMS_RAW_MESSAGE_LIMIT:
                raise ValidationException(f"1 validation error detected: Value at 'message' failed to satisfy "
                                          f"constraint: Member must have length less than or equal to "
                                          f"{KMS_RAW_MESSAGE_LIMIT}")
            return original_sign(self)
        algorithm = self._get_param("SigningAlgorithm")
        key = self.kms_backend.describe_key(self._get_param("KeyId"))
        private = getattr(key.private_key, "private_key", None)
        if algorithm not in digests or not isinstance(private, ec.EllipticCurvePrivateKey):
            raise ValidationException(f"DIGEST signing is simulated for ECC keys only, not {algorithm}")
        if len(message) != digests[algorithm].digest_size:
            raise ValidationException(f"Digest is invalid length for algorithm {algorithm}.")
        signature = private.sign(message, ec.ECDSA(Prehashed(digests[algorithm])))
        return json.dumps({"KeyId": key.arn, "Signature": base64.b64encode(signature).decode(),
                           "SigningAlgorithm": algorithm})

    sign._mlfleet = True  # type: ignore[attr-defined]
    KmsResponse.sign = sign  # type: ignore[method-assign]


def set_signing_key_material(region: str, key_id: str, private_key, account_id: str = DEFAULT_ACCOUNT) -> None:
    """Give a moto ECC key (and its replicas, which share the material) a fixed private key: moto
    draws new material on every create_key, and the sandbox's runtimes trust one public key for
    the sandbox's whole life, across resets."""
    from moto.kms.models import kms_backends

    wrapper = kms_backends[account_id][region].keys[key_id].private_key
    wrapper.private_key = private_key  # type: ignore[attr-defined]  # moto's ECDSAPrivateKey
