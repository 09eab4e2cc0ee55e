"""Route 53 ARC routing controls in the global stack: a cluster, a control panel, a control per
region, a safety rule keeping one region ON, and records guarded by calculated checks that need
both the region's endpoint check and its routing control."""
from __future__ import annotations

import json

import pytest

from mlfleet.constructs.aws.failover_routing import (
    RegionalEndpoint,
    Route53FailoverRouting,
    Route53FailoverRoutingProps,
    RoutingControlNames,
    routing_control_output_name,
)
from mlfleet.constructs.validation import PropsError
from mlfleet.stacks.environment import load_environment, routing_control

from helpers.template import resources

NAME = "models.example.com"


def _global_stack(tmp_path, env) -> dict:
    from cdktn import Testing

    from mlfleet.stacks.global_stack import GlobalStack

    app = Testing.app(outdir=str(tmp_path / "cdktf.out"))
    return json.loads(Testing.synth(GlobalStack(app, env)))


@pytest.fixture(scope="module")
def prod(tmp_path_factory) -> tuple:
    env = load_environment("prod")
    return env, _global_stack(tmp_path_factory.mktemp("prod"), env)


def _ref(rtype: str, address: str, attribute: str) -> str:
    return f"${{{rtype}.{address}.{attribute}}}"


def test_prod_gets_a_cluster_a_panel_and_one_control_per_region(prod):
    env, tf = prod
    clusters = resources(tf, "aws_route53recoverycontrolconfig_cluster")
    assert [c["name"] for c in clusters.values()] == [routing_control.cluster_name("prod")]
    cluster_ref = _ref("aws_route53recoverycontrolconfig_cluster", next(iter(clusters)), "arn")
    panels = resources(tf, "aws_route53recoverycontrolconfig_control_panel")
    assert [(p["name"], p["cluster_arn"]) for p in panels.values()] == [
        (routing_control.control_panel_name("prod"), cluster_ref)]
    panel_ref = _ref("aws_route53recoverycontrolconfig_control_panel", next(iter(panels)), "arn")
    controls = resources(tf, "aws_route53recoverycontrolconfig_routing_control")
    assert sorted(c["name"] for c in controls.values()) == sorted(
        routing_control.routing_control_name("prod", r.name) for r in env.regions)
    assert all(c["control_panel_arn"] == panel_ref and c["cluster_arn"] == cluster_ref for c in controls.values())


def test_the_safety_rule_asserts_at_least_one_region_on(prod):
    _, tf = prod
    rules = list(resources(tf, "aws_route53recoverycontrolconfig_safety_rule").values())
    assert len(rules) == 1
    rule = rules[0]
    controls = resources(tf, "aws_route53recoverycontrolconfig_routing_control")
    assert sorted(rule["asserted_controls"]) == sorted(
        _ref("aws_route53recoverycontrolconfig_routing_control", a, "arn") for a in controls)
    assert rule["rule_config"] == {"type": "ATLEAST", "threshold": 1, "inverted": False}
    assert rule["name"] == routing_control.safety_rule_name("prod") and rule["wait_period_ms"] == 5000
    assert "gating_controls" not in rule


def test_every_record_needs_its_endpoint_check_and_its_routing_control(prod):
    env, tf = prod
    checks = resources(tf, "aws_route53_health_check")
    by_type: dict[str, dict] = {}
    for address, check in checks.items():
        by_type.setdefault(check["type"], {})[address] = check
    assert {t: len(c) for t, c in by_type.items()} == {"HTTPS_STR_MATCH": 3, "RECOVERY_CONTROL": 3, "CALCULATED": 3}
    control_arn = {_ref("aws_route53recoverycontrolconfig_routing_control", a, "arn"): c["name"]
                   for a, c in resources(tf, "aws_route53recoverycontrolconfig_routing_control").items()}
    recovery = {_ref("aws_route53_health_check", a, "id"): control_arn[c["routing_control_arn"]]
                for a, c in by_type["RECOVERY_CONTROL"].items()}
    endpoint = {_ref("aws_route53_health_check", a, "id"): c["fqdn"] for a, c in by_type["HTTPS_STR_MATCH"].items()}
    calculated = {}
    for address, check in by_type["CALCULATED"].items():
        assert check["child_health_threshold"] == 2 and len(check["child_healthchecks"]) == 2
        fqdn = next(endpoint[c] for c in check["child_healthchecks"] if c in endpoint)
        control = next(recovery[c] for c in check["child_healthchecks"] if c in recovery)
        region = fqdn.split(".", 1)[0]
        assert control == routing_control.routing_control_name("prod", region)  # the same region's control
        calculated[_ref("aws_route53_health_check", address, "id")] = region
    cnames = [r for r in resources(tf, "aws_route53_record").values() if r.get("records")]
    assert len(cnames) == 3
    for record in cnames:
        assert calculated[record["health_check_id"]] == record["set_identifier"]
        assert record["records"] == [f"{record['set_identifier']}.{env.serving.dns_name}"]


