"""The projected cloud time of each phase (stacks/environment/recovery_time.py), the same figures
as the review's RTO budget, and the run report that puts them beside the sandbox's measurements."""
from __future__ import annotations

import time

import pytest

from mlfleet.dr import report as reports
from mlfleet.dr.engine import RunResult, StepRecord
from mlfleet.stacks.environment import load_environment
from mlfleet.stacks.environment.recovery_time import (
    AURORA_GLOBAL_FAILOVER_SECONDS,
    CLOUD_SQL_PROMOTION_SECONDS,
    DMS_PROMOTION_SECONDS,
    GPU_SCALE_STEP_SECONDS,
    MODEL_LOAD_SECONDS,
    PERSON,
    ProjectedPhase,
    critical_path_s,
    projected_phases,
)


def phases_of(env, to_region, **kwargs) -> dict[str, ProjectedPhase]:
    return {p.phase: p for p in projected_phases(env, to_region, **kwargs)}


def test_prod_unplanned_is_detection_then_promotion_or_ttl_warm_pods_serve_while_nodes_join():
    env = load_environment("prod")
    phases = projected_phases(env, "us-west-2", planned=False, approval=True)
    by = {p.phase: p for p in phases}
    detection = env.serving.health_check_interval * env.serving.health_check_failure_threshold
    assert by["detection"].seconds == detection == 30
    assert by["promote-registry"].seconds == AURORA_GLOBAL_FAILOVER_SECONDS
    assert by["dns-ttl"].seconds == env.serving.record_ttl == 60
    # prod's inference pool keeps 2 of 4 nodes warm: one scale step, which routing does not wait for.
    assert by["scale-nodes"].seconds == GPU_SCALE_STEP_SECONDS and not by["scale-nodes"].counted
    assert "2→4" in by["scale-nodes"].basis and "warm pods serve" in by["scale-nodes"].basis
    assert by["route"].after == ("pin-champion",) and "model-load" not in by
    assert by["approval"].basis == PERSON and not by["approval"].counted and not by["approval"].on_critical_path
    assert "approval" in by["promote-registry"].after
    seconds, path = critical_path_s(phases)
    assert seconds == detection + max(AURORA_GLOBAL_FAILOVER_SECONDS, env.serving.record_ttl) == 90
    assert seconds <= 120 and path == ["detection", "promote-registry"]
    # Both branches tie at 90 s: both are on a longest path.
    assert {p.phase for p in phases if p.on_critical_path} == {"detection", "promote-registry", "dns-ttl"}


def test_a_planned_run_has_no_detection_and_drains_within_the_environments_bound():
    env = load_environment("prod")
    by = phases_of(env, "us-east-2", planned=True)
    assert by["detection"].seconds == 0 and "approval" not in by
    assert by["drain-replication"].seconds == 0 and f"{env.dr.drain_timeout} s" in by["drain-replication"].basis
    assert "switchover" in by["promote-registry"].basis
    assert "drain-replication" in by["scale-nodes"].after
    assert critical_path_s(list(by.values())) == (60, ["promote-registry"])


def test_each_example_projects_its_registry_kind_and_pool_cloud():
    staging = phases_of(load_environment("staging"), "us-west-2", planned=False)
    assert critical_path_s(list(staging.values()))[0] == 90
    hybrid = phases_of(load_environment("hybrid"), "us-central1", planned=False)
    assert hybrid["promote-registry"].seconds == DMS_PROMOTION_SECONDS and "DMS" in hybrid["promote-registry"].basis
    assert "GKE" in hybrid["scale-nodes"].basis
    assert critical_path_s(list(hybrid.values())) == (30 + DMS_PROMOTION_SECONDS, ["detection", "promote-registry"])
    research = phases_of(load_environment("research"), "us-east4", planned=False)
    assert research["promote-registry"].seconds == CLOUD_SQL_PROMOTION_SECONDS
    assert "inference 1→3" in research["scale-nodes"].basis and "batch" not in research["scale-nodes"].basis
    # Back to an AWS primary from Cloud SQL: nothing replicates the registry that way.
    back = projected_phases(load_environment("hybrid"), "us-east-1", planned=True)
    assert critical_path_s(back)[0] is None
    assert {p.phase: p.seconds for p in back}["scale-nodes"] == 0


