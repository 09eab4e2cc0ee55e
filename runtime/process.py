"""Starts the runtime as a subprocess on free loopback ports, for tests, the DR sandbox and the
benchmark: `with RuntimeProcess(repo) as runtime: runtime.http_url ...`."""
from __future__ import annotations

import os
import random
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import IO, Sequence

# Linux's default source-port range; macOS and IANA use 49152-65535, above it as well
_DEFAULT_EPHEMERAL = (32768, 60999)
_LOWEST = 10000  # below this lie well-known services a developer may run
_handed_out: set[int] = set()
_handed_out_lock = threading.Lock()


def ephemeral_port_range() -> tuple[int, int]:
    """The kernel's range of ports for outgoing connections and bind(0)."""
    try:
        low, high = (int(part) for part in Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split())
        return low, high
    except (OSError, ValueError):
        return _DEFAULT_EPHEMERAL


def free_port() -> int:
    """A loopback port that is free now and stays ours while its server restarts.

    A server that stops and starts again on its port (a registry database or MLflow through a
    region fault, a runtime) must not find the port taken meanwhile: the kernel hands ports of its
    ephemeral range to every outgoing connection, so the port comes from outside that range, and
    is never handed out twice in one process."""
    low, high = ephemeral_port_range()
    ranges = [r for r in ((_LOWEST, low - 1), (high + 1, 65535)) if r[1] - r[0] >= 1000]
    with _handed_out_lock:
        for _ in range(200 if ranges else 0):
            first, last = random.choice(ranges)
            port = random.randint(first, last)
            if port not in _handed_out and _bindable(port):
                _handed_out.add(port)
                return port
        # an unusual range configuration leaves no room outside it: fall back to the kernel's choice
        while True:
            with socket.socket() as sock:
                sock.bind(("127.0.0.1", 0))
                port = sock.getsockname()[1]
            if port not in _handed_out:
                _handed_out.add(port)
                return port


def _bindable(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


class RuntimeProcess:
    def __init__(self, model_repository: str | Path, *, region: str = "local", admin_token: str | None = None,
                 extra_args: Sequence[str] = (), env: dict[str, str] | None = None,
                 startup_timeout_s: float = 60.0, stop_timeout_s: float = 30.0,
                 command_prefix: Sequence[str] = (), log_path: str | Path | None = None,
                 management_port: bool = False, manifest_public_key: str | Path | None = None,
                 allow_unsigned: bool = False, tls_cert: str | Path | None = None,
                 tls_key: str | Path | None = None):
        self.model_repository = str(model_repository)
        self.region = region
        self.http_port = free_port()
        self.grpc_port = free_port()
        # tls_cert/tls_key: HTTPS and gRPC TLS (the management listener stays plain http)
        self.tls = tls_cert is not None or tls_key is not None
        self.http_url = f"{'https' if self.tls else 'http'}://127.0.0.1:{self.http_port}"
        self.grpc_url = f"127.0.0.1:{self.grpc_port}"
        # management_port: pinning and load/unload on a loopback listener of their own (.management_url)
        self.management_port = free_port() if management_port else None
        self.management_url = f"http://127.0.0.1:{self.management_port}" if management_port else None
        management = ["--management-port", str(self.management_port)] if management_port else []
        # neither: the runtime refuses to start, as it does for anyone who forgets both
        trust = ["--manifest-public-key", str(manifest_public_key)] if manifest_public_key else []
        if allow_unsigned:
            trust.append("--allow-unsigned")
        tls = [*(["--tls-cert", str(tls_cert)] if tls_cert is not None else []),
               *(["--tls-key", str(tls_key)] if tls_key is not None else [])]
        self._probe_context = None
        if tls_cert is not None:
            # the readiness probe trusts exactly the server's own certificate (a leaf is enough as
            # the anchor); the host is 127.0.0.1, which a real certificate need not name
            self._probe_context = ssl.create_default_context(cafile=str(tls_cert))
            self._probe_context.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN
            self._probe_context.check_hostname = False
        self._env = {**os.environ, **(env or {})}
        if admin_token is not None:
            self._env["MLFLEET_ADMIN_TOKEN"] = admin_token
        self._args = [*command_prefix, sys.executable, "-m", "mlfleet.runtime",
                      "--model-repository", self.model_repository, "--region", region,
                      "--host", "127.0.0.1", "--http-port", str(self.http_port),
                      "--grpc-port", str(self.grpc_port), *management, *trust, *tls, *extra_args]
        self._startup_timeout_s = startup_timeout_s
        self._stop_timeout_s = stop_timeout_s
        self._log_path = log_path
        self._log: IO[bytes] | None = None  # None: the output goes nowhere
        self.process: subprocess.Popen | None = None
        self.returncode: int | None = None

    def start(self) -> "RuntimeProcess":
        self._log = open(self._log_path, "wb") if self._log_path else None
        output = subprocess.DEVNULL if self._log is None else self._log
        self.process = subprocess.Popen(self._args, env=self._env, stdout=output, stderr=output)
        deadline = time.monotonic() + self._startup_timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                self._close_log()
                raise RuntimeError(f"runtime exited with {self.process.returncode} before it was ready"
                                   + (f" (log: {self._log_path})" if self._log_path else ""))
            try:
                with urllib.request.urlopen(f"{self.http_url}/v2/health/ready", timeout=1,
                                            context=self._probe_context) as response:
                    if response.status == 200:
                        return self
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            time.sleep(0.1)
        self.stop()
        raise TimeoutError(f"runtime not ready within {self._startup_timeout_s} s")

    def terminate(self) -> None:
        """Send SIGTERM without waiting (the drain starts)."""
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)

    def stop(self) -> int | None:
        """SIGTERM, wait for the drain, SIGKILL only if the process outlives stop_timeout_s."""
        if self.process is None:
            return None
        self.terminate()
        try:
            self.returncode = self.process.wait(timeout=self._stop_timeout_s)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.returncode = self.process.wait()
        self._close_log()
        return self.returncode

    def _close_log(self) -> None:
        if self._log is not None:
            self._log.close()
        self._log = None

    def __enter__(self) -> "RuntimeProcess":
        # `with RuntimeProcess(...).start() as runtime` must not launch a second process: it would
        # fail to bind the same ports while the first one, never stopped, kept running.
        return self if self.process is not None else self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
