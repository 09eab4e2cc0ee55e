"""A model's serving contract, read from Triton's ``config.pbtxt`` with the protocol's own
model-config protobuf: input and output names, datatypes, shapes, batching and device."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as mc

from . import strings

# Datatypes a TorchScript model can take or return, by their v2 protocol names.
NUMPY_DTYPES: dict[str, np.dtype] = {
    "BOOL": np.dtype(np.bool_),
    "UINT8": np.dtype(np.uint8),
    "UINT16": np.dtype(np.uint16),
    "UINT32": np.dtype(np.uint32),
    "UINT64": np.dtype(np.uint64),
    "INT8": np.dtype(np.int8),
    "INT16": np.dtype(np.int16),
    "INT32": np.dtype(np.int32),
    "INT64": np.dtype(np.int64),
    "FP16": np.dtype(np.float16),
    "FP32": np.dtype(np.float32),
    "FP64": np.dtype(np.float64),
    # TYPE_STRING: object arrays of str between the checks and the encoders (runtime/strings.py)
    "BYTES": np.dtype(object),
}
# Which numpy kinds a JSON list may hold for a datatype (ints may fill a float tensor).
JSON_KINDS = {name: ("b",) if name == "BOOL" else ("i", "u") if dt.kind in "iu" else ("i", "u", "f")
              for name, dt in NUMPY_DTYPES.items()}

SUPPORTED_PLATFORMS = {"", "pytorch_libtorch"}
SUPPORTED_BACKENDS = {"", "pytorch"}


class ModelConfigError(ValueError):
    """config.pbtxt is unreadable or asks for something this runtime cannot serve."""


@dataclass(frozen=True)
class TensorSpec:
    name: str
    datatype: str       # v2 name, e.g. "FP32"
    dims: tuple[int, ...]  # without the batch dimension; -1 = any size

    @property
    def numpy_dtype(self) -> np.dtype:
        return NUMPY_DTYPES[self.datatype]


@dataclass(frozen=True)
class ModelSpec:
    name: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    max_batch_size: int            # 0 = the model takes no batch dimension
    dynamic_batching: bool
    max_queue_delay_us: int
    wants_gpu: bool
    config: mc.ModelConfig
    _inputs_by_name: dict[str, TensorSpec] = field(init=False, repr=False, compare=False)
    _outputs_by_name: dict[str, TensorSpec] = field(init=False, repr=False, compare=False)

    @property
    def batched(self) -> bool:
        return self.max_batch_size > 0

    def full_shape(self, tensor: TensorSpec) -> list[int]:
        """The shape clients see: a leading -1 batch dimension when the model batches."""
        return ([-1] if self.batched else []) + list(tensor.dims)

    def input(self, name: str) -> TensorSpec | None:
        return self._inputs_by_name.get(name)

    def output(self, name: str) -> TensorSpec | None:
        return self._outputs_by_name.get(name)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_inputs_by_name", {t.name: t for t in self.inputs})
        object.__setattr__(self, "_outputs_by_name", {t.name: t for t in self.outputs})


def parse_model_config(text: bytes | str, model: str) -> ModelSpec:
    """Parse config.pbtxt for `model`; ModelConfigError names the model and the problem."""
    where = f"{model}/config.pbtxt"
    config = mc.ModelConfig()
    try:
        text_format.Parse(text.decode() if isinstance(text, bytes) else text, config)
    except (text_format.ParseError, UnicodeDecodeError) as exc:
        raise ModelConfigError(f"{where}: {exc}") from None
    if config.name and config.name != model:
        raise ModelConfigError(f"{where}: name {config.name!r} differs from the folder name {model!r}")
    if config.platform not in SUPPORTED_PLATFORMS or config.backend not in SUPPORTED_BACKENDS:
        raise ModelConfigError(
            f"{where}: platform {config.platform!r} / backend {config.backend!r} is not served here "
            "(TorchScript models: platform \"pytorch_libtorch\" or backend \"pytorch\")")
    if config.max_batch_size < 0:
        raise ModelConfigError(f"{where}: max_batch_size must be >= 0")
    if config.HasField("sequence_batching") or config.HasField("ensemble_scheduling"):
        scheduler = config.WhichOneof("scheduling_choice")
        raise ModelConfigError(f"{where}: {scheduler} is not supported (this runtime serves stateless "
                               "models: no scheduler, or dynamic_batching)")
    if not config.input or not config.output:
        raise ModelConfigError(f"{where}: at least one input and one output are required")

    def tensors(kind: str, entries) -> tuple[TensorSpec, ...]:
        specs, seen = [], set()
        for entry in entries:
            datatype = mc.DataType.Name(entry.data_type).removeprefix("TYPE_")
            if datatype == strings.CONFIG_DATATYPE:  # the protocol calls TYPE_STRING "BYTES"
                datatype = strings.BYTES
            if datatype not in NUMPY_DTYPES:
                raise ModelConfigError(f"{where}: {kind} {entry.name!r}: datatype {datatype} is not "
                                       f"supported (supported: {', '.join(NUMPY_DTYPES)})")
            if not entry.name or entry.name in seen:
                raise ModelConfigError(f"{where}: {kind} names must be present and unique ({entry.name!r})")
            if any(d == 0 or d < -1 for d in entry.dims):
                raise ModelConfigError(f"{where}: {kind} {entry.name!r}: dims must be positive or -1")
            seen.add(entry.name)
            specs.append(TensorSpec(entry.name, datatype, tuple(int(d) for d in entry.dims)))
        return tuple(specs)

    kinds = {group.kind for group in config.instance_group}
    return ModelSpec(
        name=model,
        inputs=tensors("input", config.input),
        outputs=tensors("output", config.output),
        max_batch_size=int(config.max_batch_size),
        dynamic_batching=config.HasField("dynamic_batching") and config.max_batch_size > 0,
        max_queue_delay_us=int(config.dynamic_batching.max_queue_delay_microseconds),
        # Triton's default (no instance_group, or KIND_AUTO) is a GPU when there is one.
        wants_gpu=not kinds or bool(kinds & {mc.ModelInstanceGroup.KIND_GPU, mc.ModelInstanceGroup.KIND_AUTO}),
        config=config,
    )
