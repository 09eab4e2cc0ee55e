from __future__ import annotations

import pytest

from mlfleet.stacks.app import synthesize
from mlfleet.stacks.environment import environment_names, load_environment


@pytest.fixture(scope="session")
def synthesized(tmp_path_factory):
    """Every example environment, synthesized once for the session."""
    envs = [load_environment(n) for n in environment_names()]
    return synthesize(envs, tmp_path_factory.mktemp("synth") / "cdktf.out")
