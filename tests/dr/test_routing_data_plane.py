"""Failover on Route 53's data plane: ARC routing controls move the resolver's answer without a
record change, keep working while Route 53's API (and us-east-1) is down, refuse to turn every
region off, and the records are reconciled once the API answers again."""
from __future__ import annotations

import pytest
from botocore.exceptions import ClientError

from mlfleet.dr import aws, routing
from mlfleet.dr.engine import RunContext
from mlfleet.dr.retry import GaveUp, RetryPolicy
from mlfleet.dr.sandbox.arc import ArcError, ArcWorld
from mlfleet.dr.sandbox.routing import ROUTE53_CONTROL_PLANE
from mlfleet.stacks.environment import load_environment, routing_control

PRIMARY, STANDBY = "us-east-1", "us-west-2"


def _ctx() -> RunContext:
    return RunContext(retry=RetryPolicy(attempts=2, base_s=0.05, cap_s=0.2), poll_interval_s=0.05)


# -- the ARC simulation, without servers ----------------------------------------------------
def _world() -> tuple[ArcWorld, dict[str, str]]:
    world = ArcWorld("123456789012")
    cluster = world.create_cluster("c")["ClusterArn"]
    panel = world.create_control_panel(cluster, "p")["ControlPanelArn"]
    controls = {r: world.create_routing_control(cluster, panel, r)["RoutingControlArn"] for r in ("a", "b")}
    world.create_assertion_rule({"ControlPanelArn": panel, "Name": "one", "AssertedControls": list(controls.values()),
                                 "WaitPeriodMs": 0,
                                 "RuleConfig": {"Type": "ATLEAST", "Threshold": 1, "Inverted": False}})
    return world, controls


def test_a_new_control_is_off_and_a_batch_applies_whole_or_not_at_all():
    world, controls = _world()
    assert {world.state(a) for a in controls.values()} == {"OFF"}
    world.update_states([{"RoutingControlArn": controls["a"], "RoutingControlState": "On"},
                         {"RoutingControlArn": controls["b"], "RoutingControlState": "On"}])
    with pytest.raises(ArcError) as refused:
        world.update_states([{"RoutingControlArn": a, "RoutingControlState": "Off"} for a in controls.values()])
    assert refused.value.code == "ConflictException" and "0 of 2 asserted controls ON" in refused.value.message
    assert {world.state(a) for a in controls.values()} == {"ON"}  # nothing of the refused batch applied
    with pytest.raises(ArcError) as unknown:
        world.update_states([{"RoutingControlArn": controls["a"], "RoutingControlState": "Off"},
                             {"RoutingControlArn": "arn:nope", "RoutingControlState": "On"}])
    assert unknown.value.code == "ResourceNotFoundException" and world.state(controls["a"]) == "ON"


def test_a_safety_rule_can_be_overridden_by_name():
    world, controls = _world()
    world.update_states([{"RoutingControlArn": controls["a"], "RoutingControlState": "On"}])
    rule = next(iter(world.rules))
    world.update_states([{"RoutingControlArn": controls["a"], "RoutingControlState": "Off"}], overrides=[rule])
    assert world.state(controls["a"]) == "OFF"


def test_routing_controls_are_used_over_two_regions_unless_turned_off():
    staging = load_environment("staging")
    assert routing_control.enabled(staging)
    off = staging.model_copy(update={"serving": staging.serving.model_copy(update={"routing_control": False})})
    assert not routing_control.enabled(off)


# -- in the sandbox ---------------------------------------------------------------------------
@pytest.mark.sandbox
def test_route_to_moves_the_resolvers_answer_without_touching_the_records(target):
    ctx = _ctx()
    assert routing.served_region(target, ctx) == PRIMARY
    assert routing.routing_state(target, ctx) == {PRIMARY: True, STANDBY: True}
    assert routing.route_to(target, ctx, STANDBY) == f"routing controls: {STANDBY} ON, {PRIMARY} OFF"
    assert routing.served_region(target, ctx) == STANDBY
    assert routing.routing_state(target, ctx) == {PRIMARY: False, STANDBY: True}
    assert aws.routed_region(target, ctx) == PRIMARY  # the records still name the old primary
    assert "already" in routing.route_to(target, ctx, STANDBY)
    # The primary's record check (calculated) follows its control; its endpoint check does not.
    healthy, _ = aws.region_healthy(target, ctx, aws.health_check_id(target, ctx, PRIMARY))
    assert not healthy
    assert routing.region_healthy(target, ctx, PRIMARY)[0]
    assert routing.route_to(target, ctx, PRIMARY).startswith("routing controls: us-east-1 ON")
    assert routing.served_region(target, ctx) == PRIMARY


