"""A fake of the part of the Kubernetes API the runbooks use: the runtime's Deployments, their
status and their scale subresource, one HTTP server on loopback for every region under a region
path prefix (`http://127.0.0.1:PORT/<region>` is each region's `Configuration.host`).

    GET   /<region>/apis/apps/v1/namespaces/<ns>/deployments/<name>          Deployment
    GET   /<region>/apis/apps/v1/namespaces/<ns>/deployments/<name>/status   Deployment (its status)
    GET   /<region>/apis/apps/v1/namespaces/<ns>/deployments/<name>/scale    Scale (autoscaling/v1)
    PATCH /<region>/apis/apps/v1/namespaces/<ns>/deployments/<name>/scale    merge or strategic merge patch

Simulation: pods are created at once (`status.replicas` follows the spec), but a new pod is
ready only `pod_ready_s` after the spec changed (it starts and loads its model); a scale-down
is ready at once. `hold_ready(region, n)` keeps at most n pods ready in a region (pods that
never pass their readiness probe). A region fault (the fault book, service `kubernetes` or `*`)
fails that region's API like the fault proxy does. Requests need the bearer token of the state
file and are recorded in the sandbox's ledger.
"""
from __future__ import annotations

import hmac
import json
import re
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from mlfleet.dr.sandbox.faults import FaultBook, Ledger

SERVICE = "kubernetes"
PATCH_TYPES = ("application/merge-patch+json", "application/strategic-merge-patch+json")
_PATH = re.compile(r"^/(?P<region>[a-z0-9-]+)/apis/apps/v1/namespaces/(?P<ns>[a-z0-9-]+)/deployments/"
                   r"(?P<name>[a-z0-9.-]+)(?P<sub>/status|/scale)?$")


