"""BYTES / TYPE_STRING tensors: the wire layouts (JSON, binary extension, gRPC typed and raw),
string TorchScript models, their canaries, and NVIDIA's string client examples against the runtime."""
from __future__ import annotations

import json
import struct

import grpc
import numpy as np
import pytest
import torch
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.grpc import service_pb2 as pb
from tritonclient.grpc import service_pb2_grpc
from tritonclient.utils import InferenceServerException, serialize_byte_tensor

from mlfleet.runtime import strings
from mlfleet.runtime.canary import Canary, CanaryError
from mlfleet.runtime.errors import BadRequest, ModelFailure
from mlfleet.runtime.examples import write_example_repository
from mlfleet.runtime.manifest import sha256_file
from mlfleet.runtime.model_spec import parse_model_config
from mlfleet.runtime.process import RuntimeProcess
from mlfleet.runtime.torch_model import TorchModel

from helpers.runtime import request, request_json
from helpers.runtime_signing import edit_manifest

STRING_MODELS = ("simple_string", "simple_identity")


def _prefixed(*elements: bytes) -> bytes:
    return b"".join(struct.pack("<I", len(e)) + e for e in elements)


# -- the codec -------------------------------------------------------------------------------------
def test_length_prefixed_layout_is_tritonclients():
    values = np.array([["7".encode(), "he\x00llo".encode(), "grüße".encode()]], dtype=object)
    raw = serialize_byte_tensor(values).item()
    array = strings.array_from_length_prefixed("INPUT0", [1, 3], raw)
    assert array.shape == (1, 3) and array.tolist() == [["7", "he\x00llo", "grüße"]]
    assert strings.length_prefixed(array) == raw
    assert strings.array_from_length_prefixed("INPUT0", [0, 16], b"").shape == (0, 16)


@pytest.mark.parametrize(("raw", "shape", "message"), [
    (b"\x05\x00", [1], "element 0's 4-byte length prefix runs past the 2-byte buffer"),
    (_prefixed(b"ab") + b"\x01\x00\x00", [1, 2], "element 1's 4-byte length prefix runs past the 9-byte"),
    (_prefixed(b"ab") + struct.pack("<I", 1 << 31), [1, 2], "element 1 declares 2147483648 bytes, only 0"),
    (struct.pack("<I", 10) + b"abc", [1], "element 0 declares 10 bytes, only 3 remain"),
    (struct.pack("<I", 0xFFFFFFFF), [1], "element 0 declares 4294967295 bytes, only 0 remain"),
    (_prefixed(b"a"), [1, 2], "1 BYTES elements for shape [1, 2] (needs 2)"),
    (_prefixed(b"a", b"b", b"c"), [1, 2], "bytes follow the 2 BYTES elements of shape [1, 2]"),
    (_prefixed(b"ok", b"\xff\xfe"), [2], "element 1 is not UTF-8"),
])
def test_bad_binary_strings_are_bad_requests_naming_the_input(raw, shape, message):
    with pytest.raises(BadRequest, match="input 'INPUT0'") as error:
        strings.array_from_length_prefixed("INPUT0", shape, raw)
    assert message in error.value.message


def test_json_strings_flat_nested_and_bad():
    assert strings.array_from_values("X", [2, 2], [["a", "b"], ["c", "d"]]).tolist() == [["a", "b"], ["c", "d"]]
    assert strings.array_from_values("X", [1, 2], [b"a", "b"]).tolist() == [["a", "b"]]  # gRPC bytes_contents
    for data, message in [([1, 2], "holds a int, not a string"), ("ab", "must be a list of strings"),
                          (["a"], "1 BYTES elements for shape [1, 2]"), ([["a"], "b", ["c"]], "more than 2 BYTES"),
                          ([b"ok", b"\xc3"], "element 1 is not UTF-8")]:
        with pytest.raises(BadRequest, match="input 'X'") as error:
            strings.array_from_values("X", [1, 2], data)
        assert message in error.value.message


def test_output_shape_from_the_config_and_the_inputs():
    assert strings.output_array("m", "O", ["a"] * 32, [2, 16], []).shape == (2, 16)
    assert strings.output_array("m", "O", ["a"] * 6, [2, -1], []).shape == (2, 3)
    assert strings.output_array("m", "O", ["a"] * 6, [-1, -1], [(1, 6)]).shape == (1, 6)
    with pytest.raises(ModelFailure, match="5 strings do not fit its shape"):
        strings.output_array("m", "O", ["a"] * 5, [2, -1], [])


# -- the model side --------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def string_repo(tmp_path_factory, manifest_key):
    root = tmp_path_factory.mktemp("string-repository")
    write_example_repository(root, models=STRING_MODELS, signing_key=manifest_key.signing_key)
    return root


