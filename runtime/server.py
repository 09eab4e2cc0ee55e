"""Runs the runtime: loads the champions, serves REST (uvicorn, httptools, uvloop) and gRPC on
one event loop, and drains on SIGTERM: readiness turns false at once, queued and in-flight
requests finish, and the process exits within the grace period. With a management port, a second
REST listener (same loop, same route table) serves the management calls and drains with the rest;
with a metrics port, another serves /metrics alone."""
from __future__ import annotations

import asyncio
import logging
import signal
import socket
import time
from contextlib import contextmanager
from dataclasses import dataclass, field

import uvicorn
from cryptography.hazmat.primitives.asymmetric.ec import EllipticCurvePublicKey

from .data_plane import DataPlane
from .grpc_service import build_grpc_server
from .health import HealthBounds
from .http_app import Listener, RestApp
from .manager import LoadRefused, ModelManager
from .metrics import Metrics
from .shared_memory import SharedMemoryRegistry
from .sources import SourceError, open_source

log = logging.getLogger("mlfleet.runtime")


class StartupError(Exception):
    """The runtime cannot start: bad repository, manifest, model or port. One line, for the user."""


@dataclass(frozen=True)
class ServeOptions:
    model_repository: str
    host: str = "127.0.0.1"
    http_port: int = 8000
    grpc_port: int = 8001  # 0 disables gRPC
    region: str = "local"
    admin_token: str | None = None
    max_body_bytes: int = 64 << 20
    grace_period_s: float = 30.0
    shutdown_delay_s: float = 0.0  # keep serving this long after SIGTERM while endpoints drop the pod
    canary_interval_s: float = 30.0
    torch_threads: int | None = None
    bounds: HealthBounds = field(default_factory=HealthBounds)
    max_queue_depth: int = 256  # admission bound per model (queued or executing requests)
    # None: management routes on the HTTP port (the local sandbox); a port: only there, on
    # management_host (the pod's loopback), and absent from the public HTTP and gRPC ports
    management_port: int | None = None
    management_host: str = "127.0.0.1"
    # None: /metrics on the HTTP port; a port: only there, on `host` (the pod's address, which
    # Prometheus scrapes), and absent from the HTTP port
    metrics_port: int | None = None
    # Triton's system shared memory extension (shared_memory.py); the CLI decides (see `enabled`)
    system_shared_memory: bool = False
    # what manifest.json.sig must verify against; None only with allow_unsigned (local development)
    manifest_public_key: EllipticCurvePublicKey | None = None
    allow_unsigned: bool = False
    # PEM paths (the CLI checks they load as one chain): HTTPS on the HTTP port, TLS on gRPC; both or neither
    tls_cert: str | None = None
    tls_key: str | None = None


class _UvicornServer(uvicorn.Server):
    """uvicorn without its own signal handling: this module owns SIGTERM and the drain order."""

    @contextmanager
    def capture_signals(self):
        yield


def _listen(host: str, port: int, what: str = "HTTP") -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise StartupError(f"cannot listen for {what} on {host}:{port}: {exc.strerror}") from None
    sock.listen(2048)
    sock.setblocking(False)
    return sock


