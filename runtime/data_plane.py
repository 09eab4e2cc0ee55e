"""The protocol-neutral data plane, as KServe's `DataPlane`: what the server answers, whatever the
wire. The REST and gRPC front ends translate their requests to these calls and the results back
to their encodings; validation against the model's spec, batching, statistics and health live here.

Inference is `infer(model, version, decode, encode)`: the model is resolved first (an unknown model
is a not-found error, counted nowhere), then the front end's `decode` turns its wire request into an
`InferRequest`, the data plane checks it against the model's spec and runs it, and `encode` turns
the `InferResult` into the wire response. Everything from decoding to encoding is timed and counted
once, here, for both front ends."""
from __future__ import annotations

import time
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from typing import Any, Callable, TypeVar

import numpy as np
from tritonclient.grpc import model_config_pb2 as mc

from .errors import Conflict, ServingError, Unavailable
from .gpu import gpu_report
from .health import HealthBounds, failover_health
from .manager import LoadRefused, ModelManager, PinConflict
from .metrics import Metrics
from .model_spec import ModelSpec, TensorSpec
from .tensors import array_from_bytes, array_from_json, check_input_header, order_inputs, requested_outputs

SERVER_NAME = "mlfleet"
EXTENSIONS = ["binary_tensor_data", "mlfleet_failover_health", "mlfleet_pinning"]
PLATFORM = "pytorch_libtorch"

try:
    SERVER_VERSION = version("mlfleet")
except PackageNotFoundError:  # running from a source tree that was not installed
    SERVER_VERSION = "0.0.0"

Encoded = TypeVar("Encoded")


@dataclass(frozen=True)
class ServerMetadata:
    name: str
    version: str
    extensions: list[str]


@dataclass(frozen=True)
class TensorMetadata:
    name: str
    datatype: str
    shape: list[int]


@dataclass(frozen=True)
class ModelMetadata:
    name: str
    versions: list[str]
    platform: str
    inputs: list[TensorMetadata]
    outputs: list[TensorMetadata]


@dataclass(frozen=True)
class IndexEntry:
    name: str
    version: str
    state: str  # READY or UNAVAILABLE
    reason: str | None = None


@dataclass(frozen=True)
class PinStatus:
    model: str
    version: str
    champion: str | None
    previous: str | None


@dataclass(frozen=True)
class PinResult:
    model: str
    version: str
    previous: str


@dataclass(slots=True)
class InputTensor:
    """One input as the client sent it: nothing is checked yet (the data plane checks it against
    the model's spec), so every field holds whatever the wire carried."""

    name: Any
    datatype: Any
    shape: Any
    data: Any = None                     # a list of values (JSON data, typed contents)
    raw: bytes | memoryview | None = None  # the tensor's bytes, row-major; wins over `data`


@dataclass(slots=True)
class InferRequest:
    inputs: list[InputTensor]
    outputs: list[Any] | None = None  # requested output names in the order wanted; None: all
    id: Any = None


@dataclass(slots=True)
class InferResult:
    model: str
    version: str
    outputs: list[tuple[TensorSpec, np.ndarray]]  # in the order requested
    id: Any = None


