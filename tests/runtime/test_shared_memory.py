"""Triton's system shared memory extension on HTTP and gRPC: NVIDIA's `simple_http_shm_client.py`
and `simple_grpc_shm_client.py` calls against the `simple` model, every bound a region is checked
against (400 / INVALID_ARGUMENT naming the problem, never a read or write outside the region), the
secure default (off with a management port), and CUDA shared memory answered as not supported."""
from __future__ import annotations

import os
import uuid

import grpc
import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
import tritonclient.utils.shared_memory as shm
from tritonclient import utils
from tritonclient.utils import InferenceServerException

from mlfleet.runtime.examples import write_example_repository
from mlfleet.runtime.process import RuntimeProcess
from mlfleet.runtime.shared_memory import MODES, SharedMemoryRegistry, enabled

from helpers.runtime import request, request_json

pytestmark = pytest.mark.sandbox  # starts or talks to a runtime process

INPUT0 = np.arange(start=0, stop=16, dtype=np.int32)
INPUT1 = np.ones(shape=16, dtype=np.int32)
TENSOR_BYTES = INPUT0.size * INPUT0.itemsize  # 64: one [1, 16] INT32 tensor


@pytest.fixture(scope="module")
def simple_repo(tmp_path_factory, manifest_key):
    root = tmp_path_factory.mktemp("simple-repo")
    write_example_repository(root, models=("simple",), versions=("1",), champion="1",
                             signing_key=manifest_key.signing_key)
    return root


@pytest.fixture(scope="module")
def served(simple_repo, tmp_path_factory, manifest_key):
    """Loopback HTTP and gRPC, no management port: the extension is on by default."""
    log = tmp_path_factory.mktemp("logs") / "shm-runtime.log"
    with RuntimeProcess(simple_repo, manifest_public_key=manifest_key.public_key_path, log_path=log) as runtime:
        yield runtime


@pytest.fixture
def regions():
    """Creates uniquely keyed regions (tritonclient's POSIX shm) and destroys them afterwards."""
    created = []

    def create(size: int):
        key = f"/mlfleet-test-{uuid.uuid4().hex}"
        handle = shm.create_shared_memory_region(key.lstrip("/"), key, size)
        created.append(handle)
        return handle, key
    yield create
    for handle in created:
        shm.destroy_shared_memory_region(handle)


@pytest.fixture
def clients(served):
    http = httpclient.InferenceServerClient(served.http_url.removeprefix("http://"))
    grpc_client = grpcclient.InferenceServerClient(served.grpc_url)
    yield http, grpc_client
    http.unregister_system_shared_memory()  # each test starts with no region registered
    http.close()
    grpc_client.close()


def _input_region(create):
    """A region holding INPUT0 then INPUT1, as the examples write it."""
    handle, key = create(TENSOR_BYTES * 2)
    shm.set_shared_memory_region(handle, [INPUT0])
    shm.set_shared_memory_region(handle, [INPUT1], offset=TENSOR_BYTES)
    return handle, key


# -- NVIDIA's client examples -------------------------------------------------------------------
def test_simple_http_shm_client(clients, regions):
    http, _ = clients
    http.unregister_system_shared_memory()
    http.unregister_cuda_shared_memory()
    output_handle, output_key = regions(TENSOR_BYTES * 2)
    http.register_system_shared_memory("output_data", output_key, TENSOR_BYTES * 2)
    _, input_key = _input_region(regions)
    http.register_system_shared_memory("input_data", input_key, TENSOR_BYTES * 2)

    inputs = [httpclient.InferInput("INPUT0", [1, 16], "INT32"), httpclient.InferInput("INPUT1", [1, 16], "INT32")]
    inputs[0].set_shared_memory("input_data", TENSOR_BYTES)
    inputs[1].set_shared_memory("input_data", TENSOR_BYTES, offset=TENSOR_BYTES)
    outputs = [httpclient.InferRequestedOutput("OUTPUT0", binary_data=True),
               httpclient.InferRequestedOutput("OUTPUT1", binary_data=True)]
    outputs[0].set_shared_memory("output_data", TENSOR_BYTES)
    outputs[1].set_shared_memory("output_data", TENSOR_BYTES, offset=TENSOR_BYTES)
    results = http.infer(model_name="simple", inputs=inputs, outputs=outputs)

    output0, output1 = results.get_output("OUTPUT0"), results.get_output("OUTPUT1")
    assert "data" not in output0 and output0["parameters"]["shared_memory_region"] == "output_data"
    output0_data = shm.get_contents_as_numpy(output_handle, utils.triton_to_np_dtype(output0["datatype"]),
                                             output0["shape"])
    output1_data = shm.get_contents_as_numpy(output_handle, utils.triton_to_np_dtype(output1["datatype"]),
                                             output1["shape"], offset=TENSOR_BYTES)
    np.testing.assert_array_equal(output0_data[0], INPUT0 + INPUT1)
    np.testing.assert_array_equal(output1_data[0], INPUT0 - INPUT1)

    status = http.get_system_shared_memory_status()
    assert sorted(status, key=lambda r: r["name"]) == [
        {"name": "input_data", "key": input_key, "offset": 0, "byte_size": TENSOR_BYTES * 2},
        {"name": "output_data", "key": output_key, "offset": 0, "byte_size": TENSOR_BYTES * 2}]
    http.unregister_system_shared_memory()
    assert http.get_system_shared_memory_status() == []


