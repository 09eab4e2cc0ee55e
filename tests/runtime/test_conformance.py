"""tritonclient (HTTP and gRPC), unchanged, against the runtime process: every route, both
encodings, outputs equal to a direct torch forward."""
from __future__ import annotations

import json

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.grpc import service_pb2, service_pb2_grpc
from tritonclient.utils import InferenceServerException

from helpers.runtime import reference_forward, request, request_json

pytestmark = pytest.mark.sandbox  # starts or talks to a runtime process


RNG = np.random.default_rng(3)


@pytest.fixture(scope="module")
def http(runtime):
    client = httpclient.InferenceServerClient(runtime.http_url.removeprefix("http://"))
    yield client
    client.close()


@pytest.fixture(scope="module")
def grpc_client(runtime):
    client = grpcclient.InferenceServerClient(runtime.grpc_url)
    yield client
    client.close()


def test_http_server_and_model_routes(http):
    assert http.is_server_live() and http.is_server_ready()
    assert http.get_server_metadata()["name"] == "mlfleet"
    assert "binary_tensor_data" in http.get_server_metadata()["extensions"]
    assert http.is_model_ready("mlp") and http.is_model_ready("mlp", "2")
    assert not http.is_model_ready("mlp", "1")  # approved but not pinned
    assert not http.is_model_ready("no-such-model")
    metadata = http.get_model_metadata("mlp", "2")
    assert metadata["versions"] == ["2"]
    assert metadata["inputs"] == [{"name": "INPUT__0", "datatype": "FP32", "shape": [-1, 64]}]
    assert metadata["outputs"] == [{"name": "OUTPUT__0", "datatype": "FP32", "shape": [-1, 10]}]
    config = http.get_model_config("mlp")
    assert config["max_batch_size"] == 64 and config["input"][0]["dims"] == [64]  # numbers, as Triton
    index = http.get_model_repository_index()
    assert {"name": "mlp", "version": "2", "state": "READY"} in index
    assert any(e["name"] == "mlp" and e["version"] == "1" and e["state"] == "UNAVAILABLE" for e in index)


def test_grpc_server_and_model_routes(grpc_client):
    assert grpc_client.is_server_live() and grpc_client.is_server_ready()
    assert grpc_client.get_server_metadata().name == "mlfleet"
    assert grpc_client.is_model_ready("mlp", "2") and not grpc_client.is_model_ready("mlp", "1")
    metadata = grpc_client.get_model_metadata("mlp")
    assert list(metadata.inputs[0].shape) == [-1, 64] and metadata.platform == "pytorch_libtorch"
    assert grpc_client.get_model_config("mlp").config.max_batch_size == 64
    ready = grpc_client.get_model_repository_index().models
    assert {(m.name, m.version, m.state) for m in ready} >= {("mlp", "2", "READY"), ("mlp", "1", "UNAVAILABLE")}


@pytest.mark.parametrize("binary_in", [True, False], ids=["binary-in", "json-in"])
@pytest.mark.parametrize("binary_out", [True, False], ids=["binary-out", "json-out"])
@pytest.mark.parametrize("model", ["mlp", "mlp-large"])
def test_http_infer_equals_torch(http, example_repo, model, binary_in, binary_out):
    batch = RNG.standard_normal((5, 64), dtype=np.float32)
    tensor = httpclient.InferInput("INPUT__0", list(batch.shape), "FP32")
    tensor.set_data_from_numpy(batch, binary_data=binary_in)
    result = http.infer(model, [tensor], model_version="2", request_id="req-7",
                        outputs=[httpclient.InferRequestedOutput("OUTPUT__0", binary_data=binary_out)])
    np.testing.assert_allclose(result.as_numpy("OUTPUT__0"), reference_forward(example_repo, model, "2", batch),
                               rtol=1e-5, atol=1e-5)
    response = result.get_response()
    assert response["id"] == "req-7" and response["model_version"] == "2"


@pytest.mark.parametrize("model", ["mlp", "mlp-large"])
def test_grpc_infer_equals_torch(grpc_client, example_repo, model):
    batch = RNG.standard_normal((3, 64), dtype=np.float32)
    tensor = grpcclient.InferInput("INPUT__0", list(batch.shape), "FP32")
    tensor.set_data_from_numpy(batch)
    result = grpc_client.infer(model, [tensor], outputs=[grpcclient.InferRequestedOutput("OUTPUT__0")])
    np.testing.assert_allclose(result.as_numpy("OUTPUT__0"), reference_forward(example_repo, model, "2", batch),
                               rtol=1e-5, atol=1e-5)


def test_grpc_typed_contents_and_raw_outputs(runtime, example_repo):
    """A raw gRPC request with typed (non-raw) input contents, as other v2 clients send."""
    import grpc

    batch = RNG.standard_normal((2, 64), dtype=np.float32)
    request_pb = service_pb2.ModelInferRequest(model_name="mlp")
    tensor = request_pb.inputs.add(name="INPUT__0", datatype="FP32", shape=[2, 64])
    tensor.contents.fp32_contents.extend(batch.flatten().tolist())
    with grpc.insecure_channel(runtime.grpc_url) as channel:
        response = service_pb2_grpc.GRPCInferenceServiceStub(channel).ModelInfer(request_pb)
    assert [o.name for o in response.outputs] == ["OUTPUT__0"] and list(response.outputs[0].shape) == [2, 10]
    got = np.frombuffer(response.raw_output_contents[0], dtype=np.float32).reshape(2, 10)
    np.testing.assert_allclose(got, reference_forward(example_repo, "mlp", "2", batch), rtol=1e-5, atol=1e-5)


