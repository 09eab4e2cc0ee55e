"""A fake Google Cloud endpoint for exactly the calls the GCP actions make, over HTTP on
loopback, reached by the real google-cloud-compute and google-cloud-container clients (REST
transport) and by authenticated REST for Cloud SQL. Operations finish at once (status DONE);
a region fault from the fault book fails calls for that region with 503.

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
    DMS      GET  /v1/projects/P/locations/L/migrationJobs/J
             POST /v1/projects/P/locations/L/migrationJobs/J:promote
    Storage  GET  /storage/v1/b/B                                    (bucket metadata)
             GET  /download/storage/v1/b/B/o/O?alt=media            (an object's bytes)
"""
from __future__ import annotations

import base64
import hashlib
import itertools
import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlsplit

from mlfleet.dr.sandbox.faults import FaultBook, Ledger

_PROJECT = r"^/v1/projects/(?P<p>[^/]+)"
_LOCATION = _PROJECT + r"/locations/(?P<l>[^/]+)"
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
    ("storage", "GET", r"^/storage/v1/b/(?P<b>[^/]+)$"),
    ("storage", "GET", r"^(/download)?/storage/v1/b/(?P<b>[^/]+)/o/(?P<obj>[^/]+)$"),
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


class FakeGcp:
    def __init__(self, faults: FaultBook, ledger: Ledger):
        self.faults, self.ledger = faults, ledger
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
                body = json.loads(self.rfile.read(length) or b"{}") if length else {}
                split = urlsplit(self.path)
                query = {k: v[-1] for k, v in parse_qs(split.query).items()}
                status, document = outer.handle(self.command, split.path, body, query)
                headers = {"Content-Type": "application/json"}
                if isinstance(document, bytes):  # an object's media, with the hashes GCS sends
                    payload = document
                    headers = {"Content-Type": "application/octet-stream", "x-goog-hash": _hashes(payload)}
                else:
                    payload = json.dumps(document).encode()
                self.send_response(status)
                for name, value in {**headers, "Content-Length": str(len(payload))}.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST = do_PATCH = _route

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, name="fake-gcp", daemon=True)

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

    def put_object(self, bucket: str, name: str, data: bytes) -> None:
        self.objects[(bucket, name)] = bytes(data)

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
    def handle(self, method: str, path: str, body: dict, query: dict | None = None) -> tuple[int, dict]:
        route = next(((service, match) for service, verb, pattern in _ROUTES
                      if verb == method and (match := pattern.fullmatch(path))), None)
        if route is None:
            return _error(404, "NOT_FOUND", f"no fake for {method} {path}")
        service, match = route
        params = match.groupdict()
        region = _region(params.get("l", "")) or self._sql_region(params)
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
        instance = self.sql_instances.get((p["p"], p["i"]))
        if instance is None:
            return _error(404, "NOT_FOUND", f"instance {p['i']} not found")
        if method == "GET":
            return 200, instance
        if method == "PATCH":
            instance["settings"].update(body.get("settings", {}))
            return 200, {"kind": "sql#operation", "name": f"operation-{next(self._ids)}", "status": "DONE",
                         "operationType": "UPDATE"}
        if instance["instanceType"] != "READ_REPLICA_INSTANCE":
            return _error(400, "FAILED_PRECONDITION", f"{p['i']} is not a read replica")
        instance["instanceType"] = "CLOUD_SQL_INSTANCE"
        instance.pop("masterInstanceName", None)
        return 200, {"kind": "sql#operation", "name": f"operation-{next(self._ids)}", "status": "DONE",
                     "operationType": "PROMOTE_REPLICA"}

    def _storage(self, method: str, path: str, p: dict, body: dict) -> tuple[int, dict | bytes]:
        if "obj" in p:
            data = self.objects.get((p["b"], unquote(p["obj"])))
            if data is None:
                return 404, {"error": {"code": 404, "message": f"No such object: {p['b']}/{unquote(p['obj'])}"}}
            return 200, data
        bucket = self.buckets.get(p["b"])
        if bucket is None:
            return 404, {"error": {"code": 404, "message": f"The specified bucket does not exist: {p['b']}"}}
        return 200, bucket

    def _datamigration(self, method: str, path: str, p: dict, body: dict) -> tuple[int, dict]:
        job = self.migration_jobs.get((p["p"], p["l"], p["j"]))
        if job is None:
            return _error(404, "NOT_FOUND", f"migration job {p['j']} not found")
        if method == "GET":
            return 200, job
        if job["state"] != "RUNNING":
            return _error(400, "FAILED_PRECONDITION", f"{p['j']} is {job['state']}")
        # Promotion completes at once here: the destination stops replicating and takes writes.
        job["state"] = "COMPLETED"
        instance = self.sql_instances[(p["p"], job["destinationInstance"])]
        instance["instanceType"] = "CLOUD_SQL_INSTANCE"
        instance.pop("masterInstanceName", None)
        return 200, {"name": f"projects/{p['p']}/locations/{p['l']}/operations/operation-{next(self._ids)}",
                     "done": True}

    def start(self) -> "FakeGcp":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
