"""The demo's promotion in the staging sandbox: training registers, review promotes behind the
gates, every region's runtime verifies the new signature and serves the new champion, and the
runbooks then choose it in a standby's replica."""
from __future__ import annotations

import pytest

from mlfleet.dr import aws, serving
from mlfleet.dr.demo_promotion import promote_a_candidate
from mlfleet.dr.engine import RunContext
from mlfleet.dr.sandbox import EXAMPLE_MODEL

pytestmark = pytest.mark.sandbox


def test_a_promoted_candidate_is_pinned_everywhere_and_chosen_for_failover(sandbox, target):
    lines: list[str] = []
    result = promote_a_candidate(sandbox, target, lines.append)
    assert result.refusals == [] and result.version == "3" and result.previous_champion == "2"
    assert result.approver.endswith("demo-review") and result.author.endswith("demo-training")
    for region in sandbox.env.regions:
        assert serving.current_pin(sandbox.state.serving[region.name], EXAMPLE_MODEL) == "3"
    ctx = RunContext(retry=target.retry, poll_interval_s=target.poll_interval_s)
    for standby in sandbox.env.standbys:
        assert aws.choose_versions(target, ctx, standby.name).pins == {EXAMPLE_MODEL: "3"}
    assert any(line.startswith("  [ok] separation of duties") for line in lines)
