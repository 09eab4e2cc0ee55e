"""Fixtures of the review tests: each example environment synthesized once per session (the
CDK's import costs seconds; each synth well under one)."""
from __future__ import annotations

import pytest
import yaml

from mlfleet.stacks.environment import ENVIRONMENTS_DIR, environment_names, load_environment, parse_environment

from helpers.examples import EXAMPLES


@pytest.fixture(scope="session")
def examples() -> dict:
    """name → (environment, stacks, policy findings) for every shipped example."""
    from mlfleet.stacks.review.synth import synthesize_for_review

    assert sorted(EXAMPLES) == environment_names(), "a new example needs a golden review"
    found = {}
    for name in EXAMPLES:
        env = load_environment(name)
        stacks, findings = synthesize_for_review(env)
        found[name] = (env, stacks, findings)
    return found


@pytest.fixture(scope="session")
def hybrid_without_registry_replica() -> tuple:
    """hybrid without `gcp.registry_source`: its Google Cloud standby holds no registry replica
    (no DMS job follows Aurora there). (environment, stacks)"""
    from mlfleet.stacks.review.synth import synthesize_for_review

    data = yaml.safe_load((ENVIRONMENTS_DIR / "hybrid.yaml").read_text())
    del data["gcp"]["registry_source"]
    env = parse_environment(data, "hybrid without registry_source")
    stacks, _ = synthesize_for_review(env)
    return env, stacks
