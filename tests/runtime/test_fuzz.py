"""Bad input never breaks the server: malformed bodies, wrong types and shapes, byte counts that
disagree with the header, unknown models and oversized bodies get a 4xx JSON error."""
from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from helpers.runtime import MAX_BODY_BYTES, request

pytestmark = pytest.mark.sandbox  # starts or talks to a runtime process


json_scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8)
json_values = st.recursive(
    json_scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12)
tensor_entries = st.fixed_dictionaries({
    "name": st.sampled_from(["INPUT__0", "OTHER", ""]) | st.integers(),
    "datatype": st.sampled_from(["FP32", "FP16", "INT64", "BOOL", "BYTES", "fp32"]) | json_values,
    "shape": st.lists(st.integers(-2, 70), max_size=3) | json_values,
}, optional={
    "data": st.lists(st.floats(allow_nan=False, width=32) | st.integers(-2**40, 2**40) | st.text(max_size=2),
                     max_size=70) | json_values,
    "parameters": st.fixed_dictionaries({"binary_data_size": st.integers(-4, 300) | json_values}),
})
documents = st.fixed_dictionaries({}, optional={"inputs": st.lists(tensor_entries, max_size=3) | json_values,
                                                "outputs": json_values, "parameters": json_values, "id": json_values})


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(document=documents, tail=st.binary(max_size=300), header_length=st.none() | st.integers(-5, 5000)
       | st.sampled_from(["abc", ""]), model=st.sampled_from(["mlp", "mlp", "nope", "mlp/versions/7"]))
def test_fuzzed_infer_requests_get_4xx_json(runtime, document, tail, header_length, model):
    header = json.dumps(document).encode()
    headers = {}
    if header_length is not None:
        headers["Inference-Header-Content-Length"] = str(header_length) if isinstance(header_length, str) \
            else str(len(header) if header_length == 0 else header_length)
    status, response_headers, body = request(runtime.http_url, "POST", f"/v2/models/{model}/infer",
                                             header + tail, headers)
    if status == 200:  # hypothesis found a valid request: that is fine, it must be a real answer
        return
    assert 400 <= status < 500, (status, body)
    assert response_headers["content-type"] == "application/json"
    assert set(json.loads(body)) == {"error"}


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(raw=st.binary(max_size=200))
def test_fuzzed_raw_bytes_get_400(runtime, raw):
    status, _, body = request(runtime.http_url, "POST", "/v2/models/mlp/infer", raw)
    assert status in (200, 400) and (status == 200 or "error" in json.loads(body))


def test_oversized_body_is_413_and_server_keeps_serving(runtime):
    status, _, body = request(runtime.http_url, "POST", "/v2/models/mlp/infer", b"x" * (MAX_BODY_BYTES + 1))
    assert status == 413 and "limit" in json.loads(body)["error"]
    assert request(runtime.http_url, "GET", "/v2/health/live")[0] == 200
