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

from .errors import BadRequest, Conflict, NotFound, Overloaded, ServingError, Unavailable
from .gpu import gpu_report
from .health import HealthBounds, failover_health
from .manager import LoadRefused, ModelManager, PinConflict
from .metrics import Metrics, ModelStats
from .model_spec import ModelSpec, TensorSpec
from .shared_memory import SYSTEM_SHARED_MEMORY, SharedMemoryRegistry
from .tensors import array_from_bytes, array_from_json, check_input_header, order_inputs, requested_outputs

SERVER_NAME = "mlfleet"
# Exactly what is served: Triton's extension names, then this runtime's own.
EXTENSIONS = ["binary_tensor_data", "model_configuration", "model_repository", "statistics",
              "mlfleet_failover_health", "mlfleet_pinning"]
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
                 bounds: HealthBounds | None = None, max_queue_depth: int = 256,
                 shared_memory: SharedMemoryRegistry | None = None):
        self.manager = manager
        self.metrics = metrics
        self.region = region
        self.bounds = bounds or HealthBounds()
        self.draining = False  # set once on SIGTERM; read without a lock by the health paths
        # Admission control: at most this many inference requests per model between admission and
        # answer (queued or executing); more are shed at once instead of waiting unboundedly.
        self.max_queue_depth = max_queue_depth
        self._admitted: dict[str, int] = {}  # model -> requests admitted and not yet answered
        # the system shared memory regions both front ends use; None: the extension is not served
        self.shared_memory = shared_memory

    # -- server ----------------------------------------------------------------------------------
    @property
    def ready(self) -> bool:
        return not self.draining and self.manager.all_loaded

    def not_ready_reason(self) -> str:
        return "shutting down" if self.draining else "models not loaded"

    def server_metadata(self) -> ServerMetadata:
        extensions = EXTENSIONS
        if self.shared_memory is not None:  # after Triton's names, before this runtime's own
            own = next((i for i, name in enumerate(EXTENSIONS) if name.startswith("mlfleet_")), len(EXTENSIONS))
            extensions = [*EXTENSIONS[:own], SYSTEM_SHARED_MEMORY, *EXTENSIONS[own:]]
        return ServerMetadata(SERVER_NAME, SERVER_VERSION, extensions)

    def failover_health(self) -> tuple[bool, dict]:
        """(healthy, the full diagnostic document); a public listener serves it redacted
        (health.public_failover_health)."""
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
                    index.append(IndexEntry(model, approved, "UNAVAILABLE", "unloaded" if serving is None
                                            else "approved, not pinned"))
        return index

    def model_statistics(self, model: str | None = None, version: str | None = None) -> list[dict[str, Any]]:
        """Triton's statistics extension: one entry per version that served since the process started
        (of `model`, or of all models; `version` narrows to one), in the protocol's layout, which
        REST sends as JSON and gRPC parses into ModelStatisticsResponse. NotFound when nothing
        matches."""
        # a version refused at load (its canary failed) ran only its canary and never served
        served = self.manager.served
        records = [r for r in self.metrics.recorded(model or None) if (r.model, r.version) in served]
        if version:
            records = [r for r in records if r.version == version]
        if model and not records:
            raise NotFound(f"no statistics for model {model!r}" + (f" version {version!r}" if version else "")
                           + ": it has not served since the server started")
        return [_statistics(r) for r in records]

    # -- inference -------------------------------------------------------------------------------
    async def infer(self, model: str, version: str | None, decode: Callable[[], InferRequest],
                    encode: Callable[[InferResult], Encoded], *, started_ns: int) -> Encoded:
        """Run one request; `started_ns` (perf_counter_ns) is when the front end began reading it."""
        serving = self.manager.resolve(model, version)
        stats = serving.stats
        # Checked and counted with no await in between: the event loop makes it atomic. Shedding
        # happens before decoding (cheap), and a shed request is neither a success nor a failure.
        name = serving.spec.name
        admitted = self._admitted.get(name, 0)
        if admitted >= self.max_queue_depth:
            stats.shed += 1
            raise Overloaded(f"model {name!r} is overloaded: {admitted} requests are queued or executing, "
                             f"the admission bound is {self.max_queue_depth}; retry later")
        self._admitted[name] = admitted + 1
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
        except Exception:  # a bug (the front end answers 500): still a failed request, the server's
            stats.record_request(time.perf_counter_ns() - started_ns, ok=False, server_error=True)
            raise
        finally:
            self._admitted[name] -= 1
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

    # -- model repository control -----------------------------------------------------------------
    async def load_model(self, model: str) -> str:
        """Serve the manifest's champion of `model` (see ModelManager.load); a refusal is a Conflict."""
        try:
            return await self.manager.load(model)
        except (LoadRefused, PinConflict) as exc:
            raise Conflict(str(exc)) from None

    async def unload_model(self, model: str) -> None:
        try:
            await self.manager.unload(model)
        except PinConflict as exc:
            raise Conflict(str(exc)) from None


def check_load_parameters(parameters: Any) -> None:
    """A load request may not bring its own config or files: only the manifest's verified files load."""
    if parameters is None:
        return
    if not isinstance(parameters, dict):
        raise BadRequest("'parameters' must be an object")
    overrides = sorted(k for k in parameters if k == "config" or str(k).startswith("file:"))
    if overrides:
        raise BadRequest(f"load parameters {overrides} are not supported: a model loads only from the "
                         "repository, verified against the manifest")


def _duration(count: int, ns: int) -> dict[str, int]:
    return {"count": count, "ns": ns}


def _statistics(stats: ModelStats) -> dict[str, Any]:
    computed = stats.computed
    return {
        "name": stats.model,
        "version": stats.version,
        "last_inference": stats.last_inference_ms,
        "inference_count": stats.inferences,
        "execution_count": stats.executions,
        "inference_stats": {
            "success": _duration(stats.success, stats.success_ns),
            "fail": _duration(stats.failure, stats.fail_ns),
            "queue": _duration(computed, stats.queue_ns),
            "compute_input": _duration(computed, stats.compute_input_ns),
            "compute_infer": _duration(computed, stats.compute_infer_ns),
            "compute_output": _duration(computed, stats.compute_output_ns),
            "cache_hit": _duration(0, 0),  # there is no response cache
            "cache_miss": _duration(0, 0),
        },
        "batch_stats": [{"batch_size": size, "compute_input": _duration(count, input_ns),
                         "compute_infer": _duration(count, infer_ns), "compute_output": _duration(count, output_ns)}
                        for size, (count, input_ns, infer_ns, output_ns) in sorted(stats.batches.items())],
    }


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
