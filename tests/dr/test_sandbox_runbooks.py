"""Runbooks against the sandbox over real sockets: boto3 → fault proxy → moto (with mlfleet's
extensions), urllib and tritonclient → serving proxy → runtime process. One sandbox (the
two-region staging environment, tests/dr/conftest.py) is shared and reset between tests."""
from __future__ import annotations

import json
import threading
import time

import pytest

from mlfleet.dr import aws
from mlfleet.dr.audit import AuditLog, verify
from mlfleet.dr.drill import run_drill
from mlfleet.dr.engine import RunContext
from mlfleet.dr.errors import LockHeld, Refused, RunbookAborted
from mlfleet.dr.readiness import readiness
from mlfleet.dr.retry import NOT_IMPLEMENTED, GaveUp, RetryPolicy, call_with_retry
from mlfleet.dr.runbooks import failback, failover
from mlfleet.stacks.environment import naming

from helpers.runbooks import crash_through_every_block

pytestmark = pytest.mark.sandbox  # runs runbooks against the local sandbox (moto server, fault proxy, runtimes)

PRIMARY, STANDBY = "us-east-1", "us-west-2"


def _ctx(target):
    return RunContext(retry=target.retry, poll_interval_s=target.poll_interval_s)


def _execute(target, runbook, *, lock=None, **kw):
    target.warm()  # as the CLI and the drill do before a run
    return runbook.execute(_ctx(target), state_dir=target.runs_dir, lock=lock or target.lock(STANDBY),
                           audit=AuditLog(target.audit_path), **kw)


def _writer(target):
    return aws.writer_region(aws.describe_global_cluster(target, _ctx(target), STANDBY))


def test_planned_switchover_moves_everything_with_zero_rpo_then_failback_restores(sandbox, target):
    keys = [f"registry/events/{i}" for i in range(5)]
    for key in keys:
        aws.write_marker(target, PRIMARY, key, {"key": key})
    result = _execute(target, failover(target, STANDBY, planned=True))
    assert result.status == "completed"
    assert _writer(target) == STANDBY
    assert aws.routed_region(target, _ctx(target)) == STANDBY
    assert all(aws.marker_present(target, STANDBY, k) for k in keys), "a planned switchover loses no write"
    sizes = aws.node_group_sizes(target, _ctx(target), STANDBY)
    assert sizes["inference"]["desiredSize"] == sandbox.env.gpu_pools[0].min_size
    assert set(result.timeline) >= {"declared", "registry_writable", "routing_flipped", "first_inference"}
    assert result.orchestration_s < 1.0

    back = failback(target).execute(_ctx(target), state_dir=target.runs_dir, lock=target.lock(PRIMARY),
                                    audit=AuditLog(target.audit_path))
    assert back.status == "completed"
    assert _writer(target) == PRIMARY and aws.routed_region(target, _ctx(target)) == PRIMARY
    assert aws.node_group_sizes(target, _ctx(target), STANDBY)["inference"]["desiredSize"] == \
        sandbox.env.gpu_pools[0].warm_standby
    assert verify(target.audit_path).records > 10


def _measured_lag(target, at_least_s: float, timeout_s: float = 10) -> float:
    """Until the newest AuroraGlobalDBRPOLag of the standby (measured on its real server) reaches
    `at_least_s`."""
    deadline = time.monotonic() + timeout_s
    while True:
        lag = aws.replication_lag_s(target, _ctx(target), STANDBY)
        if lag is not None and lag >= at_least_s:
            return lag
        assert time.monotonic() < deadline, f"replay lag {lag} did not reach {at_least_s}s"
        time.sleep(0.1)


def test_unplanned_failover_within_the_rpo_budget_completes(sandbox, target):
    sandbox.settings.update({"db_replay_delay_s": 1})  # the standby replays 1 s behind the writer
    _measured_lag(target, 0.9)
    sandbox.faults.add(__import__("mlfleet.dr.sandbox.faults", fromlist=["Fault"]).Fault(region=PRIMARY))
    result = _execute(target, failover(target, STANDBY, planned=False))
    assert result.status == "completed" and 0.9 <= result.facts["replication_lag_s"] <= 2.5
    assert _writer(target) == STANDBY and sandbox.registry.writer() == STANDBY


