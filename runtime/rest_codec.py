"""The REST encoding of the v2 protocol: the inference body, in JSON and with the binary tensor
extension (a JSON header of `Inference-Header-Content-Length` bytes followed by raw tensor bytes
in input order), and the JSON documents of the other routes. It translates between the wire and
the data plane's neutral messages; it checks the body's shape, the data plane checks the tensors."""
from __future__ import annotations

import json
import math
import zlib
from dataclasses import asdict
from functools import lru_cache
from typing import Any

from google.protobuf import json_format
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message
from tritonclient.grpc import model_config_pb2 as mc

from . import strings
from .data_plane import (
    IndexEntry,
    InferRequest,
    InferResult,
    InputTensor,
    ModelMetadata,
    PinResult,
    PinStatus,
    ServerMetadata,
)
from .errors import BadRequest, PayloadTooLarge
from .shared_memory import RegionRef, SharedMemoryRegistry, rest_regions, write_output

# One compact encoder for every response: json.dumps with options builds a new encoder per call.
# NaN and Infinity are not JSON: the encoder refuses them, and the callers replace them (`_finite`).
encode_json = json.JSONEncoder(separators=(",", ":"), allow_nan=False).encode


def load_json(document: bytes, what: str) -> Any:
    """json.loads, with every way a hostile body makes it fail answered as a bad request."""
    try:
        return json.loads(document)
    except RecursionError:  # the parser's depth bound is the interpreter's recursion limit
        raise BadRequest(f"{what} is nested too deeply") from None
    except (UnicodeDecodeError, ValueError) as exc:  # ValueError: also an integer of too many digits
        raise BadRequest(f"{what} is not valid JSON: {exc}") from None


def _finite(value: Any) -> Any:
    """`value` with every non-finite float replaced by null (JSON has no NaN or Infinity)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    return value


def decompress(body: bytes, encoding: str, limit: int) -> bytes:
    """Undo Content-Encoding gzip/deflate without ever inflating past `limit` bytes in all.

    A gzip body may be several members (concatenated gzip streams are one file, as gzip(1) reads
    them) followed only by zero padding; a truncated stream or any other trailing bytes are refused."""
    if encoding in ("", "identity"):
        return body
    if encoding not in ("gzip", "deflate"):
        raise BadRequest(f"unsupported Content-Encoding {encoding!r} (gzip, deflate or none)")
    gzip = encoding == "gzip"
    parts: list[bytes] = []
    size, rest = 0, body
    while True:
        inflater = zlib.decompressobj(zlib.MAX_WBITS | (16 if gzip else 0))
        try:
            part = inflater.decompress(rest, limit + 1 - size)
        except zlib.error as exc:
            raise BadRequest(f"body is not valid {encoding}: {exc}") from None
        size += len(part)
        if size > limit:
            raise PayloadTooLarge(f"decompressed body exceeds the {limit}-byte limit")
        if not inflater.eof:
            raise BadRequest(f"body is not valid {encoding}: the compressed stream is truncated")
        parts.append(part)
        rest = inflater.unused_data
        if not rest or (gzip and not rest.strip(b"\0")):
            return parts[0] if len(parts) == 1 else b"".join(parts)
        if not gzip:
            raise BadRequest(f"body is not valid deflate: {len(rest)} bytes follow the compressed stream")


def split_body(body: bytes, header_length: str | None) -> tuple[dict, memoryview]:
    if header_length is None:
        json_part, tail = body, memoryview(b"")
    else:
        try:
            length = int(header_length)
        except ValueError:
            raise BadRequest("Inference-Header-Content-Length must be an integer") from None
        if not 0 <= length <= len(body):
            raise BadRequest(f"Inference-Header-Content-Length {length} is outside the {len(body)}-byte body")
        json_part, tail = body[:length], memoryview(body)[length:]
    header = load_json(json_part, "request body")
    if not isinstance(header, dict):
        raise BadRequest("request body must be a JSON object")
    return header, tail


def _parameters(entry: dict, kind: str, name: Any = None) -> dict:
    parameters = entry.get("parameters") or {}
    if not isinstance(parameters, dict):  # the message is built only for a bad request
        where = kind if name is None else f"{kind} {name!r}"
        raise BadRequest(f"{where}: 'parameters' must be an object")
    return parameters


def parse_request(header: dict, tail: memoryview) -> tuple[InferRequest, bool, list[bool] | None]:
    """The neutral request, the default for binary outputs, and the binary choice of each requested
    output (None: every output, at the default). Tensors are checked later, by the data plane."""
    entries = header.get("inputs")
    if not isinstance(entries, list) or not entries:
        raise BadRequest("'inputs' must be a non-empty list")
    offset = 0
    inputs = []
    for entry in entries:
        if not isinstance(entry, dict):
            raise BadRequest("every input must be an object")
        name = entry.get("name")
        size = _parameters(entry, "input", name).get("binary_data_size")
        tensor = InputTensor(name, entry.get("datatype"), entry.get("shape"), entry.get("data"))
        if size is not None:
            if tensor.data is not None:  # which one would win is a guess: refuse, as Triton does
                raise BadRequest(f"input {name!r}: both 'data' and binary_data_size are given")
            if type(size) is not int or size < 0:
                raise BadRequest(f"input {name!r}: binary_data_size must be a non-negative integer")
            if offset + size > len(tail):
                raise BadRequest(f"input {name!r}: binary_data_size {size} runs past the "
                                 f"{len(tail)} bytes of binary data")
            tensor.raw = tail[offset:offset + size]
            offset += size
        inputs.append(tensor)
    if offset != len(tail):
        raise BadRequest(f"{len(tail) - offset} bytes of binary data belong to no input")

    binary_default = _parameters(header, "request").get("binary_data_output", False) is True
    request_id = header.get("id")
    if request_id is not None and not isinstance(request_id, str):  # echoed back: it must be valid JSON
        raise BadRequest("'id' must be a string")
    wanted = header.get("outputs")
    if wanted is None:
        return InferRequest(inputs, None, request_id), binary_default, None
    if not isinstance(wanted, list) or not all(isinstance(o, dict) for o in wanted):
        raise BadRequest("'outputs' must be a list of objects")
    binary = [_parameters(o, "output", o.get("name")).get("binary_data", binary_default) is True for o in wanted]
    return InferRequest(inputs, [o.get("name") for o in wanted], request_id), binary_default, binary


@lru_cache(maxsize=1024)
def _output_prefix(name: str, datatype: str) -> str:
    """The constant start of one output's JSON entry, up to its shape."""
    return f'{{"name":{encode_json(name)},"datatype":{encode_json(datatype)},"shape":['