def _loaded(repo, model: str):
    spec = parse_model_config((repo / model / "config.pbtxt").read_text(), model)
    return spec, TorchModel.load(spec, "2", (repo / model / "2" / "model.pt").read_bytes())


def test_type_string_config_is_bytes(string_repo):
    spec, _ = _loaded(string_repo, "simple_string")
    assert [(t.name, t.datatype, spec.full_shape(t)) for t in spec.inputs] == [
        ("INPUT0", "BYTES", [-1, 16]), ("INPUT1", "BYTES", [-1, 16])]
    assert spec.dynamic_batching


def test_string_requests_batch_together_and_split_back(string_repo):
    spec, model = _loaded(string_repo, "simple_string")

    def request_of(rows: int, start: int) -> list[np.ndarray]:
        first = np.array([[str(start + r * 16 + i) for i in range(16)] for r in range(rows)], dtype=object)
        return [first, np.full((rows, 16), "3", dtype=object)]
    one, two = request_of(1, 0), request_of(2, 100)
    (sum_one, diff_one), (sum_two, diff_two) = model.execute([one, two])  # one forward of 3 rows
    assert sum_one.shape == (1, 16) and sum_two.shape == (2, 16)
    assert sum_two.tolist() == [[str(int(v) + 3) for v in row] for row in two[0].tolist()]
    assert diff_one.tolist() == [[str(v - 3) for v in range(16)]]


def test_canary_of_a_string_model_compares_strings_exactly(string_repo):
    spec, model = _loaded(string_repo, "simple_string")
    document = json.loads((string_repo / "simple_string" / "2" / "canary.json").read_text())
    canary = Canary.parse(json.dumps(document).encode(), spec, "canary.json")
    assert canary.mismatch(model.execute([canary.inputs])[0]) is None
    document["outputs"]["OUTPUT1"]["data"][3] = "3"  # the approved model answers 3 - 1 = "2"
    wrong = Canary.parse(json.dumps(document).encode(), spec, "canary.json")
    assert wrong.mismatch(model.execute([wrong.inputs])[0]) == (
        "output 1: 1 string(s) differ, the first at element 3: '2' != expected '3'")
    document["outputs"]["OUTPUT1"]["data"] = [1] * 16
    with pytest.raises(CanaryError, match="output 'OUTPUT1': BYTES 'data' holds a int"):
        Canary.parse(json.dumps(document).encode(), spec, "canary.json")


class TensorForStrings(torch.nn.Module):
    """Declared TYPE_STRING out, returns a tensor: the config and the model disagree."""

    def forward(self, input0: list[str]) -> torch.Tensor:
        return torch.zeros(len(input0))


def test_a_model_returning_a_tensor_for_a_string_output_is_a_model_failure(string_repo, tmp_path):
    spec, _ = _loaded(string_repo, "simple_identity")
    path = tmp_path / "wrong.pt"
    torch.jit.save(torch.jit.script(TensorForStrings()), str(path))
    model = TorchModel.load(spec, "1", path.read_bytes())
    with pytest.raises(ModelFailure, match="output 'OUTPUT0' is a Tensor, its config declares List"):
        model.execute([[np.array([["a"]], dtype=object)]])


# -- against a runtime: NVIDIA's string client examples and the bounds -----------------------------
@pytest.fixture(scope="module")
def string_runtime(string_repo, manifest_key):
    with RuntimeProcess(string_repo, manifest_public_key=manifest_key.public_key_path,
                        extra_args=["--canary-interval", "600"]) as runtime:
        yield runtime


def _example_inputs():
    in0 = np.expand_dims(np.arange(16, dtype=np.int32), axis=0)
    in1 = np.ones((1, 16), dtype=np.int32)
    as_bytes = [np.array([str(x).encode("utf-8") for x in a.reshape(a.size)], dtype=np.object_).reshape(a.shape)
                for a in (in0, in1)]
    return as_bytes, in0 + in1, in0 - in1


IDENTITY_INPUTS = [np.array(["he\x00llo".encode("utf-8")] * 16, dtype=np.object_).reshape(1, 16),
                   np.array([b"\x00\x01\x02\x03"] * 16, dtype=np.bytes_).reshape(1, 16)]