def test_unplanned_failover_beyond_the_rpo_budget_needs_the_flag(sandbox, target):
    # a real lag beyond 15 minutes would take 15 minutes: a 1-second budget instead
    target.env = target.env.model_copy(update={"targets": target.env.targets.model_copy(update={"rpo": 1})})
    target.control.pause_replay(STANDBY)  # the standby stops receiving; the writer's heartbeats go on
    _measured_lag(target, 1.5)
    before = sandbox.ledger.count(action="FailoverGlobalCluster")
    with pytest.raises(Refused, match="exceeds the RPO budget") as caught:
        _execute(target, failover(target, STANDBY, planned=False))
    assert caught.value.exit_code == 3
    assert sandbox.ledger.count(action="FailoverGlobalCluster") == before and _writer(target) == PRIMARY
    result = _execute(target, failover(target, STANDBY, planned=False, allow_data_loss=True))
    assert result.status == "completed" and _writer(target) == STANDBY


def _effects(sandbox, since: int) -> dict:
    entries = sandbox.ledger.since(since)
    return {
        "scale": sum(e["action"].endswith("/update-config") for e in entries),
        "switchover": sum(e["action"] == "SwitchoverGlobalCluster" for e in entries),
        "flip": sum(e["method"] == "POST" and "/rrset" in e["path"] for e in entries),
        "route": sum("UpdateRoutingControlState" in e["action"] for e in entries),
        "pin": sum(e["method"] == "POST" and e["path"].endswith("/pin") for e in entries),
        "runtime": sum(e["method"] == "PATCH" and e["path"].endswith("/scale") for e in entries),
    }


def test_a_planned_failover_killed_after_every_block_then_resumed_repeats_no_side_effect(sandbox, target):
    since = len(sandbox.ledger.since())
    crashed = crash_through_every_block(target, lambda: failover(target, STANDBY, planned=True))
    assert {"declare", "replication-gate", "champion-in-replica", "drain-replication", "scale-nodes",
            "scale-runtime", "promote-registry", "pin-champion", "route", "reconcile-records", "first-inference",
            "slo-check"} <= set(crashed)
    # Routing moves on the data plane (one routing-control change), the records follow once
    # (reconcile), and reconcile turns every control on again: nothing twice.
    assert _effects(sandbox, since) == {"scale": 1, "switchover": 1, "flip": 1, "route": 2, "pin": 0,
                                        "runtime": 1}, "the champion was already pinned in the standby: no pin call"
    assert _writer(target) == STANDBY


def test_two_concurrent_runs_one_is_refused(sandbox, target):
    inside, release = threading.Event(), threading.Event()
    outcome = {}

    def hold(step, event):
        if (step, event) == ("scale-nodes", "applied"):
            inside.set()
            release.wait(30)

    def first():
        outcome["first"] = _execute(target, failover(target, STANDBY, planned=True), on_event=hold)

    thread = threading.Thread(target=first)
    thread.start()
    assert inside.wait(30)
    with pytest.raises(LockHeld):
        _execute(target, failback(target))
    release.set()
    thread.join()
    assert outcome["first"].status == "completed"


def test_transient_503s_mid_runbook_are_retried(sandbox, target):
    from mlfleet.dr.sandbox.faults import Fault

    def flap(step, event):
        if (step, event) == ("scale-nodes", "done"):
            sandbox.faults.add(Fault(region=STANDBY, service="rds", mode="503"))
            threading.Timer(0.12, lambda: sandbox.faults.clear(STANDBY)).start()

    since = len(sandbox.ledger.since())
    result = _execute(target, failover(target, STANDBY, planned=True), on_event=flap)
    assert result.status == "completed"
    assert any(e["service"] == "rds" and e["region"] == STANDBY for e in sandbox.ledger.since(since))


