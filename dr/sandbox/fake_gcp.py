"""A fake Google Cloud endpoint for exactly the calls the GCP actions make, over HTTP on
loopback, reached by the real google-cloud-compute, google-cloud-container and
google-cloud-storage clients (REST transport) and by authenticated REST for Cloud SQL. Operations
finish at once (status DONE), except a registry promotion (below); a region fault from the fault
book fails calls for that region with 503.

Cloud Storage is seen through a location: `/r/<region>` before a path (what the sandbox gives each
region's clients as their endpoint) reads and writes that region's copy of a dual-region bucket. A
write lands in its location and reaches the bucket's other data location after the settings'
`replication_lag_s` (turbo replication; held while the writing location is down); a read through a
data location sees only what has reached it. A read without a location sees any copy. A `storage`
fault fails only the faulted location's view.

A Cloud SQL promotion (`promoteReplica`, a DMS job's `promote`) calls `on_promote(region)` in a
thread, which makes the sandbox's PostgreSQL standby the writer; the operation stays RUNNING (and
the instance a replica, state MAINTENANCE) until that returns, then DONE. The former primary becomes
a replica of the new one, as the sandbox's registry re-adds the old writer as a standby.

The aggregated accelerator-type list spans every zone, so a region fault does not fail it:
each zone of a `compute`-faulted region comes back with an UNREACHABLE warning instead of its
types, and is named in `unreachables`. `accelerator_page_size` makes the fake page its answer
(zones per page) even when the client sends no `maxResults`.

    GKE      GET  /v1/projects/P/locations/L/clusters/C/nodePools/N
             POST /v1/projects/P/locations/L/clusters/C/nodePools/N:setAutoscaling   {"autoscaling"}
             GET  /v1/projects/P/locations/L/operations/O
    Compute  GET|PATCH /compute/v1/projects/P/regions/R/backendServices/B
             GET  /compute/v1/projects/P/regions/R/operations/O
             GET  /compute/v1/projects/P/aggregated/acceleratorTypes   ?maxResults&pageToken
    SQL      GET|PATCH /v1/projects/P/instances/I                  {"settings"}
             POST /v1/projects/P/instances/I/promoteReplica
             GET  /v1/projects/P/operations/O
    DMS      GET  /v1/projects/P/locations/L/migrationJobs/J
             POST /v1/projects/P/locations/L/migrationJobs/J:promote
    Storage  GET  /storage/v1/b/B                                    (bucket metadata)
             GET  /storage/v1/b/B/o?prefix&pageToken&maxResults      (list objects)
             GET  /storage/v1/b/B/o/O                               (object metadata)
             GET  /download/storage/v1/b/B/o/O?alt=media            (an object's bytes)
             POST /upload/storage/v1/b/B/o?uploadType=multipart|media&name
             DELETE /storage/v1/b/B/o/O
    KMS      GET  /v1/projects/P/locations/L/keyRings/R/cryptoKeys/K/cryptoKeyVersions/V/publicKey
"""
from __future__ import annotations

import base64
import hashlib
import itertools
import json
import re
import threading
import time
from datetime import datetime, timezone
from email.parser import BytesParser
from email.policy import HTTP
from http.server import BaseHTTPRequestHandler
from typing import Callable
from urllib.parse import parse_qs, unquote, urlsplit

from mlfleet.dr.sandbox.faults import FaultBook, Ledger
from mlfleet.dr.sandbox.http_server import LoopbackServer

