"""The calls of NVIDIA's tritonclient examples (triton-inference-server/client, src/python/examples)
that target `simple` / `simple_int8`, written out here against a runtime serving those models. Each
test names the example it mirrors; where an example checks Triton's own error wording, the test
checks the error's meaning (its status) instead."""
from __future__ import annotations

import asyncio
import queue

import grpc
import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.grpc.aio as grpcclient_aio
import tritonclient.http as httpclient
import tritonclient.http.aio as httpclient_aio
from tritonclient.grpc import service_pb2, service_pb2_grpc
from tritonclient.utils import InferenceServerException

from mlfleet.runtime.examples import write_example_repository
from mlfleet.runtime.process import RuntimeProcess

pytestmark = pytest.mark.sandbox  # starts or talks to a runtime process

INPUT0 = np.arange(16, dtype=np.int32).reshape(1, 16)
INPUT1 = np.ones((1, 16), dtype=np.int32)


@pytest.fixture(scope="module")
def simple_runtime(tmp_path_factory, manifest_key):
    """`simple` and `simple_int8` with one version each, as in Triton's example repository (the
    examples expect exactly one statistics entry for `simple`)."""
    root = tmp_path_factory.mktemp("simple-repository")
    write_example_repository(root, models=("simple", "simple_int8"), versions=("1",), champion="1",
                             signing_key=manifest_key.signing_key)
    with RuntimeProcess(root, manifest_public_key=manifest_key.public_key_path) as runtime:
        yield runtime


def _http_address(runtime) -> str:
    return runtime.http_url.removeprefix("http://")


def _grpc_inputs(client=grpcclient, first=INPUT0, second=INPUT1, datatype="INT32") -> list:
    inputs = [client.InferInput("INPUT0", [1, 16], datatype), client.InferInput("INPUT1", [1, 16], datatype)]
    inputs[0].set_data_from_numpy(first)
    inputs[1].set_data_from_numpy(second)
    return inputs


def _http_inputs(client=httpclient, first=INPUT0, second=INPUT1, binary=(False, True)) -> list:
    inputs = [client.InferInput("INPUT0", [1, 16], "INT32"), client.InferInput("INPUT1", [1, 16], "INT32")]
    inputs[0].set_data_from_numpy(first, binary_data=binary[0])
    inputs[1].set_data_from_numpy(second, binary_data=binary[1])
    return inputs


def _assert_sum_and_difference(result, first=INPUT0, second=INPUT1) -> None:
    np.testing.assert_array_equal(result.as_numpy("OUTPUT0"), first + second)
    np.testing.assert_array_equal(result.as_numpy("OUTPUT1"), first - second)


# -- gRPC ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("compression", [None, "gzip", "deflate"])
def test_simple_grpc_infer(simple_runtime, compression):
    """simple_grpc_infer_client.py (with --grpc-compression-algorithm none, gzip, deflate)."""
    client = grpcclient.InferenceServerClient(simple_runtime.grpc_url)
    outputs = [grpcclient.InferRequestedOutput("OUTPUT0"), grpcclient.InferRequestedOutput("OUTPUT1")]
    result = client.infer(model_name="simple", inputs=_grpc_inputs(), outputs=outputs, client_timeout=10,
                          headers={"test": "1"}, compression_algorithm=compression)
    assert len(client.get_inference_statistics(model_name="simple").model_stats) == 1
    _assert_sum_and_difference(result)
    result = client.infer(model_name="simple", inputs=_grpc_inputs(), outputs=None,
                          compression_algorithm=compression)
    _assert_sum_and_difference(result)
    client.close()


@pytest.mark.parametrize("compression", [None, "gzip", "deflate"])
def test_simple_grpc_aio_infer(simple_runtime, compression):
    """simple_grpc_aio_infer_client.py (with --grpc-compression-algorithm none, gzip, deflate)."""
    async def scenario():
        client = grpcclient_aio.InferenceServerClient(simple_runtime.grpc_url)
        try:
            outputs = [grpcclient_aio.InferRequestedOutput("OUTPUT0"),
                       grpcclient_aio.InferRequestedOutput("OUTPUT1")]
            inputs = _grpc_inputs(grpcclient_aio)
            result = await client.infer(model_name="simple", inputs=inputs, outputs=outputs, client_timeout=10,
                                        headers={"test": "1"}, compression_algorithm=compression)
            statistics = await client.get_inference_statistics(model_name="simple")
            parallel = await asyncio.gather(*[
                client.infer(model_name="simple", inputs=inputs, outputs=None, compression_algorithm=compression)
                for _ in range(2)])
            return result, statistics, parallel
        finally:
            await client.close()

    result, statistics, parallel = asyncio.run(scenario())
    assert len(statistics.model_stats) == 1
    for answer in (result, *parallel):
        _assert_sum_and_difference(answer)


