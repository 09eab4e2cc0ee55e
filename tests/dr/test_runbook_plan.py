"""The runbook executes the plan the review budgets: the same blocks, in the same graph, for every
example environment, standby and mode; and prod's budget meets the 120 s the platform promises."""
from __future__ import annotations

from pathlib import Path

import pytest

from mlfleet.dr.runbooks import failback, failover
from mlfleet.dr.target import Target
from mlfleet.stacks.environment import environment_names, load_environment
from mlfleet.stacks.environment.recovery_time import critical_path_s, projected_phases

CASES = [(name, standby.name, planned) for name in environment_names()
         for standby in load_environment(name).standbys for planned in (True, False)]


def _reach(plan) -> dict[str, set[str]]:
    """Phase -> every phase it waits for, directly or through others."""
    after = {p.phase: set(p.after) for p in plan}
    closed: dict[str, set[str]] = {}

    def up(phase: str) -> set[str]:
        if phase not in closed:
            closed[phase] = set(after[phase]) | {a for d in after[phase] for a in up(d)}
        return closed[phase]

    return {phase: up(phase) for phase in after}


@pytest.mark.parametrize(("env_name", "standby", "planned"), CASES)
def test_the_runbook_is_the_plan(env_name, standby, planned):
    env = load_environment(env_name)
    runbook = failover(Target.aws(env, Path("unused")), standby, planned=planned)
    approval = "approval" in {b.name for b in runbook.steps}
    plan = projected_phases(env, standby, planned=planned, approval=approval)
    blocks = {b.name: b for b in runbook.steps}
    phases = {p.phase for p in plan}
    # Every phase that is work is a block; the others are time (detection, TTL, a model load).
    assert phases - set(blocks) <= {"detection", "dns-ttl", "model-load"}
    assert set(blocks) - phases <= {"harden-registry", "reconcile-records", "pin-scaled-runtime"}
    reach = _reach(plan)
    block_reach: dict[str, set[str]] = {}
    for block in runbook.steps:  # topological: a block's dependencies are placed before it
        block_reach[block.name] = set(block.after or ()) | {a for d in block.after or () for a in block_reach[d]}
    for name in blocks.keys() & phases:
        assert block_reach[name] == reach[name] & set(blocks), name


def test_failback_is_a_planned_failover_to_the_primary_that_restores_the_region_left():
    env = load_environment("prod")
    names = [b.name for b in failback(Target.aws(env, Path("unused"))).steps]
    assert "drain-replication" in names and names[-2:] == ["restore-standby-runtime", "restore-standby-size"]


def test_prods_unplanned_failover_budget_is_within_120_seconds():
    env = load_environment("prod")
    for standby in env.standbys:
        seconds, path = critical_path_s(projected_phases(env, standby.name, planned=False, approval=True))
        assert seconds is not None and seconds <= 120, (standby.name, seconds, path)
        assert "scale-nodes" not in path, "warm pods serve: scale-up is off the critical path"
