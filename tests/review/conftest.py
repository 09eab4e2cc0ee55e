"""Fixtures of the review tests (the examples themselves, synthesized once per session, are the
top-level conftest's `examples`)."""
from __future__ import annotations

import pytest
import yaml

from mlfleet.stacks.environment import ENVIRONMENTS_DIR, parse_environment


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