_PROJECT = r"^/v1/projects/(?P<p>[^/]+)"
_LOCATION = _PROJECT + r"/locations/(?P<l>[^/]+)"
_VIEW = re.compile(r"^/r/(?P<view>[a-z0-9-]+)(?P<rest>/.*)$")
_COMPUTE_REGION = r"^/compute/v1/projects/(?P<p>[^/]+)/regions/(?P<l>[^/]+)"
_NODE_POOL = _LOCATION + r"/clusters/(?P<c>[^/]+)/nodePools/(?P<n>[^/:]+)"
_MIGRATION_JOB = _LOCATION + r"/migrationJobs/(?P<j>[^/:]+)"
_ROUTES = [(service, verb, re.compile(pattern)) for service, verb, pattern in [
    ("gke", "GET", _NODE_POOL + "$"),
    ("gke", "POST", _NODE_POOL + ":setAutoscaling$"),
    ("gke", "GET", _LOCATION + r"/operations/(?P<o>[^/]+)$"),
    ("compute", "GET", _COMPUTE_REGION + r"/backendServices/(?P<b>[^/]+)$"),
    ("compute", "PATCH", _COMPUTE_REGION + r"/backendServices/(?P<b>[^/]+)$"),
    ("compute", "GET", _COMPUTE_REGION + r"/operations/(?P<o>[^/]+)$"),
    ("compute", "GET", r"^/compute/v1/projects/(?P<p>[^/]+)/aggregated/(?P<agg>acceleratorTypes)$"),
    ("sqladmin", "GET", _PROJECT + r"/instances/(?P<i>[^/]+)$"),
    ("sqladmin", "POST", _PROJECT + r"/instances/(?P<i>[^/]+)/promoteReplica$"),
    ("sqladmin", "PATCH", _PROJECT + r"/instances/(?P<i>[^/]+)$"),
    ("sqladmin", "GET", _PROJECT + r"/operations/(?P<o>[^/]+)$"),
    ("storage", "GET", r"^/storage/v1/b/(?P<b>[^/]+)$"),
    ("storage", "GET", r"^/storage/v1/b/(?P<b>[^/]+)/o$"),
    ("storage", "GET", r"^(?P<dl>/download)?/storage/v1/b/(?P<b>[^/]+)/o/(?P<obj>[^/]+)$"),
    ("storage", "DELETE", r"^/storage/v1/b/(?P<b>[^/]+)/o/(?P<obj>[^/]+)$"),
    ("storage", "POST", r"^/upload/storage/v1/b/(?P<b>[^/]+)/o$"),
    ("cloudkms", "GET", _LOCATION + r"/keyRings/(?P<kr>[^/]+)/cryptoKeys/(?P<k>[^/]+)"
                        r"/cryptoKeyVersions/(?P<v>[^/]+)/publicKey$"),
    ("datamigration", "GET", _MIGRATION_JOB + "$"),
    ("datamigration", "POST", _MIGRATION_JOB + ":promote$"),
]]


def _error(code: int, status: str, message: str) -> tuple[int, dict]:
    """A Google API error: the HTTP status and the JSON body the clients read."""
    return code, {"error": {"code": code, "message": message, "status": status}}


def _hashes(data: bytes) -> str:
    """The `x-goog-hash` header Cloud Storage sends with media: CRC32C and MD5, base64."""
    import google_crc32c

    crc = base64.b64encode(google_crc32c.value(data).to_bytes(4, "big")).decode()
    md5 = base64.b64encode(hashlib.md5(data).digest()).decode()
    return f"crc32c={crc},md5={md5}"


def _region(location: str) -> str:
    """us-central1-a (a zone) and us-central1 (a region) are both in us-central1."""
    return re.sub(r"-[a-z]$", "", location)


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _multipart(content_type: str, raw: bytes) -> tuple[dict, bytes]:
    """The JSON metadata and the media of a `uploadType=multipart` body (multipart/related)."""
    message = BytesParser(policy=HTTP).parsebytes(f"Content-Type: {content_type}\r\n\r\n".encode() + raw)
    parts = [part for part in message.iter_parts()]
    if len(parts) != 2:
        raise ValueError(f"a multipart upload has 2 parts, not {len(parts)}")
    head, media = parts[0].get_payload(decode=True), parts[1].get_payload(decode=True)
    metadata = json.loads(head if isinstance(head, bytes) and head else b"{}")
    return metadata, media if isinstance(media, bytes) else b""


