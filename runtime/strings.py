"""BYTES tensors (Triton's TYPE_STRING): the wire layouts and the model side.

On the wire a BYTES tensor is JSON strings, typed gRPC `bytes_contents`, or raw bytes in which
every element is a 4-byte little-endian length followed by that many bytes, in row-major order
(the binary tensor extension, `raw_input_contents` / `raw_output_contents`). TorchScript has no
bytes type, so a string model takes and returns `List[str]`: elements are decoded as UTF-8 when
the request is checked (a bad element is the client's error, not the model's), and between the
checks and the encoders a BYTES tensor is a numpy object array of `str` of the tensor's shape."""
from __future__ import annotations

import math
import struct
from typing import Any

import numpy as np

from .errors import BadRequest, ModelFailure

BYTES = "BYTES"
CONFIG_DATATYPE = "STRING"  # TYPE_STRING in config.pbtxt is BYTES in the protocol
OBJECT = np.dtype(object)
_LENGTH = struct.Struct("<I")


def is_string(datatype: str) -> bool:
    return datatype == BYTES


def _decoded(name: str, index: int, element: bytes | memoryview) -> str:
    try:
        return bytes(element).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BadRequest(f"input {name!r}: element {index} is not UTF-8 ({exc.reason} at byte {exc.start}); "
                         "string models take UTF-8 text") from None


def _shaped(name: str, elements: list[str], shape: list[int]) -> np.ndarray:
    expected = math.prod(shape)
    if len(elements) != expected:
        raise BadRequest(f"input {name!r}: {len(elements)} BYTES elements for shape {list(shape)} "
                         f"(needs {expected})")
    array = np.empty(len(elements), dtype=OBJECT)
    array[:] = elements
    return array.reshape(shape)


def array_from_length_prefixed(name: str, shape: list[int], raw: bytes | memoryview) -> np.ndarray:
    """The binary layout (length-prefixed elements) into an object array of `str` of `shape`."""
    data = bytes(raw)  # one copy; slicing bytes and decoding them is what the loop does per element
    expected = math.prod(shape)
    elements: list[str] = []
    offset, size, unpack = 0, len(data), _LENGTH.unpack_from
    while offset < size:
        if len(elements) == expected:  # checked before reading on: a huge count cannot grow the list
            raise BadRequest(f"input {name!r}: {size - offset} bytes follow the {expected} BYTES "
                             f"elements of shape {list(shape)}")
        if offset + 4 > size:
            raise BadRequest(f"input {name!r}: element {len(elements)}'s 4-byte length prefix runs past "
                             f"the {size}-byte buffer")
        (length,) = unpack(data, offset)
        offset += 4
        if offset + length > size:
            raise BadRequest(f"input {name!r}: element {len(elements)} declares {length} bytes, only "
                             f"{size - offset} remain in the buffer")
        try:
            elements.append(data[offset:offset + length].decode("utf-8"))
        except UnicodeDecodeError:
            _decoded(name, len(elements), data[offset:offset + length])  # raises, naming the element
        offset += length
    return _shaped(name, elements, shape)


def array_from_values(name: str, shape: list[int], data: Any) -> np.ndarray:
    """JSON strings (REST) or bytes (gRPC `bytes_contents`), flat or nested, into an object array."""
    if not isinstance(data, list):
        raise BadRequest(f"input {name!r}: 'data' must be a list of strings")
    elements: list[str] = []
    bound = math.prod(shape)  # past it the count is wrong whatever follows: stop reading
    pending = [iter(data)]
    while pending:  # iterative: a deeply nested list cannot exhaust the stack
        item = next(pending[-1], StopIteration)
        if item is StopIteration:
            pending.pop()
        elif isinstance(item, list):
            pending.append(iter(item))
        elif isinstance(item, str):
            elements.append(item)
        elif isinstance(item, bytes):
            elements.append(_decoded(name, len(elements), item))
        else:
            raise BadRequest(f"input {name!r}: BYTES 'data' holds a {type(item).__name__}, not a string")
        if len(elements) > bound:
            raise BadRequest(f"input {name!r}: more than {bound} BYTES elements for shape {list(shape)}")
    return _shaped(name, elements, shape)


def length_prefixed(array: np.ndarray) -> bytes:
    """An object array of `str` (or bytes) in the binary layout, row-major."""
    parts = []
    for element in array.reshape(-1):
        raw = element if isinstance(element, bytes) else str(element).encode("utf-8")
        parts.append(_LENGTH.pack(len(raw)))
        parts.append(raw)
    return b"".join(parts)


def json_values(array: np.ndarray) -> list[str]:
    return [e.decode("utf-8", "replace") if isinstance(e, bytes) else str(e) for e in array.reshape(-1)]


def model_argument(array: np.ndarray) -> list[str]:
    """What a TorchScript `List[str]` parameter receives: the elements in row-major order."""
    return list(array.reshape(-1))


def is_model_strings(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(e, str) for e in value)


def output_array(model: str, output: str, value: list[str], full_dims: list[int],
                 input_shapes: list[tuple[int, ...]]) -> np.ndarray:
    """A returned `List[str]` as an object array of the output's shape. `full_dims` is the config's
    shape with the batch dimension filled in; a `-1` left is taken from the element count when it
    is the only one, else from the first input whose shape fits and holds as many elements."""
    count = len(value)
    shape: list[int] | None = None
    wildcards = full_dims.count(-1)
    known = math.prod(d for d in full_dims if d != -1)
    if wildcards == 0:
        shape = full_dims if known == count else None
    elif wildcards == 1 and known and count % known == 0:
        shape = [count // known if d == -1 else d for d in full_dims]
    else:
        shape = next((list(s) for s in input_shapes if len(s) == len(full_dims) and math.prod(s) == count
                      and all(w in (-1, d) for w, d in zip(full_dims, s, strict=True))), None)
    if shape is None:
        raise ModelFailure(f"model {model!r} output {output!r}: {count} strings do not fit its shape {full_dims}")
    array = np.empty(count, dtype=OBJECT)
    array[:] = value
    return array.reshape(shape)


def expected_strings(name: str, shape: Any, data: Any) -> np.ndarray:
    """A canary's golden BYTES output (strings of `shape`)."""
    if not isinstance(shape, list) or not all(type(d) is int and d >= 0 for d in shape):
        raise TypeError(f"output {name!r}: 'shape' must be a list of non-negative integers")
    try:
        return array_from_values(name, shape, data)
    except BadRequest as exc:
        raise TypeError(exc.message.replace("input", "output", 1)) from None