def test_simple_grpc_async_infer(simple_runtime):
    """simple_grpc_async_infer_client.py: async_infer with a callback."""
    client = grpcclient.InferenceServerClient(simple_runtime.grpc_url)
    answers: queue.Queue = queue.Queue()
    client.async_infer(model_name="simple", inputs=_grpc_inputs(),
                       callback=lambda result, error: answers.put((result, error)),
                       outputs=[grpcclient.InferRequestedOutput("OUTPUT0"),
                                grpcclient.InferRequestedOutput("OUTPUT1")], client_timeout=10)
    result, error = answers.get(timeout=10)
    assert error is None
    _assert_sum_and_difference(result)
    client.close()


@pytest.mark.parametrize("example, options", [
    ("simple_grpc_custom_args_client.py", {"channel_args": [
        ("grpc.max_send_message_length", 1024 * 1024), ("grpc.max_receive_message_length", 1024 * 1024),
        ("grpc.keepalive_time_ms", 2**31 - 1), ("grpc.keepalive_timeout_ms", 20000),
        ("grpc.keepalive_permit_without_calls", False), ("grpc.http2.max_pings_without_data", 2),
        ("grpc.dns_enable_srv_queries", 1)]}),
    ("simple_grpc_keepalive_client.py", {"keepalive_options": grpcclient.KeepAliveOptions(
        keepalive_time_ms=2**31 - 1, keepalive_timeout_ms=20000, keepalive_permit_without_calls=False,
        http2_max_pings_without_data=2)}),
])
def test_simple_grpc_channel_options(simple_runtime, example, options):
    """simple_grpc_custom_args_client.py and simple_grpc_keepalive_client.py: the client's channel
    arguments and keepalive options (their defaults) with the usual infer."""
    client = grpcclient.InferenceServerClient(simple_runtime.grpc_url, **options)
    outputs = [grpcclient.InferRequestedOutput("OUTPUT0"), grpcclient.InferRequestedOutput("OUTPUT1")]
    _assert_sum_and_difference(client.infer(model_name="simple", inputs=_grpc_inputs(), outputs=outputs,
                                            headers={"test": "1"}))
    client.close()


@pytest.mark.parametrize("model, datatype, dtype", [("simple", "INT32", np.int32), ("simple_int8", "INT8", np.int8)])
def test_grpc_explicit_int_content(simple_runtime, model, datatype, dtype):
    """grpc_explicit_int_content_client.py and grpc_explicit_int8_content_client.py: the generated
    stub with typed `int_contents`; a wrong version and raw plus typed contents are refused."""
    request = service_pb2.ModelInferRequest(model_name=model, model_version="")
    first, second = list(range(16)), [1] * 16
    for name, values in (("INPUT0", first), ("INPUT1", second)):
        tensor = request.inputs.add(name=name, datatype=datatype, shape=[1, 16])
        tensor.contents.int_contents[:] = values
    request.outputs.add(name="OUTPUT0")
    request.outputs.add(name="OUTPUT1")
    with grpc.insecure_channel(simple_runtime.grpc_url) as channel:
        stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
        response = stub.ModelInfer(request, timeout=10)
        results = [np.frombuffer(raw, dtype=dtype).reshape(list(output.shape))
                   for output, raw in zip(response.outputs, response.raw_output_contents, strict=True)]
        assert len(results) == 2
        np.testing.assert_array_equal(results[0][0], np.add(first, second))
        np.testing.assert_array_equal(results[1][0], np.subtract(first, second))

        request.model_version = "wrong_specification"
        with pytest.raises(grpc.RpcError) as wrong_version:
            stub.ModelInfer(request, timeout=10)
        assert wrong_version.value.code() == grpc.StatusCode.NOT_FOUND

        request.model_version = ""
        request.raw_input_contents.extend([np.array(first[0:8], dtype=dtype).tobytes()])
        request.inputs[0].contents.int_contents[:] = first[8:]
        with pytest.raises(grpc.RpcError) as both_contents:
            stub.ModelInfer(request, timeout=10)
        assert both_contents.value.code() == grpc.StatusCode.INVALID_ARGUMENT