def test_a_standby_without_warm_nodes_routes_after_scale_up_and_model_load():
    # The model refuses standby replicas that fit no warm node; the plan still handles a cold pool.
    prod = load_environment("prod")
    env = prod.model_copy(update={"gpu_pools": [prod.gpu_pools[0].model_copy(update={"warm_standby": 0}),
                                                *prod.gpu_pools[1:]]})
    phases = projected_phases(env, "us-west-2", planned=False)
    by = {p.phase: p for p in phases}
    assert by["scale-nodes"].counted and by["model-load"].seconds == MODEL_LOAD_SECONDS
    assert by["route"].after == ("pin-champion", "model-load")
    assert critical_path_s(phases) == (30 + GPU_SCALE_STEP_SECONDS + MODEL_LOAD_SECONDS + 60,
                                       ["detection", "scale-nodes", "model-load", "dns-ttl"])


def test_the_critical_path_refuses_unknown_dependencies_and_cycles():
    with pytest.raises(ValueError, match="unknown phase"):
        critical_path_s([ProjectedPhase("a", 1, "", after=("nope",))])
    with pytest.raises(ValueError, match="cycle"):
        critical_path_s([ProjectedPhase("a", 1, "", after=("b",)), ProjectedPhase("b", 1, "", after=("a",))])
    assert critical_path_s([]) == (0, [])


def test_the_projection_matches_the_reviews_budget_parts(examples):
    # Same figures as the review's RTO budget for the same environment (its parts are summed; the
    # plan overlaps them): detection, TTL, the worst standby's promotion and scale step, model load.
    from mlfleet.stacks.review.rto import rto_budget

    for name in ("prod", "staging", "hybrid", "research"):
        env, stacks, _ = examples[name]
        parts = {p.name: p.seconds for p in rto_budget(env, stacks).parts}
        plans = [phases_of(env, r.name, planned=False) for r in env.standbys]
        assert parts["health-check detection"] == plans[0]["detection"].seconds, name
        assert parts["DNS TTL"] == plans[0]["dns-ttl"].seconds, name
        assert parts["registry promotion"] == max(p["promote-registry"].seconds for p in plans), name
        assert parts["standby scale-up"] == max(p["scale-nodes"].seconds for p in plans), name
        # The review keeps no model load where warm pods serve first; the plan has none then either.
        assert ("model load" in parts) == any("model-load" in p for p in plans), name


# -- the report -------------------------------------------------------------------------------------
def a_run(*, facts: dict, resumed: bool = False, waiting_s: float = 0.5) -> tuple[RunResult, dict[str, float]]:
    t0 = time.time() - 10
    steps = [StepRecord("declare", "done", t0, t0 + 0.1), StepRecord("replication-gate", "done", t0 + 0.1, t0 + 0.2),
             StepRecord("champion-in-replica", "done", t0 + 0.2, t0 + 0.3),
             StepRecord("promote-registry", "done", t0 + 0.3, t0 + 1.3),
             StepRecord("scale-nodes", "done" if resumed else "done", None if resumed else t0 + 0.3,
                        None if resumed else t0 + 0.8, "done in an earlier attempt" if resumed else ""),
             StepRecord("pin-champion", "done", t0 + 0.3, t0 + 0.5),
             StepRecord("route-traffic", "done", t0 + 0.5, t0 + 0.6),
             StepRecord("first-inference", "done", t0 + 0.6, t0 + 0.7),
             StepRecord("slo-check", "done", t0 + 0.7, t0 + 1.0),
             StepRecord("reconcile-records", "done", t0 + 0.6, t0 + 0.9)]
    timeline = {"fault_injected": t0 - 2, "fault_detected": t0 - 0.5, "declared": t0, "registry_writable": t0 + 1.3,
                "routing_flipped": t0 + 0.6, "first_inference": t0 + 0.7, "slo_recovered": t0 + 1.0}
    result = RunResult("failover", "20261201T000000Z-failover-abcdef", "completed", steps, timeline, t0, t0 + 1.4,
                       waiting_s, {"target": "us-west-2", "mode": "unplanned", **facts}, resumed,
                       attempt_started=t0 + 0.9 if resumed else None)
    return result, timeline


