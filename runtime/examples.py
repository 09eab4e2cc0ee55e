"""Deterministic example models in a complete, approved model repository: TorchScript MLPs,
Triton config.pbtxt, golden canaries and the champion manifest. Used by tests, the DR sandbox,
the demo and the benchmark; the same seed always gives the same bytes and checksums."""
from __future__ import annotations

import itertools
import json
from datetime import datetime, timezone
from pathlib import Path

from .manifest import CANARY_FILE, CONFIG_FILE, MANIFEST_FILE, MODEL_FILE, Manifest, sha256_file
from .signing import SIGNATURE_FILE, LocalSigningKey

# name -> (layer widths, max_queue_delay_microseconds, canary atol)
EXAMPLE_MODELS = {
    "mlp": ((64, 256, 10), 0, 1e-4),
    "mlp-large": ((64, 4096, 4096, 10), 2000, 1e-3),
}
MAX_BATCH_SIZE = 64
# Triton's `simple` models, which NVIDIA's client examples call: two [-1, 16] inputs of the
# datatype, their element-wise sum and difference as outputs. name -> datatype
ADD_SUB_MODELS = {"simple": "INT32", "simple_int8": "INT8"}
ADD_SUB_MAX_BATCH_SIZE = 8  # as Triton's example config
APPROVED_AT = datetime(2025, 1, 1, tzinfo=timezone.utc)


def _seed(model: str, version: str) -> int:
    return sum(model.encode()) * 1000 + int(version)


def build_mlp(widths: tuple[int, ...], seed: int):
    import torch

    from . import torch_model  # noqa: F401 - its warning filters cover torch.jit here too

    torch.manual_seed(seed)
    layers: list = []
    for index, (width_in, width_out) in enumerate(itertools.pairwise(widths)):
        if index:
            layers.append(torch.nn.ReLU())
        layers.append(torch.nn.Linear(width_in, width_out))
    return torch.jit.script(torch.nn.Sequential(*layers).eval())


def config_pbtxt(model: str, widths: tuple[int, ...], delay_us: int) -> str:
    batching = (f"dynamic_batching {{ max_queue_delay_microseconds: {delay_us} }}" if delay_us
                else "dynamic_batching { }")
    return (f'name: "{model}"\nplatform: "pytorch_libtorch"\nmax_batch_size: {MAX_BATCH_SIZE}\n'
            f'input [ {{ name: "INPUT__0" data_type: TYPE_FP32 dims: [ {widths[0]} ] }} ]\n'
            f'output [ {{ name: "OUTPUT__0" data_type: TYPE_FP32 dims: [ {widths[-1]} ] }} ]\n'
            f"{batching}\n")


