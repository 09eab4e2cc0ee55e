"""Model repository control (Triton's load/unload) over real sockets with tritonclient, HTTP and
gRPC: authenticated like pinning, only the manifest's champion loads, and what readiness, failover
health, the index and inference say about an unloaded model."""
from __future__ import annotations

import asyncio
import json

import grpc
import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.grpc import service_pb2 as pb
from tritonclient.utils import InferenceServerException

from mlfleet.runtime.data_plane import DataPlane
from mlfleet.runtime.examples import write_example_repository
from mlfleet.runtime.grpc_service import InferenceService
from mlfleet.runtime.http_app import RestApp
from mlfleet.runtime.manager import ModelManager
from mlfleet.runtime.metrics import Metrics
from mlfleet.runtime.process import RuntimeProcess
from mlfleet.runtime.sources import LocalSource

from helpers.runtime import ADMIN_TOKEN, request_json

pytestmark = pytest.mark.sandbox  # starts or talks to a runtime process

AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
GRPC_AUTH = {"authorization": f"Bearer {ADMIN_TOKEN}"}


@pytest.fixture(scope="module")
def served(tmp_path_factory, manifest_key):
    root = tmp_path_factory.mktemp("control-repo")
    write_example_repository(root, versions=("1", "2"), champion="2", signing_key=manifest_key.signing_key)
    with RuntimeProcess(root, manifest_public_key=manifest_key.public_key_path, admin_token=ADMIN_TOKEN) as process:
        yield process


def _clients(process):
    return (httpclient.InferenceServerClient(process.http_url.removeprefix("http://")),
            grpcclient.InferenceServerClient(process.grpc_url))


def _infer(client) -> str:
    tensor = httpclient.InferInput("INPUT__0", [1, 64], "FP32")
    tensor.set_data_from_numpy(np.ones((1, 64), np.float32))
    return client.infer("mlp", [tensor]).get_response()["model_version"]


def _grpc_code(call) -> str:
    with pytest.raises(InferenceServerException) as raised:
        call()
    return raised.value.status()


def test_load_and_unload_need_the_admin_token_and_a_manifest_model(served):
    http, grpc_client = _clients(served)
    for path in ("/v2/repository/models/mlp/load", "/v2/repository/models/mlp/unload"):
        assert request_json(served.http_url, "POST", path)[0] == 401
        assert request_json(served.http_url, "POST", path, headers={"Authorization": "Bearer wrong"})[0] == 401
    assert _grpc_code(lambda: grpc_client.unload_model("mlp")) == str(grpc.StatusCode.UNAUTHENTICATED)
    assert _grpc_code(lambda: grpc_client.load_model("mlp", headers={"authorization": "Bearer wrong"})) == \
        str(grpc.StatusCode.UNAUTHENTICATED)
    status, body = request_json(served.http_url, "POST", "/v2/repository/models/nope/load", headers=AUTH)
    assert status == 404 and "not in the manifest" in body["error"]
    assert _grpc_code(lambda: grpc_client.unload_model("nope", headers=GRPC_AUTH)) == str(grpc.StatusCode.NOT_FOUND)
    # a load may not bring its own config or files: only verified repository files load
    with pytest.raises(InferenceServerException, match="not supported"):
        http.load_model("mlp", headers=AUTH, config=json.dumps({"max_batch_size": 1}))
    assert _grpc_code(lambda: grpc_client.load_model("mlp", headers=GRPC_AUTH, files={"file:2/model.pt": b"x"})) \
        == str(grpc.StatusCode.INVALID_ARGUMENT)
    assert _infer(http) == "2"  # nothing changed


def test_unload_then_load_serves_the_champion_again(served):
    http, grpc_client = _clients(served)
    grpc_client.unload_model("mlp", headers=GRPC_AUTH)
    assert not http.is_model_ready("mlp") and not grpc_client.is_model_ready("mlp")
    with pytest.raises(InferenceServerException, match="model 'mlp' is unloaded"):
        _infer(http)
    # the process still serves what it has (readiness), but the region no longer serves the manifest
    assert http.is_server_ready()
    status, health = request_json(served.http_url, "GET", "/v2/health/failover")
    assert status == 503 and "mlp: not loaded" in health["reasons"]
    assert [(m["version"], m["state"], m["reason"]) for m in http.get_model_repository_index()] == \
        [("1", "UNAVAILABLE", "unloaded"), ("2", "UNAVAILABLE", "unloaded")]
    status, body = request_json(served.http_url, "POST", "/v2/mlfleet/models/mlp/pin", {"version": "1"}, AUTH)
    assert status == 409 and "load it first" in body["error"]
    http.unload_model("mlp", headers=AUTH)  # unloading an unloaded model is a no-op

    http.load_model("mlp", headers=AUTH)
    assert http.is_model_ready("mlp", "2") and _infer(http) == "2"
    assert request_json(served.http_url, "GET", "/v2/health/failover")[0] == 200
    # the version's statistics continue across the unload
    (stats,) = http.get_inference_statistics("mlp", "2")["model_stats"]
    assert stats["inference_stats"]["success"]["count"] >= 2


def test_load_switches_a_repinned_model_back_to_its_champion(served):
    http, grpc_client = _clients(served)
    status, _ = request_json(served.http_url, "POST", "/v2/mlfleet/models/mlp/pin", {"version": "1"}, AUTH)
    assert status == 200 and _infer(http) == "1"
    grpc_client.load_model("mlp", headers=GRPC_AUTH)
    assert _infer(http) == "2" and not http.is_model_ready("mlp", "1")
    assert request_json(served.http_url, "GET", "/v2/mlfleet/models/mlp/pin")[1]["previous"] == "1"
    grpc_client.load_model("mlp", headers=GRPC_AUTH)  # already the champion: nothing to do
    assert _infer(http) == "2"


class _Context:
    def __init__(self, metadata=()) -> None:
        self.metadata = metadata
        self.code: grpc.StatusCode | None = None

    def invocation_metadata(self):
        return self.metadata

    async def abort(self, code: grpc.StatusCode, details: str) -> None:
        self.code = code
        raise grpc.RpcError(details)


def test_without_an_admin_token_repository_control_is_disabled(tmp_path, manifest_key):
    plane = DataPlane(ModelManager(LocalSource(tmp_path), Metrics(),
                                   manifest_public_key=manifest_key.signing_key.public_key), Metrics())
    sent: list[dict] = []

    async def receive() -> dict:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict) -> None:
        sent.append(message)

    scope = {"type": "http", "method": "POST", "path": "/v2/repository/models/mlp/load",
             "headers": [(b"authorization", b"Bearer anything")]}
    asyncio.run(RestApp(plane)(scope, receive, send))
    assert sent[0]["status"] == 403 and b"disabled" in sent[1]["body"]
    context = _Context([("authorization", "Bearer anything")])
    with pytest.raises(grpc.RpcError, match="disabled"):
        asyncio.run(InferenceService(plane).RepositoryModelUnload(pb.RepositoryModelUnloadRequest(model_name="mlp"),
                                                                  context))
    assert context.code == grpc.StatusCode.PERMISSION_DENIED