def test_the_report_puts_the_projected_cloud_time_beside_each_measured_phase():
    env = load_environment("prod")
    result, timeline = a_run(facts={"allow_data_loss": True, "replication_lag_s": 412.0,
                                    "approver": "arn:aws:iam::333333333333:user/bob",
                                    "requested_by": "arn:aws:iam::333333333333:user/alice", "at": time.time()})
    report = reports.build(env, kind="unplanned failover to us-west-2", result=result, timeline=timeline,
                           waiting_s=result.waiting_s, rpo_s=412.0, notes=[], sandbox=True)
    rows = {r["phase"]: r for r in report["projection"]["phases"]}
    assert report["projection"]["rto_s"] == 90 and rows["detection"]["measured_s"] == pytest.approx(1.5)
    assert rows["route"]["measured_s"] == pytest.approx(0.1) and rows["dns-ttl"]["projected_s"] == 60
    assert rows["reconcile-records"]["projected_s"] is None
    markdown = reports.to_markdown(report)
    assert "| phase | measured (sandbox) | projected (cloud) | basis |" in markdown
    assert "| **promote-registry** | 1.000 s | 60 s | Aurora global database managed failover |" in markdown
    assert "| **detection** | 1.500 s | 30 s | 10 s interval × 3 failures of the health check |" in markdown
    assert "accepted a data-loss bound of 412 s (RPO budget 900 s)" in markdown
    assert report["data_loss"]["lag_at_gate_s"] == 412.0
    assert "Approved by arn:aws:iam::333333333333:user/bob" in markdown and "user/alice" in markdown
    assert "projected cloud RTO (longest path of the plan to us-west-2) | 90 s | 900 s |" in markdown


def test_without_allow_data_loss_no_bound_is_stated_and_an_unknown_lag_says_so():
    env = load_environment("prod")
    result, timeline = a_run(facts={"allow_data_loss": False, "replication_lag_s": 3.0})
    report = reports.build(env, kind="k", result=result, timeline=timeline, waiting_s=0.1, rpo_s=3.0, notes=[],
                           sandbox=True)
    assert report["data_loss"] is None and "data-loss bound" not in reports.to_markdown(report)
    assert report["approval"] is None and "Approved by" not in reports.to_markdown(report)
    result, timeline = a_run(facts={"allow_data_loss": True})
    report = reports.build(env, kind="k", result=result, timeline=timeline, waiting_s=0.1, rpo_s=None, notes=[],
                           sandbox=True)
    assert "accepted an unknown data-loss bound" in report["data_loss"]["statement"]


def test_orchestration_is_never_negative_nor_more_than_the_total():
    env = load_environment("prod")
    result, timeline = a_run(facts={}, waiting_s=60.0)   # waiting counted beyond the span of the total
    measured = reports.build(env, kind="k", result=result, timeline=timeline, waiting_s=60.0, rpo_s=0.0, notes=[],
                             sandbox=True)["measured"]
    assert measured["orchestration_s"] == 0.0
    measured = reports.build(env, kind="k", result=result, timeline=timeline, waiting_s=-5.0, rpo_s=0.0, notes=[],
                             sandbox=True)["measured"]
    assert measured["orchestration_s"] == measured["total_s"]
    # The total runs to the run's end, past the last timeline mark (a failback's restore steps).
    assert measured["total_s"] == pytest.approx(result.ended - timeline["fault_injected"], abs=1e-3)


def test_a_resumed_run_keeps_its_timeline_and_names_the_steps_done_before():
    env = load_environment("prod")
    result, timeline = a_run(facts={}, resumed=True, waiting_s=0.2)
    del timeline["fault_injected"], timeline["fault_detected"]
    report = reports.build(env, kind="k", result=result, timeline=timeline, waiting_s=0.2, rpo_s=0.0, notes=[],
                           sandbox=True)
    assert report["timeline"] and report["measured"]["rto_s"] == pytest.approx(0.7)
    assert report["measured"]["orchestration_s"] == pytest.approx(result.orchestration_s, abs=1e-3)
    rows = {r["phase"]: r for r in report["projection"]["phases"]}
    assert rows["scale-nodes"]["measured_note"] == "done in an earlier attempt"
    assert "| scale-nodes | done in an earlier attempt | 300 s |" in reports.to_markdown(report)
    # No declaration mark at all: offsets count from the run's start instead of vanishing.
    del timeline["declared"]
    report = reports.build(env, kind="k", result=result, timeline=timeline, waiting_s=0.2, rpo_s=0.0, notes=[],
                           sandbox=True)
    assert report["timeline"] and report["measured"]["rto_s"] is not None


def test_a_failback_projects_the_planned_run_to_the_primary():
    env = load_environment("prod")
    result, timeline = a_run(facts={})
    result.runbook = "failback"
    projection = reports.build(env, kind="failback", result=result, timeline=timeline, waiting_s=0.1, rpo_s=0.0,
                               notes=[], sandbox=True)["projection"]
    assert projection["to_region"] == "us-east-1" and projection["planned"] and projection["rto_s"] == 60
