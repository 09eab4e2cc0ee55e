"""The sandbox's control API on loopback, guarded by a bearer token from the state file: how a
drill in another process injects a region fault, tunes the simulation and reads the ledger.

    GET  /state                       faults, settings
    POST /faults   {"region", "service": "*", "mode": "503"|"timeout"|"drop", "hang_s"}
    DELETE /faults?region=R           clear one region's faults (all without region); says which were
    POST /settings {"replication_lag_s", "db_replay_delay_s", "promotion_s", "probe_interval_s",
                    "pod_ready_s", "held_prefixes"}
    GET  /ledger?since=N              requests seen by the proxies
    DELETE /images?region=R           remove the runtime image from R's ECR repository
    POST /kubernetes/ready {"region", "ready": n|null}   at most n runtime pods ready in the region
    GET  /registry                    the registry's writer, each region's measured replay lag and state
    POST /registry/{region}/pause     cut the region's standby off the stream (what follows is at risk)
    POST /registry/{region}/resume
"""
from __future__ import annotations

import hmac
import json
import threading
import urllib.error
import urllib.request
from dataclasses import asdict
from http.server import BaseHTTPRequestHandler
from typing import TYPE_CHECKING, Callable
from urllib.parse import parse_qs, urlsplit

from mlfleet.dr.errors import DrUsageError
from mlfleet.dr.sandbox.fake_kubernetes import FakeKubernetes
from mlfleet.dr.sandbox.faults import Fault, FaultBook, Ledger
from mlfleet.dr.sandbox.http_server import LoopbackServer
from mlfleet.dr.sandbox.moto_extensions import Settings
from mlfleet.dr.sandbox.registry_db import RegistryDatabaseError

if TYPE_CHECKING:
    from mlfleet.dr.sandbox.registry_db import RegistryDatabases


class ControlServer:
    def __init__(self, token: str, faults: FaultBook, settings: Settings, ledger: Ledger, *,
                 kubernetes: FakeKubernetes | None = None, remove_image: Callable[[str], bool] | None = None,
                 registry: RegistryDatabases | None = None, registry_errors: Callable[[], list[str]] | None = None):
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format, *args):
                pass

            def _reply(self, status: int, document: object) -> None:
                body = json.dumps(document).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def _route(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                presented = self.headers.get("Authorization", "").removeprefix("Bearer ")
                if not hmac.compare_digest(presented.encode(), token.encode()):
                    return self._reply(401, {"error": "missing or wrong bearer token"})
                split = urlsplit(self.path)
                query = {k: v[0] for k, v in parse_qs(split.query).items()}
                try:
                    body = json.loads(raw) if raw else {}
                    status, document = outer.handle(self.command, split.path, query, body)
                except (ValueError, TypeError, KeyError) as exc:
                    status, document = 400, {"error": str(exc)}
                except RegistryDatabaseError as exc:  # a registry server refused
                    status, document = 409, {"error": str(exc)}
                self._reply(status, document)

            do_GET = do_POST = do_DELETE = _route

        self.token = token
        self.faults, self.settings, self.ledger = faults, settings, ledger
        self.kubernetes, self.remove_image = kubernetes, remove_image
        self.registry, self.registry_errors = registry, registry_errors or (lambda: [])
        self._server = LoopbackServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, name="sandbox-control", daemon=True)

    def handle(self, method: str, path: str, query: dict, body: dict) -> tuple[int, object]:
        if (method, path) == ("GET", "/state"):
            return 200, {"faults": self.faults.as_list(), "settings": asdict(self.settings)}
        if (method, path) == ("POST", "/faults"):
            fault = Fault(region=body["region"], service=body.get("service", "*"), mode=str(body.get("mode", "503")),
                          hang_s=float(body.get("hang_s", 3.0)))
            self.faults.add(fault)
            return 200, asdict(fault)
        if (method, path) == ("DELETE", "/faults"):
            cleared = self.faults.clear(query.get("region"))
            return 200, {"faults": self.faults.as_list(), "cleared": [asdict(f) for f in cleared]}
        if (method, path) == ("POST", "/settings"):
            self.settings.update(body)
            return 200, asdict(self.settings)
        if (method, path) == ("GET", "/ledger"):
            return 200, self.ledger.since(int(query.get("since", 0)))
        if (method, path) == ("DELETE", "/images") and self.remove_image is not None:
            return 200, {"region": query["region"], "removed": self.remove_image(query["region"])}
        if (method, path) == ("POST", "/kubernetes/ready") and self.kubernetes is not None:
            ready = body.get("ready")
            self.kubernetes.hold_ready(body["region"], None if ready is None else int(ready))
            return 200, {"region": body["region"], "ready": ready}
        if path == "/registry" or path.startswith("/registry/"):
            return self._registry(method, path)
        return 404, {"error": f"no route {method} {path}"}

    def _registry(self, method: str, path: str) -> tuple[int, object]:
        if self.registry is None:
            return 404, {"error": "this sandbox has no registry databases"}
        if (method, path) == ("GET", "/registry"):
            return 200, {**self.registry.status(), "errors": self.registry_errors()}
        parts = path.strip("/").split("/")
        if method == "POST" and len(parts) == 3 and parts[2] in ("pause", "resume"):
            region = parts[1]
            if region not in self.registry.regions:
                regions = ", ".join(self.registry.regions)
                return 404, {"error": f"{region} has no registry database (regions: {regions})"}
            (self.registry.pause_replay if parts[2] == "pause" else self.registry.resume_replay)(region)
            return 200, {"region": region, "paused": self.registry.paused(region)}
        return 404, {"error": f"no route {method} {path}"}

    def start(self) -> "ControlServer":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


