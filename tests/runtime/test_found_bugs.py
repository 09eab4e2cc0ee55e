"""Regression tests of the defects a client and a fuzzer found: each asserts the behaviour that
was wrong (a 500, an uncaught exception, invalid JSON, a silent choice, a noisy log, a late exit)."""
from __future__ import annotations

import asyncio
import functools
import gzip
import json
import re
import socket
import time
import zlib

import grpc
import numpy as np
import pytest
import torch
from tritonclient.grpc import service_pb2 as pb
from tritonclient.grpc import service_pb2_grpc

from mlfleet.runtime.batcher import Batcher
from mlfleet.runtime.data_plane import DataPlane, InferResult
from mlfleet.runtime.examples import write_example_repository
from mlfleet.runtime.manager import ModelManager
from mlfleet.runtime.metrics import Metrics, ModelStats
from mlfleet.runtime.model_spec import parse_model_config
from mlfleet.runtime.process import RuntimeProcess
from mlfleet.runtime.rest_codec import encode_response, json_bytes
from mlfleet.runtime.sources import LocalSource
from mlfleet.runtime.torch_model import TorchModel

from helpers.runtime import ADMIN_TOKEN, MAX_BODY_BYTES, request

INFER = "/v2/models/mlp/infer"


def _body(**extra) -> dict:
    return {"inputs": [{"name": "INPUT__0", "datatype": "FP32", "shape": [1, 64], "data": [0.5] * 64}], **extra}


def _strict_json(payload: bytes):
    """Parse as JSON is specified: NaN and Infinity are not JSON."""
    def refuse(constant):
        raise ValueError(f"{constant} is not JSON")
    return json.loads(payload, parse_constant=refuse)


def _assert_client_error(status: int, payload: bytes, expected: int = 400) -> str:
    assert status == expected, payload[:300]
    return _strict_json(payload)["error"]


def _failures(runtime, model: str = "mlp") -> int:
    _, _, exposition = request(runtime.http_url, "GET", "/metrics")
    match = re.search(rf'^nv_inference_request_failure{{model="{model}",version="\d+"}} (\d+)$',
                      exposition.decode(), re.M)
    assert match, exposition[:500]
    return int(match.group(1))


