"""The REST front end: a plain ASGI application that translates HTTP to the data plane and back.

`ROUTES` is the whole surface: the KServe v2 / Triton HTTP protocol under /v2, failover health,
model pinning and Prometheus /metrics. A path that matches a route with another method is a 405,
a path that matches none a 404. Every error is JSON {"error": "..."}, its status chosen from what
the error means (`HTTP_STATUS`).

One `RestApp` serves one `Listener`: `COMBINED` (every route, one port: the local sandbox), or,
with a management port, `PUBLIC` (no management route) and `MANAGEMENT` (management, pin status
and health only) on two listeners built from the same table and handlers. The public listener's
failover health is redacted to status and region (health.public_failover_health); the full
document, reasons included, is the other listeners'. With a metrics port, `METRICS` serves
/metrics alone and the HTTP port's listener no longer does (as Triton's metrics port)."""
from __future__ import annotations

import asyncio
import logging
import re
import time
from dataclasses import dataclass
from enum import Enum
from typing import Any, Awaitable, Callable

from .auth import check_bearer
from .data_plane import DataPlane, check_load_parameters
from .errors import (
    BadRequest,
    ErrorKind,
    MethodNotAllowed,
    NotFound,
    PayloadTooLarge,
    ServingError,
)
from .health import HEALTHY_TOKEN, public_failover_health
from .rest_codec import (
    RestInference,
    json_bytes,
    load_json,
    model_config_json,
    model_metadata_json,
    model_ready_json,
    pin_json,
    repository_index_json,
    server_metadata_json,
)
from .shared_memory import CUDA_NOT_SUPPORTED, SYSTEM_SHARED_MEMORY, SharedMemoryRegistry, register_body, status_json

log = logging.getLogger("mlfleet.runtime.http")

HTTP_STATUS = {
    ErrorKind.INVALID_ARGUMENT: 400,
    ErrorKind.UNAUTHENTICATED: 401,
    ErrorKind.PERMISSION_DENIED: 403,
    ErrorKind.NOT_FOUND: 404,
    ErrorKind.METHOD_NOT_ALLOWED: 405,
    ErrorKind.CONFLICT: 409,
    ErrorKind.TOO_LARGE: 413,
    ErrorKind.INTERNAL: 500,
    ErrorKind.UNAVAILABLE: 503,
    # 503, not 429: the overload is the server's capacity, not this client's quota, and load
    # balancers retry a 503 on another backend
    ErrorKind.OVERLOADED: 503,
}
# how long a shed client should wait before retrying, in seconds
RETRY_AFTER_S = 1

_JSON = [(b"content-type", b"application/json")]
_BINARY = b"application/octet-stream"
_TEXT_METRICS = [(b"content-type", b"text/plain; version=0.0.4; charset=utf-8")]

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]
Response = tuple[int, list[tuple[bytes, bytes]], bytes]


class Surface(Enum):
    """Which listeners serve a route when management has its own port."""
    PUBLIC = "public"          # the data plane: public listener only
    MANAGEMENT = "management"  # changes what serves (authenticated): management listener only
    BOTH = "both"              # health and pin status: read-only (failover health redacted on public)
    METRICS = "metrics"        # Prometheus /metrics: the metrics listener when there is one, else the HTTP port's


class Listener(Enum):
    """What one RestApp serves."""
    COMBINED = "combined"      # every route on one port (no --management-port)
    PUBLIC = "public"          # behind the load balancer: management routes absent (404), health redacted
    MANAGEMENT = "management"  # the pod's loopback: management, pin status and health
    METRICS = "metrics"        # --metrics-port, for in-cluster Prometheus: /metrics and nothing else

    def serves(self, surface: Surface, *, metrics_apart: bool = False) -> bool:
        """metrics_apart: a METRICS listener runs beside this one, and it alone serves /metrics."""
        if surface is Surface.METRICS:
            return self is Listener.METRICS or (not metrics_apart and self in (Listener.COMBINED, Listener.PUBLIC))
        if self is Listener.METRICS:
            return False
        if self is Listener.COMBINED or surface is Surface.BOTH:
            return True
        return surface.value == self.value

    @property
    def diagnostic(self) -> bool:
        """Whether failover health answers with its full document: not where the load balancer
        admits anyone, only on the loopback (management) or where there is one listener (local)."""
        return self in (Listener.COMBINED, Listener.MANAGEMENT)