def test_simple_grpc_shm_client(clients, regions):
    _, client = clients
    client.unregister_system_shared_memory()
    client.unregister_cuda_shared_memory()
    output_handle, output_key = regions(TENSOR_BYTES * 2)
    client.register_system_shared_memory("output_data", output_key, TENSOR_BYTES * 2)
    _, input_key = _input_region(regions)
    client.register_system_shared_memory("input_data", input_key, TENSOR_BYTES * 2)

    inputs = [grpcclient.InferInput("INPUT0", [1, 16], "INT32"), grpcclient.InferInput("INPUT1", [1, 16], "INT32")]
    inputs[0].set_shared_memory("input_data", TENSOR_BYTES)
    inputs[1].set_shared_memory("input_data", TENSOR_BYTES, offset=TENSOR_BYTES)
    outputs = [grpcclient.InferRequestedOutput("OUTPUT0"), grpcclient.InferRequestedOutput("OUTPUT1")]
    outputs[0].set_shared_memory("output_data", TENSOR_BYTES)
    outputs[1].set_shared_memory("output_data", TENSOR_BYTES, offset=TENSOR_BYTES)
    results = client.infer(model_name="simple", inputs=inputs, outputs=outputs)

    output0, output1 = results.get_output("OUTPUT0"), results.get_output("OUTPUT1")
    assert output0.parameters["shared_memory_region"].string_param == "output_data"
    output0_data = shm.get_contents_as_numpy(output_handle, utils.triton_to_np_dtype(output0.datatype), output0.shape)
    output1_data = shm.get_contents_as_numpy(output_handle, utils.triton_to_np_dtype(output1.datatype),
                                             output1.shape, offset=TENSOR_BYTES)
    np.testing.assert_array_equal(output0_data[0], INPUT0 + INPUT1)
    np.testing.assert_array_equal(output1_data[0], INPUT0 - INPUT1)

    status = client.get_system_shared_memory_status(as_json=True)["regions"]
    assert status["input_data"] == {"name": "input_data", "key": input_key, "byte_size": str(TENSOR_BYTES * 2)}
    assert set(status) == {"input_data", "output_data"}
    client.unregister_system_shared_memory()
    assert not client.get_system_shared_memory_status().regions


def test_regions_are_shared_by_both_protocols_and_mix_with_plain_tensors(clients, regions):
    http, client = clients
    _, input_key = _input_region(regions)
    output_handle, output_key = regions(TENSOR_BYTES)
    client.register_system_shared_memory("in", input_key, TENSOR_BYTES * 2)  # registered on gRPC,
    http.register_system_shared_memory("out", output_key, TENSOR_BYTES)      # used on both
    for protocol in (httpclient, grpcclient):
        inputs = [protocol.InferInput("INPUT0", [1, 16], "INT32"), protocol.InferInput("INPUT1", [1, 16], "INT32")]
        inputs[0].set_data_from_numpy(INPUT0[None] * 3)             # sent in the request
        inputs[1].set_shared_memory("in", TENSOR_BYTES, offset=TENSOR_BYTES)  # INPUT1 from the region
        outputs = [protocol.InferRequestedOutput("OUTPUT0"), protocol.InferRequestedOutput("OUTPUT1")]
        outputs[1].set_shared_memory("out", TENSOR_BYTES)
        shm.set_shared_memory_region(output_handle, [np.zeros(16, np.int32)])
        results = (http if protocol is httpclient else client).infer("simple", inputs, outputs=outputs)
        np.testing.assert_array_equal(results.as_numpy("OUTPUT0")[0], INPUT0 * 3 + INPUT1)
        np.testing.assert_array_equal(shm.get_contents_as_numpy(output_handle, np.int32, [16]), INPUT0 * 3 - INPUT1)


