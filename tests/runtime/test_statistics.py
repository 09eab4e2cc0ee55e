"""Triton's statistics extension over real sockets with tritonclient (HTTP and gRPC), per model
version across a re-pin; the batcher's queue/compute split; honest server metadata; and the
refusal of sequence batching at load."""
from __future__ import annotations

import asyncio
import time

import grpc
import numpy as np
import pytest
import torch
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from mlfleet.runtime.batcher import Batcher
from mlfleet.runtime.errors import ModelFailure
from mlfleet.runtime.examples import build_mlp, config_pbtxt, write_example_repository
from mlfleet.runtime.metrics import ModelStats
from mlfleet.runtime.model_spec import ModelConfigError, parse_model_config
from mlfleet.runtime.process import RuntimeProcess
from mlfleet.runtime.torch_model import TorchModel

from helpers.runtime import ADMIN_TOKEN, request, request_json
from helpers.runtime_signing import approve_config

pytestmark = pytest.mark.sandbox  # starts or talks to a runtime process

MODEL_STAT_KEYS = {"name", "version", "last_inference", "inference_count", "execution_count",
                   "inference_stats", "batch_stats"}
INFER_STAT_KEYS = {"success", "fail", "queue", "compute_input", "compute_infer", "compute_output",
                   "cache_hit", "cache_miss"}
# system_shared_memory: served here because the runtime listens on loopback (test_shared_memory.py)
SUPPORTED = ["binary_tensor_data", "model_configuration", "model_repository", "statistics", "system_shared_memory",
             "mlfleet_failover_health", "mlfleet_pinning"]


@pytest.fixture(scope="module")
def served(tmp_path_factory, manifest_key):
    root = tmp_path_factory.mktemp("stats-repo")
    write_example_repository(root, versions=("1", "2"), champion="2", signing_key=manifest_key.signing_key)
    # no periodic canary during the test: every count below is exact
    with RuntimeProcess(root, manifest_public_key=manifest_key.public_key_path,
                        admin_token=ADMIN_TOKEN, extra_args=["--canary-interval", "600"]) as process:
        yield process


def _clients(process):
    return (httpclient.InferenceServerClient(process.http_url.removeprefix("http://")),
            grpcclient.InferenceServerClient(process.grpc_url))


def _http_infer(client, rows: int):
    tensor = httpclient.InferInput("INPUT__0", [rows, 64], "FP32")
    tensor.set_data_from_numpy(np.ones((rows, 64), np.float32))
    return client.infer("mlp", [tensor]).get_response()["model_version"]


def _grpc_infer(client, rows: int):
    tensor = grpcclient.InferInput("INPUT__0", [rows, 64], "FP32")
    tensor.set_data_from_numpy(np.ones((rows, 64), np.float32))
    return client.infer("mlp", [tensor]).get_response().model_version


def _grpc_stats(client, version: str = "") -> dict:
    """The gRPC answer as plain numbers, keyed like the HTTP JSON, for one model version."""
    (entry,) = client.get_inference_statistics("mlp", version).model_stats
    stats = entry.inference_stats
    return {"version": entry.version, "last_inference": entry.last_inference,
            "inference_count": entry.inference_count, "execution_count": entry.execution_count,
            "inference_stats": {k: {"count": getattr(stats, k).count, "ns": getattr(stats, k).ns}
                                for k in INFER_STAT_KEYS},
            "batch_stats": {b.batch_size: b.compute_infer.count for b in entry.batch_stats}}


def test_statistics_count_requests_per_version_on_both_protocols(served):
    http, grpc_client = _clients(served)
    (start,) = http.get_inference_statistics("mlp")["model_stats"]
    assert set(start) == MODEL_STAT_KEYS and set(start["inference_stats"]) == INFER_STAT_KEYS
    assert (start["name"], start["version"]) == ("mlp", "2")
    # the load's canary is a real execution of one row, but not a request
    assert start["inference_stats"]["success"] == {"count": 0, "ns": 0} and start["last_inference"] == 0
    assert (start["inference_count"], start["execution_count"]) == (1, 1)

    before_ms = time.time() * 1000
    assert [_http_infer(http, 2) for _ in range(3)] == ["2"] * 3
    assert [_grpc_infer(grpc_client, 1) for _ in range(2)] == ["2"] * 2
    narrow = httpclient.InferInput("INPUT__0", [1, 3], "FP32")
    narrow.set_data_from_numpy(np.ones((1, 3), np.float32))
    with pytest.raises(InferenceServerException):  # a client error: a failure, not an execution
        http.infer("mlp", [narrow])

    (after,) = http.get_inference_statistics("mlp", "2")["model_stats"]
    assert after == http.get_inference_statistics("mlp")["model_stats"][0]
    infer = after["inference_stats"]
    assert infer["success"]["count"] == 5 and infer["success"]["ns"] > 0
    assert infer["fail"]["count"] == 1 and infer["fail"]["ns"] > 0
    assert after["inference_count"] == 1 + 3 * 2 + 2 and after["execution_count"] == 1 + 5
    for phase in ("queue", "compute_input", "compute_infer", "compute_output"):
        assert infer[phase]["count"] == 6 and infer[phase]["ns"] > 0, phase  # 5 requests and the canary
    # the requests ran one at a time: batches of 1 row (canary, gRPC) and of 2 rows (HTTP)
    batches = {b["batch_size"]: b for b in after["batch_stats"]}
    assert {size: b["compute_infer"]["count"] for size, b in batches.items()} == {1: 3, 2: 3}
    # one request per execution: per request and per batch size, the same compute time
    assert sum(b["compute_infer"]["ns"] for b in batches.values()) == infer["compute_infer"]["ns"]
    assert before_ms <= after["last_inference"] <= time.time() * 1000
    # a request's duration covers its compute: the HTTP requests alone were all 2-row executions
    assert infer["success"]["ns"] > batches[2]["compute_infer"]["ns"]

    # gRPC's ModelStatistics answers the same numbers as HTTP
    assert _grpc_stats(grpc_client, "2") == {**{k: after[k] for k in ("version", "last_inference",
                                                                       "inference_count", "execution_count",
                                                                       "inference_stats")},
                                             "batch_stats": {1: 3, 2: 3}}