@dataclass(frozen=True)
class Route:
    method: str
    path: str      # segments in braces are parameters: one non-empty path segment each
    handler: str   # the RestApp method that answers, called with the parameters as keywords
    surface: Surface = Surface.PUBLIC
    extension: str | None = None  # served only when the server lists this extension (server metadata)


# Inference first: it is the hot path, and the table is tried in order.
ROUTES = (
    Route("POST", "/v2/models/{model}/infer", "infer"),
    Route("POST", "/v2/models/{model}/versions/{version}/infer", "infer"),
    Route("GET", "/v2/health/live", "live", Surface.BOTH),
    Route("GET", "/v2/health/ready", "ready", Surface.BOTH),
    Route("GET", "/v2/health/failover", "failover", Surface.BOTH),
    Route("GET", "/v2/health/{endpoint}", "unknown_health", Surface.BOTH),
    Route("GET", "/v2", "server_metadata"),
    Route("GET", "/metrics", "metrics", Surface.METRICS),
    Route("POST", "/v2/repository/index", "repository_index"),
    Route("GET", "/v2/models/stats", "model_statistics"),  # before /v2/models/{model}, as Triton
    Route("GET", "/v2/models/{model}/stats", "model_statistics"),
    Route("GET", "/v2/models/{model}/versions/{version}/stats", "model_statistics"),
    Route("GET", "/v2/models/{model}", "model_metadata"),
    Route("GET", "/v2/models/{model}/versions/{version}", "model_metadata"),
    Route("GET", "/v2/models/{model}/ready", "model_ready"),
    Route("GET", "/v2/models/{model}/versions/{version}/ready", "model_ready"),
    Route("GET", "/v2/models/{model}/config", "model_config"),
    Route("GET", "/v2/models/{model}/versions/{version}/config", "model_config"),
    Route("GET", "/v2/mlfleet/models/{model}/pin", "pin_status", Surface.BOTH),
    Route("POST", "/v2/mlfleet/models/{model}/pin", "pin", Surface.MANAGEMENT),
    Route("POST", "/v2/repository/models/{model}/load", "load_model", Surface.MANAGEMENT),
    Route("POST", "/v2/repository/models/{model}/unload", "unload_model", Surface.MANAGEMENT),
    # Triton's shared memory extensions (shared_memory.py): system memory only when enabled; CUDA
    # answers that it holds no region and refuses to register one
    Route("GET", "/v2/systemsharedmemory/status", "shm_status", extension=SYSTEM_SHARED_MEMORY),
    Route("GET", "/v2/systemsharedmemory/region/{region}/status", "shm_status", extension=SYSTEM_SHARED_MEMORY),
    Route("POST", "/v2/systemsharedmemory/region/{region}/register", "shm_register", extension=SYSTEM_SHARED_MEMORY),
    Route("POST", "/v2/systemsharedmemory/unregister", "shm_unregister", extension=SYSTEM_SHARED_MEMORY),
    Route("POST", "/v2/systemsharedmemory/region/{region}/unregister", "shm_unregister",
          extension=SYSTEM_SHARED_MEMORY),
    Route("GET", "/v2/cudasharedmemory/status", "cuda_shm_status"),
    Route("GET", "/v2/cudasharedmemory/region/{region}/status", "cuda_shm_status"),
    Route("POST", "/v2/cudasharedmemory/region/{region}/register", "cuda_shm_register"),
    Route("POST", "/v2/cudasharedmemory/unregister", "cuda_shm_unregister"),
    Route("POST", "/v2/cudasharedmemory/region/{region}/unregister", "cuda_shm_unregister"),
)


REMEMBERED_ROUTES = 1024
"""Most (path, method) pairs whose route the app remembers."""


def _compile(path: str) -> re.Pattern[str]:
    return re.compile("^" + re.sub(r"\\\{(\w+)\\\}", r"(?P<\1>[^/]+)", re.escape(path)) + "$")