class DataPlane:
    """The models, their statistics, health bounds and the process's draining flag."""

    def __init__(self, manager: ModelManager, metrics: Metrics, *, region: str = "local",
                 bounds: HealthBounds | None = None):
        self.manager = manager
        self.metrics = metrics
        self.region = region
        self.bounds = bounds or HealthBounds()
        self.draining = False  # set once on SIGTERM; read without a lock by the health paths

    # -- server ----------------------------------------------------------------------------------
    @property
    def ready(self) -> bool:
        return not self.draining and self.manager.all_loaded

    def not_ready_reason(self) -> str:
        return "shutting down" if self.draining else "models not loaded"

    @staticmethod
    def server_metadata() -> ServerMetadata:
        return ServerMetadata(SERVER_NAME, SERVER_VERSION, EXTENSIONS)

    def failover_health(self) -> tuple[bool, dict]:
        return failover_health(self.manager, self.bounds, region=self.region, draining=self.draining)

    def prometheus_exposition(self) -> bytes:
        return self.metrics.exposition(gpu_report())

    # -- models ----------------------------------------------------------------------------------
    def model_ready(self, model: str, version: str | None = None) -> str:
        """The version serving `model`; NotFound when it is not loaded, Unavailable when draining."""
        serving = self.manager.resolve(model, version)
        if self.draining:
            raise Unavailable(f"model {model!r} is shutting down")
        return serving.version

    def model_metadata(self, model: str, version: str | None = None) -> ModelMetadata:
        serving = self.manager.resolve(model, version)
        spec = serving.spec

        def described(tensors: tuple[TensorSpec, ...]) -> list[TensorMetadata]:
            return [TensorMetadata(t.name, t.datatype, spec.full_shape(t)) for t in tensors]
        return ModelMetadata(spec.name, [serving.version], PLATFORM, described(spec.inputs), described(spec.outputs))

    def model_config(self, model: str, version: str | None = None) -> mc.ModelConfig:
        return self.manager.resolve(model, version).spec.config

    def repository_index(self, ready_only: bool = False) -> list[IndexEntry]:
        """Every approved version of every model; only the pinned one is READY."""
        index: list[IndexEntry] = []
        manifest = self.manager.manifest
        if manifest is None:
            return index
        for model in sorted(manifest.models):
            serving = self.manager.active.get(model)
            for approved in sorted(manifest.models[model].versions, key=int):
                loaded = serving is not None and serving.version == approved
                if loaded:
                    index.append(IndexEntry(model, approved, "READY"))
                elif not ready_only:
                    index.append(IndexEntry(model, approved, "UNAVAILABLE", "approved, not pinned"))
        return index

    # -- inference -------------------------------------------------------------------------------
    async def infer(self, model: str, version: str | None, decode: Callable[[], InferRequest],
                    encode: Callable[[InferResult], Encoded], *, started_ns: int) -> Encoded:
        """Run one request; `started_ns` (perf_counter_ns) is when the front end began reading it."""
        serving = self.manager.resolve(model, version)
        stats = serving.stats
        try:
            request = decode()
            inputs, rows, wanted = _checked(serving.spec, request)
            results = await serving.batcher.infer(inputs, rows)
            outputs = serving.spec.outputs
            encoded = encode(InferResult(serving.spec.name, serving.version,
                                         [(outputs[i], results[i]) for i in wanted], request.id))
        except ServingError as exc:
            stats.record_request(time.perf_counter_ns() - started_ns, ok=False, server_error=exc.kind.server_side)
            raise
        stats.record_request(time.perf_counter_ns() - started_ns, ok=True)
        return encoded

    # -- pinning ---------------------------------------------------------------------------------
    def pin_status(self, model: str) -> PinStatus:
        serving = self.manager.resolve(model)
        return PinStatus(model, serving.version, self.manager.champion(model), self.manager.previous.get(model))

    async def pin(self, model: str, version: str, *, reload_manifest: bool = False) -> PinResult:
        """Serve `version` of `model` (see ModelManager.pin); a refusal is a Conflict."""
        try:
            pinned, previous = await self.manager.pin(model, version, reload_manifest=reload_manifest)
        except (LoadRefused, PinConflict) as exc:
            raise Conflict(str(exc)) from None
        return PinResult(model, pinned, previous)


def _checked(spec: ModelSpec, request: InferRequest) -> tuple[list[np.ndarray], int, list[int]]:
    """The request's arrays in the model's input order, its batch size and the output indexes wanted."""
    arrays = []
    for entry in request.inputs:
        tensor = check_input_header(spec, entry.name, entry.datatype, entry.shape)
        if entry.raw is not None:
            arrays.append((tensor, array_from_bytes(tensor, entry.shape, entry.raw)))
        else:
            arrays.append((tensor, array_from_json(tensor, entry.shape, entry.data)))
    inputs, rows = order_inputs(spec, arrays)
    wanted = list(range(len(spec.outputs))) if request.outputs is None else requested_outputs(spec, request.outputs)
    return inputs, rows, wanted