def test_binary_data_output_request_parameter(runtime, example_repo):
    batch = RNG.standard_normal((1, 64), dtype=np.float32)
    header = json.dumps({"inputs": [{"name": "INPUT__0", "datatype": "FP32", "shape": [1, 64],
                                     "parameters": {"binary_data_size": batch.nbytes}}],
                         "parameters": {"binary_data_output": True}}).encode()
    status, headers, body = request(runtime.http_url, "POST", "/v2/models/mlp/infer", header + batch.tobytes(),
                                    {"Inference-Header-Content-Length": str(len(header))})
    assert status == 200 and headers["content-type"] == "application/octet-stream"
    length = int(headers["inference-header-content-length"])
    response = json.loads(body[:length])
    assert response["outputs"][0]["parameters"]["binary_data_size"] == 40
    got = np.frombuffer(body[length:], dtype=np.float32).reshape(1, 10)
    np.testing.assert_allclose(got, reference_forward(example_repo, "mlp", "2", batch), rtol=1e-5, atol=1e-5)


def test_gzip_request_body(runtime):
    import gzip

    body = gzip.compress(json.dumps({"inputs": [{"name": "INPUT__0", "datatype": "FP32", "shape": [1, 64],
                                                 "data": [0.5] * 64}]}).encode())
    status, _, payload = request(runtime.http_url, "POST", "/v2/models/mlp/infer", body, {"Content-Encoding": "gzip"})
    assert status == 200 and json.loads(payload)["outputs"][0]["shape"] == [1, 10]


def test_unknown_model_and_version_errors(http, grpc_client, runtime):
    tensor = httpclient.InferInput("INPUT__0", [1, 64], "FP32")
    tensor.set_data_from_numpy(np.zeros((1, 64), np.float32))
    with pytest.raises(InferenceServerException, match="unknown model 'nope'") as caught:
        http.infer("nope", [tensor])
    assert caught.value.status() == "404"
    with pytest.raises(InferenceServerException, match="version '1' is not loaded"):
        http.infer("mlp", [tensor], model_version="1")
    gtensor = grpcclient.InferInput("INPUT__0", [1, 64], "FP32")
    gtensor.set_data_from_numpy(np.zeros((1, 64), np.float32))
    with pytest.raises(InferenceServerException) as caught:
        grpc_client.infer("nope", [gtensor])
    assert caught.value.status() == "StatusCode.NOT_FOUND"
    status, body = request_json(runtime.http_url, "GET", "/v2/models/nope")
    assert status == 404 and set(body) == {"error"}
    status, body = request_json(runtime.http_url, "GET", "/v2/models/mlp/versions/9/ready")
    assert status == 404 and "not loaded" in body["error"]
    status, body = request_json(runtime.http_url, "DELETE", "/v2/models/mlp")
    assert status == 405 and "error" in body


@pytest.mark.parametrize("document, fragment", [
    ({"inputs": [{"name": "INPUT__0", "datatype": "INT32", "shape": [1, 64], "data": [0] * 64}]}, "datatype"),
    ({"inputs": [{"name": "INPUT__0", "datatype": "FP32", "shape": [1, 63], "data": [0] * 63}]}, "shape"),
    ({"inputs": [{"name": "INPUT__0", "datatype": "FP32", "shape": [65, 64], "data": [0] * 65 * 64}]}, "batch size"),
    ({"inputs": [{"name": "INPUT__0", "datatype": "FP32", "shape": [1, 64], "data": [0] * 10}]}, "10 values"),
    ({"inputs": [{"name": "WRONG", "datatype": "FP32", "shape": [1, 64], "data": [0] * 64}]}, "no input"),
    ({"inputs": [{"name": "INPUT__0", "datatype": "FP32", "shape": [1, 64], "data": ["x"] * 64}]}, "kind"),
    ({"inputs": []}, "non-empty"),
])
def test_bad_input_is_a_400_naming_the_problem(http, runtime, document, fragment):
    status, body = request_json(runtime.http_url, "POST", "/v2/models/mlp/infer", document)
    assert status == 400 and fragment in body["error"]
    assert http.is_server_live()


def test_binary_byte_count_must_match_shape(runtime):
    header = json.dumps({"inputs": [{"name": "INPUT__0", "datatype": "FP32", "shape": [1, 64],
                                     "parameters": {"binary_data_size": 255}}]}).encode()
    status, _, body = request(runtime.http_url, "POST", "/v2/models/mlp/infer", header + b"\0" * 255,
                              {"Inference-Header-Content-Length": str(len(header))})
    assert status == 400 and "255 bytes" in json.loads(body)["error"]
