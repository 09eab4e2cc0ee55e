"""The gRPC front end: inference.GRPCInferenceService (the KServe v2 / Triton gRPC protocol) on
grpc.aio in the same event loop as the REST front end. It translates protobuf messages to the
data plane and back; an error's status code is chosen from what it means (`GRPC_STATUS`)."""
from __future__ import annotations

import functools
import time
from typing import Any, Awaitable, Callable, TypeVar

import grpc
import numpy as np
from google.protobuf import json_format
from tritonclient.grpc import service_pb2 as pb
from tritonclient.grpc import service_pb2_grpc

from . import streaming, strings
from .auth import check_bearer
from .data_plane import DataPlane, InferRequest, InferResult, InputTensor, TensorMetadata, check_load_parameters
from .errors import BadRequest, ErrorKind, NotFound, ServingError, Unavailable
from .model_spec import NUMPY_DTYPES
from .shared_memory import (
    CUDA_NOT_SUPPORTED,
    RegionRef,
    SharedMemoryRegistry,
    input_from_region,
    output_regions,
    write_output,
)

GRPC_STATUS = {
    ErrorKind.INVALID_ARGUMENT: grpc.StatusCode.INVALID_ARGUMENT,
    ErrorKind.UNAUTHENTICATED: grpc.StatusCode.UNAUTHENTICATED,
    ErrorKind.PERMISSION_DENIED: grpc.StatusCode.PERMISSION_DENIED,
    ErrorKind.NOT_FOUND: grpc.StatusCode.NOT_FOUND,
    ErrorKind.METHOD_NOT_ALLOWED: grpc.StatusCode.UNIMPLEMENTED,
    ErrorKind.CONFLICT: grpc.StatusCode.FAILED_PRECONDITION,
    ErrorKind.TOO_LARGE: grpc.StatusCode.RESOURCE_EXHAUSTED,
    ErrorKind.UNAVAILABLE: grpc.StatusCode.UNAVAILABLE,
    ErrorKind.OVERLOADED: grpc.StatusCode.UNAVAILABLE,  # retryable with backoff, as gRPC defines it
    ErrorKind.INTERNAL: grpc.StatusCode.INTERNAL,
}

# The typed field of InferTensorContents that carries each datatype (FP16 travels raw only).
_CONTENTS_FIELD = {
    "BOOL": "bool_contents", "INT8": "int_contents", "INT16": "int_contents", "INT32": "int_contents",
    "INT64": "int64_contents", "UINT8": "uint_contents", "UINT16": "uint_contents",
    "UINT32": "uint_contents", "UINT64": "uint64_contents", "FP32": "fp32_contents", "FP64": "fp64_contents",
    "BYTES": "bytes_contents",
}

Reply = TypeVar("Reply")


def _answers(rpc: Callable[[Any, Any, Any], Awaitable[Reply]]) -> Callable[[Any, Any, Any], Awaitable[Reply]]:
    """A ServingError raised by the RPC ends the call with the status code its meaning maps to."""
    @functools.wraps(rpc)
    async def answered(self: Any, request: Any, context: Any) -> Reply:
        try:
            return await rpc(self, request, context)
        except ServingError as exc:
            await context.abort(GRPC_STATUS[exc.kind], exc.message)
            raise  # abort raises; this line only tells the reader (and mypy) the call ends here
    return answered


