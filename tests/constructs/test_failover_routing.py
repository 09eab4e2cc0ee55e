from __future__ import annotations

import pytest

from mlfleet.constructs.aws.failover_routing import (
    FAILOVER_OK_TOKEN,
    RegionalEndpoint,
    Route53FailoverRouting,
    Route53FailoverRoutingProps,
    health_check_output_name,
)
from mlfleet.constructs.policy import evaluate_terraform
from mlfleet.constructs.validation import PropsError

from helpers.template import resources

ZONE = "Z0PROD0000000000000000"
NAME = "models.example.com"


def endpoint(region: str, role: str = "standby", weight: int = 100) -> RegionalEndpoint:
    return RegionalEndpoint(region=region, hostname=f"{region}.{NAME}", role=role, weight=weight)


PROD = (endpoint("us-east-1", "primary"), endpoint("us-west-2", weight=200), endpoint("us-east-2", weight=50))


def props(**overrides) -> Route53FailoverRoutingProps:
    return Route53FailoverRoutingProps(**{**dict(hosted_zone_id=ZONE, record_name=NAME, endpoints=PROD), **overrides})


def records_by_identifier(tf: dict) -> dict[tuple[str, str], dict]:
    return {(r["name"], r["set_identifier"]): r for r in resources(tf, "aws_route53_record").values()}


def health_check_ref(tf: dict, region: str) -> str:
    address = next(a for a, c in resources(tf, "aws_route53_health_check").items() if c["fqdn"] == f"{region}.{NAME}")
    return f"${{aws_route53_health_check.{address}.id}}"


def test_each_region_gets_an_https_string_match_health_check_exported_for_the_runbooks(synth):
    tf = synth(lambda stack: Route53FailoverRouting(stack, "routing", props()))
    assert [f for f in evaluate_terraform("test", tf) if f.rule != "MLF006"] == []
    checks = {c["fqdn"]: c for c in resources(tf, "aws_route53_health_check").values()}
    assert set(checks) == {f"{r}.{NAME}" for r in ("us-east-1", "us-west-2", "us-east-2")}
    check = checks[f"us-east-1.{NAME}"]
    assert {k: check[k] for k in ("type", "port", "resource_path", "search_string", "request_interval",
                                  "failure_threshold", "measure_latency", "enable_sni")} == {
        "type": "HTTPS_STR_MATCH", "port": 443, "resource_path": "/v2/health/failover",
        "search_string": FAILOVER_OK_TOKEN, "request_interval": 10, "failure_threshold": 3,
        "measure_latency": True, "enable_sni": True}
    assert set(tf["output"]) == {"health_check_us_east_1", "health_check_us_west_2", "health_check_us_east_2"}
    for region in ("us-east-1", "us-west-2", "us-east-2"):
        assert tf["output"][health_check_output_name(region)]["value"] == health_check_ref(tf, region)


def test_failover_with_two_standbys_sends_secondary_to_weighted_healthy_standbys(synth):
    tf = synth(lambda stack: Route53FailoverRouting(stack, "routing", props()))
    records = records_by_identifier(tf)
    assert set(records) == {(NAME, "us-east-1"), (NAME, "standbys"),
                            (f"standby.{NAME}", "us-west-2"), (f"standby.{NAME}", "us-east-2")}
    primary = records[(NAME, "us-east-1")]
    assert primary["failover_routing_policy"] == {"type": "PRIMARY"}
    assert primary["records"] == [f"us-east-1.{NAME}"] and primary["ttl"] == 60 and primary["type"] == "CNAME"
    assert primary["health_check_id"] == health_check_ref(tf, "us-east-1")
    secondary = records[(NAME, "standbys")]
    assert secondary["failover_routing_policy"] == {"type": "SECONDARY"}
    assert secondary["alias"] == {"name": f"standby.{NAME}", "zone_id": ZONE, "evaluate_target_health": True}
    assert "ttl" not in secondary and "records" not in secondary
    for region, weight in (("us-west-2", 200), ("us-east-2", 50)):
        standby = records[(f"standby.{NAME}", region)]
        assert standby["weighted_routing_policy"] == {"weight": weight}
        assert standby["records"] == [f"{region}.{NAME}"]
        assert standby["health_check_id"] == health_check_ref(tf, region)
    assert all(r["zone_id"] == ZONE for r in records.values())


