"""Checks a request's tensors against the model's spec and turns them into numpy arrays in the
model's input order. Shared by the REST and gRPC front ends and the canary."""
from __future__ import annotations

import math
from typing import Any, Iterable

import numpy as np

from . import strings
from .errors import BadRequest
from .model_spec import JSON_KINDS, NUMPY_DTYPES, ModelSpec, TensorSpec


def _element_count(shape: list[int]) -> int:
    return math.prod(shape)


def check_input_header(spec: ModelSpec, name: Any, datatype: Any, shape: Any) -> TensorSpec:
    """Validate name, datatype and shape of one input; returns its spec."""
    if not isinstance(name, str):
        raise BadRequest("every input needs a string 'name'")
    tensor = spec.input(name)
    if tensor is None:
        raise BadRequest(f"model {spec.name!r} has no input {name!r} (inputs: {[t.name for t in spec.inputs]})")
    if datatype != tensor.datatype:
        raise BadRequest(f"input {name!r}: datatype {datatype!r} does not match the model's {tensor.datatype}")
    if not isinstance(shape, (list, tuple)) or not all(type(d) is int for d in shape):
        raise BadRequest(f"input {name!r}: 'shape' must be a list of integers")
    expected = spec.full_shape(tensor)
    if len(shape) != len(expected) or any(
            d < 0 or (want != -1 and d != want) for d, want in zip(shape, expected, strict=True)):
        raise BadRequest(f"input {name!r}: shape {list(shape)} does not match the model's {expected}")
    if spec.batched and not 1 <= shape[0] <= spec.max_batch_size:
        raise BadRequest(f"input {name!r}: batch size {shape[0]} is outside 1..{spec.max_batch_size}")
    return tensor


def array_from_json(tensor: TensorSpec, shape: list[int], data: Any) -> np.ndarray:
    if strings.is_string(tensor.datatype):
        return strings.array_from_values(tensor.name, shape, data)
    if not isinstance(data, list):
        raise BadRequest(f"input {tensor.name!r}: 'data' must be a list")
    try:
        array = np.asarray(data)
    except (ValueError, TypeError):
        raise BadRequest(f"input {tensor.name!r}: 'data' is not a regular list of numbers") from None
    if array.size and array.dtype.kind not in JSON_KINDS[tensor.datatype]:
        raise BadRequest(f"input {tensor.name!r}: 'data' holds {array.dtype.kind!r}-kind values, "
                         f"not {tensor.datatype}")
    if array.size != _element_count(shape):
        raise BadRequest(f"input {tensor.name!r}: {array.size} values for shape {shape}")
    dtype = NUMPY_DTYPES[tensor.datatype]
    if dtype.kind in "iu" and array.size:
        info = np.iinfo(dtype)
        if array.min() < info.min or array.max() > info.max:
            raise BadRequest(f"input {tensor.name!r}: values out of range for {tensor.datatype}")
    return array.astype(dtype, copy=False).reshape(shape)


def array_from_bytes(tensor: TensorSpec, shape: list[int], raw: bytes | memoryview) -> np.ndarray:
    if strings.is_string(tensor.datatype):  # length-prefixed elements, not fixed-size ones
        return strings.array_from_length_prefixed(tensor.name, shape, raw)
    dtype = tensor.numpy_dtype
    expected = _element_count(shape) * dtype.itemsize
    if len(raw) != expected:
        raise BadRequest(f"input {tensor.name!r}: {len(raw)} bytes of data, shape {shape} of "
                         f"{tensor.datatype} needs {expected}")
    array = np.frombuffer(raw, dtype=dtype).reshape(shape)
    if dtype.kind == "b" and array.size and array.view(np.uint8).max() > 1:
        raise BadRequest(f"input {tensor.name!r}: BOOL bytes must be 0 or 1")
    return array


def order_inputs(spec: ModelSpec, arrays: Iterable[tuple[TensorSpec, np.ndarray]]) -> tuple[list[np.ndarray], int]:
    """Arrays in the model's input order and the request's batch size (1 when unbatched)."""
    by_name: dict[str, np.ndarray] = {}
    for tensor, array in arrays:
        if tensor.name in by_name:
            raise BadRequest(f"input {tensor.name!r} is given more than once")
        by_name[tensor.name] = array
    missing = [t.name for t in spec.inputs if t.name not in by_name]
    if missing:
        raise BadRequest(f"model {spec.name!r} needs inputs {missing}")
    ordered = [by_name[t.name] for t in spec.inputs]
    rows = ordered[0].shape[0] if spec.batched else 1
    if spec.batched and any(a.shape[0] != rows for a in ordered):
        raise BadRequest("all inputs must have the same batch size")
    return ordered, rows


def requested_outputs(spec: ModelSpec, names: Iterable[Any]) -> list[int]:
    """Indexes into spec.outputs of the outputs a client asked for, in its order."""
    indexes = []
    for name in names:
        tensor = spec.output(name) if isinstance(name, str) else None
        if tensor is None:
            raise BadRequest(f"model {spec.name!r} has no output {name!r} "
                             f"(outputs: {[t.name for t in spec.outputs]})")
        indexes.append(spec.outputs.index(tensor))
    return indexes
