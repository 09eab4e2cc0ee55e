"""Fixtures of the review tests: each example environment synthesized once per session (the
CDK's import costs seconds; each synth well under one)."""
from __future__ import annotations

import pytest

from mlfleet.stacks.config import environment_names, load_environment

EXAMPLES = ("dev", "prod", "staging")


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
