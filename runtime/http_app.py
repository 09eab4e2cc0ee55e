"""The REST front end: a plain ASGI application (no framework routing on the hot path).

Routes: the KServe v2 / Triton HTTP protocol under /v2, failover health, model pinning and
Prometheus /metrics. Every error is JSON {"error": "..."} with its HTTP status."""
from __future__ import annotations

import hmac
import json
import logging
import time

from google.protobuf import json_format

from .errors import BadRequest, NotFound, PayloadTooLarge, ServingError
from .health import HEALTHY_TOKEN, failover_health
from .manager import LoadRefused, PinConflict
from .rest_codec import decompress, encode_json, encode_response, parse_request, split_body
from .state import EXTENSIONS, SERVER_NAME, SERVER_VERSION, RuntimeState

log = logging.getLogger("mlfleet.runtime.http")

_JSON = [(b"content-type", b"application/json")]
_TEXT_METRICS = [(b"content-type", b"text/plain; version=0.0.4; charset=utf-8")]


def _dumps(document) -> bytes:
    return encode_json(document).encode()


class MethodNotAllowed(ServingError):
    http_status = 405


class _Unauthorized(ServingError):
    http_status = 401


class _Forbidden(ServingError):
    http_status = 403


class _Conflict(ServingError):
    http_status = 409


class _NotReady(ServingError):
    http_status = 503