class ControlClient:
    """Talks to a running sandbox's control API."""

    def __init__(self, url: str, token: str):
        self.url = url
        self._token = token

    def _call(self, method: str, path: str, body: object | None = None, *, timeout_s: float = 10):
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.url + path, data=data, method=method, headers={
            "Authorization": f"Bearer {self._token}", "Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=timeout_s) as response:
                return json.loads(response.read())
        except urllib.error.HTTPError as exc:
            raise DrUsageError(f"sandbox control {method} {path}: {exc.code} {exc.read().decode()[:200]}") from None
        except (urllib.error.URLError, OSError) as exc:
            raise DrUsageError(f"the sandbox at {self.url} does not answer ({exc}); "
                               "is `mlfleet sandbox up` running?") from None

    def inject(self, region: str, *, service: str = "*", mode: str = "503", hang_s: float = 3.0) -> dict:
        return self._call("POST", "/faults", {"region": region, "service": service, "mode": mode, "hang_s": hang_s})

    def clear(self, region: str | None = None) -> list[dict]:
        """Clear one region's faults (all without one); return the faults that were active."""
        # Clearing a region fault starts its registry server again, rewound or re-copied when
        # another region took over meanwhile: that can take more than a plain call's 10 s.
        answer = self._call("DELETE", "/faults" + (f"?region={region}" if region else ""), timeout_s=150)
        return list(answer.get("cleared", []))

    def faults(self) -> list[dict]:
        """The active faults: region, service, mode, hang_s and `since` (when injected, epoch s)."""
        return list(self.state()["faults"])

    def settings(self, **values) -> dict:
        return self._call("POST", "/settings", values)

    def state(self) -> dict:
        return self._call("GET", "/state")

    def ledger(self, since: int = 0) -> list[dict]:
        return self._call("GET", f"/ledger?since={since}")

    def remove_image(self, region: str) -> bool:
        """Remove the runtime image from one region's ECR repository; True if it was there."""
        return self._call("DELETE", f"/images?region={region}")["removed"]

    def registry(self) -> dict:
        """The registry's writer and, per region, its role, measured replay lag and pause."""
        return self._call("GET", "/registry")

    def pause_replay(self, region: str) -> None:
        """Cut the region's standby off the stream: what the writer commits from now on is not on it."""
        self._call("POST", f"/registry/{region}/pause")

    def resume_replay(self, region: str) -> None:
        self._call("POST", f"/registry/{region}/resume")

    def hold_ready(self, region: str, ready: int | None) -> None:
        """At most `ready` runtime pods of each Deployment in `region` turn ready (None: no limit)."""
        self._call("POST", "/kubernetes/ready", {"region": region, "ready": ready})