def encode_response(result: InferResult, binary: list[bool],
                    written: list[dict | None] | None = None) -> tuple[bytes, int | None]:
    """Response body and, when it carries binary outputs, the length of its JSON header.
    `written`: per output, the parameters of a shared memory region it was written into.

    The JSON is assembled from pre-encoded pieces (names, datatypes) rather than through a
    dict per output: this runs once per request and is a large part of a tiny model's cost."""
    entries, chunks = [], []
    placed = iter(written or ())
    for (tensor, array), as_binary in zip(result.outputs, binary, strict=True):
        shape = ",".join(map(str, array.shape))
        region = next(placed, None)
        if region is not None:  # written into shared memory: the response names it, without data
            entries.append(f'{_output_prefix(tensor.name, tensor.datatype)}{shape}],'
                           f'"parameters":{encode_json(region)}}}')
            continue
        if as_binary:
            # row-major bytes whatever the array's memory layout; BYTES: length-prefixed elements
            raw = strings.length_prefixed(array) if strings.is_string(tensor.datatype) else array.tobytes()
            entries.append(f'{_output_prefix(tensor.name, tensor.datatype)}{shape}],'
                           f'"parameters":{{"binary_data_size":{len(raw)}}}}}')
            chunks.append(raw)
        else:
            values = strings.json_values(array) if strings.is_string(tensor.datatype) else array.reshape(-1).tolist()
            try:
                data = encode_json(values)
            except ValueError:  # NaN or Infinity: null in JSON (binary output carries them exactly)
                data = encode_json(_finite(values))
            entries.append(f'{_output_prefix(tensor.name, tensor.datatype)}{shape}],"data":{data}}}')
    request_id = "" if result.id is None else f',"id":{encode_json(result.id)}'
    head = (f'{{"model_name":{encode_json(result.model)},"model_version":{encode_json(result.version)},'
            f'"outputs":[{",".join(entries)}]{request_id}}}').encode()
    if not chunks:
        return head, None
    return b"".join([head, *chunks]), len(head)


