"""The metrics listener: with --metrics-port, Prometheus /metrics is served on that port alone (on
--host, where Prometheus scrapes the pod) and the HTTP port answers it 404, as any path that does
not exist; without the flag /metrics stays on the HTTP port. Also the flag's one-line errors."""
from __future__ import annotations

import asyncio
import os
import re
import socket
import subprocess
import sys

import pytest

from mlfleet.runtime.data_plane import DataPlane
from mlfleet.runtime.examples import write_example_repository
from mlfleet.runtime.http_app import Listener, RestApp
from mlfleet.runtime.manager import ModelManager
from mlfleet.runtime.metrics import Metrics
from mlfleet.runtime.process import RuntimeProcess, free_port
from mlfleet.runtime.sources import LocalSource

from helpers.runtime import ADMIN_TOKEN, request, request_json

pytestmark = pytest.mark.sandbox  # starts or talks to a runtime process

INFER = {"inputs": [{"name": "INPUT__0", "datatype": "FP32", "shape": [1, 64], "data": [1.0] * 64}]}


@pytest.fixture(scope="module")
def repo(tmp_path_factory, manifest_key):
    root = tmp_path_factory.mktemp("metrics-port-repo")
    write_example_repository(root, versions=("1", "2"), champion="2", signing_key=manifest_key.signing_key)
    return root


@pytest.fixture(scope="module")
def served(repo, manifest_key):
    """The cluster's layout: public HTTP, loopback management, and the metrics listener."""
    port = free_port()
    with RuntimeProcess(repo, manifest_public_key=manifest_key.public_key_path, admin_token=ADMIN_TOKEN,
                        management_port=True, extra_args=["--metrics-port", str(port)]) as process:
        process.metrics_url = f"http://127.0.0.1:{port}"
        yield process


def test_the_public_port_answers_metrics_404_as_a_path_that_does_not_exist(served):
    assert request_json(served.http_url, "GET", "/metrics") == (404, {"error": "no route for /metrics"})
    assert request_json(served.management_url, "GET", "/metrics")[0] == 404
    assert request_json(served.http_url, "POST", "/v2/models/mlp/infer", INFER)[0] == 200  # the data plane serves


def test_the_metrics_listener_serves_the_labelled_counters(served):
    assert request_json(served.http_url, "POST", "/v2/models/mlp/infer", INFER)[0] == 200
    status, headers, body = request(served.metrics_url, "GET", "/metrics")
    assert status == 200 and headers["content-type"].startswith("text/plain; version=0.0.4")
    text = body.decode()
    # the counters of the public port's traffic, labelled by model and version, and the process's
    success = re.search(r'^nv_inference_request_success\{model="mlp",version="2"\} (\S+)$', text, re.MULTILINE)
    assert success and float(success.group(1)) >= 1
    assert "process_resident_memory_bytes" in text


def test_the_metrics_listener_serves_nothing_else(served):
    for method, path in (("GET", "/v2/health/live"), ("GET", "/v2/health/failover"), ("GET", "/v2"),
                         ("POST", "/v2/models/mlp/infer"), ("GET", "/v2/models/mlp/stats"),
                         ("GET", "/v2/mlfleet/models/mlp/pin"), ("POST", "/v2/mlfleet/models/mlp/pin")):
        assert request(served.metrics_url, method, path)[0] == 404, path


def test_the_metrics_listener_listens_on_host(served):
    port = int(served.metrics_url.rsplit(":", 1)[1])
    # --host 127.0.0.1 (the launcher's): not on another local address, as the HTTP port
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.2", port), timeout=2).close()


def _plane(tmp_path, manifest_key) -> DataPlane:
    manager = ModelManager(LocalSource(tmp_path), Metrics(), manifest_public_key=manifest_key.signing_key.public_key)
    return DataPlane(manager, Metrics(), region="eu-west-1")


@pytest.mark.parametrize("listener, metrics_apart, serves", [
    (Listener.COMBINED, False, True),     # the local sandbox: unchanged
    (Listener.PUBLIC, False, True),       # a management port alone: unchanged
    (Listener.MANAGEMENT, False, False),
    (Listener.COMBINED, True, False),
    (Listener.PUBLIC, True, False),
    (Listener.MANAGEMENT, True, False),
    (Listener.METRICS, True, True),
])
def test_which_listener_serves_metrics(tmp_path, manifest_key, listener, metrics_apart, serves):
    app = RestApp(_plane(tmp_path, manifest_key), listener=listener, metrics_apart=metrics_apart)
    assert _get(app, "/metrics") == (200 if serves else 404)


def _get(app: RestApp, path: str) -> int:
    """The status `app` itself answers a GET of `path` with (its real handler, no socket)."""
    sent: list[dict] = []

    async def receive() -> dict:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict) -> None:
        sent.append(message)

    asyncio.run(app({"type": "http", "method": "GET", "path": path, "headers": []}, receive, send))
    return sent[0]["status"]


def _serve(*args: str) -> subprocess.CompletedProcess:
    environment = {k: v for k, v in os.environ.items() if k != "MLFLEET_ADMIN_TOKEN"}
    return subprocess.run([sys.executable, "-m", "mlfleet.runtime", *args], capture_output=True, text=True,
                          timeout=60, env=environment)


def _one_line_error(result: subprocess.CompletedProcess, fragment: str) -> None:
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    assert fragment in result.stderr.strip().splitlines()[-1], result.stderr


@pytest.mark.parametrize("args, fragment", [
    (["--http-port", "8123", "--metrics-port", "8123"], "--metrics-port 8123 is also the --http-port"),
    (["--grpc-port", "8124", "--metrics-port", "8124"], "--metrics-port 8124 is also the --grpc-port"),
    (["--management-port", "8125", "--metrics-port", "8125"], "--metrics-port 8125 is also the --management-port"),
    (["--metrics-port", "0"], "--metrics-port must be 1..65535"),
    (["--metrics-port", "70000"], "port 70000 is outside 0..65535"),
    (["--metrics-port", "x"], "'x' is not a port number"),
])
def test_bad_metrics_ports_exit_2_with_one_line(tmp_path, args, fragment):
    _one_line_error(_serve("--model-repository", str(tmp_path), *args), fragment)


def test_a_metrics_port_in_use_is_one_line(repo, manifest_key):
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        result = _serve("--model-repository", str(repo), "--http-port", str(free_port()), "--grpc-port", "0",
                        "--metrics-port", str(port), "--manifest-public-key", str(manifest_key.public_key_path))
    _one_line_error(result, f"cannot listen for metrics on 127.0.0.1:{port}")