class RestApp:
    def __init__(self, plane: DataPlane, *, admin_token: str | None = None, max_body_bytes: int = 64 << 20,
                 listener: Listener = Listener.COMBINED, metrics_apart: bool = False):
        self.plane = plane
        self.admin_token = admin_token  # None: the management endpoint is disabled
        self.max_body_bytes = max_body_bytes
        self.listener = listener
        self._in_flight: set[asyncio.Task | None] = set()  # requests being answered (see shed_in_flight)
        self._resolved: dict[tuple[str, str], tuple[Callable[..., Awaitable[Response]], dict[str, Any]]] = {}
        self._shedding = False
        # (pattern, {method: handler}, absent methods) in table order; routes of one path share an
        # entry. A route this listener does not serve is left out and its method recorded as absent,
        # so it answers 404 as if it never existed (not 405, which would tell that it exists).
        self._table: list[tuple[re.Pattern[str], dict[str, Callable[..., Awaitable[Response]]], set[str]]] = []
        by_path: dict[str, tuple[dict[str, Callable[..., Awaitable[Response]]], set[str]]] = {}
        extensions = plane.server_metadata().extensions
        for route in ROUTES:
            if route.path not in by_path:
                by_path[route.path] = ({}, set())
            handlers, absent = by_path[route.path]
            if listener.serves(route.surface, metrics_apart=metrics_apart) and (
                    route.extension is None or route.extension in extensions):
                handlers[route.method] = getattr(self, route.handler)
            else:
                absent.add(route.method)
        for path, (handlers, absent) in by_path.items():
            if handlers:
                self._table.append((_compile(path), handlers, absent))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            if scope["type"] == "websocket":
                await _refuse_websocket(scope, receive, send)
            return
        task = asyncio.current_task()
        self._in_flight.add(task)
        try:
            status, headers, body = await self._dispatch(scope, receive)
        except ServingError as exc:
            status, headers, body = HTTP_STATUS[exc.kind], _JSON, json_bytes({"error": exc.message})
            if exc.kind is ErrorKind.OVERLOADED:
                headers = headers + [(b"retry-after", str(RETRY_AFTER_S).encode())]
            elif isinstance(exc, _RouteMethodNotAllowed):  # RFC 9110: a 405 lists what the route serves
                headers = headers + [(b"allow", exc.allow.encode())]
        except Exception:  # a bug must not take the connection down silently
            log.exception("unhandled error on %s %s", scope["method"], scope["path"])
            status, headers, body = 500, _JSON, json_bytes({"error": "internal server error"})
        except asyncio.CancelledError:
            if not self._shedding or task is None:
                raise
            task.uncancel()  # shed_in_flight cancelled it: answer, do not die with a 500
            status, headers = 503, _JSON + [(b"connection", b"close")]
            body = json_bytes({"error": "server shutting down: the grace period ended before this request completed"})
        finally:
            self._in_flight.discard(task)
        await send({"type": "http.response.start", "status": status,
                    "headers": headers + [(b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})

    @property
    def remembered_routes(self) -> int:
        """How many (path, method) pairs skip the route table now."""
        return len(self._resolved)

    def shed_in_flight(self) -> int:
        """End every request still in flight with a 503 (the drain's grace period is ending, e.g. a
        client stalled mid-body): the process then exits in time and no client gets a 500."""
        self._shedding = True
        tasks = [task for task in self._in_flight if task is not None]
        for task in tasks:
            task.cancel()
        return len(tasks)

    async def _dispatch(self, scope: Scope, receive: Receive) -> Response:
        path, method = scope["path"].rstrip("/") or "/", scope["method"]
        # Clients call the same few paths over and over: skip the table scan for those.
        known = self._resolved.get((path, method))
        if known is not None:
            return await known[0](scope, receive, **known[1])
        for pattern, handlers, absent in self._table:
            match = pattern.match(path)
            if match is None:
                continue
            handler = handlers.get(method)
            if handler is None:
                if method in absent:
                    break
                raise _RouteMethodNotAllowed(method, handlers)
            arguments = match.groupdict()
            if len(self._resolved) >= REMEMBERED_ROUTES:  # bounded: paths carry client-chosen names
                self._resolved.clear()
            self._resolved[(path, method)] = (handler, arguments)
            return await handler(scope, receive, **arguments)
        raise NotFound(f"no route for {scope['path']}")

    # -- server ----------------------------------------------------------------------------------
    async def live(self, scope: Scope, receive: Receive) -> Response:
        return 200, _JSON, b'{"live":true}'

    async def ready(self, scope: Scope, receive: Receive) -> Response:
        if self.plane.ready:
            return 200, _JSON, b'{"ready":true}'
        return 503, _JSON, json_bytes({"error": f"not ready: {self.plane.not_ready_reason()}"})

    async def failover(self, scope: Scope, receive: Receive) -> Response:
        healthy, document = self.plane.failover_health()
        body = json_bytes(document if self.listener.diagnostic else public_failover_health(document))
        if not healthy and HEALTHY_TOKEN.encode() in body:  # e.g. inside a model's name
            body = body.replace(HEALTHY_TOKEN.encode(), b"<token>")
        return (200 if healthy else 503), _JSON, body

    async def unknown_health(self, scope: Scope, receive: Receive, endpoint: str) -> Response:
        raise NotFound(f"no health endpoint {endpoint!r} (live, ready, failover)")

    async def server_metadata(self, scope: Scope, receive: Receive) -> Response:
        return 200, _JSON, server_metadata_json(self.plane.server_metadata())

    async def metrics(self, scope: Scope, receive: Receive) -> Response:
        return 200, _TEXT_METRICS, self.plane.prometheus_exposition()

    async def repository_index(self, scope: Scope, receive: Receive) -> Response:
        body = await self._read_body(scope, receive)
        options = _json_object(body) if body.strip() else {}
        return 200, _JSON, repository_index_json(self.plane.repository_index(ready_only=options.get("ready") is True))

    # -- models ----------------------------------------------------------------------------------
    async def model_metadata(self, scope: Scope, receive: Receive, model: str, version: str | None = None) -> Response:
        return 200, _JSON, model_metadata_json(self.plane.model_metadata(model, version))

    async def model_ready(self, scope: Scope, receive: Receive, model: str, version: str | None = None) -> Response:
        return 200, _JSON, model_ready_json(model, self.plane.model_ready(model, version))

    async def model_config(self, scope: Scope, receive: Receive, model: str, version: str | None = None) -> Response:
        return 200, _JSON, model_config_json(self.plane.model_config(model, version))

    async def model_statistics(self, scope: Scope, receive: Receive, model: str | None = None,
                               version: str | None = None) -> Response:
        return 200, _JSON, json_bytes({"model_stats": self.plane.model_statistics(model, version)})

    async def infer(self, scope: Scope, receive: Receive, model: str, version: str | None = None) -> Response:
        started = time.perf_counter_ns()
        header_length = encoding = None
        for name, value in scope["headers"]:
            if name == b"inference-header-content-length":
                header_length = value.decode("latin-1")
            elif name == b"content-encoding":
                encoding = value.decode("latin-1").strip().lower()
        body = await self._read_body(scope, receive)
        codec = RestInference(body, header_length, encoding, self.max_body_bytes, self.plane.shared_memory)
        payload, json_length = await self.plane.infer(model, version, codec.decode, codec.encode, started_ns=started)
        if json_length is None:
            return 200, _JSON, payload
        headers = [(b"content-type", _BINARY), (b"inference-header-content-length", str(json_length).encode())]
        return 200, headers, payload

    # -- pinning ---------------------------------------------------------------------------------
    async def pin_status(self, scope: Scope, receive: Receive, model: str) -> Response:
        return 200, _JSON, pin_json(self.plane.pin_status(model))

    # -- model repository control ---------------------------------------------------------------
    async def load_model(self, scope: Scope, receive: Receive, model: str) -> Response:
        self._authorize(scope)
        body = await self._read_body(scope, receive)
        check_load_parameters(_json_object(body).get("parameters") if body.strip() else None)
        version = await self.plane.load_model(model)
        return 200, _JSON, json_bytes({"name": model, "version": version, "state": "READY"})

    async def unload_model(self, scope: Scope, receive: Receive, model: str) -> Response:
        self._authorize(scope)
        body = await self._read_body(scope, receive)
        if body.strip():
            _json_object(body)  # unload_dependents is accepted: there are no ensembles to follow
        await self.plane.unload_model(model)
        return 200, _JSON, json_bytes({"name": model, "state": "UNAVAILABLE"})

    async def pin(self, scope: Scope, receive: Receive, model: str) -> Response:
        self._authorize(scope)
        request = _json_object(await self._read_body(scope, receive))
        version = request.get("version")
        if not isinstance(version, str) or not version:
            raise BadRequest("'version' must be a non-empty string")
        reload_manifest = request.get("reload_manifest", False)
        if not isinstance(reload_manifest, bool):
            raise BadRequest("'reload_manifest' must be true or false")
        return 200, _JSON, pin_json(await self.plane.pin(model, version, reload_manifest=reload_manifest))

    # -- shared memory (shared_memory.py) -------------------------------------------------------
    def _registry(self) -> SharedMemoryRegistry:
        registry = self.plane.shared_memory
        if registry is None:  # the routes exist only with a registry
            raise NotFound("system shared memory is not served")
        return registry

    async def shm_status(self, scope: Scope, receive: Receive, region: str | None = None) -> Response:
        return 200, _JSON, json_bytes(status_json(self._registry().status(region)))

    async def shm_register(self, scope: Scope, receive: Receive, region: str) -> Response:
        key, offset, byte_size = register_body(_json_object(await self._read_body(scope, receive)))
        self._registry().register(region, key, offset, byte_size)
        return 200, _JSON, b"{}"

    async def shm_unregister(self, scope: Scope, receive: Receive, region: str | None = None) -> Response:
        await self._read_body(scope, receive)  # Triton's body is empty; whatever comes is ignored
        self._registry().unregister(region)
        return 200, _JSON, b"{}"

    async def cuda_shm_status(self, scope: Scope, receive: Receive, region: str | None = None) -> Response:
        if region is not None:
            raise NotFound(f"no CUDA shared memory region {region!r}: {CUDA_NOT_SUPPORTED}")
        return 200, _JSON, b"[]"

    async def cuda_shm_register(self, scope: Scope, receive: Receive, region: str) -> Response:
        raise BadRequest(CUDA_NOT_SUPPORTED)

    async def cuda_shm_unregister(self, scope: Scope, receive: Receive, region: str | None = None) -> Response:
        await self._read_body(scope, receive)
        return 200, _JSON, b"{}"  # none is registered: a no-op, as Triton's unregister of an unknown name

    def _authorize(self, scope: Scope) -> None:
        check_bearer(self.admin_token, next((v for n, v in scope["headers"] if n == b"authorization"), b""))

    # -- bodies ----------------------------------------------------------------------------------
    async def _read_body(self, scope: Scope, receive: Receive) -> bytes:
        limit = self.max_body_bytes
        for name, value in scope["headers"]:
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    raise BadRequest("Content-Length must be an integer") from None
                if declared > limit:
                    raise PayloadTooLarge(f"body of {declared} bytes exceeds the {limit}-byte limit")
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise BadRequest("client disconnected before sending the whole body")
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                raise PayloadTooLarge(f"body exceeds the {limit}-byte limit")
            chunks.append(chunk)
            if not message.get("more_body", False):
                return chunks[0] if len(chunks) == 1 else b"".join(chunks)


class _RouteMethodNotAllowed(MethodNotAllowed):
    """A 405 that knows the methods its route serves on this listener (its `Allow` header)."""

    def __init__(self, method: str, served: dict[str, Any]):
        super().__init__(f"method {method} not allowed here; use {' or '.join(served)}")
        self.allow = ", ".join(served)


async def _refuse_websocket(scope: Scope, receive: Receive, send: Send) -> None:
    """No route speaks WebSocket: close before the handshake, which the server answers with an
    HTTP 403 (uvicorn logs an error for an HTTP response sent through the denial extension)."""
    if (await receive())["type"] == "websocket.connect":
        await send({"type": "websocket.close", "code": 1008})


def _json_object(body: bytes) -> dict:
    document = load_json(body, "body")
    if not isinstance(document, dict):
        raise BadRequest("body must be a JSON object")
    return document
