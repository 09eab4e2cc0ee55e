"""Helpers of the runtime tests: the torch reference forward and raw HTTP requests (their
fixtures are in tests/runtime/conftest.py)."""
from __future__ import annotations

import http.client
import json
from pathlib import Path

import numpy as np
import torch

import mlfleet.runtime.torch_model  # noqa: F401 - silences torch.jit deprecation warnings

ADMIN_TOKEN = "test-admin-token"
MAX_BODY_BYTES = 1 << 20


def reference_forward(repo: Path, model: str, version: str, batch: np.ndarray) -> np.ndarray:
    """The direct torch forward the served outputs must equal."""
    module = torch.jit.load(str(repo / model / version / "model.pt"))
    with torch.inference_mode():
        return module(torch.from_numpy(batch)).numpy()


def request(url: str, method: str, path: str, body: bytes | None = None, headers: dict | None = None,
            timeout: float = 10.0) -> tuple[int, dict, bytes]:
    """A raw HTTP request on a fresh connection: status, lower-cased headers, body."""
    host, port = url.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=timeout)
    try:
        connection.request(method, path, body=body, headers=headers or {})
        response = connection.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        connection.close()


def request_json(url: str, method: str, path: str, document=None, headers: dict | None = None):
    body = None if document is None else json.dumps(document).encode()
    status, response_headers, payload = request(url, method, path, body, headers)
    return status, json.loads(payload) if payload else None