def test_a_region_that_times_out_aborts_and_compensates(sandbox, target):
    from mlfleet.dr.sandbox.faults import Fault

    def fail(step, event):
        if (step, event) == ("scale-nodes", "done"):
            sandbox.faults.add(Fault(region=STANDBY, service="rds", mode="timeout", hang_s=2.5))

    with pytest.raises(RunbookAborted) as caught:
        _execute(target, failover(target, STANDBY, planned=True), on_event=fail)
    sandbox.faults.clear()
    assert caught.value.step == "promote-registry"
    assert "scale-nodes" in caught.value.compensated
    assert aws.node_group_sizes(target, _ctx(target), STANDBY)["inference"]["desiredSize"] == \
        sandbox.env.gpu_pools[0].warm_standby
    assert _writer(target) == PRIMARY


def test_champion_missing_in_the_replica_pins_the_newest_replicated_version(sandbox, target):
    s3 = sandbox.client("s3", PRIMARY, direct=True)
    bucket, prefix = sandbox.bucket(PRIMARY), naming.approved_prefix(sandbox.env.artifact_store.models_prefix)
    sandbox.settings.update({"held_prefixes": [f"{prefix}mlp/3/"]})
    manifest = json.loads(s3.get_object(Bucket=bucket, Key=f"{prefix}manifest.json")["Body"].read())
    for name in manifest["models"]["mlp"]["versions"]["2"]["files"]:
        body = s3.get_object(Bucket=bucket, Key=f"{prefix}mlp/2/{name}")["Body"].read()
        s3.put_object(Bucket=bucket, Key=f"{prefix}mlp/3/{name}", Body=body)
    manifest["models"]["mlp"]["versions"]["3"] = manifest["models"]["mlp"]["versions"]["2"]
    manifest["models"]["mlp"]["champion"] = "3"
    sandbox.publish_manifest(json.dumps(manifest).encode())  # signed, as a promotion leaves it
    replica = sandbox.client("s3", STANDBY, direct=True)
    deadline = time.monotonic() + 10
    while json.loads(replica.get_object(Bucket=sandbox.bucket(STANDBY), Key=f"{prefix}manifest.json")["Body"]
                     .read())["models"]["mlp"]["champion"] != "3":
        assert time.monotonic() < deadline, "the new manifest did not replicate"
        time.sleep(0.05)

    checks = {(x.region, x.check): (x.ok, x.detail) for x in readiness(target, _ctx(target))}
    assert checks[(STANDBY, "champion in replica")][0] is False
    result = _execute(target, failover(target, STANDBY, planned=False))
    assert result.facts["pins"] == {"mlp": "2"}
    assert "champion v3 is not fully replicated" in result.facts["notes"][0]


def test_an_unimplemented_action_is_not_retried(target):
    ec2 = target.client("ec2", STANDBY)
    # the first EC2 call builds the region's EC2 backend (seconds on a loaded machine, past the
    # client's read timeout, which is transient and retried): built before the call that is counted
    call_with_retry("build the EC2 backend", ec2.describe_availability_zones, RetryPolicy(attempts=5, base_s=0.2))
    calls = []

    def reserve():
        calls.append(1)
        return ec2.create_capacity_reservation(InstanceType="g6e.xlarge", InstancePlatform="Linux/UNIX",
                                               AvailabilityZone=f"{STANDBY}a", InstanceCount=1)

    with pytest.raises(GaveUp) as caught:
        call_with_retry("reserve capacity", reserve, RetryPolicy(attempts=4, base_s=0.01))
    assert caught.value.kind == NOT_IMPLEMENTED and len(calls) == 1


def test_readiness_passes_on_a_fresh_sandbox(target):
    results = readiness(target, _ctx(target))
    assert {x.check for x in results} >= {"replica lag", "champion in replica", "standby capacity",
                                          "runtime failover health", "runtime image", "serving replicas ready"}
    assert all(x.ok for x in results), results


