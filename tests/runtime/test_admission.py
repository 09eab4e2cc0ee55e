"""Admission control and failover health under overload: beyond `--max-queue-depth` requests per
model, inference is shed at once (REST 503 with Retry-After, gRPC UNAVAILABLE) and counted as
capacity, never as a fault; failover health stays OK under any load, and a real fault under the
same load still turns it FAILING."""
from __future__ import annotations

import asyncio
import http.client
import json
import re
import statistics
import threading
import time

import numpy as np
import pytest
import torch
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

from mlfleet.runtime.data_plane import DataPlane
from mlfleet.runtime.examples import write_example_repository
from mlfleet.runtime.http_app import RestApp
from mlfleet.runtime.manager import ModelManager
from mlfleet.runtime.manifest import MODEL_FILE, sha256_file
from mlfleet.runtime.metrics import Metrics
from mlfleet.runtime.process import RuntimeProcess
from mlfleet.runtime.sources import LocalSource

from helpers.runtime import reference_forward, request, request_json
from helpers.runtime_load import binary_infer_body
from helpers.runtime_signing import edit_manifest

pytestmark = pytest.mark.sandbox  # starts or talks to a runtime process

BOUND = 4      # --max-queue-depth of these runtimes
CLIENTS = 24   # concurrent closed-loop clients: six times the bound


class _Overload:
    """CLIENTS threads, each with one keep-alive connection and one request in flight at a time,
    sending the binary load body to `model` and recording status, latency, Retry-After and body."""

    def __init__(self, url: str, model: str):
        self._host, port = url.removeprefix("http://").split(":")
        self._port = int(port)
        self._path = f"/v2/models/{model}/infer"
        self._body, self._headers = binary_infer_body()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self.answers: list[tuple[int, float, str | None, bytes]] = []
        self.errors: list[str] = []
        self._threads = [threading.Thread(target=self._client, daemon=True) for _ in range(CLIENTS)]

    def __enter__(self) -> "_Overload":
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(30)

    def _client(self) -> None:
        connection = http.client.HTTPConnection(self._host, self._port, timeout=30)
        while not self._stop.is_set():
            started = time.perf_counter()
            try:
                connection.request("POST", self._path, body=self._body, headers=self._headers)
                response = connection.getresponse()
                body = response.read()
            except (OSError, http.client.HTTPException) as exc:
                with self._lock:
                    self.errors.append(repr(exc))
                return
            with self._lock:
                self.answers.append((response.status, time.perf_counter() - started,
                                     response.getheader("Retry-After"), body))
        connection.close()

    def statuses(self) -> list[int]:
        with self._lock:
            return [answer[0] for answer in self.answers]


def _metric(text: str, name: str, model: str, version: str) -> float:
    match = re.search(rf'^{name}{{model="{model}",version="{version}"}} (\S+)$', text, re.MULTILINE)
    assert match, f"{name} for {model}/{version} missing"
    return float(match.group(1))


@pytest.fixture(scope="module")
def bounded_runtime(example_repo, manifest_key):
    with RuntimeProcess(example_repo, manifest_public_key=manifest_key.public_key_path,
                        extra_args=["--max-queue-depth", str(BOUND)]) as runtime:
        yield runtime