def test_failover_with_one_standby_points_secondary_straight_at_it(synth):
    tf = synth(lambda stack: Route53FailoverRouting(stack, "routing", props(endpoints=PROD[:2], ttl=30)))
    records = records_by_identifier(tf)
    assert set(records) == {(NAME, "us-east-1"), (NAME, "us-west-2")}
    secondary = records[(NAME, "us-west-2")]
    assert secondary["failover_routing_policy"] == {"type": "SECONDARY"}
    assert secondary["records"] == [f"us-west-2.{NAME}"] and secondary["ttl"] == 30
    assert secondary["health_check_id"] == health_check_ref(tf, "us-west-2")


def test_weighted_policy_spreads_the_name_over_every_region(synth):
    tf = synth(lambda stack: Route53FailoverRouting(stack, "routing", props(
        policy="weighted", request_interval=30, failure_threshold=5)))
    records = records_by_identifier(tf)
    assert {(n, i): r["weighted_routing_policy"]["weight"] for (n, i), r in records.items()} == {
        (NAME, "us-east-1"): 100, (NAME, "us-west-2"): 200, (NAME, "us-east-2"): 50}
    assert all("failover_routing_policy" not in r for r in records.values())
    check = next(iter(resources(tf, "aws_route53_health_check").values()))
    assert (check["request_interval"], check["failure_threshold"]) == (30, 5)


@pytest.mark.parametrize(("overrides", "prop", "reason"), [
    (dict(endpoints=(endpoint("us-west-2"),)), "endpoints", "exactly one must have role primary, found 0"),
    (dict(endpoints=(endpoint("us-east-1", "primary"), endpoint("us-west-2", "primary"))), "endpoints", "found 2"),
    (dict(endpoints=(endpoint("us-east-1", "primary"), endpoint("us-east-1"))), r"endpoints\[1\].region",
     r"already endpoints\[0\]"),
    (dict(endpoints=(endpoint("us-east-1", "primary"),
                     RegionalEndpoint(region="us-west-2", hostname=f"us-east-1.{NAME}", role="standby"))),
     r"endpoints\[1\].hostname", r"already endpoints\[0\]"),
    (dict(endpoints=(RegionalEndpoint(region="us-east-1", hostname=NAME, role="primary"),)),
     r"endpoints\[0\].hostname", "routed name itself"),
    (dict(endpoints=(RegionalEndpoint(region="us-east-1", hostname="Bad_Host", role="primary"),)),
     r"endpoints\[0\].hostname", "not a lowercase DNS name"),
    (dict(endpoints=(endpoint("us-east-1", "primary", weight=256),)), r"endpoints\[0\].weight", "0 to 255"),
    (dict(endpoints=()), "endpoints", "at least the primary"),
    (dict(policy="latency"), "policy", "not 'failover' or 'weighted'"),
    (dict(record_name="models.example.com."), "record_name", "without a trailing dot"),
    (dict(hosted_zone_id="zone-1"), "hosted_zone_id", "not a Route 53 hosted zone id"),
    (dict(ttl=86400), "ttl", "5 to 3600"),
    (dict(request_interval=15), "request_interval", "not 10 or 30"),
    (dict(failure_threshold=0), "failure_threshold", "1 to 10"),
])
def test_invalid_props_are_rejected_with_the_prop_and_the_reason(synth, overrides, prop, reason):
    with pytest.raises(PropsError, match=f"routing: {prop}: .*{reason}"):
        synth(lambda stack: Route53FailoverRouting(stack, "routing", props(**overrides)))
