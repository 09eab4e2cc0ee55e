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

from .auth import check_bearer
from .data_plane import DataPlane, InferRequest, InferResult, InputTensor, TensorMetadata, check_load_parameters
from .errors import BadRequest, ErrorKind, NotFound, ServingError, Unavailable
from .model_spec import NUMPY_DTYPES

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


def decode_infer_request(request: pb.ModelInferRequest) -> InferRequest:
    raw = request.raw_input_contents
    if raw and len(raw) != len(request.inputs):
        raise BadRequest(f"{len(raw)} raw_input_contents for {len(request.inputs)} inputs")
    inputs = []
    for position, entry in enumerate(request.inputs):
        tensor = InputTensor(entry.name, entry.datatype, list(entry.shape))
        if raw:
            if entry.HasField("contents"):  # which one would win is a guess: refuse, as Triton does
                raise BadRequest(f"input {entry.name!r}: contents must not be given with raw_input_contents")
            tensor.raw = raw[position]
        else:
            field = _CONTENTS_FIELD.get(entry.datatype)
            if field is None and entry.datatype in NUMPY_DTYPES:
                raise BadRequest(f"input {entry.name!r}: {entry.datatype} must be sent in raw_input_contents")
            # an unknown datatype leaves no data: the data plane refuses the datatype first
            tensor.data = list(getattr(entry.contents, field)) if field else None
        inputs.append(tensor)
    outputs = [o.name for o in request.outputs] if request.outputs else None
    return InferRequest(inputs, outputs, request.id)


def encode_infer_response(result: InferResult) -> pb.ModelInferResponse:
    """Outputs always travel in raw_output_contents."""
    response = pb.ModelInferResponse(model_name=result.model, model_version=result.version, id=result.id)
    for tensor, array in result.outputs:
        response.outputs.add(name=tensor.name, datatype=tensor.datatype, shape=array.shape)
        response.raw_output_contents.append(np.ascontiguousarray(array).tobytes())
    return response


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
        return await self.plane.infer(request.model_name, request.model_version or None,
                                      functools.partial(decode_infer_request, request), encode_infer_response,
                                      started_ns=time.perf_counter_ns())


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
                      admin_token: str | None = None, repository_control: bool = True) -> grpc.aio.Server:
    server = grpc.aio.server(options=[("grpc.max_receive_message_length", max_message_bytes),
                                      ("grpc.max_send_message_length", max_message_bytes)])
    service = InferenceService(plane, admin_token=admin_token, repository_control=repository_control)
    service_pb2_grpc.add_GRPCInferenceServiceServicer_to_server(service, server)
    if server.add_insecure_port(address) == 0:
        raise OSError(f"cannot listen for gRPC on {address}")
    return server
