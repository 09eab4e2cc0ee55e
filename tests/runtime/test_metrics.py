"""Prometheus /metrics under Triton's names, counting what actually happened."""
from __future__ import annotations

import re

import numpy as np
import pytest
import tritonclient.http as httpclient

from helpers.runtime import request, request_json

pytestmark = pytest.mark.sandbox  # starts or talks to a runtime process


TRITON_NAMES = ["nv_inference_request_success", "nv_inference_request_failure", "nv_inference_count",
                "nv_inference_exec_count", "nv_inference_request_duration_us", "nv_inference_queue_duration_us",
                "nv_inference_compute_infer_duration_us", "nv_inference_pending_request_count"]


def _sample(text: str, name: str, model: str = "mlp", version: str = "2") -> float:
    match = re.search(rf'^{name}{{model="{model}",version="{version}"}} (\S+)$', text, re.MULTILINE)
    assert match, f"{name} for {model}/{version} missing"
    return float(match.group(1))


def test_metrics_use_triton_names_and_count_requests(runtime):
    before = request(runtime.http_url, "GET", "/metrics")[2].decode()
    for name in TRITON_NAMES:
        assert f"# TYPE {name} " in before
    assert "_total" not in "".join(line for line in before.splitlines() if line.startswith("nv_"))
    client = httpclient.InferenceServerClient(runtime.http_url.removeprefix("http://"))
    tensor = httpclient.InferInput("INPUT__0", [3, 64], "FP32")
    tensor.set_data_from_numpy(np.zeros((3, 64), np.float32))
    for _ in range(5):
        client.infer("mlp", [tensor])
    assert request_json(runtime.http_url, "POST", "/v2/models/mlp/infer", {"inputs": "bad"})[0] == 400
    after = request(runtime.http_url, "GET", "/metrics")[2].decode()
    assert _sample(after, "nv_inference_request_success") - _sample(before, "nv_inference_request_success") == 5
    assert _sample(after, "nv_inference_request_failure") - _sample(before, "nv_inference_request_failure") == 1
    # canaries may run meanwhile (one row each), so at least the 15 rows requested
    assert _sample(after, "nv_inference_count") - _sample(before, "nv_inference_count") >= 15
    compute = "nv_inference_compute_infer_duration_us"
    assert _sample(after, compute) > _sample(before, compute)
    assert "process_resident_memory_bytes" in after
