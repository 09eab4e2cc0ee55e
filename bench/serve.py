"""Serving benchmark: mlfleet's runtime side by side with kserve's ModelServer and Triton itself
(through PyTriton), on the same TorchScript models, in one run. Not a test: it prints figures.

Models: "mlp" (64->256->10) and "mlp-large" (64->4096->4096->10, ~3 ms a forward). Load:
closed-loop keep-alive HTTP/1.1 clients at concurrency 1 and 16, JSON and binary v2 bodies,
batch-1 requests. Every server is pinned to CPU 0, the load generator to CPU 1.

The peers need conflicting, heavy dependencies, so they live in a separate virtualenv:

    python3 -m venv .venv-bench
    .venv-bench/bin/pip install torch==2.13.0 kserve==0.21.0 nvidia-pytriton==0.7.0

Run:  python bench/serve.py [--duration 3] [--bench-python .venv-bench/bin/python] [--no-peers]
A peer that cannot start here is reported as such; the rest still runs.

The floor (bench/peers/asgi_floor.py, in mlfleet's own virtualenv, always run): the simplest fast
server for "mlp" binary infer, a raw ASGI app under uvicorn with a send-what-is-queued batcher;
mlfleet should keep >= 0.8x its throughput at c=16 binary. `--floor-only` measures just that point
(and failover health under load) `--repeat` times and prints medians, for before/after profiling."""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import sysconfig
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mlfleet.runtime.examples import write_example_repository
from mlfleet.runtime.process import RuntimeProcess, free_port

HERE = Path(__file__).resolve().parent
SERVER_CPU, LOAD_CPU = "0", 1
MODELS = ("mlp", "mlp-large")
_CONTENT_LENGTH = re.compile(rb"\r\ncontent-length:\s*(\d+)", re.IGNORECASE)


# -- load generation ---------------------------------------------------------------------------
def build_request(model: str, encoding: str) -> bytes:
    sample = np.random.default_rng(0).standard_normal((1, 64), dtype=np.float32)
    headers = ""
    if encoding == "binary":
        header = json.dumps({"inputs": [{"name": "INPUT__0", "datatype": "FP32", "shape": [1, 64],
                                         "parameters": {"binary_data_size": sample.nbytes}}],
                             "outputs": [{"name": "OUTPUT__0", "parameters": {"binary_data": True}}]}).encode()
        body = header + sample.tobytes()
        headers = f"Inference-Header-Content-Length: {len(header)}\r\nContent-Type: application/octet-stream\r\n"
    else:
        body = json.dumps({"inputs": [{"name": "INPUT__0", "datatype": "FP32", "shape": [1, 64],
                                       "data": sample.flatten().tolist()}]}).encode()
        headers = "Content-Type: application/json\r\n"
    return (f"POST /v2/models/{model}/infer HTTP/1.1\r\nHost: bench\r\nContent-Length: {len(body)}\r\n"
            f"{headers}\r\n").encode() + body


def build_get(path: str) -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: bench\r\n\r\n".encode()


class _Connection(asyncio.Protocol):
    """One keep-alive connection that sends a request and waits for its whole response."""

    def __init__(self):
        self._buffer = bytearray()
        self._need: int | None = None
        self._status = 0
        self._waiter: asyncio.Future | None = None
        self.transport = None

    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        if self._need is None:
            end = self._buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            head = bytes(self._buffer[:end])
            length = _CONTENT_LENGTH.search(head)
            if length is None:
                raise RuntimeError(f"response without Content-Length: {head[:200]!r}")
            self._status = int(head[9:12])
            self._need = end + 4 + int(length.group(1))
        if len(self._buffer) >= self._need:
            del self._buffer[:self._need]
            self._need = None
            waiter, self._waiter = self._waiter, None
            waiter.set_result(self._status)

    def connection_lost(self, exc):
        if self._waiter and not self._waiter.done():
            self._waiter.set_exception(ConnectionError("server closed the connection"))

    async def roundtrip(self, request: bytes) -> int:
        self._waiter = asyncio.get_running_loop().create_future()
        self.transport.write(request)
        return await self._waiter


async def _connect(port: int) -> _Connection:
    _, connection = await asyncio.get_running_loop().create_connection(_Connection, "127.0.0.1", port)
    return connection


@dataclass
class Result:
    rps: float
    p50_ms: float
    p99_ms: float
    errors: int


