"""The gRPC front end: inference.GRPCInferenceService (the KServe v2 / Triton gRPC protocol),
on grpc.aio in the same event loop as the REST front end."""
from __future__ import annotations

import time

import grpc
import numpy as np
from tritonclient.grpc import service_pb2 as pb
from tritonclient.grpc import service_pb2_grpc

from .errors import BadRequest, NotFound, ServingError
from .model_spec import ModelSpec, TensorSpec
from .state import EXTENSIONS, SERVER_NAME, SERVER_VERSION, RuntimeState
from .tensors import array_from_bytes, array_from_json, check_input_header, order_inputs, requested_outputs

# The typed field of InferTensorContents that carries each datatype (FP16 travels raw only).
_CONTENTS_FIELD = {
    "BOOL": "bool_contents", "INT8": "int_contents", "INT16": "int_contents", "INT32": "int_contents",
    "INT64": "int64_contents", "UINT8": "uint_contents", "UINT16": "uint_contents",
    "UINT32": "uint_contents", "UINT64": "uint64_contents", "FP32": "fp32_contents", "FP64": "fp64_contents",
}


def _typed_contents(tensor: TensorSpec, shape: list[int], contents: pb.InferTensorContents) -> np.ndarray:
    field = _CONTENTS_FIELD.get(tensor.datatype)
    if field is None:
        raise BadRequest(f"input {tensor.name!r}: {tensor.datatype} must be sent in raw_input_contents")
    return array_from_json(tensor, shape, list(getattr(contents, field)))


def _decode_inputs(spec: ModelSpec, request: pb.ModelInferRequest) -> tuple[list[np.ndarray], int]:
    raw = request.raw_input_contents
    if raw and len(raw) != len(request.inputs):
        raise BadRequest(f"{len(raw)} raw_input_contents for {len(request.inputs)} inputs")
    arrays = []
    for position, entry in enumerate(request.inputs):
        shape = list(entry.shape)
        tensor = check_input_header(spec, entry.name, entry.datatype, shape)
        if raw:
            arrays.append((tensor, array_from_bytes(tensor, shape, raw[position])))
        else:
            arrays.append((tensor, _typed_contents(tensor, shape, entry.contents)))
    return order_inputs(spec, arrays)


class InferenceService(service_pb2_grpc.GRPCInferenceServiceServicer):
    def __init__(self, state: RuntimeState):
        self.state = state

    async def ServerLive(self, request, context):
        return pb.ServerLiveResponse(live=True)

    async def ServerReady(self, request, context):
        return pb.ServerReadyResponse(ready=self.state.ready)

    async def ModelReady(self, request, context):
        try:
            self.state.manager.resolve(request.name, request.version or None)
        except NotFound:
            return pb.ModelReadyResponse(ready=False)
        return pb.ModelReadyResponse(ready=not self.state.draining)

    async def ServerMetadata(self, request, context):
        return pb.ServerMetadataResponse(name=SERVER_NAME, version=SERVER_VERSION, extensions=EXTENSIONS)

    async def ModelMetadata(self, request, context):
        serving = await self._resolve(context, request.name, request.version)
        spec = serving.spec

        def described(tensors):
            return [pb.ModelMetadataResponse.TensorMetadata(name=t.name, datatype=t.datatype,
                                                            shape=spec.full_shape(t)) for t in tensors]
        return pb.ModelMetadataResponse(name=spec.name, versions=[serving.version], platform="pytorch_libtorch",
                                        inputs=described(spec.inputs), outputs=described(spec.outputs))

    async def ModelConfig(self, request, context):
        serving = await self._resolve(context, request.name, request.version)
        return pb.ModelConfigResponse(config=serving.spec.config)

    async def RepositoryIndex(self, request, context):
        return pb.RepositoryIndexResponse(models=[
            pb.RepositoryIndexResponse.ModelIndex(**entry)
            for entry in self.state.repository_index(ready_only=request.ready)])

    async def ModelInfer(self, request, context):
        started = time.perf_counter_ns()
        serving = await self._resolve(context, request.model_name, request.model_version)
        spec, stats = serving.spec, serving.stats
        try:
            inputs, rows = _decode_inputs(spec, request)
            wanted = (requested_outputs(spec, [o.name for o in request.outputs]) if request.outputs
                      else range(len(spec.outputs)))
            results = await serving.batcher.infer(inputs, rows)
        except ServingError as exc:
            stats.record_request(time.perf_counter_ns() - started, ok=False, server_error=exc.http_status >= 500)
            await context.abort(exc.grpc_code, exc.message)
        response = pb.ModelInferResponse(model_name=spec.name, model_version=serving.version, id=request.id)
        for index in wanted:
            array, tensor = results[index], spec.outputs[index]
            response.outputs.add(name=tensor.name, datatype=tensor.datatype, shape=array.shape)
            response.raw_output_contents.append(np.ascontiguousarray(array).tobytes())
        stats.record_request(time.perf_counter_ns() - started, ok=True)
        return response

    async def _resolve(self, context, model: str, version: str):
        try:
            return self.state.manager.resolve(model, version or None)
        except NotFound as exc:
            await context.abort(exc.grpc_code, exc.message)


def build_grpc_server(state: RuntimeState, address: str) -> grpc.aio.Server:
    limit = state.max_body_bytes
    server = grpc.aio.server(options=[("grpc.max_receive_message_length", limit),
                                      ("grpc.max_send_message_length", limit)])
    service_pb2_grpc.add_GRPCInferenceServiceServicer_to_server(InferenceService(state), server)
    if server.add_insecure_port(address) == 0:
        raise OSError(f"cannot listen for gRPC on {address}")
    return server
