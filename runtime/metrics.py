"""Inference statistics, kept as plain integers on the event loop (every update happens there,
so the hot path takes no lock), exposed in Prometheus text format under Triton's metric names.

Triton exports its cumulative counters without the ``_total`` suffix that prometheus_client
adds, so the nv_* families are written here; process metrics come from prometheus_client."""
from __future__ import annotations

import time

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.process_collector import ProcessCollector

ERROR_WINDOW_S = 60

_COUNTERS = (
    ("nv_inference_request_success", "success", "Number of successful inference requests"),
    ("nv_inference_request_failure", "failure", "Number of failed inference requests"),
    ("nv_inference_count", "inferences", "Number of inferences performed (a batch of n counts n)"),
    ("nv_inference_exec_count", "executions", "Number of model executions (batches) performed"),
    ("nv_inference_request_duration_us", "request_us", "Cumulative inference request duration in microseconds"),
    ("nv_inference_queue_duration_us", "queue_us", "Cumulative time requests spent queued in microseconds"),
    ("nv_inference_compute_infer_duration_us", "compute_us", "Cumulative model execution time in microseconds"),
    ("mlfleet_inference_shed_total", "shed", "Inference requests shed by admission control (model overloaded)"),
)


class ModelStats:
    """Counters of one model version plus a sliding window of server-side errors. Durations are
    kept in nanoseconds as Triton's statistics extension reports them; Prometheus gets them in µs.

    Per request (as Triton): `success`/`failure` with their durations, and for every request a
    successful execution answered, its queue time and its execution's compute input, infer and
    output times. Per execution: `executions` and `batches` (batch size -> [count, input, infer,
    output ns])."""

    __slots__ = ("model", "version", "success", "failure", "inferences", "executions", "success_ns",
                 "fail_ns", "queue_ns", "computed", "compute_input_ns", "compute_infer_ns",
                 "compute_output_ns", "last_inference_ms", "batches", "pending", "shed", "_window")

    def __init__(self, model: str, version: str):
        self.model, self.version = model, version
        self.success = self.failure = self.inferences = self.executions = 0
        self.success_ns = self.fail_ns = 0
        self.computed = 0  # requests answered by a successful execution: the count of queue and compute_*
        self.queue_ns = self.compute_input_ns = self.compute_infer_ns = self.compute_output_ns = 0
        self.last_inference_ms = 0  # wall clock, ms since the epoch; 0: never
        self.batches: dict[int, list[int]] = {}
        self.pending = 0
        self.shed = 0  # refused at admission (overload): not a request of the model, not an error
        # per second of the window: [second, requests, server errors]
        self._window = [[0, 0, 0] for _ in range(ERROR_WINDOW_S)]

    @property
    def request_us(self) -> int:
        return (self.success_ns + self.fail_ns) // 1000

    @property
    def queue_us(self) -> int:
        return self.queue_ns // 1000

    @property
    def compute_us(self) -> int:
        """Model execution time, once per execution (a batch of many requests counts once)."""
        return sum(entry[2] for entry in self.batches.values()) // 1000

    def _bucket(self) -> list[int]:
        now = int(time.monotonic())
        bucket = self._window[now % ERROR_WINDOW_S]
        if bucket[0] != now:
            bucket[0], bucket[1], bucket[2] = now, 0, 0
        return bucket

    def record_request(self, duration_ns: int, *, ok: bool, server_error: bool = False) -> None:
        self.last_inference_ms = time.time_ns() // 1_000_000
        bucket = self._bucket()
        bucket[1] += 1
        if ok:
            self.success += 1
            self.success_ns += duration_ns
        else:
            self.failure += 1
            self.fail_ns += duration_ns
            if server_error:
                bucket[2] += 1

    def record_execution(self, batch_size: int, timings: tuple[int, int, int]) -> None:
        """One successful model execution of `batch_size` rows; timings: compute input, infer, output ns."""
        self.executions += 1
        entry = self.batches.get(batch_size)
        if entry is None:
            entry = self.batches[batch_size] = [0, 0, 0, 0]
        entry[0] += 1
        entry[1] += timings[0]
        entry[2] += timings[1]
        entry[3] += timings[2]

    def record_computed(self, rows: int, queue_ns: int, timings: tuple[int, int, int]) -> None:
        """A request of `rows` rows that a successful execution answered after `queue_ns` queued."""
        self.inferences += rows
        self.computed += 1
        self.queue_ns += queue_ns
        self.compute_input_ns += timings[0]
        self.compute_infer_ns += timings[1]
        self.compute_output_ns += timings[2]

    def error_rate(self) -> tuple[float, int]:
        """Server-side error ratio over the last ERROR_WINDOW_S seconds, and the request count."""
        oldest = int(time.monotonic()) - ERROR_WINDOW_S
        requests = errors = 0
        for second, count, failed in self._window:
            if second > oldest:
                requests += count
                errors += failed
        return (errors / requests if requests else 0.0), requests


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


class Metrics:
    def __init__(self):
        self._stats: dict[tuple[str, str], ModelStats] = {}
        self._process = CollectorRegistry(auto_describe=True)
        ProcessCollector(registry=self._process)

    def stats(self, model: str, version: str) -> ModelStats:
        key = (model, version)
        if key not in self._stats:
            self._stats[key] = ModelStats(model, version)
        return self._stats[key]

    def recorded(self, model: str | None = None) -> list[ModelStats]:
        """The records of every version loaded since the process started (of `model`, or all),
        by model name and numeric version."""
        return sorted((s for s in self._stats.values() if model is None or s.model == model),
                      key=lambda s: (s.model, int(s.version) if s.version.isdigit() else 0, s.version))

    def exposition(self, gpu: dict) -> bytes:
        lines = []
        stats = sorted(self._stats.values(), key=lambda s: (s.model, s.version))
        for name, attribute, help_text in _COUNTERS:
            lines += [f"# HELP {name} {help_text}", f"# TYPE {name} counter"]
            lines += [f'{name}{{model="{_label(s.model)}",version="{_label(s.version)}"}} {getattr(s, attribute)}'
                      for s in stats]
        lines += ["# HELP nv_inference_pending_request_count Requests queued or executing",
                  "# TYPE nv_inference_pending_request_count gauge"]
        lines += [f'nv_inference_pending_request_count{{model="{_label(s.model)}",version="{_label(s.version)}"}} '
                  f"{s.pending}" for s in stats]
        devices = gpu.get("devices", [])
        for family, key in (("nv_gpu_memory_total_bytes", "memory_total_bytes"),
                            ("nv_gpu_memory_used_bytes", "memory_used_bytes")):
            if devices:
                lines.append(f"# TYPE {family} gauge")
                lines += [f'{family}{{gpu_uuid="{_label(d["uuid"])}"}} {d[key]}' for d in devices]
        return ("\n".join(lines) + "\n").encode() + generate_latest(self._process)
