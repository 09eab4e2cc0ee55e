"""Region faults and the proxies that apply them.

`AwsFaultProxy` sits in front of the moto server. It reads the region and service of each
request from its SigV4 `Credential=` scope (Route 53 and STS sign as us-east-1, so a rule
matches region AND service), records it in a ledger (method, path, action), and either
forwards it or fails it. `ServingProxy` sits in front of one region's runtime and fails with
the same rules under the service name `serving`. A fault is one of:

- `503`: an error answer (an AWS error document, or the runtime's JSON error);
- `timeout`: the request hangs for `hang_s`, then the connection closes without an answer;
- `drop`: the connection closes at once.
"""
from __future__ import annotations

import http.client
import re
import threading
import time
from dataclasses import asdict, dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Callable
from urllib.parse import parse_qs, urlsplit

from mlfleet.dr.sandbox.http_server import LoopbackServer

FAULT_MODES = ("503", "timeout", "drop")
GLOBAL_SERVICES = frozenset({"route53", "sts", "iam", "cloudfront", "organizations"})
"""Signed as us-east-1 but not regional: a whole-region fault (`*`) leaves them up; a rule that
names one of them explicitly still fails it."""
_SCOPE = re.compile(r"Credential=[^/,\s]+/\d{8}/([a-z0-9-]+)/([a-z0-9-]+)/aws4_request")
_HOP_BY_HOP = {"connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade", "te", "trailer"}


@dataclass(frozen=True)
class Fault:
    region: str
    service: str = "*"
    mode: str = "503"
    hang_s: float = 3.0
    since: float = field(default_factory=time.time, compare=False)
    """When it was injected: what `mlfleet faults list` and a refused drill show."""

    def matches(self, region: str, service: str) -> bool:
        if self.service == "*":
            return self.region == region and service not in GLOBAL_SERVICES
        return self.region == region and self.service == service


class FaultBook:
    """The active faults, shared by every proxy and by the simulated control planes."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._faults: list[Fault] = []
        self._region_watchers: list[Callable[[str, bool], None]] = []

    def watch_regions(self, callback: Callable[[str, bool], None]) -> None:
        """`callback(region, down)` when a region goes down (its first whole-region fault) or comes
        back (its last one cleared): what stops and restarts the parts that are real processes."""
        self._region_watchers.append(callback)

    def add(self, fault: Fault) -> None:
        if fault.mode not in FAULT_MODES:
            raise ValueError(f"fault mode {fault.mode!r} is not one of {', '.join(FAULT_MODES)}")
        with self._lock:
            before = self._down()
            self._faults.append(fault)
            after = self._down()
        self._notify(before, after)

    def clear(self, region: str | None = None) -> list[Fault]:
        """Clear one region's faults (every region's without one); return those cleared."""
        with self._lock:
            before = self._down()
            cleared = [f for f in self._faults if region is None or f.region == region]
            self._faults = [f for f in self._faults if not (region is None or f.region == region)]
            after = self._down()
        self._notify(before, after)
        return cleared

    def _down(self) -> set[str]:
        return {f.region for f in self._faults if f.service == "*"}

    def _notify(self, before: set[str], after: set[str]) -> None:
        # outside the lock: a watcher may take seconds (a database restarting) and read the book
        for watcher in self._region_watchers:
            for region in sorted(after - before):
                watcher(region, True)
            for region in sorted(before - after):
                watcher(region, False)

    def match(self, region: str, service: str) -> Fault | None:
        with self._lock:
            return next((f for f in self._faults if f.matches(region, service)), None)

    def region_down(self, region: str) -> bool:
        """A whole-region fault (service `*`): what the simulated control planes honour."""
        return any(f.region == region and f.service == "*" for f in self.active())

    def active(self) -> list[Fault]:
        with self._lock:
            return list(self._faults)

    def as_list(self) -> list[dict]:
        return [asdict(f) for f in self.active()]


class Ledger:
    """Every request that reached a proxy: what the tests count to prove no side effect repeats."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: list[dict] = []

    def record(self, **entry) -> None:
        with self._lock:
            self._entries.append({"seq": len(self._entries), "at": time.time(), **entry})

    def since(self, seq: int = 0) -> list[dict]:
        with self._lock:
            return self._entries[seq:]

    def count(self, **match) -> int:
        return sum(1 for e in self.since() if all(e.get(k) == v for k, v in match.items()))