@pytest.mark.sandbox
def test_http_string_example(string_runtime):
    """simple_http_string_infer_client.py: INPUT0 binary, INPUT1 JSON, OUTPUT0 binary, OUTPUT1 JSON."""
    client = httpclient.InferenceServerClient(string_runtime.http_url.removeprefix("http://"))
    (input0, input1), expected_sum, expected_diff = _example_inputs()
    inputs = [httpclient.InferInput("INPUT0", [1, 16], "BYTES"), httpclient.InferInput("INPUT1", [1, 16], "BYTES")]
    inputs[0].set_data_from_numpy(input0, binary_data=True)
    inputs[1].set_data_from_numpy(input1, binary_data=False)
    outputs = [httpclient.InferRequestedOutput("OUTPUT0", binary_data=True),
               httpclient.InferRequestedOutput("OUTPUT1", binary_data=False)]
    results = client.infer(model_name="simple_string", inputs=inputs, outputs=outputs)
    assert [int(v) for v in results.as_numpy("OUTPUT0")[0]] == expected_sum[0].tolist()
    assert [int(v) for v in results.as_numpy("OUTPUT1")[0]] == expected_diff[0].tolist()
    metadata = client.get_model_metadata("simple_string")
    assert metadata["inputs"][0] == {"name": "INPUT0", "datatype": "BYTES", "shape": [-1, 16]}
    assert client.get_model_config("simple_string")["input"][0]["data_type"] == "TYPE_STRING"

    for array in IDENTITY_INPUTS:  # the example's identity calls, binary and JSON
        for binary in (True, False):
            identity = httpclient.InferInput("INPUT0", list(array.shape), "BYTES")
            identity.set_data_from_numpy(array, binary_data=binary)
            answer = client.infer(model_name="simple_identity", inputs=[identity],
                                  outputs=[httpclient.InferRequestedOutput("OUTPUT0", binary_data=binary)])
            got = answer.as_numpy("OUTPUT0")
            got_bytes = [v if isinstance(v, bytes) else str(v).encode("utf-8") for v in got.reshape(-1)]
            assert got.shape == (1, 16) and got_bytes == list(array.reshape(-1))


@pytest.mark.sandbox
def test_grpc_string_example(string_runtime):
    """simple_grpc_string_infer_client.py: raw_input_contents in, raw_output_contents out."""
    client = grpcclient.InferenceServerClient(string_runtime.grpc_url)
    (input0, input1), expected_sum, expected_diff = _example_inputs()
    inputs = [grpcclient.InferInput("INPUT0", [1, 16], "BYTES"), grpcclient.InferInput("INPUT1", [1, 16], "BYTES")]
    inputs[0].set_data_from_numpy(input0)
    inputs[1].set_data_from_numpy(input1)
    results = client.infer(model_name="simple_string", inputs=inputs,
                           outputs=[grpcclient.InferRequestedOutput("OUTPUT0"),
                                    grpcclient.InferRequestedOutput("OUTPUT1")])
    assert [int(v) for v in results.as_numpy("OUTPUT0")[0]] == expected_sum[0].tolist()
    assert [int(v) for v in results.as_numpy("OUTPUT1")[0]] == expected_diff[0].tolist()
    for array in IDENTITY_INPUTS:
        identity = grpcclient.InferInput("INPUT0", list(array.shape), "BYTES")
        identity.set_data_from_numpy(array)
        got = client.infer(model_name="simple_identity", inputs=[identity]).as_numpy("OUTPUT0")
        assert got.shape == (1, 16) and list(got.reshape(-1)) == list(array.reshape(-1))


@pytest.mark.sandbox
def test_grpc_typed_bytes_contents_and_raw_bounds(string_runtime):
    with grpc.insecure_channel(string_runtime.grpc_url) as channel:
        stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
        typed = pb.ModelInferRequest(model_name="simple_string")
        for name, values in (("INPUT0", [b"40", b"2"]), ("INPUT1", [b"2", b"2"])):
            typed.inputs.add(name=name, datatype="BYTES", shape=[2, 1]).contents.bytes_contents.extend(values)
        with pytest.raises(grpc.RpcError) as error:  # [2, 1] is not [-1, 16]
            stub.ModelInfer(typed)
        assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT

        typed = pb.ModelInferRequest(model_name="simple_identity")
        typed.inputs.add(name="INPUT0", datatype="BYTES", shape=[1, 2]).contents.bytes_contents.extend([b"a", b"bc"])
        response = stub.ModelInfer(typed)
        assert response.raw_output_contents[0] == _prefixed(b"a", b"bc")
        assert list(response.outputs[0].shape) == [1, 2]

        for raw, message in [(_prefixed(b"a")[:-2], "length prefix runs past"),
                             (struct.pack("<I", 9) + b"a", "declares 9 bytes"),
                             (_prefixed(b"a", b"b", b"c"), "follow the 2 BYTES elements"),
                             (_prefixed(b"\xff", b"b"), "element 0 is not UTF-8")]:
            bad = pb.ModelInferRequest(model_name="simple_identity")
            bad.inputs.add(name="INPUT0", datatype="BYTES", shape=[1, 2])
            bad.raw_input_contents.append(raw)
            with pytest.raises(grpc.RpcError) as error:
                stub.ModelInfer(bad)
            assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert "input 'INPUT0'" in error.value.details() and message in error.value.details()


