"""Fixtures of the runtime tests: the example repository and one shared runtime process."""
from __future__ import annotations

from pathlib import Path

import pytest

from mlfleet.runtime.examples import write_example_repository
from mlfleet.runtime.process import RuntimeProcess

from helpers.runtime import ADMIN_TOKEN, MAX_BODY_BYTES


@pytest.fixture(scope="session")
def example_repo(tmp_path_factory, manifest_key) -> Path:
    """mlp and mlp-large, signed with the session's key (manifest_key)."""
    root = tmp_path_factory.mktemp("repository")
    write_example_repository(root, models=("mlp", "mlp-large"), signing_key=manifest_key.signing_key)
    return root


@pytest.fixture(scope="session")
def runtime(example_repo, tmp_path_factory, manifest_key):
    """One shared runtime for read-only tests (conformance, fuzz, metrics, health under load)."""
    log = tmp_path_factory.mktemp("logs") / "shared-runtime.log"
    process = RuntimeProcess(example_repo, region="eu-west-1", admin_token=ADMIN_TOKEN, log_path=log,
                             manifest_public_key=manifest_key.public_key_path,
                             extra_args=["--max-body-bytes", str(MAX_BODY_BYTES), "--canary-interval", "2"]).start()
    yield process
    process.stop()