# -- registration ---------------------------------------------------------------------------------
def test_registering_a_name_twice_is_refused_and_unregistering_an_unknown_name_is_a_no_op(served, clients, regions):
    http, client = clients
    _, key = regions(TENSOR_BYTES)
    http.register_system_shared_memory("r", key, TENSOR_BYTES)
    with pytest.raises(InferenceServerException, match="'r' is already registered") as raised:
        http.register_system_shared_memory("r", key, TENSOR_BYTES)
    assert raised.value.status() == "409"
    with pytest.raises(InferenceServerException, match="already registered") as raised:
        client.register_system_shared_memory("r", key, TENSOR_BYTES)
    assert raised.value.status() == str(grpc.StatusCode.FAILED_PRECONDITION)
    http.unregister_system_shared_memory("never-registered")
    client.unregister_system_shared_memory("never-registered")
    assert [r["name"] for r in http.get_system_shared_memory_status()] == ["r"]
    status, body = request_json(served.http_url, "GET", "/v2/systemsharedmemory/region/nope/status")
    assert status == 404 and "no system shared memory region 'nope'" in body["error"]


@pytest.mark.parametrize(("body", "message"), [
    ({"key": "/mlfleet-test-does-not-exist", "byte_size": 64}, "no shared memory object with key"),
    ({"key": "/../../etc/passwd", "byte_size": 64}, "is not a shared memory object name"),
    ({"key": "a/b", "byte_size": 64}, "is not a shared memory object name"),
    ({"key": "", "byte_size": 64}, "'key' must be a non-empty string"),
    ({"key": 7, "byte_size": 64}, "'key' must be a non-empty string"),
    ({"key": "/x", "byte_size": 0}, "'byte_size' must be a positive integer"),
    ({"key": "/x", "byte_size": True}, "'byte_size' must be a positive integer"),
    ({"key": "/x", "byte_size": 64, "offset": -1}, "'offset' must be a non-negative integer"),
    ({"key": "/x"}, "register needs 'key' and 'byte_size'"),
])
def test_bad_registrations_are_400_naming_the_problem(served, clients, body, message):
    status, answer = request_json(served.http_url, "POST", "/v2/systemsharedmemory/region/bad/register", body)
    assert status == 400 and message in answer["error"]
    assert clients[0].get_system_shared_memory_status() == []


def test_a_region_past_the_end_of_its_object_is_refused_on_both_protocols(clients, regions):
    http, client = clients
    _, key = regions(TENSOR_BYTES)
    with pytest.raises(InferenceServerException, match="runs past the end of the 64-byte shared memory object"):
        http.register_system_shared_memory("r", key, TENSOR_BYTES, offset=1)
    with pytest.raises(InferenceServerException, match="runs past the end") as raised:
        client.register_system_shared_memory("r", key, TENSOR_BYTES + 1)
    assert raised.value.status() == str(grpc.StatusCode.INVALID_ARGUMENT)
    with pytest.raises(InferenceServerException, match="no shared memory object") as raised:
        client.register_system_shared_memory("r", "/mlfleet-test-missing", TENSOR_BYTES)
    assert raised.value.status() == str(grpc.StatusCode.INVALID_ARGUMENT)


def test_a_symlink_in_the_shared_memory_folder_is_not_followed(served, regions, tmp_path):
    secret = tmp_path / "secret"
    secret.write_bytes(b"s" * 64)
    name = f"mlfleet-test-link-{uuid.uuid4().hex}"
    os.symlink(secret, f"/dev/shm/{name}")
    try:
        status, body = request_json(served.http_url, "POST", "/v2/systemsharedmemory/region/link/register",
                                    {"key": f"/{name}", "byte_size": 64})
    finally:
        os.unlink(f"/dev/shm/{name}")
    assert status == 400 and "cannot open shared memory object" in body["error"]


# -- inference bounds -----------------------------------------------------------------------------
def _infer_body(input0: dict, output0: dict | None = None) -> dict:
    body = {"inputs": [{"name": "INPUT0", "datatype": "INT32", "shape": [1, 16], **input0},
                       {"name": "INPUT1", "datatype": "INT32", "shape": [1, 16], "data": INPUT1.tolist()}]}
    if output0 is not None:
        body["outputs"] = [{"name": "OUTPUT0", "parameters": output0}]
    return body


def _region(name: str, byte_size: int, offset: int | None = None) -> dict:
    parameters = {"shared_memory_region": name, "shared_memory_byte_size": byte_size}
    return parameters if offset is None else {**parameters, "shared_memory_offset": offset}