def _binary_body(raw: bytes, shape: list[int]) -> tuple[bytes, dict]:
    header = json.dumps({"inputs": [{"name": "INPUT0", "datatype": "BYTES", "shape": shape,
                                     "parameters": {"binary_data_size": len(raw)}}]}).encode()
    return header + raw, {"Inference-Header-Content-Length": str(len(header))}


@pytest.mark.sandbox
def test_http_bounds_are_bad_requests(string_runtime):
    url, path = string_runtime.http_url, "/v2/models/simple_identity/infer"
    for raw, shape, message in [(b"\x01\x00", [1, 1], "length prefix runs past"),
                                (struct.pack("<I", 100) + b"x", [1, 1], "declares 100 bytes, only 1 remain"),
                                (_prefixed(b"a"), [1, 2], "1 BYTES elements for shape [1, 2]"),
                                (_prefixed(b"a", b"b"), [1, 1], "follow the 1 BYTES elements"),
                                (_prefixed(b"\xc3\x28"), [1, 1], "element 0 is not UTF-8")]:
        body, headers = _binary_body(raw, shape)
        status, _, payload = request(url, "POST", path, body, headers)
        assert status == 400, payload
        error = json.loads(payload)["error"]
        assert "input 'INPUT0'" in error and message in error
    for data, message in [([1], "holds a int"), (["a", "b"], "more than 1 BYTES elements for shape [1, 1]")]:
        status, document = request_json(url, "POST", path, {"inputs": [
            {"name": "INPUT0", "datatype": "BYTES", "shape": [1, 1], "data": data}]})
        assert status == 400 and message in document["error"]
    status, document = request_json(url, "POST", path, {"inputs": [
        {"name": "INPUT0", "datatype": "BYTES", "shape": [1, 3], "data": ["x", "ü", ""]}]})
    assert status == 200 and document["outputs"][0] == {"name": "OUTPUT0", "datatype": "BYTES", "shape": [1, 3],
                                                        "data": ["x", "ü", ""]}


@pytest.mark.sandbox
def test_string_models_pass_their_canaries_and_failover_health(string_runtime):
    status, health = request_json(string_runtime.http_url, "GET", "/v2/health/failover")
    assert status == 200, health
    assert {m: health["models"][m]["canary_passed_at"] is not None for m in STRING_MODELS} == {
        m: True for m in STRING_MODELS}


@pytest.mark.sandbox
def test_a_string_the_model_cannot_read_fails_in_the_model(string_runtime):
    """simple_string itself parses its decimal strings: text it cannot parse is the model's failure."""
    client = httpclient.InferenceServerClient(string_runtime.http_url.removeprefix("http://"))
    inputs = [httpclient.InferInput(n, [1, 16], "BYTES") for n in ("INPUT0", "INPUT1")]
    for item in inputs:
        item.set_data_from_numpy(np.array([[b"seven"] * 16], dtype=np.object_))
    with pytest.raises(InferenceServerException, match="model 'simple_string' version 2 failed"):
        client.infer(model_name="simple_string", inputs=inputs)


@pytest.mark.sandbox
def test_a_wrong_golden_string_refuses_the_version(tmp_path, manifest_key):
    write_example_repository(tmp_path, models=("simple_identity",), signing_key=manifest_key.signing_key)
    canary = tmp_path / "simple_identity" / "2" / "canary.json"
    document = json.loads(canary.read_text())
    document["outputs"]["OUTPUT0"]["data"][0] = "hello"
    canary.write_text(json.dumps(document))
    digest = sha256_file(canary)

    def approve_the_edited_canary(manifest: dict) -> None:
        manifest["models"]["simple_identity"]["versions"]["2"]["files"]["canary.json"] = digest

    edit_manifest(tmp_path, manifest_key.signing_key, approve_the_edited_canary)
    log = tmp_path / "runtime.log"
    with pytest.raises(RuntimeError, match="runtime exited with 2 before it was ready"):
        RuntimeProcess(tmp_path, manifest_public_key=manifest_key.public_key_path,
                       extra_args=["--grpc-port", "0"], log_path=log).start()
    assert ("simple_identity version 2: canary failed: output 0: 1 string(s) differ, the first at element 0: "
            "'he\\x00llo' != expected 'hello'") in log.read_text()
