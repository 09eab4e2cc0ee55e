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
)


class ModelStats:
    """Counters of one model version plus a sliding window of server-side errors."""

    __slots__ = ("model", "version", "success", "failure", "inferences", "executions", "request_us",
                 "queue_us", "compute_us", "pending", "_window")

    def __init__(self, model: str, version: str):
        self.model, self.version = model, version
        self.success = self.failure = self.inferences = self.executions = 0
        self.request_us = self.queue_us = self.compute_us = 0
        self.pending = 0
        # per second of the window: [second, requests, server errors]
        self._window = [[0, 0, 0] for _ in range(ERROR_WINDOW_S)]

    def _bucket(self) -> list[int]:
        now = int(time.monotonic())
        bucket = self._window[now % ERROR_WINDOW_S]
        if bucket[0] != now:
            bucket[0], bucket[1], bucket[2] = now, 0, 0
        return bucket

    def record_request(self, duration_ns: int, *, ok: bool, server_error: bool = False) -> None:
        self.request_us += duration_ns // 1000
        bucket = self._bucket()
        bucket[1] += 1
        if ok:
            self.success += 1
        else:
            self.failure += 1
            if server_error:
                bucket[2] += 1

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
