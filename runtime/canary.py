"""The golden canary shipped with each model version: a fixed input and the output the approved
model produced for it. Passing it proves the loaded model computes what was approved."""
from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np

from . import strings
from .errors import BadRequest
from .model_spec import ModelSpec
from .tensors import array_from_json, check_input_header, order_inputs


class CanaryError(ValueError):
    """canary.json is malformed or does not fit the model's config."""


@dataclass(frozen=True)
class Canary:
    inputs: list[np.ndarray]
    rows: int
    expected: dict[int, np.ndarray]  # output index -> expected values
    atol: float

    @classmethod
    def parse(cls, data: bytes, spec: ModelSpec, where: str) -> "Canary":
        try:
            doc = json.loads(data)
            inputs, outputs, atol = doc["inputs"], doc["outputs"], float(doc.get("atol", 1e-5))
            if not isinstance(inputs, dict) or not isinstance(outputs, dict) or not outputs:
                raise TypeError("'inputs' and 'outputs' must be non-empty objects")
            arrays = []
            for name, tensor in inputs.items():
                spec_tensor = check_input_header(spec, name, tensor.get("datatype"), tensor.get("shape"))
                arrays.append((spec_tensor, array_from_json(spec_tensor, tensor["shape"], tensor.get("data"))))
            ordered, rows = order_inputs(spec, arrays)
            expected = {}
            for name, tensor in outputs.items():
                out = spec.output(name)
                if out is None:
                    raise TypeError(f"output {name!r} is not in the model's config")
                if strings.is_string(out.datatype):  # golden strings compare exactly
                    expected[spec.outputs.index(out)] = strings.expected_strings(name, tensor["shape"],
                                                                                 tensor.get("data"))
                    continue
                values = np.asarray(tensor["data"], dtype=np.float64)
                expected[spec.outputs.index(out)] = values.reshape(tensor["shape"])
        except (ValueError, KeyError, TypeError, AttributeError, BadRequest) as exc:
            raise CanaryError(f"{where}: {exc}") from None
        return cls(ordered, rows, expected, atol)

    def mismatch(self, outputs: list[np.ndarray]) -> str | None:
        """None when every expected output matches within atol, else what differs."""
        for index, want in self.expected.items():
            got = outputs[index]
            if got.shape != want.shape:
                return f"output {index}: shape {list(got.shape)} != expected {list(want.shape)}"
            if want.dtype == strings.OBJECT:
                differs = [i for i, (g, w) in enumerate(zip(got.reshape(-1), want.reshape(-1), strict=True))
                           if g != w]
                if differs:
                    return (f"output {index}: {len(differs)} string(s) differ, the first at element {differs[0]}: "
                            f"{got.reshape(-1)[differs[0]]!r} != expected {want.reshape(-1)[differs[0]]!r}")
                continue
            diff = float(np.max(np.abs(got.astype(np.float64) - want))) if want.size else 0.0
            if not diff <= self.atol:
                return f"output {index}: max abs difference {diff:.3g} exceeds atol {self.atol:g}"
        return None