def build_add_sub():
    """The TorchScript module of the `simple` models: (INPUT0 + INPUT1, INPUT0 - INPUT1)."""
    import torch

    from . import torch_model  # noqa: F401 - its warning filters cover torch.jit here too

    class AddSub(torch.nn.Module):
        def forward(self, input0: torch.Tensor, input1: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            return input0 + input1, input0 - input1

    return torch.jit.script(AddSub().eval())


def add_sub_config_pbtxt(model: str, datatype: str) -> str:
    tensor = f'data_type: TYPE_{datatype} dims: [ 16 ]'
    return (f'name: "{model}"\nplatform: "pytorch_libtorch"\nmax_batch_size: {ADD_SUB_MAX_BATCH_SIZE}\n'
            f'input [ {{ name: "INPUT0" {tensor} }}, {{ name: "INPUT1" {tensor} }} ]\n'
            f'output [ {{ name: "OUTPUT0" {tensor} }}, {{ name: "OUTPUT1" {tensor} }} ]\n')


def _add_sub_canary(datatype: str) -> dict:
    first = list(range(16))  # the client examples' inputs: 0..15 and ones
    tensors = {"INPUT0": first, "INPUT1": [1] * 16,
               "OUTPUT0": [value + 1 for value in first], "OUTPUT1": [value - 1 for value in first]}
    documents = {name: {"datatype": datatype, "shape": [1, 16], "data": data} for name, data in tensors.items()}
    return {"inputs": {name: documents[name] for name in ("INPUT0", "INPUT1")},
            "outputs": {name: documents[name] for name in ("OUTPUT0", "OUTPUT1")},
            "atol": 0.0}


# Triton's string examples (TYPE_STRING, BYTES on the wire), which NVIDIA's string client examples
# call: `simple_string` reads two [-1, 16] tensors of decimal integers and answers their sum and
# difference as decimal strings; `simple_identity` returns its [-1, -1] input. name -> batching
STRING_MODELS = {"simple_string": True, "simple_identity": False}


def build_string_model(model: str):
    """The TorchScript module of a string example: it takes and returns List[str] (row-major)."""
    import torch

    from . import torch_model  # noqa: F401 - its warning filters cover torch.jit here too

    class SumDifference(torch.nn.Module):
        def forward(self, input0: list[str], input1: list[str]) -> tuple[list[str], list[str]]:
            total = [str(int(a) + int(b)) for a, b in zip(input0, input1)]  # noqa: B905 - TorchScript has no strict
            difference = [str(int(a) - int(b)) for a, b in zip(input0, input1)]  # noqa: B905
            return total, difference

    class Identity(torch.nn.Module):
        def forward(self, input0: list[str]) -> list[str]:
            return input0

    return torch.jit.script((SumDifference() if model == "simple_string" else Identity()).eval())


def string_config_pbtxt(model: str) -> str:
    head = f'name: "{model}"\nplatform: "pytorch_libtorch"\nmax_batch_size: {ADD_SUB_MAX_BATCH_SIZE}\n'
    if model == "simple_identity":
        return (head + 'input [ { name: "INPUT0" data_type: TYPE_STRING dims: [ -1 ] } ]\n'
                'output [ { name: "OUTPUT0" data_type: TYPE_STRING dims: [ -1 ] } ]\n')
    tensor = "data_type: TYPE_STRING dims: [ 16 ]"
    return (head + f'input [ {{ name: "INPUT0" {tensor} }}, {{ name: "INPUT1" {tensor} }} ]\n'
            f'output [ {{ name: "OUTPUT0" {tensor} }}, {{ name: "OUTPUT1" {tensor} }} ]\n'
            + ("dynamic_batching { }\n" if STRING_MODELS[model] else ""))


def _string_canary(model: str) -> dict:
    def document(data: list[str]) -> dict:
        return {"datatype": "BYTES", "shape": [1, len(data)], "data": data}
    if model == "simple_identity":  # an embedded NUL and non-ASCII text must come back unchanged
        texts = ["he\x00llo", "\x00\x01\x02\x03", "grüße", ""]
        return {"inputs": {"INPUT0": document(texts)}, "outputs": {"OUTPUT0": document(texts)}}
    first = list(range(16))  # the client examples' inputs: 0..15 and ones
    return {"inputs": {"INPUT0": document([str(v) for v in first]), "INPUT1": document(["1"] * 16)},
            "outputs": {"OUTPUT0": document([str(v + 1) for v in first]),
                        "OUTPUT1": document([str(v - 1) for v in first])}}


def _example_version(model: str, version: str):
    """The TorchScript module and canary document of one example model version."""
    if model in STRING_MODELS:
        return build_string_model(model), _string_canary(model)
    if model in ADD_SUB_MODELS:
        return build_add_sub(), _add_sub_canary(ADD_SUB_MODELS[model])
    widths, _, atol = EXAMPLE_MODELS[model]
    module = build_mlp(widths, _seed(model, version))
    return module, _canary(module, widths, _seed(model, version), atol)


def _canary(module, widths: tuple[int, ...], seed: int, atol: float) -> dict:
    import torch

    generator = torch.Generator().manual_seed(seed + 7)
    sample = torch.randn(1, widths[0], generator=generator)
    with torch.inference_mode():
        expected = module(sample)
    return {
        "inputs": {"INPUT__0": {"datatype": "FP32", "shape": [1, widths[0]], "data": sample.flatten().tolist()}},
        "outputs": {"OUTPUT__0": {"datatype": "FP32", "shape": list(expected.shape),
                                  "data": expected.flatten().tolist()}},
        "atol": atol,
    }


def write_example_repository(root: Path, *, models=("mlp",), versions=("1", "2"), champion="2",
                             approved_by="ml-review", signing_key: LocalSigningKey | None = None) -> Manifest:
    """Write `models` x `versions` under `root` with manifest.json naming `champion`, and with
    `signing_key` its signature manifest.json.sig (without one the runtime needs --allow-unsigned)."""
    import torch

    root = Path(root)
    unknown = [m for m in models if m not in EXAMPLE_MODELS and m not in ADD_SUB_MODELS and m not in STRING_MODELS]
    if unknown:
        raise ValueError(f"unknown example model(s) {unknown}; "
                         f"choose from {sorted([*EXAMPLE_MODELS, *ADD_SUB_MODELS, *STRING_MODELS])}")
    if champion not in versions:
        raise ValueError(f"champion {champion!r} is not one of versions {list(versions)}")
    entries = {}
    for model in models:
        config = (string_config_pbtxt(model) if model in STRING_MODELS
                  else add_sub_config_pbtxt(model, ADD_SUB_MODELS[model]) if model in ADD_SUB_MODELS
                  else config_pbtxt(model, EXAMPLE_MODELS[model][0], EXAMPLE_MODELS[model][1]))
        (root / model).mkdir(parents=True, exist_ok=True)
        (root / model / CONFIG_FILE).write_text(config)
        approved = {}
        for version in versions:
            folder = root / model / version
            folder.mkdir(parents=True, exist_ok=True)
            module, canary = _example_version(model, version)
            torch.jit.save(module, str(folder / MODEL_FILE))
            (folder / CANARY_FILE).write_text(json.dumps(canary))
            approved[version] = {
                "files": {name: sha256_file(folder / name) for name in (MODEL_FILE, CANARY_FILE)},
                "approved_by": approved_by,
                "approved_at": APPROVED_AT.isoformat().replace("+00:00", "Z"),
            }
        entries[model] = {"champion": champion, "versions": approved,
                          "config_sha256": sha256_file(root / model / CONFIG_FILE)}
    manifest = Manifest.model_validate({"models": entries})
    (root / MANIFEST_FILE).write_text(manifest.model_dump_json(indent=2))
    if signing_key is not None:
        signing_key.sign_file(root / MANIFEST_FILE)
    else:  # a signature of an earlier manifest here would only mislead
        (root / SIGNATURE_FILE).unlink(missing_ok=True)
    return manifest
