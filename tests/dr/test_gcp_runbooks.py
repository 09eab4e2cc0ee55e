"""The runbooks on Google Cloud and across clouds, against the sandbox's `research` (all Google
Cloud: Cloud SQL primary and replica, GKE, a dual-region bucket) and `hybrid` (Aurora in us-east-1,
a Cloud SQL standby fed by DMS in us-central1) worlds: readiness, planned and unplanned failover,
failback, a crash at every block then a resume, and the drill."""
from __future__ import annotations

import pytest

from mlfleet.dr import gcp, routing
from mlfleet.dr.blocks.registry import registry_writer
from mlfleet.dr.errors import Refused
from mlfleet.dr.readiness import blocking, readiness
from mlfleet.dr.runbooks import failback, failover
from mlfleet.dr.target import Target

from helpers.runbooks import context as _ctx
from helpers.runbooks import crash_through_every_block
from helpers.runbooks import execute as _execute

pytestmark = pytest.mark.sandbox

RESEARCH_PRIMARY, RESEARCH_STANDBY = "us-central1", "us-east4"
HYBRID_PRIMARY, HYBRID_STANDBY = "us-east-1", "us-central1"


def _target(box, tmp_path) -> Target:
    box.reset()
    target = Target.sandbox(box.env, box.state_dir)
    target.state_dir = tmp_path
    return target


@pytest.fixture
def research(research_sandbox, tmp_path):
    return _target(research_sandbox, tmp_path)


@pytest.fixture
def hybrid(hybrid_sandbox, tmp_path):
    return _target(hybrid_sandbox, tmp_path)


def test_research_readiness_checks_each_google_region(research):
    results = readiness(research, _ctx(research))
    by_region = {(r.region, r.check): r for r in results}
    assert {c for (region, c) in by_region if region == RESEARCH_STANDBY} >= {
        "registry", "replica lag", "champion in replica", "standby capacity", "runtime failover health"}
    assert not blocking(results), [r.line() for r in results if not r.ok]


def test_research_unplanned_failover_promotes_cloud_sql_and_routes_on_the_data_plane_then_fails_back(research):
    result = _execute(research, failover(research, RESEARCH_STANDBY, planned=False))
    assert result.status == "completed", result.error
    ctx = _ctx(research)
    assert registry_writer(research, ctx, via=RESEARCH_STANDBY) == RESEARCH_STANDBY
    assert gcp.registry_writable(research, ctx, RESEARCH_STANDBY)[0]
    assert routing.served_region(research, ctx) == RESEARCH_STANDBY
    sizes = gcp.pool_sizes(research, ctx, RESEARCH_STANDBY)
    assert all(sizes[p.name]["minSize"] >= p.min_size for p in research.env.gpu_pools)
    assert result.orchestration_s < 1.0, result.orchestration_s

    back = _execute(research, failback(research))
    assert back.status == "completed", back.error
    assert registry_writer(research, ctx, via=RESEARCH_PRIMARY) == RESEARCH_PRIMARY
    assert routing.served_region(research, ctx) == RESEARCH_PRIMARY
    sizes = gcp.pool_sizes(research, ctx, RESEARCH_STANDBY)
    assert all(sizes[p.name]["minSize"] == p.warm_standby for p in research.env.gpu_pools), sizes


def test_research_planned_failover_refuses_when_the_primary_does_not_answer(research):
    research.control.inject(RESEARCH_PRIMARY)
    try:
        with pytest.raises(Refused, match="use --unplanned"):
            _execute(research, failover(research, RESEARCH_STANDBY, planned=True))
    finally:
        research.control.clear(RESEARCH_PRIMARY)


def test_hybrid_failover_promotes_the_dms_job_hardens_and_refuses_the_failback(hybrid):
    result = _execute(hybrid, failover(hybrid, HYBRID_STANDBY, planned=False))
    assert result.status == "completed", result.error
    ctx = _ctx(hybrid)
    assert registry_writer(hybrid, ctx, via=HYBRID_STANDBY) == HYBRID_STANDBY
    settings = gcp.sql_instance(hybrid, ctx, HYBRID_STANDBY).get("settings", {})
    assert settings.get("availabilityType") == "REGIONAL" and settings.get("deletionProtectionEnabled") is True
    assert routing.served_region(hybrid, ctx) == HYBRID_STANDBY
    with pytest.raises(Refused, match="no longer follows"):
        _execute(hybrid, failback(hybrid))


def test_hybrid_failover_killed_after_every_block_then_resumed_repeats_no_side_effect(hybrid_sandbox, hybrid):
    since = len(hybrid_sandbox.ledger.since())
    crashed = crash_through_every_block(hybrid, lambda: failover(hybrid, HYBRID_STANDBY, planned=False))
    assert {"declare", "replication-gate", "champion-in-replica", "promote-registry", "harden-registry",
            "scale-nodes", "scale-runtime", "pin-champion", "route", "reconcile-records", "first-inference",
            "slo-check"} <= set(crashed)
    entries = hybrid_sandbox.ledger.since(since)
    effects = {
        "promote": sum(e["method"] == "POST" and e["path"].endswith(":promote") for e in entries),
        "harden": sum(e["method"] == "PATCH" and "/instances/" in e["path"] for e in entries),
        "pool": sum(e["method"] == "POST" and e["path"].endswith(":setAutoscaling") for e in entries),
        "route": sum("UpdateRoutingControlState" in e["action"] for e in entries),
    }
    pools = len([p for p in hybrid.env.gpu_pools if p.warm_standby < p.min_size])
    assert effects == {"promote": 1, "harden": 1, "pool": pools, "route": 2}, effects


@pytest.mark.parametrize("world", ["research", "hybrid"])
def test_a_region_outage_drill_of_the_google_and_cross_cloud_worlds_passes(request, world):
    from mlfleet.dr.drill import run_drill
    from mlfleet.dr.report import drill_report

    target = request.getfixturevalue(world)
    primary = target.env.primary.name
    outcome = run_drill(target, primary)
    report = drill_report(target, primary, outcome)
    assert report["verdict"] == "pass", report["notes"]
    assert report["measured"]["rto_s"] <= 10 and report["measured"]["orchestration_s"] <= 1.0, report["measured"]
    assert outcome["new_region"] == target.env.standbys[0].name
    if world == "hybrid":  # Aurora no longer follows the promoted Cloud SQL: no failback, and it says so
        assert "failback" not in outcome and any("no failback" in note for note in report["notes"])
    else:
        assert outcome["failback"].status == "completed"


def test_research_failover_and_failback_crash_at_every_block_and_repeat_no_side_effect(research_sandbox, research):
    since = len(research_sandbox.ledger.since())
    crashed = crash_through_every_block(research, lambda: failover(research, RESEARCH_STANDBY, planned=False))
    assert {"promote-registry", "scale-nodes", "route", "slo-check"} <= set(crashed)
    crashed = crash_through_every_block(research, lambda: failback(research))
    assert {"promote-registry", "route", "restore-standby-runtime", "restore-standby-size"} <= set(crashed)
    entries = research_sandbox.ledger.since(since)
    promotions = sum(e["method"] == "POST" and e["path"].endswith("/promoteReplica") for e in entries)
    assert promotions == 2, "one promotion each way, however often the runs were killed"
    ctx = _ctx(research)
    assert registry_writer(research, ctx, via=RESEARCH_PRIMARY) == RESEARCH_PRIMARY
    assert routing.served_region(research, ctx) == RESEARCH_PRIMARY