def decode_infer_request(request: pb.ModelInferRequest, shared_memory: SharedMemoryRegistry | None = None
                         ) -> InferRequest:
    # inputs in shared memory have no raw_input_contents entry (as tritonclient sends them)
    from_regions = [input_from_region(shared_memory, parameter_values(entry.parameters), entry.name,
                                      has_data=entry.HasField("contents")) if entry.parameters else None
                    for entry in request.inputs]
    plain = sum(region is None for region in from_regions)
    raw = request.raw_input_contents
    if raw and len(raw) != plain:
        raise BadRequest(f"{len(raw)} raw_input_contents for {plain} inputs"
                         + (" not in shared memory" if plain != len(request.inputs) else ""))
    raw_entries = iter(raw)
    inputs = []
    for entry, from_region in zip(request.inputs, from_regions, strict=True):
        tensor = InputTensor(entry.name, entry.datatype, list(entry.shape))
        if from_region is not None:
            tensor.raw = from_region
        elif raw:
            if entry.HasField("contents"):  # which one would win is a guess: refuse, as Triton does
                raise BadRequest(f"input {entry.name!r}: contents must not be given with raw_input_contents")
            tensor.raw = next(raw_entries)
        else:
            field = _CONTENTS_FIELD.get(entry.datatype)
            if field is None and entry.datatype in NUMPY_DTYPES:
                raise BadRequest(f"input {entry.name!r}: {entry.datatype} must be sent in raw_input_contents")
            # an unknown datatype leaves no data: the data plane refuses the datatype first
            tensor.data = list(getattr(entry.contents, field)) if field else None
        inputs.append(tensor)
    outputs = [o.name for o in request.outputs] if request.outputs else None
    return InferRequest(inputs, outputs, request.id)


def encode_infer_response(result: InferResult, shared_memory: SharedMemoryRegistry | None = None,
                          regions: list[RegionRef | None] | None = None) -> pb.ModelInferResponse:
    """Outputs travel in raw_output_contents, or in the shared memory region a requested output
    named (its parameters say where; its raw_output_contents entry is empty, keeping positions)."""
    response = pb.ModelInferResponse(model_name=result.model, model_version=result.version, id=result.id)
    placed = iter(regions or ())
    for tensor, array in result.outputs:
        output = response.outputs.add(name=tensor.name, datatype=tensor.datatype, shape=array.shape)
        region = next(placed, None)
        if region is not None and shared_memory is not None:
            raw = (strings.length_prefixed(array) if strings.is_string(tensor.datatype)
                   else np.ascontiguousarray(array).tobytes())
            _set_parameters(output.parameters, write_output(shared_memory, region, tensor.name, raw))
            response.raw_output_contents.append(b"")
            continue
        response.raw_output_contents.append(strings.length_prefixed(array) if strings.is_string(tensor.datatype)
                                            else np.ascontiguousarray(array).tobytes())
    return response


def parameter_values(parameters: Any) -> dict[str, Any]:
    """A map<string, InferParameter> as plain values (whichever of its oneof fields is set)."""
    values = {}
    for name, parameter in parameters.items():
        choice = parameter.WhichOneof("parameter_choice")
        values[name] = None if choice is None else getattr(parameter, choice)
    return values


def _set_parameters(parameters: Any, values: dict[str, Any]) -> None:
    for name, value in values.items():
        if isinstance(value, str):
            parameters[name].string_param = value
        else:
            parameters[name].int64_param = value


class GrpcInference:
    """One ModelInferRequest: `decode` and `encode` are what the data plane calls around the model,
    so the shared memory regions its outputs named reach the response."""

    __slots__ = ("_request", "_shared_memory", "_regions")

    def __init__(self, request: pb.ModelInferRequest, shared_memory: SharedMemoryRegistry | None):
        self._request, self._shared_memory = request, shared_memory
        self._regions: list[RegionRef | None] | None = None

    def decode(self) -> InferRequest:
        decoded = decode_infer_request(self._request, self._shared_memory)
        self._regions = output_regions(self._shared_memory, ((o.name, parameter_values(o.parameters))
                                                             for o in self._request.outputs))
        return decoded

    def encode(self, result: InferResult) -> pb.ModelInferResponse:
        return encode_infer_response(result, self._shared_memory, self._regions)


def _tensor_metadata(tensors: list[TensorMetadata]) -> list[pb.ModelMetadataResponse.TensorMetadata]:
    return [pb.ModelMetadataResponse.TensorMetadata(name=t.name, datatype=t.datatype, shape=t.shape)
            for t in tensors]


