"""The data plane under its two front ends, in process: one meaning per error mapped by each front
end to its own status, the REST route table, and statistics counted once for both protocols."""
from __future__ import annotations

import asyncio
import json

import grpc
import pytest
from tritonclient.grpc import service_pb2 as pb

from mlfleet.runtime.data_plane import DataPlane, InferRequest, InputTensor
from mlfleet.runtime.errors import BadRequest, ErrorKind, ModelFailure, NotFound, Unavailable
from mlfleet.runtime.examples import write_example_repository
from mlfleet.runtime.grpc_service import GRPC_STATUS, InferenceService, decode_infer_request
from mlfleet.runtime.http_app import HTTP_STATUS, ROUTES, RestApp
from mlfleet.runtime.manager import ModelManager
from mlfleet.runtime.metrics import Metrics
from mlfleet.runtime.sources import LocalSource


@pytest.fixture
def plane(tmp_path, manifest_key) -> DataPlane:
    """A data plane whose models are not loaded yet (as while the process starts)."""
    manager = ModelManager(LocalSource(tmp_path), Metrics(), manifest_public_key=manifest_key.signing_key.public_key)
    return DataPlane(manager, Metrics(), region="eu-west-1")


async def _asgi(app: RestApp, method: str, path: str, body: bytes = b"") -> tuple[int, dict]:
    sent: list[dict] = []

    async def receive() -> dict:
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: dict) -> None:
        sent.append(message)

    scope = {"type": "http", "method": method, "path": path, "headers": []}
    await app(scope, receive, send)
    return sent[0]["status"], json.loads(sent[1]["body"])


def _call(app: RestApp, method: str, path: str, body: bytes = b"") -> tuple[int, dict]:
    return asyncio.run(_asgi(app, method, path, body))


class _AbortingContext:
    """What grpc.aio's context does on abort: remember the status and end the call by raising."""

    def __init__(self) -> None:
        self.code: grpc.StatusCode | None = None
        self.details = ""

    async def abort(self, code: grpc.StatusCode, details: str) -> None:
        self.code, self.details = code, details
        raise grpc.RpcError(details)


def test_every_error_meaning_has_an_http_status_and_a_grpc_code():
    assert set(HTTP_STATUS) == set(ErrorKind) == set(GRPC_STATUS)
    assert (HTTP_STATUS[NotFound.kind], GRPC_STATUS[NotFound.kind]) == (404, grpc.StatusCode.NOT_FOUND)
    assert (HTTP_STATUS[BadRequest.kind], GRPC_STATUS[BadRequest.kind]) == (400, grpc.StatusCode.INVALID_ARGUMENT)
    assert (HTTP_STATUS[Unavailable.kind], GRPC_STATUS[Unavailable.kind]) == (503, grpc.StatusCode.UNAVAILABLE)
    assert (HTTP_STATUS[ModelFailure.kind], GRPC_STATUS[ModelFailure.kind]) == (500, grpc.StatusCode.INTERNAL)
    # only the server's own failures count against failover health
    assert {kind for kind in ErrorKind if kind.server_side} == {ErrorKind.INTERNAL, ErrorKind.UNAVAILABLE}


def test_every_route_has_its_handler_and_no_route_is_listed_twice(plane):
    app = RestApp(plane)
    assert all(callable(getattr(app, route.handler, None)) for route in ROUTES)
    assert len({(route.method, route.path) for route in ROUTES}) == len(ROUTES)


def test_rest_routes_answer_from_the_table(plane):
    app = RestApp(plane)
    status, body = _call(app, "GET", "/v2/")
    assert status == 200 and body["name"] == "mlfleet" and "binary_tensor_data" in body["extensions"]
    assert _call(app, "GET", "/v2/health/live") == (200, {"live": True})
    assert _call(app, "GET", "/v2/health/ready") == (503, {"error": "not ready: models not loaded"})
    assert _call(app, "GET", "/v2/health/nope")[1] == {"error": "no health endpoint 'nope' (live, ready, failover)"}
    assert _call(app, "DELETE", "/v2/models/m") == (405, {"error": "method DELETE not allowed here; use GET"})
    assert _call(app, "GET", "/v2/models/m/infer")[0] == 405
    assert _call(app, "POST", "/v2/models/m/infer", b"{}") == (404, {"error": "unknown model 'm'"})
    assert _call(app, "GET", "/v2/models/m/versions/3/config") == (404, {"error": "unknown model 'm'"})
    assert _call(app, "GET", "/v2/models/m/versions")[0] == 404
    assert _call(app, "POST", "/v2/repository/index") == (200, [])
    status, body = _call(app, "POST", "/v2/mlfleet/models/m/pin", b'{"version": "1"}')
    assert status == 403 and "disabled" in body["error"]