class RestInference:
    """One REST inference request: `decode` and `encode` are what the data plane calls around the
    model, so the binary choices the request made reach its response."""

    __slots__ = ("_body", "_header_length", "_encoding", "_limit", "_binary_default", "_binary",
                 "_shared_memory", "_regions")

    def __init__(self, body: bytes, header_length: str | None, encoding: str | None, limit: int,
                 shared_memory: SharedMemoryRegistry | None = None):
        self._body, self._header_length, self._encoding, self._limit = body, header_length, encoding, limit
        self._binary_default = False
        self._binary: list[bool] | None = None
        self._shared_memory = shared_memory
        self._regions: list[RegionRef | None] | None = None  # per requested output (shared_memory.py)

    def decode(self) -> InferRequest:
        body = decompress(self._body, self._encoding, self._limit) if self._encoding else self._body
        header, tail = split_body(body, self._header_length)
        request, self._binary_default, self._binary = parse_request(header, tail)
        self._regions = rest_regions(self._shared_memory, header, request)
        return request

    def encode(self, result: InferResult) -> tuple[bytes, int | None]:
        binary = self._binary if self._binary is not None else [self._binary_default] * len(result.outputs)
        if self._regions is None or self._shared_memory is None:
            return encode_response(result, binary)
        written = [None if ref is None else write_output(self._shared_memory, ref, tensor.name, _raw(tensor, array))
                   for (tensor, array), ref in zip(result.outputs, self._regions, strict=True)]
        return encode_response(result, binary, written)


def _raw(tensor: Any, array: Any) -> bytes:
    """An output's bytes as the binary extension carries them (for a shared memory region)."""
    return strings.length_prefixed(array) if strings.is_string(tensor.datatype) else array.tobytes()


# -- the other documents of the protocol ---------------------------------------------------------
def json_bytes(document: Any) -> bytes:
    try:
        return encode_json(document).encode()
    except ValueError:  # a NaN or Infinity somewhere: null, never invalid JSON
        return encode_json(_finite(document)).encode()


def server_metadata_json(metadata: ServerMetadata) -> bytes:
    return json_bytes(asdict(metadata))


def model_metadata_json(metadata: ModelMetadata) -> bytes:
    return json_bytes(asdict(metadata))


def model_ready_json(model: str, version: str) -> bytes:
    return json_bytes({"name": model, "version": version, "ready": True})


def model_config_json(config: mc.ModelConfig) -> bytes:
    document = json_format.MessageToDict(config, preserving_proto_field_name=True)
    return json_bytes(_int64_as_numbers(config, document))


_INT64_TYPES = frozenset({FieldDescriptor.TYPE_INT64, FieldDescriptor.TYPE_UINT64, FieldDescriptor.TYPE_SINT64,
                          FieldDescriptor.TYPE_FIXED64, FieldDescriptor.TYPE_SFIXED64})


def _int64_as_numbers(message: Message, document: dict) -> dict:
    """proto3's JSON mapping writes 64-bit integers as strings ("dims": ["16"]); Triton's config
    JSON has numbers. Converts them back in place, field by field, throughout the message."""
    for field in message.DESCRIPTOR.fields:
        if field.name not in document:
            continue
        value, repeated = document[field.name], field.is_repeated
        entry = field.message_type
        if entry is not None and entry.GetOptions().map_entry:
            value_field = entry.fields_by_name["value"]
            for key, item in getattr(message, field.name).items():
                json_key = str(key).lower() if isinstance(key, bool) else str(key)
                if value_field.message_type is not None:
                    _int64_as_numbers(item, value[json_key])
                elif value_field.type in _INT64_TYPES:
                    value[json_key] = int(value[json_key])
        elif entry is not None:
            if repeated:
                for item, item_document in zip(getattr(message, field.name), value, strict=True):
                    _int64_as_numbers(item, item_document)
            else:
                _int64_as_numbers(getattr(message, field.name), value)
        elif field.type in _INT64_TYPES:
            document[field.name] = [int(v) for v in value] if repeated else int(value)
    return document


def repository_index_json(index: list[IndexEntry]) -> bytes:
    return json_bytes([{"name": e.name, "version": e.version, "state": e.state}
                       | ({} if e.reason is None else {"reason": e.reason}) for e in index])


def pin_json(pin: PinStatus | PinResult) -> bytes:
    return json_bytes(asdict(pin))