@dataclass
class _Deployment:
    namespace: str
    name: str
    image: str
    spec: int
    ready_before: int       # pods ready when the spec last changed
    changed_at: float       # time.monotonic() of that change
    uid: str = field(default_factory=lambda: str(uuid.uuid4()))
    created: str = field(default_factory=lambda: datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"))
    generation: int = 1
    resource_version: int = 1


class FakeKubernetes:
    def __init__(self, token: str, faults: FaultBook, ledger: Ledger, settings):
        """`settings` is the sandbox's Settings (its `pod_ready_s` is read on every request)."""
        self.token = token
        self.faults, self.ledger, self.settings = faults, ledger, settings
        self._lock = threading.Lock()
        self._deployments: dict[tuple[str, str, str], _Deployment] = {}
        self._held: dict[str, int] = {}
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format, *args):  # quiet: the ledger is the log
                pass

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                outer._serve(self, body)

            do_GET = do_PATCH = do_PUT = do_POST = do_DELETE = _handle

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, name="fake-kubernetes", daemon=True)

    # -- lifecycle and seeding ---------------------------------------------------------------
    def start(self) -> "FakeKubernetes":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def host(self, region: str) -> str:
        """The region's API server, as `kubernetes.client.Configuration.host` takes it."""
        return f"{self.url}/{region}"

    def seed(self, region: str, namespace: str, name: str, *, replicas: int, image: str) -> None:
        """A Deployment as its stack creates it, every pod ready."""
        with self._lock:
            self._deployments[(region, namespace, name)] = _Deployment(
                namespace, name, image, spec=replicas, ready_before=replicas, changed_at=0.0)

    def clear(self) -> None:
        with self._lock:
            self._deployments.clear()
            self._held.clear()

    def hold_ready(self, region: str, ready: int | None) -> None:
        """At most `ready` pods of each Deployment in `region` pass readiness (None: no limit)."""
        with self._lock:
            if ready is None:
                self._held.pop(region, None)
            else:
                self._held[region] = int(ready)

    def replicas(self, region: str, namespace: str, name: str) -> tuple[int, int]:
        """(spec, ready) of one Deployment, for tests."""
        with self._lock:
            deployment = self._deployments[(region, namespace, name)]
            return deployment.spec, self._ready(region, deployment)

    # -- the API ---------------------------------------------------------------------------
    def _ready(self, region: str, d: _Deployment) -> int:
        settled = time.monotonic() - d.changed_at >= float(self.settings.pod_ready_s)
        ready = d.spec if settled else min(d.ready_before, d.spec)
        return min(ready, self._held.get(region, ready))

    def _serve(self, handler: BaseHTTPRequestHandler, body: bytes) -> None:
        match = _PATH.match(handler.path.split("?", 1)[0])
        region = match.group("region") if match else handler.path.strip("/").split("/", 1)[0]
        self.ledger.record(proxy=SERVICE, region=region, service=SERVICE, method=handler.command,
                           path=handler.path.split("?", 1)[0], action=f"{handler.command} {handler.path}")
        fault = self.faults.match(region, SERVICE)
        if fault is not None:
            if fault.mode == "timeout":
                time.sleep(fault.hang_s)
            if fault.mode in ("timeout", "drop"):
                handler.close_connection = True
                handler.connection.close()
                return
            return self._reply(handler, 503, _status(503, "ServiceUnavailable", "region unavailable (sandbox fault)"))
        presented = handler.headers.get("Authorization", "").removeprefix("Bearer ")
        if not hmac.compare_digest(presented.encode(), self.token.encode()):
            return self._reply(handler, 401, _status(401, "Unauthorized", "Unauthorized"))
        if match is None:
            return self._reply(handler, 404, _status(404, "NotFound", "the server could not find the requested "
                                                                     "resource"))
        sub = match.group("sub") or ""
        allowed = ("GET", "PATCH") if sub == "/scale" else ("GET",)
        if handler.command not in allowed:
            return self._reply(handler, 405, _status(405, "MethodNotAllowed",
                                                     f"{handler.command} is not supported by the sandbox"))
        with self._lock:
            deployment = self._deployments.get((region, match.group("ns"), match.group("name")))
            if deployment is None:
                return self._reply(handler, 404, _status(
                    404, "NotFound", f'deployments.apps "{match.group("name")}" not found',
                    details={"name": match.group("name"), "group": "apps", "kind": "deployments"}))
            if handler.command == "PATCH":
                error = self._patch(region, deployment, handler.headers.get("Content-Type", ""), body)
                if error is not None:
                    return self._reply(handler, error[0], error[1])
            document = (self._scale(region, deployment) if sub == "/scale"
                        else self._deployment(region, deployment))
        self._reply(handler, 200, document)

    def _patch(self, region: str, d: _Deployment, content_type: str, body: bytes) -> tuple[int, dict] | None:
        media = content_type.split(";", 1)[0].strip().lower()
        if media not in PATCH_TYPES:
            return 415, _status(415, "UnsupportedMediaType", f"the body of the request was in an unknown format - "
                                                             f"accepted media types include: {', '.join(PATCH_TYPES)}")
        try:
            patch = json.loads(body or b"{}")
            replicas = (patch.get("spec") or {}).get("replicas", d.spec)
        except (ValueError, AttributeError) as exc:
            return 400, _status(400, "BadRequest", f"error decoding patch: {exc}")
        if not isinstance(replicas, int) or isinstance(replicas, bool) or replicas < 0:
            return 422, _status(422, "Invalid", f"Scale.autoscaling \"{d.name}\" is invalid: spec.replicas: "
                                                f"Invalid value: {replicas!r}: must be greater than or equal to 0")
        if replicas != d.spec:
            d.ready_before = self._ready(region, d)
            d.spec, d.changed_at = replicas, time.monotonic()
            d.generation += 1
        d.resource_version += 1
        return None

    def _metadata(self, d: _Deployment) -> dict:
        return {"name": d.name, "namespace": d.namespace, "uid": d.uid, "resourceVersion": str(d.resource_version),
                "creationTimestamp": d.created}

    def _scale(self, region: str, d: _Deployment) -> dict:
        return {"kind": "Scale", "apiVersion": "autoscaling/v1", "metadata": self._metadata(d),
                "spec": {"replicas": d.spec}, "status": {"replicas": d.spec, "selector": f"app={d.name}"}}

    def _deployment(self, region: str, d: _Deployment) -> dict:
        ready = self._ready(region, d)
        status = {"observedGeneration": d.generation, "replicas": d.spec, "updatedReplicas": d.spec,
                  "readyReplicas": ready, "availableReplicas": ready, "unavailableReplicas": d.spec - ready}
        # Kubernetes leaves zero counts out of a status.
        status = {k: v for k, v in status.items() if v}
        labels = {"app": d.name}
        return {"kind": "Deployment", "apiVersion": "apps/v1",
                "metadata": {**self._metadata(d), "generation": d.generation, "labels": labels},
                "spec": {"replicas": d.spec, "selector": {"matchLabels": labels},
                         "template": {"metadata": {"labels": labels},
                                      "spec": {"containers": [{"name": "runtime", "image": d.image}]}}},
                "status": status}

    @staticmethod
    def _reply(handler: BaseHTTPRequestHandler, code: int, document: dict) -> None:
        payload = json.dumps(document).encode()
        handler.send_response(code)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(payload)))
        handler.end_headers()
        handler.wfile.write(payload)


def _status(code: int, reason: str, message: str, details: dict | None = None) -> dict:
    """A `Status` object, the body of every error the API server returns."""
    document = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "message": message,
                "reason": reason, "code": code}
    if details:
        document["details"] = details
    return document
