"""Weighted routing (`serving.routing: weighted`, every region an equal share): a failover moves all
traffic to the target, by routing controls on Route 53's data plane and then in the weights (the
target's record takes the weight, the others 0, kept as the last resort); a failback gives every
region its deployed weight again. Without routing controls the weights are the failover itself
(a sandbox of each)."""
from __future__ import annotations

import copy

import pytest

from mlfleet.dr import aws, routing
from mlfleet.dr.audit import AuditLog
from mlfleet.dr.engine import RunContext, StepFailed
from mlfleet.dr.retry import RetryPolicy
from mlfleet.dr.runbooks import failback, failover
from mlfleet.dr.target import Target
from mlfleet.stacks.environment import load_environment, routing_control

PRIMARY, STANDBY = "us-east-1", "us-west-2"
NAME = load_environment("staging").serving.dns_name


def _weighted(routing_controls: bool = True):
    """staging with weighted routing, under a name and an account of its own (sandboxes in one
    process share moto's state)."""
    env = load_environment("staging")
    name, account = ("weighted", "666666666666") if routing_controls else ("weighted-records", "777777777777")
    return env.model_copy(update={
        "name": name, "aws": env.aws.model_copy(update={"account_id": account}),
        "serving": env.serving.model_copy(update={"routing": "weighted", "routing_control": routing_controls})})


def _ctx(target=None) -> RunContext:
    if target is None:
        return RunContext(retry=RetryPolicy(attempts=1), poll_interval_s=0.01)
    return RunContext(retry=target.retry, poll_interval_s=target.poll_interval_s)


# -- the records, through a fake Route 53 -------------------------------------------------------
class FakeRoute53:
    def __init__(self, weights: dict[str, int]):
        self.records = [{"Name": NAME + ".", "Type": "CNAME", "TTL": 60, "SetIdentifier": region, "Weight": weight,
                         "ResourceRecords": [{"Value": f"{region}.{NAME}"}], "HealthCheckId": f"hc-{region}"}
                        for region, weight in weights.items()]
        self.batches: list[list[dict]] = []

    def list_resource_record_sets(self, **_):
        return {"ResourceRecordSets": copy.deepcopy(self.records)}

    def change_resource_record_sets(self, HostedZoneId, ChangeBatch):
        self.batches.append(ChangeBatch["Changes"])
        for change in ChangeBatch["Changes"]:
            assert change["Action"] == "UPSERT"
            new = change["ResourceRecordSet"]
            self.records = [new if r["SetIdentifier"] == new["SetIdentifier"] else r for r in self.records]
        return {"ChangeInfo": {"Status": "PENDING"}}


def _target(route53: FakeRoute53, routing_controls: bool = False) -> Target:
    target = Target(env=_weighted(routing_controls), kind="aws", state_dir="/nonexistent", hosted_zone_id="Z1",
                    serving_urls={}, admin_token=None)
    target._clients[("route53", "us-east-1")] = route53
    return target


def _weights(route53: FakeRoute53) -> dict[str, int]:
    return {r["SetIdentifier"]: r["Weight"] for r in route53.records}


def test_routing_to_a_standby_moves_the_weight_in_one_batch_and_back_home_restores_every_share():
    route53 = FakeRoute53({PRIMARY: 100, STANDBY: 100})
    target = _target(route53)
    assert aws.routed_region(target, _ctx()) is None, "traffic is shared: no one region is routed to"

    assert routing.route_to(target, _ctx(), STANDBY) == f"weights {STANDBY} 100, {PRIMARY} 0"
    assert _weights(route53) == {PRIMARY: 0, STANDBY: 100} and len(route53.batches) == 1
    assert route53.batches[0][0]["ResourceRecordSet"]["HealthCheckId"] == f"hc-{PRIMARY}", "the record kept its check"
    assert aws.routed_region(target, _ctx()) == STANDBY
    assert routing.route_to(target, _ctx(), STANDBY).startswith("weights already") and len(route53.batches) == 1

    assert routing.route_to(target, _ctx(), PRIMARY) == f"weights {PRIMARY} 100, {STANDBY} 100"
    assert _weights(route53) == {PRIMARY: 100, STANDBY: 100}
    assert routing.expected_answers(target, PRIMARY) == {PRIMARY, STANDBY}
    assert routing.expected_answers(target, STANDBY) == {STANDBY}


def test_over_three_regions_a_failover_leaves_the_target_alone_and_a_failback_every_share():
    env = load_environment("prod")
    assert routing_control.routed_weights(env, "us-west-2") == {"us-east-1": 0, "us-west-2": 100, "us-east-2": 0}
    assert routing_control.routed_weights(env, "us-east-1") == {r.name: 100 for r in env.regions}