class _Doubler(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * 2


@functools.cache
def _doubler() -> torch.jit.ScriptModule:
    return torch.jit.script(_Doubler())  # once: scripting a class again can clash in a long session


_VARIABLE_CONFIG = '''name: "var"
platform: "pytorch_libtorch"
max_batch_size: 8
input [ { name: "INPUT__0" data_type: TYPE_FP32 dims: [ -1 ] } ]
output [ { name: "OUTPUT__0" data_type: TYPE_FP32 dims: [ -1 ] } ]
dynamic_batching { max_queue_delay_microseconds: 200000 }
'''


def test_batcher_runs_only_requests_of_the_same_shape_together():
    model = TorchModel(parse_model_config(_VARIABLE_CONFIG, "var"), "1", _doubler(), torch.device("cpu"))
    stats = ModelStats("var", "1")
    rng = np.random.default_rng(3)
    # 24 requests in one 200 ms window, of three widths interleaved and 1-2 rows each
    requests = [rng.standard_normal((1 + i % 2, (4, 7, 9)[i % 3]), dtype=np.float32) for i in range(24)]

    async def scenario():
        batcher = Batcher(model, stats)
        results = await asyncio.gather(*(batcher.infer([r], r.shape[0]) for r in requests))
        await batcher.close()
        return results

    for sent, (output,) in zip(requests, asyncio.run(scenario()), strict=True):
        np.testing.assert_array_equal(output, sent * 2)
    assert stats.inferences == sum(r.shape[0] for r in requests) and stats.pending == 0
    # batched per shape: 12 rows of each width in batches of at most 8 rows: 2 executions per width
    assert stats.executions == 6


def test_batcher_keeps_arrival_order_within_a_shape():
    model = TorchModel(parse_model_config(_VARIABLE_CONFIG, "var"), "1", _doubler(), torch.device("cpu"))
    stats = ModelStats("var", "1")
    order: list[int] = []

    async def scenario():
        batcher = Batcher(model, stats)

        async def one(index: int, width: int):
            await batcher.infer([np.full((1, width), index, np.float32)], 1)
            order.append(index)

        await asyncio.gather(*(one(i, 3 if i % 2 else 5) for i in range(20)))
        await batcher.close()

    asyncio.run(scenario())
    assert [i for i in order if i % 2] == sorted(i for i in order if i % 2)
    assert [i for i in order if not i % 2] == sorted(i for i in order if not i % 2)


# -- JSON bodies a parser chokes on ----------------------------------------------------------------
_DEEP = 100_000


@pytest.mark.sandbox
@pytest.mark.parametrize("body", [
    b"[" * _DEEP + b"]" * _DEEP,
    b'{"inputs":' + b"[" * _DEEP + b"]" * _DEEP + b"}",
    b'{"id":"x","parameters":' + b'{"a":' * _DEEP + b"1" + b"}" * _DEEP + b"}",
], ids=["array", "inputs", "object"])
@pytest.mark.parametrize("path", [INFER, "/v2/repository/index", "/v2/mlfleet/models/mlp/pin"])
def test_deeply_nested_json_is_a_400(runtime, path, body):
    status, _, payload = request(runtime.http_url, "POST", path, body,
                                 {"Authorization": f"Bearer {ADMIN_TOKEN}"})
    assert "nested too deeply" in _assert_client_error(status, payload)


@pytest.mark.sandbox
@pytest.mark.parametrize("depth", [60, 300, 900])
@pytest.mark.parametrize("where", ["data", "shape", "name", "datatype", "outputs", "id"])
def test_nesting_under_the_parser_bound_is_still_a_4xx(runtime, depth, where):
    deep = "[" * depth + "1" + "]" * depth
    document = json.dumps(_body()).replace(" ", "")
    target = {"data": '"data":[0.5', "shape": '"shape":[1,64]', "name": '"name":"INPUT__0"',
              "datatype": '"datatype":"FP32"', "id": '"inputs"', "outputs": '"inputs"'}[where]
    replacement = {"data": f'"data":[{deep}', "shape": f'"shape":{deep}', "name": f'"name":{deep}',
                   "datatype": f'"datatype":{deep}', "id": f'"id":{deep},"inputs"',
                   "outputs": f'"outputs":[{{"name":{deep}}}],"inputs"'}[where]
    body = document.replace(target, replacement, 1).encode()
    status, _, payload = request(runtime.http_url, "POST", INFER, body)
    _assert_client_error(status, payload)


@pytest.mark.sandbox
@pytest.mark.parametrize("where", ["data", "shape", "id"])
def test_an_integer_of_too_many_digits_is_a_400_counted_as_a_failure(runtime, where):
    huge = "9" * 5000
    document = json.dumps(_body(id="x")).replace(" ", "")
    target, replacement = {"data": ('"data":[0.5', f'"data":[{huge}'),
                           "shape": ('"shape":[1,64]', f'"shape":[1,{huge}]'),
                           "id": ('"id":"x"', f'"id":{huge}')}[where]
    before = _failures(runtime)
    status, _, payload = request(runtime.http_url, "POST", INFER, document.replace(target, replacement, 1).encode())
    assert "not valid JSON" in _assert_client_error(status, payload)
    assert _failures(runtime) == before + 1
    status, _, payload = request(runtime.http_url, "POST", "/v2/repository/index", f'{{"ready":{huge}}}'.encode())
    _assert_client_error(status, payload)


def test_an_unexpected_exception_in_inference_counts_as_a_server_side_failure(tmp_path, manifest_key):
    write_example_repository(tmp_path, signing_key=manifest_key.signing_key)
    metrics = Metrics()
    manager = ModelManager(LocalSource(tmp_path), metrics, manifest_public_key=manifest_key.signing_key.public_key)
    plane = DataPlane(manager, metrics)

    def decode():
        raise ValueError("a decoder bug")

    async def scenario():
        await manager.start()
        try:
            with pytest.raises(ValueError):
                await plane.infer("mlp", None, decode, lambda result: result, started_ns=time.perf_counter_ns())
        finally:
            await manager.close()

    asyncio.run(scenario())
    stats = metrics.stats("mlp", "2")
    assert (stats.success, stats.failure) == (0, 1)
    assert stats.error_rate() == (1.0, 1)  # the front end answers 500: the server's fault


# -- the request id -------------------------------------------------------------------------------
@pytest.mark.sandbox
@pytest.mark.parametrize("request_id", ["NaN", "Infinity", "5", "1.5", "true", '{"a":1}', '["x"]'])
def test_a_non_string_id_is_a_400(runtime, request_id):
    body = json.dumps(_body(id="placeholder")).replace('"placeholder"', request_id).encode()
    status, _, payload = request(runtime.http_url, "POST", INFER, body)
    assert "'id' must be a string" in _assert_client_error(status, payload)


@pytest.mark.sandbox
def test_a_string_id_is_echoed(runtime):
    status, _, payload = request(runtime.http_url, "POST", INFER, json.dumps(_body(id="req-7")).encode())
    assert status == 200 and _strict_json(payload)["id"] == "req-7"


def test_non_finite_values_never_make_invalid_json():
    spec = parse_model_config(_VARIABLE_CONFIG, "var")
    values = np.array([[1.5, np.nan, np.inf, -np.inf]], np.float32)
    payload, header_length = encode_response(InferResult("var", "1", [(spec.outputs[0], values)], "r"), [False])
    assert header_length is None
    assert _strict_json(payload)["outputs"][0]["data"] == [1.5, None, None, None]
    # binary outputs carry them exactly
    payload, header_length = encode_response(InferResult("var", "1", [(spec.outputs[0], values)], "r"), [True])
    np.testing.assert_array_equal(np.frombuffer(payload[header_length:], np.float32), values.reshape(-1))
    assert _strict_json(json_bytes({"rate": float("nan"), "list": (1.0, float("inf"))})) == {"rate": None,
                                                                                        "list": [1.0, None]}


# -- compressed bodies ------------------------------------------------------------------------------
def _post_compressed(runtime, body: bytes, encoding: str = "gzip"):
    return request(runtime.http_url, "POST", INFER, body, {"Content-Encoding": encoding})


@pytest.mark.sandbox
def test_a_multi_member_gzip_body_is_decoded_whole(runtime):
    document = json.dumps(_body(id="two-members")).encode()
    half = len(document) // 2
    status, _, payload = _post_compressed(runtime, gzip.compress(document[:half]) + gzip.compress(document[half:]))
    assert status == 200, payload[:300]
    assert _strict_json(payload)["id"] == "two-members"
    # zero padding after the last member is allowed, as gzip(1) allows it
    assert _post_compressed(runtime, gzip.compress(document) + b"\0" * 16)[0] == 200


@pytest.mark.sandbox
@pytest.mark.parametrize("encoding, body", [
    ("gzip", gzip.compress(json.dumps(_body()).encode()) + b"trailing garbage"),
    ("gzip", gzip.compress(json.dumps(_body()).encode()) + b"\0\0garbage"),
    ("gzip", gzip.compress(json.dumps(_body()).encode())[:-6]),
    ("deflate", zlib.compress(json.dumps(_body()).encode()) + b"x"),
    ("deflate", zlib.compress(json.dumps(_body()).encode())[:-3]),
], ids=["gzip-garbage", "gzip-padding-then-garbage", "gzip-truncated", "deflate-garbage", "deflate-truncated"])
def test_a_compressed_body_with_trailing_bytes_or_truncated_is_a_400(runtime, encoding, body):
    status, _, payload = _post_compressed(runtime, body, encoding)
    assert "not valid" in _assert_client_error(status, payload)


@pytest.mark.sandbox
def test_the_inflation_bound_holds_across_gzip_members(runtime):
    member = gzip.compress(b" " * (MAX_BODY_BYTES // 2 + 1))  # each member alone is under the bound
    status, _, payload = _post_compressed(runtime, member + member)
    assert "exceeds" in _assert_client_error(status, payload, 413)


# -- WebSocket --------------------------------------------------------------------------------------
@pytest.mark.sandbox
@pytest.mark.parametrize("path", ["/v2/models/mlp/infer", "/v2/health/live", "/nowhere"])
def test_a_websocket_upgrade_is_refused_with_a_403(runtime, path):
    with socket.create_connection(("127.0.0.1", runtime.http_port), timeout=10) as connection:
        connection.sendall(f"GET {path} HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                           "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
                           .encode())
        answer = b""
        while b"\r\n\r\n" not in answer:
            chunk = connection.recv(65536)
            if not chunk:
                break
            answer += chunk
    status = int(answer.split(b" ", 2)[1])
    assert status == 403, answer[:300]
    assert request(runtime.http_url, "GET", "/v2/health/live")[0] == 200
    time.sleep(0.2)  # the server writes its log asynchronously
    assert "handshake" not in runtime._log_path.read_text()


# -- model configuration ----------------------------------------------------------------------------
@pytest.mark.sandbox
def test_config_has_numbers_for_64_bit_integer_fields(runtime):
    status, _, payload = request(runtime.http_url, "GET", "/v2/models/mlp/config")
    config = _strict_json(payload)
    assert status == 200
    assert config["input"][0]["dims"] == [64] and config["output"][0]["dims"] == [10]
    assert config["max_batch_size"] == 64

    def strings(value):
        if isinstance(value, dict):
            return [s for v in value.values() for s in strings(v)]
        if isinstance(value, list):
            return [s for v in value for s in strings(v)]
        return [value] if isinstance(value, str) else []
    assert not [s for s in strings(config) if re.fullmatch(r"-?\d+", s)], config


# -- gRPC ---------------------------------------------------------------------------------------------
@pytest.fixture
def grpc_stub(runtime):
    with grpc.insecure_channel(runtime.grpc_url) as channel:
        yield service_pb2_grpc.GRPCInferenceServiceStub(channel)


@pytest.mark.sandbox
def test_grpc_refuses_raw_and_typed_contents_for_one_input(grpc_stub):
    message = pb.ModelInferRequest(model_name="mlp")
    message.inputs.add(name="INPUT__0", datatype="FP32", shape=[1, 64]).contents.fp32_contents.extend([0.5] * 64)
    message.raw_input_contents.append(np.full((1, 64), 0.25, np.float32).tobytes())
    with pytest.raises(grpc.RpcError) as refused:
        grpc_stub.ModelInfer(message, timeout=10)
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "raw_input_contents" in refused.value.details()
    del message.inputs[0].contents.fp32_contents[:]
    message.inputs[0].ClearField("contents")
    assert list(grpc_stub.ModelInfer(message, timeout=10).outputs[0].shape) == [1, 10]


@pytest.mark.sandbox
def test_rest_refuses_data_and_binary_data_for_one_input(runtime):
    document = _body()
    document["inputs"][0]["parameters"] = {"binary_data_size": 256}
    header = json.dumps(document).encode()
    status, _, payload = request(runtime.http_url, "POST", INFER, header + np.zeros(64, np.float32).tobytes(),
                                 {"Inference-Header-Content-Length": str(len(header))})
    assert "both 'data' and binary_data_size" in _assert_client_error(status, payload)


@pytest.mark.sandbox
def test_unimplemented_grpc_calls_are_refused_quietly(runtime, grpc_stub):
    for call, message in [(grpc_stub.TraceSetting, pb.TraceSettingRequest()),
                          (grpc_stub.LogSettings, pb.LogSettingsRequest())]:
        with pytest.raises(grpc.RpcError) as refused:
            call(message, timeout=10)
        assert refused.value.code() == grpc.StatusCode.UNIMPLEMENTED
    time.sleep(0.2)  # the server writes its log asynchronously
    log = runtime._log_path.read_text()
    assert "NotImplementedError" not in log and "Traceback" not in log, log[-2000:]


# -- shutdown ---------------------------------------------------------------------------------------
@pytest.mark.sandbox
def test_a_client_stalled_mid_body_gets_a_clean_answer_and_exit_is_within_the_grace_period(example_repo, manifest_key):
    runtime = RuntimeProcess(example_repo, manifest_public_key=manifest_key.public_key_path,
                             extra_args=["--grace-period", "5", "--grpc-port", "0"]).start()
    try:
        connection = socket.create_connection(("127.0.0.1", runtime.http_port), timeout=15)
        body = json.dumps(_body()).encode()
        connection.sendall(f"POST {INFER} HTTP/1.1\r\nHost: localhost\r\nContent-Length: {len(body)}\r\n\r\n".encode()
                           + body[:20])  # ...and the rest never comes
        time.sleep(0.3)
        signalled = time.monotonic()
        runtime.terminate()
        returncode = runtime.process.wait(timeout=15)
        elapsed = time.monotonic() - signalled
        answer = b""
        while chunk := connection.recv(65536):
            answer += chunk
        connection.close()
    finally:
        runtime.stop()
    assert returncode == 0 and elapsed < 5, elapsed
    # a well-formed 503 (or a plain close), never a 500
    if answer:
        head, _, payload = answer.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 503"), answer[:300]
        assert "shutting down" in _strict_json(payload)["error"]


@pytest.mark.sandbox
@pytest.mark.parametrize(("method", "path", "allow"), [
    ("TRACE", "/v2", "GET"),
    ("DELETE", "/v2/health/live", "GET"),
    ("GET", INFER, "POST"),
    ("PUT", "/v2/models/mlp/versions/2/infer", "POST"),
    ("DELETE", "/v2/mlfleet/models/mlp/pin", "GET, POST"),
])
def test_a_405_names_the_allowed_methods(runtime, method, path, allow):
    # found by schemathesis (RFC 9110: a 405 must carry Allow); the body already named them
    status, headers, payload = request(runtime.http_url, method, path)
    assert status == 405 and headers.get("allow") == allow, (status, headers)
    assert f"use {allow.replace(', ', ' or ')}" in _strict_json(payload)["error"]
