"""A fake of the part of the Kubernetes API the runbooks use: the runtime's Deployments, their
status and their scale subresource, one HTTP server on loopback for every region under a region
path prefix (`http://127.0.0.1:PORT/<region>` is each region's `Configuration.host`).

    GET   /<region>/apis/apps/v1/namespaces/<ns>/deployments/<name>          Deployment
    GET   /<region>/apis/apps/v1/namespaces/<ns>/deployments/<name>/status   Deployment (its status)
    GET   /<region>/apis/apps/v1/namespaces/<ns>/deployments/<name>/scale    Scale (autoscaling/v1)
    PATCH /<region>/apis/apps/v1/namespaces/<ns>/deployments/<name>/scale    merge or strategic merge patch
    GET   /<region>/api/v1/namespaces/<ns>/pods[?labelSelector=...]            PodList (the Deployments' pods)
    GET   /<region>/api/v1/namespaces/<ns>/pods/<name>                         Pod
    GET   /<region>/api/v1/namespaces/<ns>/secrets/<name>                      Secret
    GET   /<region>/api/v1/namespaces/<ns>/pods/<name>/portforward?ports=P     websocket, v4.channel.k8s.io

Simulation: pods are created at once (`status.replicas` follows the spec), but a new pod is
ready only `pod_ready_s` after the spec changed (it starts and loads its model); a scale-down
is ready at once. `hold_ready(region, n)` keeps at most n pods ready in a region (pods that
never pass their readiness probe). A region fault (the fault book, service `kubernetes` or `*`)
fails that region's API like the fault proxy does. Requests need the bearer token of the state
file and are recorded in the sandbox's ledger.

Pods: each Deployment has `spec` pods, all Running, the first `ready` of them Ready (the rest
report the readiness probe failing), labelled as ServingDeployment labels them. Port-forward is a
real websocket on the same port (the upgrade is taken from http.server and driven by the
`websockets` library's sans-I/O protocol): after the handshake each port gets its data and error
channel (2i, 2i+1), each opened with the 2-byte little-endian port number; the pod's port 8002
(its management listener) is bridged to the region's runtime HTTP port on loopback, where the
sandbox's runtime serves management, so every pod of a region stands for that one process. Any
other port gets the kubelet's "connection refused" on its error channel: the fake forwards only
the management port. The websocket closes when the client closes it or when the runtime closes
its side (as the kubelet does).
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import socket
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler
from urllib.parse import parse_qs

from mlfleet.dr.sandbox.faults import FaultBook, Ledger
from mlfleet.dr.sandbox.http_server import LoopbackServer

SERVICE = "kubernetes"
PATCH_TYPES = ("application/merge-patch+json", "application/strategic-merge-patch+json")
POD_MANAGEMENT_PORT = 8002
"""The only pod port the fake forwards: the runtime's management listener."""
CHANNEL_PROTOCOL = "v4.channel.k8s.io"
RUNTIME_LABELS = {"app.kubernetes.io/name": "mlfleet-runtime"}
"""ServingDeployment's selector labels (plus `app.kubernetes.io/instance: <deployment>`)."""
_CORE = re.compile(r"^/(?P<region>[a-z0-9-]+)/api/v1/namespaces/(?P<ns>[a-z0-9-]+)/(?P<kind>pods|secrets)"
                   r"(?:/(?P<name>[a-z0-9.-]+)(?P<sub>/portforward)?)?$")
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
        self._secrets: dict[tuple[str, str, str], dict] = {}
        self._runtimes: dict[str, int] = {}  # region -> the runtime's HTTP port on loopback
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

        self._server = LoopbackServer(("127.0.0.1", 0), Handler)
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

    def seed_secret(self, region: str, namespace: str, name: str, data: dict[str, str]) -> None:
        """An Opaque Secret (values as given; the API returns them base64-encoded)."""
        with self._lock:
            self._secrets[(region, namespace, name)] = {
                "metadata": {"name": name, "namespace": namespace, "uid": str(uuid.uuid4()),
                             "resourceVersion": "1"},
                "data": {k: base64.b64encode(v.encode()).decode() for k, v in data.items()}}

    def set_runtime(self, region: str, http_port: int) -> None:
        """Where the region's pods' management port leads: its runtime's HTTP port on loopback.
        Kept across `clear` (the runtime processes outlive a reset)."""
        with self._lock:
            self._runtimes[region] = int(http_port)

    def clear(self) -> None:
        with self._lock:
            self._deployments.clear()
            self._held.clear()
            self._secrets.clear()

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
        core = _CORE.match(handler.path.split("?", 1)[0])
        if core is not None:
            return self._serve_core(handler, core)
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

    # -- the core API: pods, Secrets, port-forward -----------------------------------------
    def _serve_core(self, handler: BaseHTTPRequestHandler, match: re.Match) -> None:
        region, namespace, kind, name = match.group("region", "ns", "kind", "name")
        query = parse_qs(handler.path.split("?", 1)[1] if "?" in handler.path else "")
        if handler.command != "GET":
            return self._reply(handler, 405, _status(405, "MethodNotAllowed",
                                                     f"{handler.command} is not supported by the sandbox"))
        if kind == "secrets":
            with self._lock:
                secret = self._secrets.get((region, namespace, name or ""))
            if secret is None:
                return self._reply(handler, 404, _status(404, "NotFound", f'secrets "{name}" not found',
                                                         details={"name": name, "kind": "secrets"}))
            return self._reply(handler, 200, {"kind": "Secret", "apiVersion": "v1", "type": "Opaque", **secret})
        if name is None:
            try:
                selector = _selector(query.get("labelSelector", [""])[0])
            except ValueError as exc:
                return self._reply(handler, 400, _status(400, "BadRequest", f"unable to parse requirement: {exc}"))
            with self._lock:
                pods = [pod for pod in self._pods(region, namespace) if selector(pod["metadata"]["labels"])]
            return self._reply(handler, 200, {"kind": "PodList", "apiVersion": "v1",
                                              "metadata": {"resourceVersion": "1"}, "items": pods})
        with self._lock:
            pod = next((p for p in self._pods(region, namespace) if p["metadata"]["name"] == name), None)
        if pod is None:
            return self._reply(handler, 404, _status(404, "NotFound", f'pods "{name}" not found',
                                                     details={"name": name, "kind": "pods"}))
        if match.group("sub") is None:
            return self._reply(handler, 200, pod)
        ports = [part for value in query.get("ports", []) for part in value.split(",") if part]
        if not ports or not all(p.isdigit() and 0 < int(p) < 65536 for p in ports):
            return self._reply(handler, 400, _status(400, "BadRequest", "invalid port(s) " + ",".join(ports)
                                                     if ports else "at least one port must be specified"))
        if handler.headers.get("Upgrade", "").lower() != "websocket":
            return self._reply(handler, 400, _status(400, "BadRequest", "Upgrade request required"))
        self._port_forward(handler, region, pod, [int(p) for p in ports])

    def _pods(self, region: str, namespace: str) -> list[dict]:
        """Every Deployment's pods in a namespace (call with the lock held)."""
        pods = []
        for (where, ns, _), d in sorted(self._deployments.items()):
            if (where, ns) != (region, namespace):
                continue
            ready = self._ready(region, d)
            template = hashlib.sha256(d.image.encode()).hexdigest()[:10]
            for index in range(d.spec):
                suffix = hashlib.sha256(f"{d.uid}/{index}".encode()).hexdigest()[:5]
                is_ready = index < ready
                condition = {"type": "Ready", "status": "True" if is_ready else "False"}
                if not is_ready:
                    condition.update(reason="ContainersNotReady", message="containers with unready status: [runtime]")
                pods.append({
                    "kind": "Pod", "apiVersion": "v1",
                    "metadata": {"name": f"{d.name}-{template}-{suffix}", "namespace": d.namespace,
                                 "uid": str(uuid.uuid5(uuid.NAMESPACE_URL, f"{d.uid}/{index}")),
                                 "labels": {**self._labels(d), "pod-template-hash": template},
                                 "creationTimestamp": d.created},
                    "spec": {"containers": [{"name": "runtime", "image": d.image}]},
                    "status": {"phase": "Running", "podIP": f"10.0.{index // 250}.{index % 250 + 2}",
                               "conditions": [condition,
                                              {"type": "ContainersReady", "status": condition["status"]}]}})
        return pods

    def _port_forward(self, handler: BaseHTTPRequestHandler, region: str, pod: dict, ports: list[int]) -> None:
        """Take the connection over from http.server: the websocket handshake, then the channels."""
        from websockets.frames import Frame, Opcode
        from websockets.http11 import Request
        from websockets.protocol import State
        from websockets.server import ServerProtocol
        from websockets.typing import Subprotocol

        handler.close_connection = True  # whatever happens, http.server must not read it again
        connection = handler.connection
        protocol = ServerProtocol(subprotocols=[Subprotocol(CHANNEL_PROTOCOL)])
        raw = handler.requestline + "\r\n" + "".join(f"{k}: {v}\r\n" for k, v in handler.headers.items()) + "\r\n"
        protocol.receive_data(raw.encode("latin-1"))
        events = protocol.events_received()
        if not events or not isinstance(events[0], Request):  # http.server parsed it: cannot happen
            return
        response = protocol.accept(events[0])
        protocol.send_response(response)
        sending = threading.Lock()  # the protocol object and the socket are shared with the pumps

        def flush() -> None:
            for chunk in protocol.data_to_send():
                if chunk:
                    connection.sendall(chunk)
                else:  # the protocol says: half-close, it expects no more from us
                    connection.shutdown(socket.SHUT_WR)

        def send(channel: int, data: bytes) -> None:
            with sending:
                if protocol.state is State.OPEN:
                    protocol.send_binary(bytes([channel]) + data)
                    flush()

        with sending:
            flush()
        if response.status_code != 101:
            return
        with self._lock:
            upstream_port = self._runtimes.get(region)
        upstreams: dict[int, socket.socket] = {}
        name = pod["metadata"]["name"]
        for index, port in enumerate(ports):
            data, error = 2 * index, 2 * index + 1
            send(data, port.to_bytes(2, "little"))
            send(error, port.to_bytes(2, "little"))
            try:
                if port != POD_MANAGEMENT_PORT or upstream_port is None:
                    raise ConnectionRefusedError("connect: connection refused")
                upstreams[data] = socket.create_connection(("127.0.0.1", upstream_port), timeout=2)
            except OSError as exc:
                send(error, (f"error forwarding port {port} to pod {name}, uid {pod['metadata']['uid']}: failed to "
                             f"connect to localhost:{port} inside namespace of the pod: {exc}").encode())

        open_upstreams = [len(upstreams)]

        def pump(channel: int, upstream: socket.socket) -> None:
            upstream.settimeout(None)
            try:
                while chunk := upstream.recv(65536):
                    send(channel, chunk)
            except OSError:
                pass
            with sending:
                open_upstreams[0] -= 1
                if open_upstreams[0] == 0 and protocol.state is State.OPEN:
                    protocol.send_close(1000)  # the pod closed every port: the kubelet ends the stream
                    flush()

        for channel, upstream in upstreams.items():
            threading.Thread(target=pump, args=(channel, upstream), name=f"port-forward-{name}", daemon=True).start()
        connection.settimeout(60)
        try:
            while protocol.state is not State.CLOSED:
                chunk = handler.rfile.read1(65536)
                with sending:
                    if chunk:
                        protocol.receive_data(chunk)
                    else:
                        protocol.receive_eof()
                    events = protocol.events_received()
                    flush()
                for frame in events:
                    if (isinstance(frame, Frame) and frame.opcode is Opcode.BINARY and frame.data
                            and frame.data[0] in upstreams):
                        upstreams[frame.data[0]].sendall(frame.data[1:])
                if not chunk:
                    break
        except OSError:
            pass
        finally:
            for upstream in upstreams.values():
                upstream.close()

    @staticmethod
    def _labels(d: _Deployment) -> dict[str, str]:
        return {**RUNTIME_LABELS, "app.kubernetes.io/instance": d.name}

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
                "spec": {"replicas": d.spec},
                "status": {"replicas": d.spec, "selector": ",".join(f"{k}={v}" for k, v in self._labels(d).items())}}

    def _deployment(self, region: str, d: _Deployment) -> dict:
        ready = self._ready(region, d)
        status = {"observedGeneration": d.generation, "replicas": d.spec, "updatedReplicas": d.spec,
                  "readyReplicas": ready, "availableReplicas": ready, "unavailableReplicas": d.spec - ready}
        # Kubernetes leaves zero counts out of a status.
        status = {k: v for k, v in status.items() if v}
        labels = self._labels(d)
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


def _selector(text: str):
    """A label selector's equality-based requirements (`k=v`, `k==v`, `k!=v`, `k`, `!k`) as a predicate."""
    requirements = []
    for part in (p.strip() for p in text.split(",") if p.strip()):
        if "!=" in part:
            key, value = (x.strip() for x in part.split("!=", 1))
            requirements.append(lambda labels, k=key, v=value: labels.get(k) != v)
        elif "=" in part:
            key, value = (x.strip() for x in part.replace("==", "=").split("=", 1))
            requirements.append(lambda labels, k=key, v=value: labels.get(k) == v)
        elif re.fullmatch(r"!?[A-Za-z0-9./_-]+", part):
            key, absent = part.lstrip("!"), part.startswith("!")
            requirements.append(lambda labels, k=key, a=absent: (k in labels) != a)
        else:
            raise ValueError(f"{part!r} (the sandbox takes equality-based selectors only)")
    return lambda labels: all(requirement(labels) for requirement in requirements)