class FakeGcp:
    def __init__(self, faults: FaultBook, ledger: Ledger, *, replication_lag_s: Callable[[], float] = lambda: 0.3):
        self.faults, self.ledger = faults, ledger
        self.replication_lag_s = replication_lag_s
        self.on_promote: Callable[[str], None] | None = None
        """`on_promote(region)`: make the region's registry server the writer (the sandbox's);
        None promotes at once, in the documents only."""
        self.public_keys: dict[str, str] = {}
        """Cloud KMS key name (projects/…/cryptoKeys/K) -> its version's public key (PEM)."""
        self._object_meta: dict[tuple[str, str], dict] = {}
        """(bucket, object) -> generation, updated, and the locations holding it (None: all)."""
        self._pending: list[tuple[float, str, str, int, str]] = []
        """Replication still to do: (due, bucket, object, generation, the location written)."""
        self._operations: dict[str, dict] = {}
        self._stopping = threading.Event()
        self.node_pools: dict[tuple, dict] = {}
        self.backend_services: dict[tuple, dict] = {}
        self.sql_instances: dict[tuple, dict] = {}
        self.migration_jobs: dict[tuple, dict] = {}
        self.buckets: dict[str, dict] = {}
        self.objects: dict[tuple[str, str], bytes] = {}
        self.accelerator_types: dict[str, dict[str, list[dict]]] = {}
        """project -> zone -> AcceleratorType documents; a zone with none is listed empty."""
        self.accelerator_page_size: int | None = None
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format, *args):
                pass

            def _route(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                split = urlsplit(self.path)
                query = {k: v[-1] for k, v in parse_qs(split.query).items()}
                if split.path.startswith(("/upload/", "/r/")) and "/upload/" in split.path:
                    body: dict = {"_raw": raw, "_content_type": self.headers.get("Content-Type", "")}
                else:
                    try:
                        body = json.loads(raw or b"{}") if raw else {}
                    except ValueError:
                        body = {}
                status, document = outer.handle(self.command, split.path, body, query)
                headers = {"Content-Type": "application/json"}
                if isinstance(document, bytes):  # an object's media, with the hashes GCS sends
                    payload = document
                    headers = {"Content-Type": "application/octet-stream", "x-goog-hash": _hashes(payload)}
                else:
                    payload = b"" if status == 204 else json.dumps(document).encode()
                self.send_response(status)
                for name, value in {**headers, "Content-Length": str(len(payload))}.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST = do_PATCH = do_DELETE = _route

        self._server = LoopbackServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, name="fake-gcp", daemon=True)
        self._replicator = threading.Thread(target=self._replicate_loop, name="fake-gcs-replication", daemon=True)

    # -- seeding (what a deployment would have created) -----------------------------------
    def add_node_pool(self, project: str, location: str, cluster: str, pool: str, total_min: int,
                      total_max: int, location_policy: str = "BALANCED") -> None:
        """A pool under the autoscaler, with total limits across its zones (as mlfleet makes them)."""
        self.node_pools[(project, location, cluster, pool)] = {
            "name": pool, "status": "RUNNING", "autoscaling": {
                "enabled": True, "totalMinNodeCount": total_min, "totalMaxNodeCount": total_max,
                "locationPolicy": location_policy}}

    def put_node_pool(self, project: str, location: str, cluster: str, document: dict) -> None:
        """A node pool as GKE's REST API describes it (`name`, `config`, `locations`, `autoscaling`)."""
        self.node_pools[(project, location, cluster, document["name"])] = {"status": "RUNNING", **document}

    def put_object(self, bucket: str, name: str, data: bytes, *, location: str | None = None) -> None:
        """An object in every copy of the bucket, or (`location`) written there and replicated."""
        with self._lock:
            self._write(bucket, name, bytes(data), location)

    def object_locations(self, bucket: str, name: str) -> set[str] | None:
        """Where the object is (upper-case locations); None: in every copy."""
        meta = self._object_meta.get((bucket, name))
        if (bucket, name) not in self.objects:
            return set()
        return None if meta is None or meta["locations"] is None else set(meta["locations"])

    def region_view(self, region: str) -> str:
        """The endpoint that reads and writes `region`'s copy of a bucket (google-cloud-storage's
        api_endpoint, or STORAGE_EMULATOR_HOST)."""
        return f"{self.url}/r/{region}"

    def clear_storage(self) -> None:
        with self._lock:
            self.objects.clear()
            self._object_meta.clear()
            self._pending.clear()

    def put_bucket(self, document: dict) -> None:
        """A bucket as Cloud Storage's JSON API describes it (`name`, `rpo`, `iamConfiguration`, …)."""
        self.buckets[document["name"]] = {"kind": "storage#bucket", **document}

    def add_backend_service(self, project: str, region: str, name: str, groups: list[str]) -> None:
        self.backend_services[(project, region, name)] = {
            "name": name, "fingerprint": "f0", "backends": [{"group": g, "capacityScaler": 0.0} for g in groups]}

    def add_sql_instance(self, project: str, name: str, *, replica_of: str | None, region: str,
                         availability: str = "REGIONAL", deletion_protection: bool = True) -> None:
        self.sql_instances[(project, name)] = {
            "name": name, "region": region, "state": "RUNNABLE",
            "instanceType": "READ_REPLICA_INSTANCE" if replica_of else "CLOUD_SQL_INSTANCE",
            "settings": {"availabilityType": availability, "deletionProtectionEnabled": deletion_protection},
            **({"masterInstanceName": replica_of} if replica_of else {})}

    def add_migration_job(self, project: str, region: str, job: str, destination: str) -> None:
        """A DMS continuous job replicating into `destination`, a zonal, unprotected replica
        (what DMS creates) of an external primary."""
        self.add_sql_instance(project, destination, replica_of=f"{destination}-source", region=region,
                              availability="ZONAL", deletion_protection=False)
        self.migration_jobs[(project, region, job)] = {
            "name": f"projects/{project}/locations/{region}/migrationJobs/{job}", "state": "RUNNING",
            "phase": "CDC", "type": "CONTINUOUS", "destinationInstance": destination}

    def add_accelerator_type(self, project: str, zone: str, name: str, description: str,
                             max_cards: int) -> None:
        self.accelerator_types.setdefault(project, {}).setdefault(zone, []).append({
            "kind": "compute#acceleratorType", "name": name, "description": description,
            "zone": f"{self.url}/compute/v1/projects/{project}/zones/{zone}",
            "maximumCardsPerInstance": max_cards,
            "selfLink": f"{self.url}/compute/v1/projects/{project}/zones/{zone}/acceleratorTypes/{name}"})

    def add_zone(self, project: str, zone: str) -> None:
        """A zone that offers no accelerator: listed in the aggregated answer with a warning."""
        self.accelerator_types.setdefault(project, {}).setdefault(zone, [])

    # -- requests ----------------------------------------------------------------------------
    def handle(self, method: str, path: str, body: dict, query: dict | None = None) -> tuple[int, dict | bytes]:
        view = None
        if (viewed := _VIEW.match(path)) is not None:
            view, path = viewed.group("view"), viewed.group("rest")
        route = next(((service, match) for service, verb, pattern in _ROUTES
                      if verb == method and (match := pattern.fullmatch(path))), None)
        if route is None:
            return _error(404, "NOT_FOUND", f"no fake for {method} {path}")
        service, match = route
        params = match.groupdict()
        params["view"] = view
        params["q"] = query or {}
        region = (view if service == "storage" else None) or _region(params.get("l", "")) or self._sql_region(params)
        if service == "cloudkms":
            region = ""  # a multi-region key ring (us, eu, asia): no one region's fault takes it
        self.ledger.record(proxy="gcp", region=region, service=service, method=method, path=path,
                           action=f"{method} {path}")
        if region and self.faults.match(region, service):
            return _error(503, "UNAVAILABLE", "region unavailable (sandbox fault)")
        with self._lock:
            if "agg" in params:
                return self._aggregated_accelerator_types(params["p"], query or {})
            return getattr(self, f"_{service}")(method, path, params, body)

    def _sql_region(self, params: dict) -> str:
        instance = self.sql_instances.get((params.get("p"), params.get("i")))
        if instance is None and params.get("o") in self._operations:
            return self._operations[params["o"]].get("_region", "")
        return instance["region"] if instance else ""

    def _operation(self, kind: str, target: str, location: str) -> dict:
        number = next(self._ids)
        return {"name": f"operation-{number}", "operationType": kind, "status": "DONE", "targetLink": target,
                "selfLink": f"{self.url}/operations/operation-{number}", "zone": location}

    def _gke(self, method: str, path: str, p: dict, body: dict) -> tuple[int, dict]:
        if "o" in p:
            return 200, {"name": p["o"], "status": 3}  # container.v1 Operation.Status.DONE
        key = (p["p"], p["l"], p["c"], p["n"])
        pool = self.node_pools.get(key)
        if pool is None:
            return _error(404, "NOT_FOUND", f"node pool {p['n']} not found")
        if method == "GET":
            return 200, pool
        limits = body.get("autoscaling") or {}
        low, high = int(limits.get("totalMinNodeCount", -1)), int(limits.get("totalMaxNodeCount", -1))
        if not limits.get("enabled") or not 0 <= low <= high:
            return 400, {"error": {"code": 400, "message": "autoscaling needs enabled and 0 <= totalMin <= totalMax",
                                   "status": "INVALID_ARGUMENT"}}
        # The client sends enums as numbers (enum-encoding=int): keep the pool's policy by name.
        policy = limits.get("locationPolicy", pool["autoscaling"]["locationPolicy"])
        policy = {1: "BALANCED", 2: "ANY"}.get(policy, policy)
        pool["autoscaling"] = {"enabled": True, "totalMinNodeCount": low, "totalMaxNodeCount": high,
                               "locationPolicy": policy}
        # A container.v1 Operation, DONE (3) at once.
        return 200, {"name": f"operation-{next(self._ids)}", "status": 3, "targetLink": path}

    def _compute(self, method: str, path: str, p: dict, body: dict) -> tuple[int, dict]:
        if "o" in p:
            return 200, {"name": p["o"], "status": "DONE"}
        key = (p["p"], p["l"], p["b"])
        service = self.backend_services.get(key)
        if service is None:
            return _error(404, "NOT_FOUND", f"backend service {p['b']} not found")
        if method == "GET":
            return 200, service
        if body.get("fingerprint") not in (None, service["fingerprint"]):
            return _error(412, "FAILED_PRECONDITION", "fingerprint mismatch")
        if "backends" in body:
            service["backends"] = body["backends"]
        service["fingerprint"] = f"f{next(self._ids)}"
        return 200, self._operation("patch", path, p["l"])

    def _aggregated_accelerator_types(self, project: str, query: dict) -> tuple[int, dict]:
        zones = self.accelerator_types.get(project)
        if zones is None:
            return 404, {"error": {"code": 404, "message": f"The resource 'projects/{project}' was not found",
                                   "status": "NOT_FOUND"}}
        down = {z for z in zones if self.faults.match(_region(z), "compute")}
        names = sorted(zones)
        start = int(query.get("pageToken") or 0)
        size = min(int(query.get("maxResults") or 500), self.accelerator_page_size or 500)
        page = names[start:start + size]
        items: dict[str, dict] = {}  # scope → its accelerator types, or why it has none
        for zone in page:
            scope = f"zones/{zone}"
            if zone in down:
                items[scope] = {"warning": {"code": "UNREACHABLE", "message": f"Scope '{scope}' is unreachable.",
                                            "data": [{"key": "scope", "value": scope}]}}
            elif zones[zone]:
                items[scope] = {"acceleratorTypes": zones[zone]}
            else:
                items[scope] = {"warning": {"code": "NO_RESULTS_ON_PAGE",
                                            "message": f"There are no results for scope '{scope}' on this page.",
                                            "data": [{"key": "scope", "value": scope}]}}
        link = f"projects/{project}/aggregated/acceleratorTypes"
        document = {"kind": "compute#acceleratorTypeAggregatedList", "id": link, "items": items,
                    "selfLink": f"{self.url}/compute/v1/{link}"}
        if start + size < len(names):
            document["nextPageToken"] = str(start + size)
        unreachable = [f"zones/{z}" for z in page if z in down]
        if unreachable:
            document["unreachables"] = unreachable
        return 200, document

    def _sqladmin(self, method: str, path: str, p: dict, body: dict) -> tuple[int, dict]:
        if p.get("o"):
            operation = self._operations.get(p["o"])
            if operation is None:
                return _error(404, "NOT_FOUND", f"operation {p['o']} not found")
            return 200, {k: v for k, v in operation.items() if not k.startswith("_")}
        instance = self.sql_instances.get((p["p"], p["i"]))
        if instance is None:
            return _error(404, "NOT_FOUND", f"instance {p['i']} not found")
        if method == "GET":
            return 200, instance
        if method == "PATCH":
            instance["settings"].update(body.get("settings", {}))
            return 200, {"kind": "sql#operation", "name": f"operation-{next(self._ids)}", "status": "DONE",
                         "operationType": "UPDATE"}
        if instance["instanceType"] != "READ_REPLICA_INSTANCE" or instance["state"] != "RUNNABLE":
            return _error(400, "FAILED_PRECONDITION", f"{p['i']} is not a read replica")
        return 200, self._promote(p["p"], instance, "PROMOTE_REPLICA")

    def _promote(self, project: str, instance: dict, kind: str, job: dict | None = None) -> dict:
        """Start promoting `instance`: RUNNING until the sandbox's standby takes writes, then DONE."""
        name = f"operation-{next(self._ids)}"
        operation = {"kind": "sql#operation", "name": name, "status": "RUNNING", "operationType": kind,
                     "targetId": instance["name"], "insertTime": _now(), "_region": instance["region"]}
        self._operations[name] = operation
        instance["state"] = "MAINTENANCE"
        old = instance.get("masterInstanceName")

        def finish() -> None:
            error = None
            try:
                if self.on_promote is not None:
                    self.on_promote(instance["region"])
            except Exception as exc:  # noqa: BLE001 - the operation reports it, as Cloud SQL's would
                error = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            with self._lock:
                instance["state"] = "RUNNABLE"
                if error is None:
                    instance["instanceType"] = "CLOUD_SQL_INSTANCE"
                    instance.pop("masterInstanceName", None)
                    former = self.sql_instances.get((project, old or ""))
                    if former is not None:  # the old primary follows the new one (see the docstring)
                        former.update(instanceType="READ_REPLICA_INSTANCE", masterInstanceName=instance["name"])
                    if job is not None:
                        job.update(state="COMPLETED", phase="PROMOTE_COMPLETED")
                else:
                    operation["error"] = {"errors": [{"code": "INTERNAL_ERROR", "message": error}]}
                    if job is not None:
                        job.update(state="RUNNING", phase="CDC")
                operation.update(status="DONE", endTime=_now())

        threading.Thread(target=finish, name=f"promote-{instance['name']}", daemon=True).start()
        return {k: v for k, v in operation.items() if not k.startswith("_")}

    def _storage(self, method: str, path: str, p: dict, body: dict) -> tuple[int, dict | bytes]:
        name = unquote(p.get("obj") or "")
        bucket = self.buckets.get(p["b"])
        if bucket is None and not (p.get("obj") and (p["b"], name) in self.objects and method == "GET"):
            return 404, {"error": {"code": 404, "message": f"The specified bucket does not exist: {p['b']}"}}
        location = self._location(p["b"], p.get("view"))
        if method == "POST":
            return self._upload(p["b"], p["q"], body, location)
        if p.get("obj") is None and path.endswith("/o"):
            return 200, self._list(p["b"], p["q"], location)
        if p.get("obj") is None:
            return 200, bucket or {}
        if not self._visible(p["b"], name, location):
            return 404, {"error": {"code": 404, "message": f"No such object: {p['b']}/{name}"}}
        if method == "DELETE":
            self.objects.pop((p["b"], name), None)
            self._object_meta.pop((p["b"], name), None)
            return 204, {}
        if p.get("dl") or p["q"].get("alt") == "media":
            return 200, self.objects[(p["b"], name)]
        return 200, self._resource(p["b"], name)

    def _location(self, bucket: str, view: str | None) -> str | None:
        """The copy a view reads and writes: its region when that is one of the bucket's data locations."""
        if view is None:
            return None
        locations = (self.buckets.get(bucket) or {}).get("customPlacementConfig", {}).get("dataLocations") or []
        return view.upper() if view.upper() in {loc.upper() for loc in locations} else None

    def _visible(self, bucket: str, name: str, location: str | None) -> bool:
        if (bucket, name) not in self.objects:
            return False
        meta = self._object_meta.get((bucket, name))
        return location is None or meta is None or meta["locations"] is None or location in meta["locations"]

    def _write(self, bucket: str, name: str, data: bytes, location: str | None) -> dict:
        meta = self._object_meta.get((bucket, name)) or {"generation": 0}
        generation = max(int(time.time() * 1e6), meta["generation"] + 1)
        self.objects[(bucket, name)] = data
        self._object_meta[(bucket, name)] = {"generation": generation, "updated": _now(),
                                             "locations": None if location is None else {location}}
        if location is not None:
            self._pending.append((time.monotonic() + self.replication_lag_s(), bucket, name, generation, location))
        return self._resource(bucket, name)

    def _resource(self, bucket: str, name: str) -> dict:
        import google_crc32c

        data = self.objects[(bucket, name)]
        meta = self._object_meta.get((bucket, name)) or {"generation": 1, "updated": _now()}
        return {"kind": "storage#object", "bucket": bucket, "name": name, "size": str(len(data)),
                "generation": str(meta["generation"]), "metageneration": "1", "updated": meta["updated"],
                "timeCreated": meta["updated"], "storageClass": "STANDARD",
                "md5Hash": base64.b64encode(hashlib.md5(data).digest()).decode(),
                "crc32c": base64.b64encode(google_crc32c.value(data).to_bytes(4, "big")).decode(),
                "id": f"{bucket}/{name}/{meta['generation']}", "contentType": "application/octet-stream"}

    def _upload(self, bucket: str, query: dict, body: dict, location: str | None) -> tuple[int, dict]:
        kind = query.get("uploadType")
        raw = body.get("_raw", b"")
        if kind == "media":
            name = query.get("name")
            data = raw
        elif kind == "multipart":
            try:
                metadata, data = _multipart(body.get("_content_type", ""), raw)
            except ValueError as exc:
                return _error(400, "INVALID_ARGUMENT", f"multipart upload: {exc}")
            name = metadata.get("name") or query.get("name")
        else:
            return _error(400, "INVALID_ARGUMENT", f"the sandbox takes uploadType media or multipart, not {kind}")
        if not name:
            return _error(400, "INVALID_ARGUMENT", "an upload needs the object's name")
        return 200, self._write(bucket, name, data, location)

    def _list(self, bucket: str, query: dict, location: str | None) -> dict:
        prefix = query.get("prefix", "")
        names = sorted(n for (b, n) in self.objects if b == bucket and n.startswith(prefix)
                       and self._visible(b, n, location))
        start = int(query.get("pageToken") or 0)
        size = int(query.get("maxResults") or 1000)
        document: dict = {"kind": "storage#objects",
                          "items": [self._resource(bucket, n) for n in names[start:start + size]]}
        if start + size < len(names):
            document["nextPageToken"] = str(start + size)
        return document

    def _replicate_loop(self) -> None:
        """Turbo replication between a dual-region bucket's copies, held while the writer's location is down."""
        while not self._stopping.wait(0.05):
            now = time.monotonic()
            with self._lock:
                kept = []
                for due, bucket, name, generation, written in self._pending:
                    meta = self._object_meta.get((bucket, name))
                    if meta is None or meta["generation"] != generation:
                        continue  # overwritten or deleted: the newer write replicates itself
                    if due > now or self.faults.match(written.lower(), "storage"):
                        kept.append((due, bucket, name, generation, written))
                        continue
                    locations = (self.buckets.get(bucket) or {}).get("customPlacementConfig", {}) \
                        .get("dataLocations") or []
                    meta["locations"] = {loc.upper() for loc in locations} | {written}
                self._pending = kept

    def pending_replication(self, bucket: str) -> list[str]:
        """Objects of the bucket not yet in every data location."""
        with self._lock:
            return sorted({name for _, b, name, _, _ in self._pending if b == bucket})

    def _cloudkms(self, method: str, path: str, p: dict, body: dict) -> tuple[int, dict]:
        key = f"projects/{p['p']}/locations/{p['l']}/keyRings/{p['kr']}/cryptoKeys/{p['k']}"
        pem = self.public_keys.get(key)
        if pem is None:
            return _error(404, "NOT_FOUND", f"{key} not found")
        return 200, {"pem": pem, "algorithm": "EC_SIGN_P256_SHA256", "name": f"{key}/cryptoKeyVersions/{p['v']}"}

    def _datamigration(self, method: str, path: str, p: dict, body: dict) -> tuple[int, dict]:
        job = self.migration_jobs.get((p["p"], p["l"], p["j"]))
        if job is None:
            return _error(404, "NOT_FOUND", f"migration job {p['j']} not found")
        if method == "GET":
            return 200, job
        if job["state"] != "RUNNING":
            return _error(400, "FAILED_PRECONDITION", f"{p['j']} is {job['state']}")
        # The destination stops following the source and takes writes once its server is promoted.
        job["phase"] = "PROMOTE_IN_PROGRESS"
        instance = self.sql_instances[(p["p"], job["destinationInstance"])]
        operation = self._promote(p["p"], instance, "PROMOTE", job=job)
        return 200, {"name": f"projects/{p['p']}/locations/{p['l']}/operations/{operation['name']}", "done": False}

    def start(self) -> "FakeGcp":
        self._thread.start()
        self._replicator.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        self._server.shutdown()
        self._server.server_close()