def test_a_region_without_a_weighted_record_is_named():
    target = _target(FakeRoute53({PRIMARY: 100}))
    with pytest.raises(StepFailed, match=f"no weighted record for {STANDBY}"):
        aws.route_records_to(target, _ctx(), STANDBY)
    with pytest.raises(StepFailed, match="no failover records to flip"):
        aws.flip_routing(target, _ctx(), PRIMARY, STANDBY)


def test_weighted_routing_over_two_regions_uses_routing_controls():
    assert routing_control.enabled(_weighted())
    assert not routing_control.enabled(_weighted(routing_controls=False))


# -- a failover and its failback in a weighted sandbox --------------------------------------------
@pytest.fixture(scope="module", params=[True, False], ids=["routing-controls", "records-only"])
def weighted_sandbox(request, tmp_path_factory):
    from mlfleet.dr.sandbox import Sandbox

    env = _weighted(routing_controls=request.param)
    with Sandbox(env, state_dir=tmp_path_factory.mktemp(f"sandbox-{env.name}"), model_registry=False) as box:
        yield box


def _fresh_target(box, state_dir) -> Target:
    box.reset()  # this sandbox's turn: others in the process may have installed their extensions
    target = Target.sandbox(box.env, box.state_dir)
    target.state_dir = state_dir
    return target


def _answers(target, draws: int = 40) -> set[str | None]:
    return {routing.served_region(target, _ctx(target)) for _ in range(draws)}


def _run(target, runbook, lock_region: str):
    target.warm()
    return runbook.execute(_ctx(target), state_dir=target.runs_dir, lock=target.lock(lock_region),
                           audit=AuditLog(target.audit_path))


@pytest.mark.sandbox
def test_a_weighted_environment_fails_over_and_back(weighted_sandbox, tmp_path):
    target = _fresh_target(weighted_sandbox, tmp_path)
    assert _answers(target) == {PRIMARY, STANDBY}, "deployed: every region takes a share"

    result = _run(target, failover(target, STANDBY, planned=True), STANDBY)
    assert result.status == "completed", result
    steps = {s.name: s.detail for s in result.steps}
    if routing.uses_routing_controls(target):
        assert steps["route"] == f"routing controls: {STANDBY} ON, {PRIMARY} OFF"
        assert steps["reconcile-records"] == f"records: weights {STANDBY} 100, {PRIMARY} 0; every routing control ON"
        assert routing.routing_state(target, _ctx(target)) == {PRIMARY: True, STANDBY: True}
    else:  # the weights are the failover itself
        assert steps["route"] == f"weights {STANDBY} 100, {PRIMARY} 0"
    assert aws.routed_region(target, _ctx(target)) == STANDBY
    assert _answers(target) == {STANDBY}, "the old primary's record has weight 0: a last resort only"

    back = _run(target, failback(target), PRIMARY)
    assert back.status == "completed", back
    steps = {s.name: s.detail for s in back.steps}
    if routing.uses_routing_controls(target):
        assert steps["reconcile-records"] == f"records: weights {PRIMARY} 100, {STANDBY} 100; every routing control ON"
    else:
        assert steps["route"] == f"weights {PRIMARY} 100, {STANDBY} 100"
    assert aws.routed_region(target, _ctx(target)) is None
    assert _answers(target) == {PRIMARY, STANDBY}, "every region its deployed share again"


@pytest.mark.sandbox
def test_a_weighted_environment_passes_its_region_outage_drills(weighted_sandbox, tmp_path):
    from mlfleet.dr.drill import run_drill
    from mlfleet.dr.report import drill_report

    target = _fresh_target(weighted_sandbox, tmp_path)
    # the registry's writer lost: a failover, though every region was taking traffic
    report = drill_report(target, PRIMARY, run_drill(target, PRIMARY))
    assert report["verdict"] == "pass", report
    assert report["measured"]["rto_s"] <= 10
    assert "routing_flipped" in [p["phase"] for p in report["timeline"]]
    assert aws.routed_region(target, _ctx(target)) is None, "the drill's failback shares the traffic again"

    target = _fresh_target(weighted_sandbox, tmp_path / "standby")
    # another region lost: its health check takes it out of the answers; nothing to fail over
    report = drill_report(target, STANDBY, run_drill(target, STANDBY))
    assert report["verdict"] == "pass", report
    assert any("no failover needed" in note for note in report["notes"]), report["notes"]