def test_grpc_status_comes_from_the_errors_meaning(plane):
    service = InferenceService(plane)
    context = _AbortingContext()
    with pytest.raises(grpc.RpcError):
        asyncio.run(service.ModelMetadata(pb.ModelMetadataRequest(name="m"), context))
    assert context.code == grpc.StatusCode.NOT_FOUND and context.details == "unknown model 'm'"

    async def unloading(*args, **kwargs):
        raise Unavailable("model 'm' version 1 is unloading")

    plane.infer = unloading  # type: ignore[method-assign]  # the data plane's answer, whatever the model
    context = _AbortingContext()
    with pytest.raises(grpc.RpcError):
        asyncio.run(service.ModelInfer(pb.ModelInferRequest(model_name="m"), context))
    assert context.code == grpc.StatusCode.UNAVAILABLE


def test_grpc_model_readiness_is_false_for_unknown_and_draining(plane):
    service = InferenceService(plane)
    assert not asyncio.run(service.ModelReady(pb.ModelReadyRequest(name="m"), None)).ready
    assert not asyncio.run(service.ServerReady(pb.ServerReadyRequest(), None)).ready


def test_grpc_requests_translate_to_the_neutral_request():
    request = pb.ModelInferRequest(model_name="m", id="r1")
    request.inputs.add(name="A", datatype="FP32", shape=[1, 2]).contents.fp32_contents.extend([1.0, 2.0])
    request.inputs.add(name="B", datatype="WEIRD", shape=[1])
    request.outputs.add(name="OUT")
    decoded = decode_infer_request(request)
    assert decoded == InferRequest([InputTensor("A", "FP32", [1, 2], [1.0, 2.0]), InputTensor("B", "WEIRD", [1])],
                                   ["OUT"], "r1")
    fp16 = pb.ModelInferRequest(model_name="m")
    fp16.inputs.add(name="H", datatype="FP16", shape=[1])
    with pytest.raises(BadRequest, match="FP16 must be sent in raw_input_contents"):
        decode_infer_request(fp16)


def test_both_front_ends_count_in_the_same_statistics(tmp_path, manifest_key):
    write_example_repository(tmp_path, signing_key=manifest_key.signing_key)
    metrics = Metrics()
    manager = ModelManager(LocalSource(tmp_path), metrics, manifest_public_key=manifest_key.signing_key.public_key)
    plane = DataPlane(manager, metrics)
    good = json.dumps({"inputs": [{"name": "INPUT__0", "datatype": "FP32", "shape": [1, 64], "data": [0.5] * 64}]})
    grpc_request = pb.ModelInferRequest(model_name="mlp")
    grpc_request.inputs.add(name="INPUT__0", datatype="FP32", shape=[2, 64]).contents.fp32_contents.extend([0.5] * 128)
    bad_grpc_request = pb.ModelInferRequest(model_name="mlp")
    bad_grpc_request.inputs.add(name="INPUT__0", datatype="FP32", shape=[1, 63])

    async def scenario():
        await manager.start()
        try:
            app, service = RestApp(plane), InferenceService(plane)
            assert (await _asgi(app, "POST", "/v2/models/mlp/infer", good.encode()))[0] == 200
            assert (await _asgi(app, "POST", "/v2/models/mlp/infer", b"not json"))[0] == 400
            response = await service.ModelInfer(grpc_request, _AbortingContext())
            assert list(response.outputs[0].shape) == [2, 10]
            context = _AbortingContext()
            with pytest.raises(grpc.RpcError):
                await service.ModelInfer(bad_grpc_request, context)
            assert context.code == grpc.StatusCode.INVALID_ARGUMENT and "shape [1, 63]" in context.details
        finally:
            await manager.close()

    asyncio.run(scenario())
    stats = metrics.stats("mlp", "2")
    assert (stats.success, stats.failure) == (2, 2)
    assert stats.error_rate() == (0.0, 4)  # bad requests are the client's errors, not the server's


def test_remembered_routes_answer_as_the_table_does_and_stay_bounded(plane):
    from mlfleet.runtime.http_app import REMEMBERED_ROUTES

    app = RestApp(plane)
    for _ in range(2):  # the second round answers from the remembered routes
        assert _call(app, "POST", "/v2/models/m/infer", b"{}") == (404, {"error": "unknown model 'm'"})
        assert _call(app, "GET", "/v2/models/m/versions/3/config") == (404, {"error": "unknown model 'm'"})
        assert _call(app, "DELETE", "/v2/models/m")[0] == 405  # refusals are never remembered
        assert _call(app, "GET", "/v2/health/live") == (200, {"live": True})
    # Paths carry names clients choose: however many they send, the memory stays bounded.
    for i in range(REMEMBERED_ROUTES + 10):
        _call(app, "GET", f"/v2/models/m{i}/ready")
    assert app.remembered_routes <= REMEMBERED_ROUTES