@pytest.mark.sandbox
def test_the_safety_rule_refuses_to_turn_every_region_off(target):
    ctx = _ctx()
    controls = routing.routing_controls(target, ctx)
    region, url = routing.cluster_endpoints(target, ctx)[0]
    cluster = routing._cluster_client(target, region, url)
    with pytest.raises(ClientError) as refused:
        cluster.update_routing_control_states(UpdateRoutingControlStateEntries=[
            {"RoutingControlArn": arn, "RoutingControlState": "Off"} for arn in controls.values()])
    assert refused.value.response["Error"]["Code"] == "ConflictException"
    assert routing.routing_state(target, ctx) == {PRIMARY: True, STANDBY: True}
    assert len(routing.cluster_endpoints(target, ctx)) == 5


@pytest.mark.sandbox
def test_with_us_east_1_and_route53s_api_down_traffic_moves_and_the_records_follow_later(target):
    ctx = _ctx()
    routing.prepare(target, ctx)  # the cluster's endpoints and controls, read before the fault
    seen = len(target.control.ledger())
    target.control.inject(PRIMARY)
    target.control.inject(**ROUTE53_CONTROL_PLANE)
    with pytest.raises(GaveUp):  # a record change is control plane: refused now
        aws.flip_routing(target, ctx, PRIMARY, STANDBY)
    ctx.wait_until("us-east-1 unhealthy on the data plane",
                   lambda: (not routing.region_healthy(target, ctx, PRIMARY)[0]) or "still healthy", timeout_s=10)
    assert routing.route_to(target, ctx, STANDBY, avoid=[PRIMARY]).startswith(f"routing controls: {STANDBY} ON")
    assert routing.served_region(target, ctx) == STANDBY
    updates = [e for e in target.control.ledger(seen) if e.get("action") == "UpdateRoutingControlStates"]
    assert updates and {e["region"] for e in updates} <= {"us-west-2", "eu-west-1", "ap-northeast-1",
                                                          "ap-southeast-2"}  # the failed region's last
    assert routing.reconcile_records(target, ctx, STANDBY) == routing.PENDING

    target.control.clear(PRIMARY)  # us-east-1 and Route 53's API answer again
    summary = routing.reconcile_records(target, ctx, STANDBY)
    assert summary == f"records: PRIMARY {PRIMARY} -> {STANDBY}; every routing control ON"
    assert aws.routed_region(target, ctx) == STANDBY
    assert routing.routing_state(target, ctx) == {PRIMARY: True, STANDBY: True}
    assert routing.served_region(target, ctx) == STANDBY  # PRIMARY record now names the standby
    assert "already" in routing.reconcile_records(target, ctx, STANDBY)


@pytest.mark.sandbox
def test_after_the_first_deploy_every_control_is_off_and_reconcile_turns_them_on(sandbox, target, tmp_path, capsys):
    """ARC creates routing controls OFF: every record's calculated check fails, so Route 53
    answers the PRIMARY record. `mlfleet reconcile` turns every control ON (and says so)."""
    import shutil

    from mlfleet.dr.sandbox import SandboxState

    from helpers.cli import dr_command

    arc = sandbox.extensions.arc
    arc.update_states([{"RoutingControlArn": arn, "RoutingControlState": "Off"} for arn in arc.controls],
                      overrides=list(arc.rules))  # as a deployment leaves them, past the safety rule
    ctx = _ctx()
    assert routing.routing_state(target, ctx) == {PRIMARY: False, STANDBY: False}
    assert routing.served_region(target, ctx) == PRIMARY
    state = SandboxState.path(tmp_path, sandbox.env.name)
    state.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(sandbox.state_path, state)
    code, out, err = dr_command(["reconcile", "--env", "staging", "--state-dir", str(tmp_path)], capsys)
    assert code == 0, err
    assert f"resolves to {PRIMARY}; records: PRIMARY already routes to {PRIMARY}; every routing control ON" in out
    assert routing.routing_state(target, ctx) == {PRIMARY: True, STANDBY: True}