def test_region_outage_drill_meets_the_sandbox_figures(sandbox, target):
    from mlfleet.dr.report import drill_report

    outcome = run_drill(target, PRIMARY)
    report = drill_report(target, PRIMARY, outcome)
    assert report["verdict"] == "pass", report
    assert report["measured"]["rto_s"] <= 10
    assert report["measured"]["orchestration_s"] <= 1
    assert report["measured"]["rpo_s"] <= sandbox.settings.replication_lag_s + 0.5
    assert [p["phase"] for p in report["timeline"]] == ["fault_injected", "fault_detected", "declared",
                                                        "registry_writable", "routing_flipped",
                                                        "first_inference", "slo_recovered"]
    assert outcome["failback"].status == "completed" and _writer(target) == PRIMARY
    registry = report["registry"]  # MLflow writes through the writer, read back from the new writer
    assert registry["writer"] == STANDBY and registry["written"] >= 5
    assert registry["missing"] == 0 and report["measured"]["registry_rpo_s"] == 0.0
    kept = report["failback_registry"]  # written all through the planned switchover back
    assert kept["writer"] == PRIMARY and kept["written"] >= 3 and kept["missing"] == 0, kept


def test_a_drill_measures_what_the_registry_lost_within_the_lag_at_the_gate(sandbox, target):
    from mlfleet.dr.report import drill_report

    target.control.pause_replay(STANDBY)  # from here on the standby receives nothing the writer commits
    outcome = run_drill(target, PRIMARY, do_failback=False)
    report = drill_report(target, PRIMARY, outcome)
    registry = report["registry"]
    assert registry["missing"] > 0 and registry["present"] < registry["written"]
    # What was lost is what the lag measured at the gate bounded (one heartbeat of slack).
    assert 0 < report["measured"]["registry_rpo_s"] <= registry["lag_at_gate_s"] + 0.5, registry
    assert report["verdict"] == "pass"  # within staging's 15-minute budget


def test_dynamodb_lock_refuses_a_live_owner_and_takes_a_dead_one_over_only_when_asked(sandbox, target):
    from mlfleet.dr.errors import LockAbandoned
    from mlfleet.dr.locks import DynamoDbLock
    from mlfleet.stacks.environment import naming

    def lock():
        return DynamoDbLock(target.client("dynamodb", STANDBY), naming.dr_lock_table(sandbox.env.name), "staging/dr")

    first = lock()
    first.acquire("run-a")
    with pytest.raises(LockHeld) as caught:
        lock().acquire("run-a")  # the same command started again joins no live run
    assert caught.value.holder["run_id"] == "run-a"
    first.abandon()  # its process died
    with pytest.raises(LockAbandoned):
        lock().acquire("run-b")
    second = lock()
    previous = second.acquire("run-b", take_over=True)
    assert previous is not None and previous["run_id"] == "run-a"
    second.release()
    third = lock()
    assert third.acquire("run-c") is None
    third.release()


def test_a_drill_with_us_east_1_down_including_route53s_api_passes(sandbox, target):
    """Route 53's control plane is served from us-east-1: the failover moves traffic on the data
    plane (routing controls) and the records follow once the API answers again."""
    from mlfleet.dr import routing
    from mlfleet.dr.drill import WITH_ROUTE53
    from mlfleet.dr.report import drill_report

    assert PRIMARY == "us-east-1"
    outcome = run_drill(target, PRIMARY, scenario=WITH_ROUTE53, do_failback=False)
    report = drill_report(target, PRIMARY, outcome)
    assert report["verdict"] == "pass", report["notes"]
    steps = {s.name: s for s in outcome["result"].steps}
    assert steps["route"].status == "done" and "routing controls" in steps["route"].detail
    assert steps["reconcile-records"].detail.startswith("pending"), "Route 53's API was down: reconcile waits"
    ctx = _ctx(target)
    assert routing.served_region(target, ctx) == STANDBY
    assert routing.reconcile_records(target, ctx, STANDBY).startswith("records:")  # the API answers again
    assert aws.routed_region(target, ctx) == STANDBY


def test_failback_crashed_at_every_block_repeats_no_side_effect(sandbox, target):
    assert _execute(target, failover(target, STANDBY, planned=True)).status == "completed"
    since = len(sandbox.ledger.since())
    crashed = crash_through_every_block(target, lambda: failback(target))
    assert {"promote-registry", "route", "restore-standby-runtime", "restore-standby-size"} <= set(crashed)
    effects = _effects(sandbox, since)
    assert effects["switchover"] == 1 and effects["flip"] == 1, effects
    assert _writer(target) == PRIMARY and aws.routed_region(target, _ctx(target)) == PRIMARY