class InferenceService(service_pb2_grpc.GRPCInferenceServiceServicer):
    def __init__(self, plane: DataPlane, *, admin_token: str | None = None, repository_control: bool = True):
        self.plane = plane
        self.admin_token = admin_token  # None: model repository control is disabled
        # False with a management port: the gRPC port sits behind the public load balancer, and
        # load/unload are served on the management listener only
        self.repository_control = repository_control

    async def _refuse_off_management(self, name: str, context) -> None:
        """UNIMPLEMENTED, as for any RPC this port does not serve, and before the token is looked
        at: the public port is no oracle for the token, and PERMISSION_DENIED would read as
        "configure a token" (its meaning when management is disabled) rather than "not here"."""
        if not self.repository_control:
            await context.abort(grpc.StatusCode.UNIMPLEMENTED, f"{name} is not supported by this server")

    def _authorize(self, context) -> None:
        """The bearer token of pinning, sent as `authorization` metadata."""
        presented = next((v for k, v in context.invocation_metadata() or () if k == "authorization"), "")
        check_bearer(self.admin_token, presented.encode() if isinstance(presented, str) else presented)

    @_answers
    async def RepositoryModelLoad(self, request, context):
        await self._refuse_off_management("RepositoryModelLoad", context)
        self._authorize(context)
        check_load_parameters(dict(request.parameters))
        await self.plane.load_model(request.model_name)
        return pb.RepositoryModelLoadResponse()

    @_answers
    async def RepositoryModelUnload(self, request, context):
        await self._refuse_off_management("RepositoryModelUnload", context)
        self._authorize(context)
        await self.plane.unload_model(request.model_name)
        return pb.RepositoryModelUnloadResponse()

    # -- shared memory (shared_memory.py): regions shared with the REST front end --------------
    async def _shared_memory(self, name: str, context) -> SharedMemoryRegistry:
        registry = self.plane.shared_memory
        if registry is None:  # not served: as any RPC this server does not implement
            await context.abort(grpc.StatusCode.UNIMPLEMENTED, f"{name} is not supported by this server")
            raise AssertionError("abort raises")
        return registry

    @_answers
    async def SystemSharedMemoryRegister(self, request, context):
        registry = await self._shared_memory("SystemSharedMemoryRegister", context)
        registry.register(request.name, request.key, request.offset, request.byte_size)
        return pb.SystemSharedMemoryRegisterResponse()

    @_answers
    async def SystemSharedMemoryStatus(self, request, context):
        registry = await self._shared_memory("SystemSharedMemoryStatus", context)
        response = pb.SystemSharedMemoryStatusResponse()
        for region in registry.status(request.name or None):
            response.regions[region.name].CopyFrom(pb.SystemSharedMemoryStatusResponse.RegionStatus(
                name=region.name, key=region.key, offset=region.offset, byte_size=region.byte_size))
        return response

    @_answers
    async def SystemSharedMemoryUnregister(self, request, context):
        registry = await self._shared_memory("SystemSharedMemoryUnregister", context)
        registry.unregister(request.name or None)
        return pb.SystemSharedMemoryUnregisterResponse()

    async def CudaSharedMemoryStatus(self, request, context):
        if request.name:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"no CUDA shared memory region {request.name!r}: "
                                + CUDA_NOT_SUPPORTED)
        return pb.CudaSharedMemoryStatusResponse()  # none can be registered

    async def CudaSharedMemoryUnregister(self, request, context):
        return pb.CudaSharedMemoryUnregisterResponse()  # none is registered: a no-op, as Triton

    async def CudaSharedMemoryRegister(self, request, context):
        await context.abort(grpc.StatusCode.UNIMPLEMENTED, CUDA_NOT_SUPPORTED)

    async def ServerLive(self, request, context):
        return pb.ServerLiveResponse(live=True)

    async def ServerReady(self, request, context):
        return pb.ServerReadyResponse(ready=self.plane.ready)

    async def ModelReady(self, request, context):
        try:
            self.plane.model_ready(request.name, request.version or None)
        except (NotFound, Unavailable):
            return pb.ModelReadyResponse(ready=False)
        return pb.ModelReadyResponse(ready=True)

    async def ServerMetadata(self, request, context):
        metadata = self.plane.server_metadata()
        return pb.ServerMetadataResponse(name=metadata.name, version=metadata.version,
                                         extensions=metadata.extensions)

    @_answers
    async def ModelMetadata(self, request, context):
        metadata = self.plane.model_metadata(request.name, request.version or None)
        return pb.ModelMetadataResponse(name=metadata.name, versions=metadata.versions, platform=metadata.platform,
                                        inputs=_tensor_metadata(metadata.inputs),
                                        outputs=_tensor_metadata(metadata.outputs))

    @_answers
    async def ModelConfig(self, request, context):
        return pb.ModelConfigResponse(config=self.plane.model_config(request.name, request.version or None))

    @_answers
    async def ModelStatistics(self, request, context):
        # the data plane's document is the protocol's layout: it parses field by field
        return json_format.ParseDict({"model_stats": self.plane.model_statistics(request.name or None,
                                                                                 request.version or None)},
                                     pb.ModelStatisticsResponse())

    async def RepositoryIndex(self, request, context):
        return pb.RepositoryIndexResponse(models=[
            pb.RepositoryIndexResponse.ModelIndex(name=e.name, version=e.version, state=e.state, reason=e.reason or "")
            for e in self.plane.repository_index(ready_only=request.ready)])

    @_answers
    async def ModelInfer(self, request, context):
        return await self.infer(request, time.perf_counter_ns())

    async def infer(self, request: pb.ModelInferRequest, started_ns: int) -> pb.ModelInferResponse:
        """One ModelInferRequest through the data plane: a ModelInfer call, or one request of a stream."""
        codec = GrpcInference(request, self.plane.shared_memory)
        return await self.plane.infer(request.model_name, request.model_version or None,
                                      codec.decode, codec.encode, started_ns=started_ns)

    async def ModelStreamInfer(self, request_iterator, context):
        async for response in streaming.stream_infer(request_iterator, self.infer):
            yield response


