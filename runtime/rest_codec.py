"""The v2 REST inference body, in JSON and with the binary tensor extension: a JSON header of
`Inference-Header-Content-Length` bytes followed by raw tensor bytes in input order."""
from __future__ import annotations

import json
import zlib
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np

from .errors import BadRequest, PayloadTooLarge
from .model_spec import ModelSpec
from .tensors import array_from_bytes, array_from_json, check_input_header, order_inputs, requested_outputs

# One compact encoder for every response: json.dumps with options builds a new encoder per call.
encode_json = json.JSONEncoder(separators=(",", ":")).encode


@dataclass
class ParsedRequest:
    request_id: Any
    inputs: list[np.ndarray]
    rows: int
    outputs: list[tuple[int, bool]]  # (output index, send as binary)


def decompress(body: bytes, encoding: str, limit: int) -> bytes:
    """Undo Content-Encoding gzip/deflate without ever inflating past `limit` bytes."""
    if encoding in ("", "identity"):
        return body
    if encoding not in ("gzip", "deflate"):
        raise BadRequest(f"unsupported Content-Encoding {encoding!r} (gzip, deflate or none)")
    inflater = zlib.decompressobj(zlib.MAX_WBITS | (16 if encoding == "gzip" else 0))
    try:
        data = inflater.decompress(body, limit + 1)
    except zlib.error as exc:
        raise BadRequest(f"body is not valid {encoding}: {exc}") from None
    if len(data) > limit:
        raise PayloadTooLarge(f"decompressed body exceeds the {limit}-byte limit")
    return data


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
    try:
        header = json.loads(json_part)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BadRequest(f"request body is not valid JSON: {exc}") from None
    if not isinstance(header, dict):
        raise BadRequest("request body must be a JSON object")
    return header, tail


def _parameters(entry: dict, kind: str, name: Any = None) -> dict:
    parameters = entry.get("parameters") or {}
    if not isinstance(parameters, dict):  # the message is built only for a bad request
        where = kind if name is None else f"{kind} {name!r}"
        raise BadRequest(f"{where}: 'parameters' must be an object")
    return parameters


def parse_request(spec: ModelSpec, header: dict, tail: memoryview) -> ParsedRequest:
    entries = header.get("inputs")
    if not isinstance(entries, list) or not entries:
        raise BadRequest("'inputs' must be a non-empty list")
    offset = 0
    arrays = []
    for entry in entries:
        if not isinstance(entry, dict):
            raise BadRequest("every input must be an object")
        tensor = check_input_header(spec, entry.get("name"), entry.get("datatype"), entry.get("shape"))
        size = _parameters(entry, "input", tensor.name).get("binary_data_size")
        if size is None:
            arrays.append((tensor, array_from_json(tensor, entry["shape"], entry.get("data"))))
            continue
        if type(size) is not int or size < 0:
            raise BadRequest(f"input {tensor.name!r}: binary_data_size must be a non-negative integer")
        if offset + size > len(tail):
            raise BadRequest(f"input {tensor.name!r}: binary_data_size {size} runs past the "
                             f"{len(tail)} bytes of binary data")
        arrays.append((tensor, array_from_bytes(tensor, entry["shape"], tail[offset:offset + size])))
        offset += size
    if offset != len(tail):
        raise BadRequest(f"{len(tail) - offset} bytes of binary data belong to no input")
    inputs, rows = order_inputs(spec, arrays)

    request_parameters = _parameters(header, "request")
    binary_default = request_parameters.get("binary_data_output", False) is True
    wanted = header.get("outputs")
    if wanted is None:
        outputs = [(i, binary_default) for i in range(len(spec.outputs))]
    else:
        if not isinstance(wanted, list) or not all(isinstance(o, dict) for o in wanted):
            raise BadRequest("'outputs' must be a list of objects")
        indexes = requested_outputs(spec, [o.get("name") for o in wanted])
        outputs = [(i, _parameters(o, "output", o.get("name")).get("binary_data", binary_default) is True)
                   for i, o in zip(indexes, wanted)]
    return ParsedRequest(header.get("id"), inputs, rows, outputs)


@lru_cache(maxsize=1024)
def _output_prefix(name: str, datatype: str) -> str:
    """The constant start of one output's JSON entry, up to its shape."""
    return f'{{"name":{encode_json(name)},"datatype":{encode_json(datatype)},"shape":['


def encode_response(spec: ModelSpec, version: str, request: ParsedRequest,
                    results: list[np.ndarray]) -> tuple[bytes, int | None]:
    """Response body and, when it carries binary outputs, the length of its JSON header.

    The JSON is assembled from pre-encoded pieces (names, datatypes) rather than through a
    dict per output: this runs once per request and is a large part of a tiny model's cost."""
    entries, chunks = [], []
    for index, binary in request.outputs:
        array, tensor = results[index], spec.outputs[index]
        shape = ",".join(map(str, array.shape))
        if binary:
            raw = array.tobytes()  # row-major bytes whatever the array's memory layout
            entries.append(f'{_output_prefix(tensor.name, tensor.datatype)}{shape}],'
                           f'"parameters":{{"binary_data_size":{len(raw)}}}}}')
            chunks.append(raw)
        else:
            entries.append(f'{_output_prefix(tensor.name, tensor.datatype)}{shape}],'
                           f'"data":{encode_json(array.reshape(-1).tolist())}}}')
    request_id = "" if request.request_id is None else f',"id":{encode_json(request.request_id)}'
    head = (f'{{"model_name":{encode_json(spec.name)},"model_version":{encode_json(version)},'
            f'"outputs":[{",".join(entries)}]{request_id}}}').encode()
    if not chunks:
        return head, None
    return b"".join([head, *chunks]), len(head)