@pytest.mark.parametrize(("input0", "output0", "message"), [
    ({"parameters": _region("nope", 64)}, None, "input 'INPUT0': no system shared memory region 'nope'"),
    ({"parameters": _region("in", 64, offset=65)}, None, "offset 65 + byte_size 64 runs past the end of the "
                                                          "128-byte region 'in'"),
    ({"parameters": _region("in", 60)}, None, "input 'INPUT0': 60 bytes of data, shape [1, 16] of INT32 needs 64"),
    ({"parameters": _region("in", 128)}, None, "128 bytes of data"),
    ({"parameters": {"shared_memory_region": "in"}}, None, "must be given together"),
    ({"parameters": {"shared_memory_byte_size": 64}}, None, "must be given together"),
    ({"parameters": _region("in", -1)}, None, "shared_memory_byte_size must be a non-negative integer"),
    ({"parameters": _region("in", 64, offset=1.5)}, None, "shared_memory_offset must be a non-negative integer"),
    ({"parameters": _region("in", 64), "data": INPUT0.tolist()}, None, "data must not be given with"),
    ({"data": INPUT0.tolist()}, _region("out", 63), "output 'OUTPUT0': needs 64 bytes, shared_memory_byte_size "
                                                    "of region 'out' is 63"),
    ({"data": INPUT0.tolist()}, _region("out", 64, offset=1), "output 'OUTPUT0': offset 1 + byte_size 64 runs past"),
    ({"data": INPUT0.tolist()}, _region("gone", 64), "output 'OUTPUT0': no system shared memory region 'gone'"),
])
def test_bad_regions_in_inference_are_400_naming_the_problem(served, clients, regions, input0, output0, message):
    http, _ = clients
    _, input_key = _input_region(regions)
    output_handle, output_key = regions(TENSOR_BYTES)
    shm.set_shared_memory_region(output_handle, [np.full(16, 7, np.int32)])
    http.register_system_shared_memory("in", input_key, TENSOR_BYTES * 2)
    http.register_system_shared_memory("out", output_key, TENSOR_BYTES)
    status, body = request_json(served.http_url, "POST", "/v2/models/simple/infer", _infer_body(input0, output0))
    assert status == 400 and message in body["error"], body
    # nothing was written outside (or inside) the output region
    np.testing.assert_array_equal(shm.get_contents_as_numpy(output_handle, np.int32, [16]), np.full(16, 7))


def test_bad_regions_in_grpc_inference_are_invalid_argument(clients, regions):
    _, client = clients
    _, key = _input_region(regions)
    client.register_system_shared_memory("in", key, TENSOR_BYTES * 2)
    cases = [((TENSOR_BYTES, TENSOR_BYTES + 1), "runs past the end of the 128-byte region 'in'"),
             ((TENSOR_BYTES - 4, 0), "60 bytes of data"),
             ((TENSOR_BYTES, 0, "nope"), "no system shared memory region 'nope'")]
    for (size, offset, *name), message in cases:
        inputs = [grpcclient.InferInput("INPUT0", [1, 16], "INT32"), grpcclient.InferInput("INPUT1", [1, 16], "INT32")]
        inputs[0].set_shared_memory(name[0] if name else "in", size, offset=offset)
        inputs[1].set_data_from_numpy(INPUT1[None])
        with pytest.raises(InferenceServerException, match=message) as raised:
            client.infer("simple", inputs)
        assert raised.value.status() == str(grpc.StatusCode.INVALID_ARGUMENT)


def test_an_object_truncated_after_registration_is_a_400_not_a_crash(served, clients, regions):
    http, _ = clients
    handle, key = _input_region(regions)
    http.register_system_shared_memory("in", key, TENSOR_BYTES * 2)
    os.truncate(f"/dev/shm/{key.lstrip('/')}", 10)  # the client shrinks its object behind the server's back
    status, body = request_json(served.http_url, "POST", "/v2/models/simple/infer",
                                _infer_body({"parameters": _region("in", 64)}))
    assert status == 400 and "is shorter than the region" in body["error"]
    assert request(served.http_url, "GET", "/v2/health/live")[0] == 200


def test_a_region_unregistered_between_decode_and_encode_is_never_written():
    """The descriptor of an unregistered region is closed (and its number may be reused): a write
    for a request that named it is refused, not sent to whatever file now holds that number."""
    registry = SharedMemoryRegistry()
    key = f"mlfleet-test-{uuid.uuid4().hex}"
    path = f"/dev/shm/{key}"
    with open(path, "wb") as handle:
        handle.write(b"\0" * 64)
    try:
        registry.register("r", key, 0, 64)
        ref = registry.reference({"shared_memory_region": "r", "shared_memory_byte_size": 64}, "output 'O'")
        assert ref is not None
        registry.unregister("r")
        registry.register("r", key, 0, 64)  # same name again: still not the region the request named
        with pytest.raises(Exception, match="was unregistered while the request ran"):
            registry.write(ref, b"x" * 64, "output 'O'")
        registry.close()
    finally:
        os.unlink(path)