class RestApp:
    def __init__(self, state: RuntimeState):
        self.state = state

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return
        try:
            status, headers, body = await self._route(scope, receive)
        except ServingError as exc:
            status, headers, body = exc.http_status, _JSON, _dumps({"error": exc.message})
        except Exception:  # noqa: BLE001 - a bug must not take the connection down silently
            log.exception("unhandled error on %s %s", scope["method"], scope["path"])
            status, headers, body = 500, _JSON, _dumps({"error": "internal server error"})
        await send({"type": "http.response.start", "status": status,
                    "headers": headers + [(b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})

    async def _route(self, scope, receive):
        path, method = scope["path"], scope["method"]
        parts = path.rstrip("/").split("/")[1:] if path != "/" else []
        if parts[:2] == ["v2", "models"] and len(parts) >= 3:
            return await self._model_route(scope, receive, method, parts[2:])
        if parts == ["v2"]:
            self._allow(method, "GET")
            return 200, _JSON, _dumps({"name": SERVER_NAME, "version": SERVER_VERSION, "extensions": EXTENSIONS})
        if parts[:2] == ["v2", "health"] and len(parts) == 3:
            self._allow(method, "GET")
            return self._health(parts[2])
        if parts == ["metrics"]:
            self._allow(method, "GET")
            from .gpu import gpu_report
            return 200, _TEXT_METRICS, self.state.metrics.exposition(gpu_report())
        if parts == ["v2", "repository", "index"]:
            self._allow(method, "POST")
            body = await self._read_body(scope, receive)
            options = self._json_object(body) if body.strip() else {}
            return 200, _JSON, _dumps(self.state.repository_index(ready_only=options.get("ready") is True))
        if parts[:3] == ["v2", "mlfleet", "models"] and len(parts) == 5 and parts[4] == "pin":
            return await self._pin(scope, receive, method, parts[3])
        raise NotFound(f"no route for {path}")

    @staticmethod
    def _allow(method: str, allowed: str) -> None:
        if method != allowed:
            raise MethodNotAllowed(f"method {method} not allowed here; use {allowed}")

    def _health(self, which: str):
        state = self.state
        if which == "live":
            return 200, _JSON, b'{"live":true}'
        if which == "ready":
            if state.ready:
                return 200, _JSON, b'{"ready":true}'
            reason = "shutting down" if state.draining else "models not loaded"
            return 503, _JSON, _dumps({"error": f"not ready: {reason}"})
        if which == "failover":
            healthy, document = failover_health(state.manager, state.bounds, region=state.region,
                                                draining=state.draining)
            body = _dumps(document)
            if not healthy and HEALTHY_TOKEN.encode() in body:
                body = body.replace(HEALTHY_TOKEN.encode(), b"<token>")
            return (200 if healthy else 503), _JSON, body
        raise NotFound(f"no health endpoint {which!r} (live, ready, failover)")

    async def _model_route(self, scope, receive, method, parts):
        model, rest = parts[0], parts[1:]
        version = None
        if rest[:1] == ["versions"]:
            if len(rest) < 2:
                raise NotFound("missing version after /versions")
            version, rest = rest[1], rest[2:]
        action = rest[0] if len(rest) == 1 else None if not rest else "?"
        if action == "infer":
            self._allow(method, "POST")
            return await self._infer(scope, receive, model, version)
        self._allow(method, "GET")
        if action is None:
            return 200, _JSON, _dumps(self._model_metadata(model, version))
        if action == "ready":
            serving = self.state.manager.resolve(model, version)
            if self.state.draining:
                raise _NotReady(f"model {model!r} is shutting down")
            return 200, _JSON, _dumps({"name": model, "version": serving.version, "ready": True})
        if action == "config":
            serving = self.state.manager.resolve(model, version)
            return 200, _JSON, _dumps(json_format.MessageToDict(serving.spec.config, preserving_proto_field_name=True))
        raise NotFound(f"no route for {scope['path']}")

    def _model_metadata(self, model, version) -> dict:
        serving = self.state.manager.resolve(model, version)
        spec = serving.spec
        return {
            "name": model,
            "versions": [serving.version],
            "platform": "pytorch_libtorch",
            "inputs": [{"name": t.name, "datatype": t.datatype, "shape": spec.full_shape(t)} for t in spec.inputs],
            "outputs": [{"name": t.name, "datatype": t.datatype, "shape": spec.full_shape(t)} for t in spec.outputs],
        }

    async def _infer(self, scope, receive, model, version):
        started = time.perf_counter_ns()
        header_length = encoding = None
        for name, value in scope["headers"]:
            if name == b"inference-header-content-length":
                header_length = value.decode("latin-1")
            elif name == b"content-encoding":
                encoding = value.decode("latin-1").strip().lower()
        body = await self._read_body(scope, receive)
        serving = self.state.manager.resolve(model, version)
        stats = serving.stats
        try:
            if encoding:
                body = decompress(body, encoding, self.state.max_body_bytes)
            header, tail = split_body(body, header_length)
            request = parse_request(serving.spec, header, tail)
            results = await serving.batcher.infer(request.inputs, request.rows)
            payload, json_length = encode_response(serving.spec, serving.version, request, results)
        except ServingError as exc:
            stats.record_request(time.perf_counter_ns() - started, ok=False,
                                 server_error=exc.http_status >= 500)
            raise
        stats.record_request(time.perf_counter_ns() - started, ok=True)
        if json_length is None:
            return 200, _JSON, payload
        return 200, [(b"content-type", b"application/octet-stream"),
                     (b"inference-header-content-length", str(json_length).encode())], payload

    async def _read_body(self, scope, receive) -> bytes:
        limit = self.state.max_body_bytes
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

    @staticmethod
    def _json_object(body: bytes) -> dict:
        try:
            document = json.loads(body)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise BadRequest(f"body is not valid JSON: {exc}") from None
        if not isinstance(document, dict):
            raise BadRequest("body must be a JSON object")
        return document

    async def _pin(self, scope, receive, method, model):
        manager = self.state.manager
        if method == "GET":
            serving = manager.resolve(model)
            return 200, _JSON, _dumps({"model": model, "version": serving.version,
                                       "champion": manager.champion(model),
                                       "previous": manager.previous.get(model)})
        self._allow(method, "POST")
        self._authorize(scope)
        request = self._json_object(await self._read_body(scope, receive))
        version = request.get("version")
        if not isinstance(version, str) or not version:
            raise BadRequest("'version' must be a non-empty string")
        reload_manifest = request.get("reload_manifest", False)
        if not isinstance(reload_manifest, bool):
            raise BadRequest("'reload_manifest' must be true or false")
        try:
            pinned, previous = await manager.pin(model, version, reload_manifest=reload_manifest)
        except (LoadRefused, PinConflict) as exc:
            raise _Conflict(str(exc)) from None
        return 200, _JSON, _dumps({"model": model, "version": pinned, "previous": previous})

    def _authorize(self, scope) -> None:
        token = self.state.admin_token
        if token is None:
            raise _Forbidden("model pinning is disabled: start the runtime with --admin-token-file "
                             "or MLFLEET_ADMIN_TOKEN to enable it")
        presented = next((v for n, v in scope["headers"] if n == b"authorization"), b"")
        scheme, _, credential = presented.partition(b" ")
        if scheme.lower() != b"bearer" or not hmac.compare_digest(credential.strip(), token.encode()):
            raise _Unauthorized("missing or invalid bearer token")