async def serve(options: ServeOptions) -> None:
    import torch

    if options.torch_threads:
        torch.set_num_threads(options.torch_threads)
    loop = asyncio.get_running_loop()
    try:
        source = open_source(options.model_repository)
    except SourceError as exc:
        raise StartupError(str(exc)) from None
    if options.manifest_public_key is None and not options.allow_unsigned:
        raise StartupError("no manifest public key: pass --manifest-public-key PATH "
                           "(or, for local development only, --allow-unsigned)")
    metrics = Metrics()
    manager = ModelManager(source, metrics, manifest_public_key=options.manifest_public_key,
                           canary_interval_s=options.canary_interval_s)
    try:
        await manager.start()
    except LoadRefused as exc:
        await manager.close()
        raise StartupError(f"{source.location}: {exc}") from None
    plane = DataPlane(manager, metrics, region=options.region, bounds=options.bounds,
                      max_queue_depth=options.max_queue_depth,
                      shared_memory=SharedMemoryRegistry() if options.system_shared_memory else None)
    if options.system_shared_memory:
        log.info("system shared memory is served: clients on this host may register /dev/shm regions")

    separate = options.management_port is not None
    wanted = [(Listener.PUBLIC if separate else Listener.COMBINED, options.host, options.http_port, "HTTP")]
    if options.management_port is not None:
        wanted.append((Listener.MANAGEMENT, options.management_host, options.management_port, "management"))
    if options.metrics_port is not None:
        wanted.append((Listener.METRICS, options.host, options.metrics_port, "metrics"))
    listeners: list[tuple[Listener, socket.socket]] = []
    try:
        for listener, host, port, what in wanted:
            listeners.append((listener, _listen(host, port, what)))
    except StartupError:
        for _, sock in listeners:
            sock.close()
        raise
    http_socket = listeners[0][1]
    tls_files = None
    if options.tls_cert and options.tls_key:
        try:
            with open(options.tls_cert, "rb") as cert, open(options.tls_key, "rb") as key:
                tls_files = (cert.read(), key.read())
        except OSError as exc:
            for _, sock in listeners:
                sock.close()
            raise StartupError(f"cannot read the TLS certificate or key: {exc}") from None
    grpc_server = None
    if options.grpc_port:
        try:
            grpc_server = build_grpc_server(plane, f"{options.host}:{options.grpc_port}",
                                            max_message_bytes=options.max_body_bytes,
                                            admin_token=options.admin_token, repository_control=not separate,
                                            tls=tls_files)
        except (OSError, RuntimeError) as exc:
            raise StartupError(f"cannot listen for gRPC on {options.host}:{options.grpc_port}: {exc}") from None
        await grpc_server.start()
    # No X-Forwarded-* rewriting (nothing here reads the client address, and trusting it would be a
    # hole) and no Server header: each is per-request work on the hot path.
    # Each listener is a uvicorn server over a RestApp of the same route table and handlers.
    rest_apps, http_servers, http_tasks = [], [], []
    for listener, sock in listeners:
        # The management listener stays plain HTTP: it listens on the pod's loopback only and is
        # reached through the Kubernetes API's port-forward, which already carries it over TLS. The
        # metrics listener is on the pod's network, as the HTTP port: TLS when that has it.
        tls = tls_files is not None and listener is not Listener.MANAGEMENT
        rest_app = RestApp(plane, admin_token=options.admin_token, max_body_bytes=options.max_body_bytes,
                           listener=listener, metrics_apart=options.metrics_port is not None)
        config = uvicorn.Config(rest_app, http="httptools", lifespan="off", access_log=False,
                                proxy_headers=False, server_header=False, log_level="warning",
                                timeout_graceful_shutdown=max(1, int(options.grace_period_s)),
                                timeout_keep_alive=30,
                                ssl_certfile=options.tls_cert if tls else None,
                                ssl_keyfile=options.tls_key if tls else None)
        http_server = _UvicornServer(config)
        rest_apps.append(rest_app)
        http_servers.append(http_server)
        http_tasks.append(loop.create_task(http_server.serve(sockets=[sock])))

    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    host, port = http_socket.getsockname()[:2]
    bound = {listener: "%s:%s" % sock.getsockname()[:2] for listener, sock in listeners}
    log.info("mlfleet runtime ready: %s %s:%s, grpc %s%s, management %s, metrics %s, region %s",
             "https" if tls_files else "http", host, port, options.grpc_port or "disabled",
             " (tls)" if tls_files and options.grpc_port else "", bound.get(Listener.MANAGEMENT, "on the http port"),
             bound.get(Listener.METRICS, "on the http port"), options.region)
    stopped = loop.create_task(stop.wait())
    await asyncio.wait({stopped, *http_tasks}, return_when=asyncio.FIRST_COMPLETED)

    deadline = time.monotonic() + options.grace_period_s
    plane.draining = True  # readiness and failover health turn false at once
    log.info("draining: readiness is false; finishing accepted requests")
    await asyncio.sleep(min(options.shutdown_delay_s, options.grace_period_s))
    for http_server in http_servers:
        http_server.should_exit = True  # stop accepting; in-flight requests finish
    remaining = max(0.0, deadline - time.monotonic())
    # Shortly before the deadline, what is still in flight (a client stalled mid-body, say) is
    # answered 503, before uvicorn's own timeout would cancel it into a 500; the margin leaves
    # time to close the models and for the interpreter to exit within the grace period.
    margin = min(2.0, remaining / 3)
    shed = loop.call_later(remaining - margin, lambda: [app.shed_in_flight() for app in rest_apps])
    if grpc_server is not None:
        await grpc_server.stop(grace=remaining - margin)
    try:
        await asyncio.wait_for(asyncio.gather(*http_tasks), timeout=max(0.1, deadline - time.monotonic()))
    except asyncio.TimeoutError:
        log.warning("grace period over with requests still in flight")
    shed.cancel()
    await manager.close()
    if plane.shared_memory is not None:
        plane.shared_memory.close()
    stopped.cancel()
    log.info("stopped")
