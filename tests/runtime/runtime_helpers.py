"""Helpers and fixtures shared by the runtime tests: the torch reference forward, raw HTTP
requests, the example repository and the shared runtime process."""
from __future__ import annotations

import http.client
import json
from pathlib import Path

import numpy as np
import pytest
import torch

import mlfleet.runtime.torch_model  # noqa: F401 - silences torch.jit deprecation warnings
from mlfleet.runtime.examples import write_example_repository
from mlfleet.runtime.process import RuntimeProcess

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


# Fixtures live here rather than in a conftest.py: a second `conftest` module on sys.path would
# shadow tests/conftest.py for the other test folders' `from conftest import ...`. Test modules
# import them by name; the cache keeps one repository and one shared runtime per session.
_session: dict = {}


@pytest.fixture(scope="session")
def example_repo(tmp_path_factory) -> Path:
    if "repo" not in _session:
        root = tmp_path_factory.mktemp("repository")
        write_example_repository(root, models=("mlp", "mlp-large"))
        _session["repo"] = root
    return _session["repo"]


@pytest.fixture(scope="session")
def runtime(example_repo, tmp_path_factory):
    """One shared runtime for read-only tests (conformance, fuzz, metrics, health under load)."""
    owner = "runtime" not in _session
    if owner:
        log = tmp_path_factory.mktemp("logs") / "shared-runtime.log"
        _session["runtime"] = RuntimeProcess(
            example_repo, region="eu-west-1", admin_token=ADMIN_TOKEN, log_path=log,
            extra_args=["--max-body-bytes", str(MAX_BODY_BYTES), "--canary-interval", "2"]).start()
    yield _session["runtime"]
    if owner:
        _session.pop("runtime").stop()