def signing_scope(authorization: str) -> tuple[str, str]:
    match = _SCOPE.search(authorization or "")
    return (match.group(1), match.group(2)) if match else ("", "")


def _action(method: str, path: str, query: str, body: bytes, headers) -> str:
    """The API action: `Action=` of query protocols, X-Amz-Target of JSON ones, else METHOD path."""
    target = headers.get("X-Amz-Target")
    if target:
        return target.rsplit(".", 1)[-1]
    for source in (query, body.decode("utf-8", "replace") if body and len(body) < 65536 else ""):
        action = parse_qs(source).get("Action")
        if action:
            return action[0]
    return f"{method} {path}"


class _ForwardingHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: "_ProxyServer"

    def log_message(self, format, *args):  # quiet: the ledger is the log
        pass

    def _handle(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        proxy = self.server.proxy
        region, service = proxy.identify(self.headers)
        split = urlsplit(self.path)
        proxy.ledger.record(proxy=proxy.name, region=region, service=service, method=self.command,
                            path=split.path, query=split.query,
                            action=_action(self.command, split.path, split.query, body, self.headers))
        fault = proxy.faults.match(region, service) if region else None
        if fault is not None:
            self._fail(fault, service)
            return
        try:
            status, headers, payload = proxy.forward(self.command, self.path, self.headers, body)
        except OSError as exc:
            self._send(502, [("Content-Type", "application/json")], f'{{"error": "upstream: {exc}"}}'.encode())
            return
        self._send(status, headers, payload)

    def _fail(self, fault: Fault, service: str) -> None:
        if fault.mode == "drop":
            self.close_connection = True
            self.connection.close()
            return
        if fault.mode == "timeout":
            time.sleep(fault.hang_s)
            self.close_connection = True
            self.connection.close()
            return
        if service == "serving":
            body = b'{"error": "region unavailable (sandbox fault)"}'
            self._send(503, [("Content-Type", "application/json")], body)
        else:
            body = (b"<ErrorResponse><Error><Type>Receiver</Type><Code>ServiceUnavailable</Code>"
                    b"<Message>region unavailable (sandbox fault)</Message></Error></ErrorResponse>")
            self._send(503, [("Content-Type", "text/xml")], body)

    def _send(self, status: int, headers, payload: bytes) -> None:
        self.send_response(status)
        for name, value in headers:
            if name.lower() not in _HOP_BY_HOP and name.lower() != "content-length":
                self.send_header(name, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(payload)

    do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = do_PATCH = _handle


class _ProxyServer(LoopbackServer):
    allow_reuse_address = True

    def __init__(self, proxy: "ForwardingProxy"):
        self.proxy = proxy
        super().__init__(("127.0.0.1", 0), _ForwardingHandler)


class ForwardingProxy:
    def __init__(self, name: str, upstream: str | None, faults: FaultBook, ledger: Ledger, *,
                 region: str | None = None, service: str | None = None):
        """`upstream` may be set later (`set_upstream`): a serving proxy's port is needed before
        the runtime behind it starts."""
        self.name = name
        self._host: str | None = None
        self._port: int | None = None
        if upstream:
            self.set_upstream(upstream)
        self.faults = faults
        self.ledger = ledger
        self._region, self._service = region, service
        self._server = _ProxyServer(self)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, name=f"proxy-{name}", daemon=True)

    def set_upstream(self, upstream: str) -> None:
        target = urlsplit(upstream)
        self._host, self._port = target.hostname, target.port

    @property
    def port(self) -> int:
        return self._server.server_address[1]

    def identify(self, headers) -> tuple[str, str]:
        if self._region:
            return self._region, self._service or "*"
        return signing_scope(headers.get("Authorization", ""))

    def forward(self, method: str, path: str, headers, body: bytes):
        if self._host is None or self._port is None:
            raise ConnectionRefusedError("nothing behind this proxy yet")
        connection = http.client.HTTPConnection(self._host, self._port, timeout=60)
        try:
            forwarded = {k: v for k, v in headers.items() if k.lower() not in _HOP_BY_HOP}
            connection.request(method, path, body=body or None, headers=forwarded)
            response = connection.getresponse()
            return response.status, response.getheaders(), response.read()
        finally:
            connection.close()

    def start(self) -> "ForwardingProxy":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
