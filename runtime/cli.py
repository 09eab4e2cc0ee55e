"""`mlfleet serve` (and `python -m mlfleet.runtime`): serve a model repository.

Heavy imports (torch, uvicorn, grpc) happen inside the handler so that registering the
subcommand costs nothing."""
from __future__ import annotations

import argparse
import errno
import logging
import os
import ssl
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ec import EllipticCurvePublicKey

ADMIN_TOKEN_ENV = "MLFLEET_ADMIN_TOKEN"

log = logging.getLogger("mlfleet.runtime")


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"port {value} is outside 0..65535")
    return value


def _positive(kind):
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a {kind.__name__}") from None
        if value <= 0:
            raise argparse.ArgumentTypeError(f"{text} must be positive")
        return value
    return parse


def add_serve_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model-repository", required=True, metavar="DIR_OR_URL",
                        help="Triton-layout model repository with manifest.json: a folder, s3://bucket/prefix "
                             "or gs://bucket/prefix")
    parser.add_argument("--http-port", type=_port, default=8000, help="REST port (default 8000)")
    parser.add_argument("--grpc-port", type=_port, default=8001, help="gRPC port (default 8001; 0 disables)")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--region", default=os.environ.get("MLFLEET_REGION", "local"),
                        help="region reported by failover health (default $MLFLEET_REGION or 'local')")
    parser.add_argument("--admin-token-file", metavar="PATH",
                        help=f"bearer token for the pinning endpoint (or ${ADMIN_TOKEN_ENV}); without one, "
                             "pinning is disabled")
    parser.add_argument("--admin-token-optional", action="store_true",
                        help="a missing --admin-token-file (an optional Secret not created) disables pinning "
                             "instead of failing the start; an empty or unreadable file still fails")
    parser.add_argument("--management-port", type=_port, default=None, metavar="PORT",
                        help="serve pinning and model load/unload only on this port (and answer them 404 / "
                             "UNIMPLEMENTED on the public ports); default: on the HTTP port")
    parser.add_argument("--management-host", default=None, metavar="HOST",
                        help="address of the management listener (default 127.0.0.1: the pod's loopback)")
    parser.add_argument("--metrics-port", type=_port, default=None, metavar="PORT",
                        help="serve Prometheus /metrics only on this port, on --host (and answer it 404 on the "
                             "HTTP port); default: on the HTTP port")
    parser.add_argument("--manifest-public-key", metavar="PATH",
                        help="PEM public key (EC P-256, SubjectPublicKeyInfo) that manifest.json.sig must verify "
                             "against before anything is loaded")
    parser.add_argument("--allow-unsigned", action="store_true",
                        help="local development only: load manifest.json without verifying its signature "
                             "(a WARNING at every start)")
    parser.add_argument("--max-body-bytes", type=_positive(int), default=64 << 20,
                        help="largest request body accepted (default 64 MiB)")
    parser.add_argument("--grace-period", type=_positive(float), default=30.0, metavar="SECONDS",
                        help="on SIGTERM, exit within this many seconds (default 30)")
    parser.add_argument("--shutdown-delay", type=float, default=0.0, metavar="SECONDS",
                        help="on SIGTERM, keep serving this long with readiness false before closing "
                             "listeners (default 0)")
    parser.add_argument("--canary-interval", type=_positive(float), default=30.0, metavar="SECONDS",
                        help="how often each model's golden canary runs (default 30)")
    parser.add_argument("--canary-max-age", type=_positive(float), default=None, metavar="SECONDS",
                        help="failover health fails when no canary passed this recently "
                             "(default 3 x canary interval)")
    parser.add_argument("--max-error-rate", type=float, default=0.05,
                        help="failover health fails above this server-error ratio over 60 s (default 0.05)")
    parser.add_argument("--max-queue-depth", type=_positive(int), default=256,
                        help="admission bound: inference requests queued or executing per model; beyond it "
                             "requests are shed with 503 and Retry-After (gRPC UNAVAILABLE) (default 256)")
    parser.add_argument("--system-shared-memory", choices=("auto", "on", "off"), default="auto",
                        help="Triton's system shared memory extension (regions under /dev/shm of this host); "
                             "auto (default): on only when --host is loopback and there is no --management-port")
    parser.add_argument("--tls-cert", metavar="PATH",
                        help="PEM certificate (chain) of this server: HTTPS on the HTTP port and TLS on the gRPC "
                             "port (needs --tls-key; the management listener stays plain)")
    parser.add_argument("--tls-key", metavar="PATH", help="PEM private key of --tls-cert (unencrypted)")
    parser.add_argument("--torch-threads", type=_positive(int), default=None,
                        help="torch intra-op threads (default: torch's choice)")