# -- CUDA shared memory ---------------------------------------------------------------------------
def test_cuda_shared_memory_is_answered_as_not_supported(served, clients):
    http, client = clients
    assert http.get_cuda_shared_memory_status() == []
    assert not client.get_cuda_shared_memory_status().regions
    http.unregister_cuda_shared_memory()
    client.unregister_cuda_shared_memory("x")
    status, body = request_json(served.http_url, "POST", "/v2/cudasharedmemory/region/r/register",
                                {"raw_handle": {"b64": "AAAA"}, "device_id": 0, "byte_size": 64})
    assert status == 400 and "CUDA shared memory is not supported" in body["error"]
    with pytest.raises(InferenceServerException, match="CUDA shared memory is not supported") as raised:
        client.register_cuda_shared_memory("r", b"AAAA", 0, 64)
    assert raised.value.status() == str(grpc.StatusCode.UNIMPLEMENTED)


# -- who gets the extension ---------------------------------------------------------------------------
def test_the_extension_is_listed_where_it_is_served(clients):
    http, client = clients
    assert "system_shared_memory" in http.get_server_metadata()["extensions"]
    assert "system_shared_memory" in client.get_server_metadata().extensions
    assert "cuda_shared_memory" not in http.get_server_metadata()["extensions"]


def test_auto_serves_it_on_loopback_only_and_never_with_a_management_port():
    assert enabled("auto", "127.0.0.1", None) and enabled("auto", "::1", None) and enabled("auto", "localhost", None)
    assert not enabled("auto", "0.0.0.0", None) and not enabled("auto", "10.0.0.5", None)
    assert not enabled("auto", "127.0.0.1", 8002)
    assert enabled("on", "0.0.0.0", None) and not enabled("off", "127.0.0.1", None)
    with pytest.raises(ValueError, match="cannot be used with --management-port"):
        enabled("on", "127.0.0.1", 8002)
    assert MODES == ("auto", "on", "off")


@pytest.mark.parametrize("management_port, extra_args", [(True, []), (False, ["--system-shared-memory", "off"])])
def test_without_the_extension_every_call_is_absent(simple_repo, regions, management_port, extra_args, manifest_key):
    _, key = regions(TENSOR_BYTES)
    with RuntimeProcess(simple_repo, manifest_public_key=manifest_key.public_key_path,
                        management_port=management_port, extra_args=extra_args) as runtime:
        http = httpclient.InferenceServerClient(runtime.http_url.removeprefix("http://"))
        client = grpcclient.InferenceServerClient(runtime.grpc_url)
        assert "system_shared_memory" not in http.get_server_metadata()["extensions"]
        assert "system_shared_memory" not in client.get_server_metadata().extensions
        for method, path in (("POST", "/v2/systemsharedmemory/region/r/register"),
                             ("GET", "/v2/systemsharedmemory/status"), ("POST", "/v2/systemsharedmemory/unregister"),
                             ("GET", "/v2/systemsharedmemory/region/r/register")):
            status, body = request_json(runtime.http_url, method, path, {"key": key, "byte_size": 64})
            assert (status, body) == (404, {"error": f"no route for {path}"})
        if runtime.management_url:  # nor on the management listener
            assert request(runtime.management_url, "GET", "/v2/systemsharedmemory/status")[0] == 404
        with pytest.raises(InferenceServerException) as raised:
            client.register_system_shared_memory("r", key, TENSOR_BYTES)
        assert raised.value.status() == str(grpc.StatusCode.UNIMPLEMENTED)
        status, body = request_json(runtime.http_url, "POST", "/v2/models/simple/infer",
                                    _infer_body({"parameters": _region("r", 64)}))
        assert status == 400 and "system shared memory is not enabled on this server" in body["error"]
        http.close()
        client.close()


def test_on_with_a_management_port_is_refused_at_start(simple_repo, manifest_key):
    process = RuntimeProcess(simple_repo, manifest_public_key=manifest_key.public_key_path,
                             management_port=True, extra_args=["--system-shared-memory", "on"],
                             startup_timeout_s=30)
    with pytest.raises(RuntimeError, match="exited with 2"):
        process.start()