async def drive(port: int, request: bytes, concurrency: int, duration_s: float, warmup_s: float = 0.5) -> Result:
    connections = [await _connect(port) for _ in range(concurrency)]
    latencies: list[float] = []
    errors = 0
    measuring_from = time.perf_counter() + warmup_s
    stop_at = measuring_from + duration_s

    async def client(connection: _Connection):
        nonlocal errors
        while (started := time.perf_counter()) < stop_at:
            try:
                status = await connection.roundtrip(request)
            except ConnectionError:  # the server gave up on this connection: count it, stop this client
                errors += 1
                return
            if status != 200:
                errors += 1
            elif started >= measuring_from:
                latencies.append(time.perf_counter() - started)

    await asyncio.gather(*(client(c) for c in connections))
    for connection in connections:
        connection.transport.close()
    if not latencies:
        return Result(0.0, float("nan"), float("nan"), errors)
    latencies.sort()
    return Result(len(latencies) / duration_s, latencies[len(latencies) // 2] * 1e3,
                  latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] * 1e3, errors)


async def health_under_load(port: int, model: str, duration_s: float) -> tuple[Result, float, float]:
    """Saturate `model` at c=16 while polling failover health; returns load, health p50 and p99 (ms)."""
    load = asyncio.ensure_future(drive(port, build_request(model, "binary"), 16, duration_s))
    await asyncio.sleep(0.6)
    probe, samples = await _connect(port), []
    request = build_get("/v2/health/failover")
    while not load.done():
        started = time.perf_counter()
        if await probe.roundtrip(request) != 200:
            raise RuntimeError("failover health was not 200 under load")
        samples.append(time.perf_counter() - started)
        await asyncio.sleep(0.01)
    probe.transport.close()
    samples.sort()
    return load.result(), samples[len(samples) // 2] * 1e3, samples[int(len(samples) * 0.99) - 1] * 1e3


# -- servers -----------------------------------------------------------------------------------
def _wait_ready(url: str, process: subprocess.Popen, timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"exited with {process.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=1) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.2)
    raise TimeoutError("not ready in time")


class Peer:
    def __init__(self, label: str, args: list[str], port: int, ready_path: str, env: dict | None = None,
                 log: Path | None = None):
        self.label, self.port = label, port
        self._log = open(log, "wb") if log else subprocess.DEVNULL
        self.process = subprocess.Popen(["taskset", "-c", SERVER_CPU, *args], env={**os.environ, **(env or {})},
                                        stdout=self._log, stderr=self._log, start_new_session=True)
        try:
            _wait_ready(f"http://127.0.0.1:{port}{ready_path}", self.process)
        except Exception:
            self.stop()
            raise

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()


def mlfleet_runtime(repo: Path, log: Path) -> RuntimeProcess:
    """Signed as in production: `repo` carries the signature of `sign_repository`."""
    return RuntimeProcess(repo, command_prefix=["taskset", "-c", SERVER_CPU], extra_args=["--torch-threads", "1"],
                          log_path=log, manifest_public_key=repo.parent / BENCH_PUBLIC_KEY)


BENCH_PUBLIC_KEY = "bench-manifest-key.pem"


def sign_repository(repo: Path) -> None:
    """Sign the example manifest with a throwaway key, its public half beside the repository."""
    from mlfleet.runtime.signing import LocalSigningKey

    key = LocalSigningKey.generate("bench")
    key.sign_file(repo / "manifest.json")
    (repo.parent / BENCH_PUBLIC_KEY).write_bytes(key.public_key_pem())


def unbatched_copy(repo: Path, target: Path) -> Path:
    shutil.copytree(repo, target)
    for config in target.glob("*/config.pbtxt"):
        config.write_text(re.sub(r"dynamic_batching \{[^}]*\}\n", "", config.read_text()))
    return target


# -- the run -----------------------------------------------------------------------------------
def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=3.0, help="seconds measured per point (default 3)")
    parser.add_argument("--bench-python", default=str(HERE.parent / ".venv-bench" / "bin" / "python"),
                        help="python of the virtualenv holding kserve and nvidia-pytriton")
    parser.add_argument("--no-peers", action="store_true", help="measure mlfleet and the floor only")
    parser.add_argument("--floor-only", action="store_true",
                        help="mlp c=16 binary against the floor, and failover health under load, only")
    parser.add_argument("--repeat", type=int, default=1, help="with --floor-only: runs, medians reported")
    args = parser.parse_args()
    if len(os.sched_getaffinity(0)) < 2:
        print("needs at least 2 CPUs (server and load generator on different cores)", file=sys.stderr)
        return 2
    os.sched_setaffinity(0, {LOAD_CPU})
    import uvloop

    work = Path(tempfile.mkdtemp(prefix="mlfleet-bench-"))
    repo = work / "repository"
    write_example_repository(repo, models=MODELS, versions=("1",), champion="1")
    sign_repository(repo)
    results: dict[tuple[str, str, int, str], Result] = {}
    notes: list[str] = []
    if args.floor_only:
        return floor_only(args, repo, work)

    def measure(label: str, port: int, models=MODELS, encodings=("json", "binary")) -> None:
        for model in models:
            for concurrency in (1, 16):
                for encoding in encodings:
                    result = uvloop.run(drive(port, build_request(model, encoding), concurrency, args.duration))
                    results[(label, model, concurrency, encoding)] = result
                    print(f"  {label:<22} {model:<10} c={concurrency:<3} {encoding:<6} {result.rps:9.0f} rps  "
                          f"p50 {result.p50_ms:7.2f} ms  p99 {result.p99_ms:7.2f} ms"
                          + (f"  ERRORS {result.errors}" if result.errors else ""), flush=True)

    print("mlfleet runtime (dynamic batching from config.pbtxt)")
    with mlfleet_runtime(repo, work / "mlfleet.log") as runtime:
        measure("mlfleet", runtime.http_port)
        load, health_p50, health_p99 = uvloop.run(health_under_load(runtime.http_port, "mlp-large", args.duration))
    print(f"  failover health while mlp-large saturated at c=16 ({load.rps:.0f} rps): "
          f"p50 {health_p50:.2f} ms, p99 {health_p99:.2f} ms")
    print("floor: plain ASGI server, send-what-is-queued batcher (mlp)")
    floor = start_floor(repo, work)
    try:
        measure("floor", floor.port, models=("mlp",), encodings=("binary",))  # the floor speaks binary only
    finally:
        floor.stop()
    print("mlfleet runtime, batching off")
    with mlfleet_runtime(unbatched_copy(repo, work / "unbatched"), work / "mlfleet-unbatched.log") as runtime:
        measure("mlfleet-unbatched", runtime.http_port)

    if not args.no_peers:
        if not Path(args.bench_python).exists():
            notes.append(f"peers skipped: {args.bench_python} not found (see this script's docstring)")
        else:
            run_peers(args, repo, work, measure, notes)

    print_ratios(results, notes)
    print(f"logs: {work}")
    return 0


def start_floor(repo: Path, work: Path) -> Peer:
    port = free_port()
    return Peer("floor", [sys.executable, str(HERE / "peers" / "asgi_floor.py"), "mlp",
                          str(repo / "mlp" / "1" / "model.pt"), str(port)],
                port, "/v2/health/ready", log=work / "floor.log")


def floor_only(args, repo: Path, work: Path) -> int:
    """mlfleet against the floor at mlp c=16 binary, alternating, `--repeat` times; medians."""
    import statistics

    import uvloop

    request = build_request("mlp", "binary")
    runs: dict[str, list[Result]] = {"mlfleet": [], "floor": []}
    health: list[float] = []
    with mlfleet_runtime(repo, work / "mlfleet.log") as runtime:
        floor = start_floor(repo, work)
        try:
            for index in range(args.repeat):
                for label, port in (("mlfleet", runtime.http_port), ("floor", floor.port)):
                    result = uvloop.run(drive(port, request, 16, args.duration))
                    runs[label].append(result)
                    print(f"  run {index + 1} {label:<8} {result.rps:9.0f} rps  p50 {result.p50_ms:6.2f} ms  "
                          f"p99 {result.p99_ms:6.2f} ms" + (f"  ERRORS {result.errors}" if result.errors else ""),
                          flush=True)
                _, _, health_p99 = uvloop.run(health_under_load(runtime.http_port, "mlp-large", args.duration))
                health.append(health_p99)
        finally:
            floor.stop()

    def median(label: str, field: str) -> float:
        return statistics.median(getattr(r, field) for r in runs[label])

    ours, theirs = median("mlfleet", "rps"), median("floor", "rps")
    print(f"medians of {args.repeat}: mlfleet {ours:.0f} rps (p99 {median('mlfleet', 'p99_ms'):.2f} ms) / floor "
          f"{theirs:.0f} rps (p99 {median('floor', 'p99_ms'):.2f} ms) = {ours / theirs:.2f}x (target >= 0.8x); "
          f"failover health p99 under load {statistics.median(health):.2f} ms (target <= 20 ms)")
    print(f"logs: {work}")
    return 0


def run_peers(args, repo: Path, work: Path, measure, notes: list[str]) -> None:
    bench_python = args.bench_python
    libdir = subprocess.run([bench_python, "-c", "import sysconfig; print(sysconfig.get_config_var('LIBDIR'))"],
                            capture_output=True, text=True).stdout.strip() or sysconfig.get_config_var("LIBDIR")
    for model in MODELS:
        model_pt = str(repo / model / "1" / "model.pt")
        print(f"kserve ModelServer ({model})")
        port = free_port()
        try:
            peer = Peer("kserve", [bench_python, str(HERE / "peers" / "kserve_peer.py"), model, model_pt, str(port)],
                        port, "/v2/health/ready", log=work / f"kserve-{model}.log")
        except Exception as exc:  # noqa: BLE001 - a peer that cannot run here is reported, not fatal
            notes.append(f"kserve could not start for {model}: {exc} (log: {work}/kserve-{model}.log)")
        else:
            try:
                measure("kserve", port, models=(model,))
            finally:
                peer.stop()
        for delay, label in (("off", "triton-unbatched"), ("0" if model == "mlp" else "2000", "triton-batched")):
            print(f"Triton via PyTriton, {label} ({model})")
            http_port, grpc_port, metrics_port = free_port(), free_port(), free_port()
            try:
                # the Python backend stub links the running Python's libpython (see DESIGN.md)
                peer = Peer(label, [bench_python, str(HERE / "peers" / "pytriton_peer.py"), model, model_pt,
                                    str(http_port), str(grpc_port), str(metrics_port), delay,
                                    str(work / f"pytriton-{label}-{model}")],
                            http_port, f"/v2/models/{model}/ready", env={"LD_LIBRARY_PATH": libdir},
                            log=work / f"{label}-{model}.log")
            except Exception as exc:  # noqa: BLE001
                notes.append(f"Triton ({label}) could not start for {model}: {exc} (log: {work}/{label}-{model}.log)")
                continue
            try:
                measure(label, http_port, models=(model,))
            finally:
                peer.stop()


def print_ratios(results, notes: list[str]) -> None:
    def rps(label, model, encoding="binary", concurrency=16):
        result = results.get((label, model, concurrency, encoding))
        return result.rps if result else None

    print("\nratios at c=16, binary, batch-1 requests")
    floor, mlfleet = results.get(("floor", "mlp", 16, "binary")), results.get(("mlfleet", "mlp", 16, "binary"))
    if floor and mlfleet and floor.rps:
        print(f"  mlp: mlfleet {mlfleet.rps:.0f} rps / floor {floor.rps:.0f} rps = {mlfleet.rps / floor.rps:.2f}x "
              f"(target >= 0.8x); p99 {mlfleet.p99_ms:.2f} ms vs {floor.p99_ms:.2f} ms")
    small_peers = {label: rps(label, "mlp") for label in ("kserve", "triton-unbatched", "triton-batched")}
    small_peers = {k: v for k, v in small_peers.items() if v}
    ours = rps("mlfleet", "mlp")
    if small_peers:
        best = max(small_peers, key=small_peers.get)
        ours_p99 = results[("mlfleet", "mlp", 16, "binary")].p99_ms
        best_p99 = results[(best, "mlp", 16, "binary")].p99_ms
        print(f"  mlp: mlfleet {ours:.0f} rps / best peer {best} {small_peers[best]:.0f} rps = "
              f"{ours / small_peers[best]:.2f}x (target >= 3x); p99 {ours_p99:.2f} ms vs {best_p99:.2f} ms")
    large_ours, large_unbatched = rps("mlfleet", "mlp-large"), rps("mlfleet-unbatched", "mlp-large")
    triton_batched = rps("triton-batched", "mlp-large")
    if triton_batched:
        print(f"  mlp-large: mlfleet {large_ours:.0f} rps / Triton batched {triton_batched:.0f} rps = "
              f"{large_ours / triton_batched:.2f}x (target >= 1.2x)")
    if large_unbatched:
        print(f"  mlp-large: mlfleet batched / unbatched = {large_ours / large_unbatched:.2f}x (target >= 3x)")
    for note in notes:
        print(f"  note: {note}")


if __name__ == "__main__":
    sys.exit(main())