def test_statistics_follow_a_repin_and_keep_the_old_version(served):
    http, grpc_client = _clients(served)
    old = http.get_inference_statistics("mlp", "2")["model_stats"][0]
    status, _ = request_json(served.http_url, "POST", "/v2/mlfleet/models/mlp/pin", {"version": "1"},
                             {"Authorization": f"Bearer {ADMIN_TOKEN}"})
    assert status == 200
    assert _http_infer(http, 4) == "1" and _grpc_infer(grpc_client, 1) == "1"

    both = http.get_inference_statistics("mlp")["model_stats"]
    assert [entry["version"] for entry in both] == ["1", "2"]
    new = http.get_inference_statistics("mlp", "1")["model_stats"][0]
    assert new["inference_stats"]["success"]["count"] == 2 and new["inference_count"] == 1 + 4 + 1
    assert _grpc_stats(grpc_client, "1")["inference_stats"]["success"]["count"] == 2
    # the unloaded version keeps what it served, and nothing moves there any more
    assert http.get_inference_statistics("mlp", "2")["model_stats"][0] == old
    everything = http.get_inference_statistics()["model_stats"]
    assert [(e["name"], e["version"]) for e in everything] == [("mlp", "1"), ("mlp", "2")]
    assert len(grpc_client.get_inference_statistics().model_stats) == 2


def test_unknown_model_or_version_is_not_found(served):
    http, grpc_client = _clients(served)
    for path in ("/v2/models/nope/stats", "/v2/models/mlp/versions/7/stats", "/v2/models/nope/versions/1/stats"):
        status, body = request_json(served.http_url, "GET", path)
        assert status == 404 and "no statistics" in body["error"], path
    assert request(served.http_url, "POST", "/v2/models/stats")[0] == 405
    for name, version in (("nope", ""), ("mlp", "7")):
        with pytest.raises(InferenceServerException) as raised:
            grpc_client.get_inference_statistics(name, version)
        assert raised.value.status() == str(grpc.StatusCode.NOT_FOUND)


def test_server_metadata_lists_exactly_what_is_served(served):
    http, grpc_client = _clients(served)
    assert http.get_server_metadata()["extensions"] == SUPPORTED
    assert list(grpc_client.get_server_metadata().extensions) == SUPPORTED
    # each listed Triton extension answers
    assert http.get_model_config("mlp")["name"] == "mlp"
    assert http.get_inference_statistics()["model_stats"]


def _model(delay_us: int) -> TorchModel:
    spec = parse_model_config(config_pbtxt("m", (64, 32, 10), delay_us), "m")
    return TorchModel(spec, "1", build_mlp((64, 32, 10), seed=3), torch.device("cpu"))


def test_batcher_splits_queue_and_compute_and_records_batch_sizes():
    stats = ModelStats("m", "1")

    async def scenario():
        batcher = Batcher(_model(delay_us=100_000), stats)
        # four requests inside one 100 ms window: one execution of 4 rows, each request queued
        await asyncio.gather(*(batcher.infer([np.ones((1, 64), np.float32)], 1) for _ in range(4)))
        with pytest.raises(ModelFailure):  # a failing forward (wrong width) is no execution
            await batcher.infer([np.ones((1, 3), np.float32)], 1)
        await batcher.close()

    asyncio.run(scenario())
    assert (stats.executions, stats.inferences, stats.computed) == (1, 4, 4)
    (size, (count, input_ns, infer_ns, output_ns)), = stats.batches.items()
    assert (size, count) == (4, 1) and input_ns > 0 and infer_ns > 0 and output_ns > 0
    # every request gets its batch's compute times, as Triton reports them
    assert (stats.compute_input_ns, stats.compute_infer_ns) == (4 * input_ns, 4 * infer_ns)
    assert stats.queue_ns >= 4 * 50_000_000  # the window held them (100 ms after the first)
    assert stats.compute_us == infer_ns // 1000  # Prometheus: once per execution


def test_sequence_batching_is_refused_at_load():
    text = config_pbtxt("m", (64, 10), 0).replace("dynamic_batching { }", "sequence_batching { }")
    with pytest.raises(ModelConfigError, match="sequence_batching is not supported"):
        parse_model_config(text, "m")


def test_a_sequence_model_stops_the_server_with_one_line(tmp_path, manifest_key):
    write_example_repository(tmp_path, signing_key=manifest_key.signing_key)
    config = tmp_path / "mlp" / "config.pbtxt"
    config.write_text(config.read_text().replace("dynamic_batching { }", "sequence_batching { }"))
    approve_config(tmp_path, "mlp", manifest_key.signing_key)  # approved, so the scheduler is what is refused
    with pytest.raises(RuntimeError, match="exited with 2"):
        RuntimeProcess(tmp_path, manifest_public_key=manifest_key.public_key_path,
                       log_path=tmp_path / "log").start()
    assert "sequence_batching is not supported" in (tmp_path / "log").read_text()