def test_overload_is_shed_fast_while_failover_health_stays_ok(bounded_runtime):
    url = bounded_runtime.http_url
    samples = []
    with _Overload(url, "mlp-large") as load:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and 503 not in load.statuses():  # overload established
            time.sleep(0.01)
        for _ in range(40):
            started = time.perf_counter()
            status, _, body = request(url, "GET", "/v2/health/failover")
            samples.append((status, time.perf_counter() - started, json.loads(body)))
            time.sleep(0.03)
        # the bound is per model: the small model is admitted while the large one sheds
        body, headers = binary_infer_body()
        assert request(url, "POST", "/v2/models/mlp/infer", body, headers)[0] == 200
    assert not load.errors, load.errors[:3]
    # every sample under overload: OK, no reasons, no error rate
    for status, _, document in samples:
        assert status == 200 and document["status"] == "MLFLEET_FAILOVER_OK", document
        assert "reasons" not in document and document["error_rate"] == 0
    assert sorted(latency for _, latency, _ in samples)[-2] < 0.2  # generous for a shared 2-core box

    answers = load.answers
    statuses = [status for status, *_ in answers]
    assert set(statuses) <= {200, 503}
    admitted, shed = statuses.count(200), statuses.count(503)
    assert admitted >= 10 and shed >= 10, (admitted, shed)
    shed_latencies = sorted(latency for status, latency, _, _ in answers if status == 503)
    for status, _, retry_after, body in answers:
        if status == 503:
            assert retry_after == "1"
            error = json.loads(body)["error"]
            assert "'mlp-large' is overloaded" in error and f"admission bound is {BOUND}" in error
    # shed at once, not after waiting in a queue
    assert statistics.median(shed_latencies) < 0.05, statistics.median(shed_latencies)
    assert shed_latencies[int(len(shed_latencies) * 0.99)] < 0.5

    text = request(url, "GET", "/metrics")[2].decode()
    assert "# TYPE mlfleet_inference_shed_total counter" in text
    # every shed request is counted as shed, none as a failure of the model
    assert _metric(text, "mlfleet_inference_shed_total", "mlp-large", "2") == shed
    assert _metric(text, "nv_inference_request_failure", "mlp-large", "2") == 0
    assert _metric(text, "nv_inference_request_success", "mlp-large", "2") == admitted


def test_grpc_sheds_with_unavailable_and_admitted_requests_are_correct(bounded_runtime, example_repo):
    client = grpcclient.InferenceServerClient(bounded_runtime.grpc_url)
    batch = np.random.default_rng(13).standard_normal((64, 64)).astype(np.float32)
    tensor = grpcclient.InferInput("INPUT__0", list(batch.shape), "FP32")
    tensor.set_data_from_numpy(batch)
    done = threading.Semaphore(0)
    outcomes: list = []

    def answered(result, error):
        outcomes.append((result, error))
        done.release()

    # twelve full batches at once: each takes the large model milliseconds, so they overlap
    for _ in range(12):
        client.async_infer("mlp-large", [tensor], answered)
    for _ in range(12):
        assert done.acquire(timeout=30)
    results = [result for result, error in outcomes if error is None]
    errors = [error for _, error in outcomes if error is not None]
    assert BOUND <= len(results) < 12 and len(errors) == 12 - len(results)
    for error in errors:
        assert isinstance(error, InferenceServerException)
        assert error.status() == "StatusCode.UNAVAILABLE" and "is overloaded" in error.message()
    expected = reference_forward(example_repo, "mlp-large", "2", batch)
    for result in results:
        np.testing.assert_allclose(result.as_numpy("OUTPUT__0"), expected, rtol=1e-4, atol=1e-4)
    assert request_json(bounded_runtime.http_url, "GET", "/v2/health/failover")[0] == 200


class _FailsOnConstantInput(torch.nn.Module):
    """A real fault: the model raises on the overload's constant input, its canary still passes."""

    def __init__(self, inner):
        super().__init__()
        self.inner = inner

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if bool((x == 0.5).all()):
            raise RuntimeError("injected fault")
        return self.inner(x)


@pytest.fixture(scope="module")
def faulty_repo(tmp_path_factory, manifest_key):
    root = tmp_path_factory.mktemp("faulty-repository")
    write_example_repository(root, models=("mlp-large",), versions=("1",), champion="1",
                             signing_key=manifest_key.signing_key)
    model_file = root / "mlp-large" / "1" / MODEL_FILE
    torch.jit.save(torch.jit.script(_FailsOnConstantInput(torch.jit.load(str(model_file)))), str(model_file))
    digest = sha256_file(model_file)

    def approve_the_faulty_model(manifest: dict) -> None:
        manifest["models"]["mlp-large"]["versions"]["1"]["files"][MODEL_FILE] = digest

    edit_manifest(root, manifest_key.signing_key, approve_the_faulty_model)
    return root