def register(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser("serve", help="serve a model repository over KServe v2 REST and gRPC",
                                   description=__doc__.splitlines()[0])
    add_serve_arguments(parser)
    parser.set_defaults(handler=run_serve)
    return parser


def _admin_token(args) -> str | None:
    if args.admin_token_optional and not args.admin_token_file:
        raise ValueError("--admin-token-optional needs --admin-token-file")
    if args.admin_token_file:
        try:
            with open(args.admin_token_file, encoding="utf-8") as handle:
                token = handle.read().strip()
        except OSError as exc:
            # only "does not exist" is optional: a file that is there but unreadable is a mistake
            if args.admin_token_optional and exc.errno == errno.ENOENT:
                log.warning("pinning and model load/unload are disabled: --admin-token-file %s does not exist",
                            args.admin_token_file)
                return None
            raise ValueError(f"--admin-token-file {args.admin_token_file}: {exc.strerror}") from None
        if not token:
            raise ValueError(f"--admin-token-file {args.admin_token_file}: the file is empty")
        return token
    return os.environ.get(ADMIN_TOKEN_ENV, "").strip() or None


def _manifest_public_key(args) -> EllipticCurvePublicKey | None:
    """The verification key, or None with --allow-unsigned; ValueError names what is wrong."""
    from .signing import SignatureError, load_public_key

    if args.manifest_public_key and args.allow_unsigned:
        raise ValueError("pass --manifest-public-key or --allow-unsigned, not both")
    if args.allow_unsigned:
        return None
    if not args.manifest_public_key:
        raise ValueError("pass --manifest-public-key PATH (the public key that signs manifest.json) "
                         "or, for local development only, --allow-unsigned")
    try:
        return load_public_key(args.manifest_public_key)
    except SignatureError as exc:
        raise ValueError(f"--manifest-public-key {exc}") from None


def _tls_files(args) -> tuple[str, str] | None:
    """(cert, key) when TLS is asked for and both load as one chain, None without the flags;
    ValueError names the flag and the problem (checked before anything starts)."""
    cert, key = args.tls_cert, args.tls_key
    if cert is None and key is None:
        return None
    if key is None:
        raise ValueError("--tls-cert needs --tls-key")
    if cert is None:
        raise ValueError("--tls-key needs --tls-cert")
    for flag, path in (("--tls-cert", cert), ("--tls-key", key)):
        try:
            with open(path, "rb"):
                pass
        except OSError as exc:
            raise ValueError(f"{flag} {path}: {exc.strerror}") from None
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        # a password callback, so an encrypted key fails here instead of prompting on a terminal
        context.load_cert_chain(cert, key, password=lambda: b"")
    except ssl.SSLError as exc:
        if exc.reason == "KEY_VALUES_MISMATCH":
            raise ValueError(f"--tls-key {key} does not match --tls-cert {cert}") from None
        try:
            ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT).load_verify_locations(cafile=cert)
        except ssl.SSLError:
            raise ValueError(f"--tls-cert {cert}: not a PEM certificate") from None
        raise ValueError(f"--tls-key {key}: not an unencrypted PEM private key ({exc.reason or exc})") from None
    return cert, key


def _management_error(args) -> str | None:
    """Why the management flags cannot work, or None."""
    if args.management_port is None:
        return "--management-host needs --management-port" if args.management_host is not None else None
    if args.management_port == 0:
        return "--management-port must be 1..65535 (an operator has to know where to connect)"
    if args.management_port == args.http_port:
        return f"--management-port {args.management_port} is also the --http-port"
    if args.grpc_port and args.management_port == args.grpc_port:
        return f"--management-port {args.management_port} is also the --grpc-port"
    return None


def _metrics_error(args) -> str | None:
    """Why --metrics-port cannot work, or None."""
    if args.metrics_port is None:
        return None
    if args.metrics_port == 0:
        return "--metrics-port must be 1..65535 (Prometheus has to know where to scrape)"
    for flag, port in (("--http-port", args.http_port), ("--grpc-port", args.grpc_port),
                       ("--management-port", args.management_port)):
        if port and args.metrics_port == port:
            return f"--metrics-port {args.metrics_port} is also the {flag}"
    return None


def run_serve(args) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        token = _admin_token(args)
    except ValueError as exc:
        print(f"mlfleet serve: error: {exc}", file=sys.stderr)
        return 2
    if not 0 <= args.max_error_rate <= 1:
        print("mlfleet serve: error: --max-error-rate must be between 0 and 1", file=sys.stderr)
        return 2
    port_error = _management_error(args) or _metrics_error(args)
    if port_error:
        print(f"mlfleet serve: error: {port_error}", file=sys.stderr)
        return 2
    from . import shared_memory

    try:
        system_shared_memory = shared_memory.enabled(args.system_shared_memory, args.host, args.management_port)
        manifest_public_key = _manifest_public_key(args)
        tls = _tls_files(args)
    except ValueError as exc:
        print(f"mlfleet serve: error: {exc}", file=sys.stderr)
        return 2
    import uvloop

    from .health import HealthBounds
    from .server import ServeOptions, StartupError, serve

    options = ServeOptions(
        model_repository=args.model_repository, host=args.host, http_port=args.http_port,
        grpc_port=args.grpc_port, region=args.region, admin_token=token, max_body_bytes=args.max_body_bytes,
        grace_period_s=args.grace_period, shutdown_delay_s=max(0.0, args.shutdown_delay),
        canary_interval_s=args.canary_interval, torch_threads=args.torch_threads,
        bounds=HealthBounds(canary_max_age_s=args.canary_max_age or 3 * args.canary_interval,
                            max_error_rate=args.max_error_rate),
        max_queue_depth=args.max_queue_depth, management_port=args.management_port,
        management_host=args.management_host or "127.0.0.1", metrics_port=args.metrics_port,
        system_shared_memory=system_shared_memory,
        manifest_public_key=manifest_public_key, allow_unsigned=args.allow_unsigned,
        tls_cert=tls[0] if tls else None, tls_key=tls[1] if tls else None)
    try:
        uvloop.run(serve(options))
    except StartupError as exc:
        print(f"mlfleet serve: error: {exc}", file=sys.stderr)
        return 2
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mlfleet.runtime", description=__doc__.splitlines()[0])
    add_serve_arguments(parser)
    return run_serve(parser.parse_args(argv))
