"""A loaded TorchScript model: runs one batch of requests on its device, in a worker thread."""
from __future__ import annotations

import io
import time
import warnings

import numpy as np
import torch

from . import strings
from .errors import ModelFailure
from .model_spec import ModelSpec

# Request bodies arrive as immutable bytes; the model only reads its inputs.
warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
# TorchScript is what Triton's libtorch backend serves, so the repository format stays on it.
warnings.filterwarnings("ignore", category=DeprecationWarning, message=r"`torch\.jit\.")


def pick_device(spec: ModelSpec) -> torch.device:
    return torch.device("cuda") if spec.wants_gpu and torch.cuda.is_available() else torch.device("cpu")


class TorchModel:
    def __init__(self, spec: ModelSpec, version: str, module: torch.jit.ScriptModule, device: torch.device):
        self.spec = spec
        self.version = version
        self.device = device
        self._module = module
        # compute input, infer and output ns of the last execute(): read by the batcher once the
        # worker thread is done with it (one execution at a time per model)
        self.timings: tuple[int, int, int] = (0, 0, 0)

    @classmethod
    def load(cls, spec: ModelSpec, version: str, model_bytes: bytes) -> "TorchModel":
        device = pick_device(spec)
        try:
            module = torch.jit.load(io.BytesIO(model_bytes), map_location=device)
        except Exception as exc:  # noqa: BLE001 - torch raises RuntimeError and friends for a bad archive
            raise ValueError(f"{spec.name}/{version}/model.pt is not a loadable TorchScript model: "
                             f"{str(exc).splitlines()[0]}") from None
        module.eval()
        return cls(spec, version, module, device)

    def execute(self, batch: list[list[np.ndarray]]) -> list[list[np.ndarray]]:
        """Run requests (each: arrays in input order) as one forward; outputs per request in
        output order. Concatenates along the batch dimension when there is more than one."""
        began = time.perf_counter_ns()
        if len(batch) == 1:
            joined = batch[0]
        else:
            joined = [np.concatenate([request[i] for request in batch]) for i in range(len(self.spec.inputs))]
        try:
            with torch.inference_mode():
                # BYTES inputs go to the model as List[str]; everything else as tensors on its device
                tensors = [strings.model_argument(a) if a.dtype == strings.OBJECT
                           else torch.from_numpy(a).to(self.device) for a in joined]
                prepared = time.perf_counter_ns()
                result = self._module(*tensors)
                if self.device.type == "cuda":  # CUDA runs asynchronously: wait, so infer time is real
                    torch.cuda.synchronize(self.device)
                computed = time.perf_counter_ns()
        except Exception as exc:
            raise ModelFailure(f"model {self.spec.name!r} version {self.version} failed: "
                               f"{str(exc).splitlines()[0] if str(exc) else type(exc).__name__}") from exc
        outputs = self._check_outputs(result, joined[0].shape[0] if self.spec.batched else None,
                                      [a.shape for a in joined])
        if len(batch) == 1:
            per_request = [outputs]
        else:
            per_request, start = [], 0
            for request in batch:
                rows = request[0].shape[0]
                per_request.append([o[start:start + rows] for o in outputs])
                start += rows
        self.timings = (prepared - began, computed - prepared, time.perf_counter_ns() - computed)
        return per_request

    def _check_outputs(self, result, rows: int | None, input_shapes: list[tuple[int, ...]]) -> list[np.ndarray]:
        specs = self.spec.outputs
        if len(specs) == 1 and strings.is_string(specs[0].datatype) and strings.is_model_strings(result):
            tensors = [result]  # one List[str] output: the list is the output, not a tuple of outputs
        else:
            tensors = list(result) if isinstance(result, (tuple, list)) else [result]
        if len(tensors) != len(specs):
            raise ModelFailure(f"model {self.spec.name!r} returned {len(tensors)} value(s), "
                               f"its config declares {len(specs)} output tensor(s)")
        for value, spec in zip(tensors, specs, strict=True):
            string = strings.is_string(spec.datatype)
            if not (strings.is_model_strings(value) if string else isinstance(value, torch.Tensor)):
                raise ModelFailure(f"model {self.spec.name!r} output {spec.name!r} is a {type(value).__name__}, "
                                   f"its config declares {'List[str] (TYPE_STRING)' if string else 'a tensor'}")
        arrays = []
        for tensor, spec in zip(tensors, specs, strict=True):
            if strings.is_string(spec.datatype):
                dims = ([rows] if rows is not None else []) + list(spec.dims)
                arrays.append(strings.output_array(self.spec.name, spec.name, tensor, dims, input_shapes))
                continue
            array = tensor.detach().cpu().numpy()
            if array.dtype != spec.numpy_dtype:
                raise ModelFailure(f"model {self.spec.name!r} output {spec.name!r} is {array.dtype}, "
                                   f"its config says {spec.datatype}")
            if rows is not None and (array.ndim == 0 or array.shape[0] != rows):
                raise ModelFailure(f"model {self.spec.name!r} output {spec.name!r} has shape "
                                   f"{list(array.shape)}, expected a batch of {rows}")
            arrays.append(array)
        return arrays