def test_outputs_name_each_control_and_the_cluster(prod):
    env, tf = prod
    outputs = tf["output"]
    for region in env.regions:
        value = outputs[routing_control_output_name(region.name)]["value"]
        assert value.startswith("${aws_route53recoverycontrolconfig_routing_control.") and value.endswith(".arn}")
    assert outputs["routing_control_cluster_arn"]["value"].endswith(".arn}")
    assert outputs["routing_control_cluster_endpoints"]["value"].endswith(".cluster_endpoints}")
    # The endpoint checks keep their outputs: the drills watch them.
    assert all(f"health_check_{r.name.replace('-', '_')}" in outputs for r in env.regions)


def test_weighted_records_are_guarded_by_routing_controls_too(tmp_path):
    env = load_environment("prod")
    env = env.model_copy(update={"serving": env.serving.model_copy(update={"routing": "weighted"})})
    assert routing_control.enabled(env)
    tf = _global_stack(tmp_path, env)
    calculated = {_ref("aws_route53_health_check", a, "id")
                  for a, c in resources(tf, "aws_route53_health_check").items() if c["type"] == "CALCULATED"}
    records = list(resources(tf, "aws_route53_record").values())
    assert len(records) == len(env.regions) and len(calculated) == len(env.regions)
    assert {r["set_identifier"] for r in records} == {r.name for r in env.regions}
    for record in records:
        assert record["weighted_routing_policy"] == {"weight": routing_control.WEIGHT}
        assert record["health_check_id"] in calculated and "failover_routing_policy" not in record


def test_routing_control_false_keeps_the_record_flip(tmp_path):
    env = load_environment("prod")
    env = env.model_copy(update={"serving": env.serving.model_copy(update={"routing_control": False})})
    assert not routing_control.enabled(env)
    tf = _global_stack(tmp_path, env)
    assert not resources(tf, "aws_route53recoverycontrolconfig_cluster")
    assert {c["type"] for c in resources(tf, "aws_route53_health_check").values()} == {"HTTPS_STR_MATCH"}
    assert not any(k.startswith("routing_control") for k in tf["output"])


def test_a_single_region_environment_has_no_routing_controls():
    assert not routing_control.enabled(load_environment("dev"))
    assert routing_control.enabled(load_environment("staging"))


def _props(**overrides) -> Route53FailoverRoutingProps:
    endpoints = (RegionalEndpoint(region="us-east-1", hostname=f"us-east-1.{NAME}", role="primary"),
                 RegionalEndpoint(region="us-west-2", hostname=f"us-west-2.{NAME}", role="standby"))
    names = RoutingControlNames(cluster="c", control_panel="p", safety_rule="r",
                                controls={"us-east-1": "a", "us-west-2": "b"})
    return Route53FailoverRoutingProps(**{**dict(hosted_zone_id="Z0PROD0000000000000000", record_name=NAME,
                                                 endpoints=endpoints, routing_controls=names), **overrides})


@pytest.mark.parametrize("overrides, field, message", [
    (dict(routing_controls=RoutingControlNames(cluster="c", control_panel="p", safety_rule="r",
                                               controls={"us-east-1": "a"})),
     "routing_controls.controls", "one control per endpoint region"),
    (dict(routing_controls=RoutingControlNames(cluster="has space", control_panel="p", safety_rule="r",
                                               controls={"us-east-1": "a", "us-west-2": "b"})),
     "routing_controls.cluster", "without whitespace"),
    (dict(endpoints=(RegionalEndpoint(region="us-east-1", hostname=f"us-east-1.{NAME}", role="primary"),)),
     "routing_controls", "at least two endpoints"),
])
def test_bad_routing_control_props_name_the_field(synth, overrides, field, message):
    with pytest.raises(PropsError) as raised:
        synth(lambda stack: Route53FailoverRouting(stack, "routing", _props(**overrides)))
    assert field in str(raised.value) and message in str(raised.value)