def test_a_real_fault_under_overload_still_turns_failover_health_failing(faulty_repo, manifest_key):
    with RuntimeProcess(faulty_repo, manifest_public_key=manifest_key.public_key_path,
                        extra_args=["--max-queue-depth", str(BOUND), "--canary-interval", "600",
                                    "--grpc-port", "0"]) as runtime:
        url = runtime.http_url
        assert request(url, "GET", "/v2/health/failover")[0] == 200  # the canary passed at load
        with _Overload(url, "mlp-large") as load:
            deadline, status, document = time.monotonic() + 10, 200, {}
            while time.monotonic() < deadline and status == 200:
                status, document = request_json(url, "GET", "/v2/health/failover")
                time.sleep(0.02)
            statuses = load.statuses()
            while time.monotonic() < deadline and 503 not in statuses:
                time.sleep(0.02)
                statuses = load.statuses()
        assert status == 503 and document["status"] == "FAILING"
        assert any(reason.startswith("error rate 1.000 exceeds") for reason in document["reasons"]), document
        # only admitted requests make the rate: all of them failed, the shed ones are not in it
        assert document["error_rate"] == 1.0
        statuses = load.statuses()
        assert set(statuses) == {500, 503}, set(statuses)
        text = request(url, "GET", "/metrics")[2].decode()
        assert _metric(text, "nv_inference_request_failure", "mlp-large", "1") == statuses.count(500)
        assert _metric(text, "mlfleet_inference_shed_total", "mlp-large", "1") == statuses.count(503)


def test_admission_slots_are_released_whatever_the_outcome(tmp_path, manifest_key):
    """In process: a leaked slot would shed every request once the bound is reached."""
    write_example_repository(tmp_path, signing_key=manifest_key.signing_key)
    metrics = Metrics()
    manager = ModelManager(LocalSource(tmp_path), metrics, manifest_public_key=manifest_key.signing_key.public_key)
    app = RestApp(DataPlane(manager, metrics, max_queue_depth=2))
    good = json.dumps({"inputs": [{"name": "INPUT__0", "datatype": "FP32", "shape": [1, 64],
                                   "data": [0.5] * 64}]}).encode()

    async def call(body: bytes) -> tuple[int, dict, dict]:
        sent: list[dict] = []

        async def receive() -> dict:
            return {"type": "http.request", "body": body, "more_body": False}

        async def send(message: dict) -> None:
            sent.append(message)

        await app({"type": "http", "method": "POST", "path": "/v2/models/mlp/infer", "headers": []}, receive, send)
        return sent[0]["status"], dict(sent[0]["headers"]), json.loads(sent[1]["body"])

    async def scenario():
        await manager.start()
        try:
            for _ in range(3):  # client errors release their slot
                assert (await call(b"not json"))[0] == 400
            held = [asyncio.create_task(call(good)) for _ in range(2)]
            await asyncio.sleep(0)  # both admitted and waiting on the model
            status, headers, document = await call(good)
            assert status == 503 and headers[b"retry-after"] == b"1" and "is overloaded" in document["error"]
            for task in held:  # clients that went away release theirs too
                task.cancel()
            await asyncio.gather(*held, return_exceptions=True)
            answers = await asyncio.gather(call(good), call(good))
            assert [status for status, _, _ in answers] == [200, 200]
        finally:
            await manager.close()

    asyncio.run(scenario())
    stats = metrics.stats("mlp", "2")
    assert stats.shed == 1 and (stats.success, stats.failure) == (2, 3)
    assert stats.error_rate() == (0.0, 5)  # the shed request is not in the window at all
