"""Fixtures of the runtime tests: the example repository and one shared runtime process."""
from __future__ import annotations

from pathlib import Path

import pytest

from mlfleet.runtime.examples import write_example_repository
from mlfleet.runtime.process import RuntimeProcess

from helpers.runtime import ADMIN_TOKEN, MAX_BODY_BYTES


@pytest.fixture(scope="session")
def example_repo(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("repository")
    write_example_repository(root, models=("mlp", "mlp-large"))
    return root


@pytest.fixture(scope="session")
def runtime(example_repo, tmp_path_factory):
    """One shared runtime for read-only tests (conformance, fuzz, metrics, health under load)."""
    log = tmp_path_factory.mktemp("logs") / "shared-runtime.log"
    process = RuntimeProcess(example_repo, region="eu-west-1", admin_token=ADMIN_TOKEN, log_path=log,
                             extra_args=["--max-body-bytes", str(MAX_BODY_BYTES), "--canary-interval", "2"]).start()
    yield process
    process.stop()
