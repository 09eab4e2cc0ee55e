"""The staging sandbox (moto server, fault proxy, fake Kubernetes API, one runtime per region),
started once for every DR test module that asks for it and reset before each test."""
from __future__ import annotations

import pytest

from mlfleet.dr.target import Target
from mlfleet.stacks.environment import load_environment


@pytest.fixture(scope="session")
def sandbox(tmp_path_factory):
    from mlfleet.dr.sandbox import Sandbox

    state_dir = tmp_path_factory.mktemp("sandbox")
    with Sandbox(load_environment("staging"), state_dir=state_dir) as box:
        yield box


@pytest.fixture
def target(sandbox, tmp_path):
    sandbox.reset()
    t = Target.sandbox(sandbox.env, sandbox.state_dir)
    t.state_dir = tmp_path  # journals, locks and the audit log per test
    return t