# -- HTTP ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("compression", [None, "gzip", "deflate"])
def test_simple_http_infer(simple_runtime, compression):
    """simple_http_infer_client.py (with --request- and --response-compression-algorithm none, gzip,
    deflate). The example then expects Triton's wording for an unknown model ("Request for unknown
    model"): here, that it is a 404 naming the model."""
    client = httpclient.InferenceServerClient(_http_address(simple_runtime))
    outputs = [httpclient.InferRequestedOutput("OUTPUT0", binary_data=True),
               httpclient.InferRequestedOutput("OUTPUT1", binary_data=False)]
    compressed = {"request_compression_algorithm": compression, "response_compression_algorithm": compression}
    query_params = {"test_1": 1, "test_2": 2}
    result = client.infer("simple", _http_inputs(), outputs=outputs, query_params=query_params, **compressed)
    assert len(client.get_inference_statistics(model_name="simple")["model_stats"]) == 1
    _assert_sum_and_difference(result)
    _assert_sum_and_difference(client.infer("simple", _http_inputs(), outputs=None, query_params=query_params,
                                            **compressed))
    with pytest.raises(InferenceServerException) as unknown:
        client.infer("wrong_model_name", _http_inputs(), outputs=outputs, query_params=query_params, **compressed)
    assert unknown.value.status() == "404" and "wrong_model_name" in unknown.value.message()
    client.close()


@pytest.mark.parametrize("compression", [None, "gzip", "deflate"])
def test_simple_http_aio_infer(simple_runtime, compression):
    """simple_http_aio_infer_client.py (INPUT1 all -1; compression none, gzip, deflate); its
    Triton-worded unknown-model check is, here, a 404 naming the model."""
    second = np.full((1, 16), -1, dtype=np.int32)
    compressed = {"request_compression_algorithm": compression, "response_compression_algorithm": compression}

    async def scenario():
        client = httpclient_aio.InferenceServerClient(_http_address(simple_runtime))
        try:
            outputs = [httpclient_aio.InferRequestedOutput("OUTPUT0", binary_data=True),
                       httpclient_aio.InferRequestedOutput("OUTPUT1", binary_data=False)]
            inputs = _http_inputs(httpclient_aio, second=second)
            result = await client.infer("simple", inputs, outputs=outputs, **compressed)
            statistics = await client.get_inference_statistics(model_name="simple")
            no_outputs = await client.infer("simple", inputs, outputs=None, **compressed)
            with pytest.raises(InferenceServerException) as unknown:
                await client.infer("wrong_model_name", inputs, outputs=outputs, **compressed)
            parallel = await asyncio.gather(*[client.infer("simple", inputs, outputs=outputs, **compressed)
                                              for _ in range(2)])
            return result, statistics, no_outputs, unknown.value, parallel
        finally:
            await client.close()

    result, statistics, no_outputs, unknown, parallel = asyncio.run(scenario())
    assert len(statistics["model_stats"]) == 1
    for answer in (result, no_outputs, *parallel):
        _assert_sum_and_difference(answer, second=second)
    assert unknown.status() == "404" and "wrong_model_name" in unknown.message()


def test_simple_http_async_infer(simple_runtime):
    """simple_http_async_infer_client.py: 2 concurrent async_infer calls, binary tensors both ways."""
    client = httpclient.InferenceServerClient(_http_address(simple_runtime), concurrency=2)
    outputs = [httpclient.InferRequestedOutput("OUTPUT0", binary_data=True),
               httpclient.InferRequestedOutput("OUTPUT1", binary_data=True)]
    pending = [client.async_infer(model_name="simple", inputs=_http_inputs(binary=(True, True)), outputs=outputs)
               for _ in range(2)]
    for request in pending:
        _assert_sum_and_difference(request.get_result())
    client.close()