def _unimplemented(name: str) -> Callable[[Any, Any, Any], Awaitable[None]]:
    async def rpc(self: Any, request: Any, context: Any) -> None:
        await context.abort(grpc.StatusCode.UNIMPLEMENTED, f"{name} is not supported by this server")
    rpc.__name__ = rpc.__qualname__ = name
    return rpc


# The generated base class answers an RPC it does not know by raising NotImplementedError, which
# grpc.aio logs as an ERROR with a traceback for every call: refuse those calls quietly instead.
for _name in dir(service_pb2_grpc.GRPCInferenceServiceServicer):
    if not _name.startswith("_") and _name not in InferenceService.__dict__:
        setattr(InferenceService, _name, _unimplemented(_name))


def build_grpc_server(plane: DataPlane, address: str, *, max_message_bytes: int = 64 << 20,
                      admin_token: str | None = None, repository_control: bool = True,
                      tls: tuple[bytes, bytes] | None = None) -> grpc.aio.Server:
    """tls: (PEM certificate chain, PEM private key) to serve TLS; None: plaintext."""
    server = grpc.aio.server(options=[("grpc.max_receive_message_length", max_message_bytes),
                                      ("grpc.max_send_message_length", max_message_bytes)])
    service = InferenceService(plane, admin_token=admin_token, repository_control=repository_control)
    service_pb2_grpc.add_GRPCInferenceServiceServicer_to_server(service, server)
    if tls is not None:
        chain, key = tls
        bound = server.add_secure_port(address, grpc.ssl_server_credentials([(key, chain)]))
    else:
        bound = server.add_insecure_port(address)
    if bound == 0:
        raise OSError(f"cannot listen for gRPC on {address}")
    return server
