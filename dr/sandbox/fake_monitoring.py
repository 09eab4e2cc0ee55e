"""A fake Cloud Monitoring API for the one read the runbooks make: `projects.timeSeries.list` of
`cloudsql.googleapis.com/database/replication/replica_lag`, over gRPC on loopback (the only
transport google-cloud-monitoring ships), reached by the real `MetricServiceClient`.

A sampler measures each Cloud SQL replica's lag on its real PostgreSQL server (the sandbox's
registry) every `sample_interval_s` and keeps the datapoints, each with its own end time, for
`retention_s`; none is written while the lag cannot be measured (the replica or the writer is
down), so the newest point ages as a real metric would. A fault on the replica's region (service
`*` or `monitoring`) answers UNAVAILABLE.
"""
from __future__ import annotations

import re
import threading
import time
from concurrent import futures
from typing import Callable

from mlfleet.dr.sandbox.faults import FaultBook, Ledger

REPLICA_LAG = "cloudsql.googleapis.com/database/replication/replica_lag"
_METHOD = "/google.monitoring.v3.MetricService/ListTimeSeries"
_DATABASE = re.compile(r'resource\.labels?\.database_id\s*=\s*"([^"]+)"')
_METRIC = re.compile(r'metric\.type\s*=\s*"([^"]+)"')


class FakeMonitoring:
    def __init__(self, faults: FaultBook, ledger: Ledger, *, sample_interval_s: float = 0.5,
                 retention_s: float = 600.0):
        self.faults, self.ledger = faults, ledger
        self.sample_interval_s = sample_interval_s
        self.retention_s = retention_s
        self._replicas: dict[str, tuple[str, Callable[[], float | None]]] = {}
        """database_id (project:instance) -> (region, measure lag in seconds or None)."""
        self._points: dict[str, list[tuple[float, float]]] = {}
        """database_id -> [(end time, lag seconds)], oldest first."""
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._server = None
        self._sampler = threading.Thread(target=self._sample_loop, name="fake-monitoring-sampler", daemon=True)
        self.address = ""

    def watch_replica(self, database_id: str, region: str, measure: Callable[[], float | None]) -> None:
        """Publish `measure()` as the replica's lag; `unwatch` once it is a primary."""
        with self._lock:
            self._replicas[database_id] = (region, measure)

    def unwatch(self, database_id: str) -> None:
        with self._lock:
            self._replicas.pop(database_id, None)

    def clear(self) -> None:
        with self._lock:
            self._replicas.clear()
            self._points.clear()

    def unmeasured(self) -> list[str]:
        """The watched replicas with no datapoint yet (just seeded, or a server restarting)."""
        with self._lock:
            return [d for d in self._replicas if not self._points.get(d)]

    def points(self, database_id: str) -> list[tuple[float, float]]:
        with self._lock:
            return list(self._points.get(database_id, []))

    def _sample_loop(self) -> None:
        while not self._stop.wait(self.sample_interval_s):
            with self._lock:
                replicas = dict(self._replicas)
            for database_id, (_, measure) in replicas.items():
                try:
                    lag = measure()
                except Exception:  # noqa: BLE001 - unmeasurable: no datapoint, as when the agent cannot report
                    lag = None
                now = time.time()
                with self._lock:
                    series = self._points.setdefault(database_id, [])
                    if lag is not None:
                        series.append((now, float(lag)))
                    while series and series[0][0] < now - self.retention_s:
                        series.pop(0)

    # -- the API ------------------------------------------------------------------------------
    def list_time_series(self, request_bytes: bytes, context):
        import grpc
        from google.cloud import monitoring_v3

        request = monitoring_v3.ListTimeSeriesRequest.deserialize(request_bytes)
        metric = _METRIC.search(request.filter)
        database = _DATABASE.search(request.filter)
        with self._lock:
            region = self._replicas.get(database.group(1), ("", None))[0] if database else ""
        self.ledger.record(proxy="gcp", region=region, service="monitoring", method="POST", path=_METHOD,
                           action=f"ListTimeSeries {request.filter}")
        if region and self.faults.match(region, "monitoring"):
            context.abort(grpc.StatusCode.UNAVAILABLE, "region unavailable (sandbox fault)")
        response = monitoring_v3.ListTimeSeriesResponse()
        if metric is None or metric.group(1) != REPLICA_LAG:
            return monitoring_v3.ListTimeSeriesResponse.serialize(response)
        start = request.interval.start_time.timestamp() if request.interval.start_time else 0.0
        end = request.interval.end_time.timestamp() if request.interval.end_time else time.time()
        with self._lock:
            ids = [database.group(1)] if database else sorted(self._points)
            series = {i: [p for p in self._points.get(i, []) if start <= p[0] <= end] for i in ids}
        for database_id, points in series.items():
            if not points:
                continue
            project, _, instance = database_id.partition(":")
            response.time_series.append(monitoring_v3.TimeSeries(
                metric={"type": REPLICA_LAG},
                resource={"type": "cloudsql_database",
                          "labels": {"project_id": project, "database_id": database_id,
                                     "region": self._replicas.get(database_id, (region, None))[0]}},
                metric_kind=1, value_type=3,  # google.api.MetricDescriptor: GAUGE, DOUBLE
                # newest first, as Cloud Monitoring returns them
                points=[{"interval": {"end_time": {"seconds": int(at), "nanos": int((at % 1) * 1e9)}},
                         "value": {"double_value": lag}} for at, lag in reversed(points)]))
        return monitoring_v3.ListTimeSeriesResponse.serialize(response)

    def start(self) -> "FakeMonitoring":
        import grpc

        handler = grpc.method_handlers_generic_handler("google.monitoring.v3.MetricService", {
            "ListTimeSeries": grpc.unary_unary_rpc_method_handler(
                self.list_time_series, request_deserializer=None, response_serializer=None)})
        server = self._server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        server.add_generic_rpc_handlers((handler,))
        port = server.add_insecure_port("127.0.0.1:0")
        server.start()
        self.address = f"127.0.0.1:{port}"
        self._sampler.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._server is not None:
            self._server.stop(grace=0)
