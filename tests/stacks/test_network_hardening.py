"""Every AWS regional stack records its VPC's traffic and holds its VPC endpoints to the environment."""
from __future__ import annotations

import json

import cdktn
import yaml

from mlfleet.constructs.acknowledgements import acknowledgements_for
from mlfleet.stacks.environment import ENVIRONMENTS_DIR, load_environment, parse_environment
from mlfleet.stacks.regional_stack import RegionalStack, _network_props

from helpers.template import only_resource, resources


def test_every_created_vpc_has_flow_logs_to_an_encrypted_log_group_by_default(synthesized):
    for env_name in ("dev", "staging", "prod", "hybrid"):
        env = load_environment(env_name)
        for region in env.regions_on("aws"):
            stack = synthesized.stacks[f"{env.name}-{region.name}"]
            flow = only_resource(stack, "aws_flow_log")
            assert flow["traffic_type"] == "ALL" and flow["vpc_id"].startswith("${aws_vpc.")
            (group,) = [g for g in resources(stack, "aws_cloudwatch_log_group").values()
                        if g["name"] == f"/mlfleet/mlfleet-{env.name}-{region.name}/vpc-flow-logs"]
            assert flow["log_destination"].startswith("${aws_cloudwatch_log_group.")
            assert group["retention_in_days"] == 365 and group["kms_key_id"].startswith("${aws_kms_key.")


def test_the_s3_endpoint_reaches_the_region_s_artifacts_and_state_and_what_nodes_need(synthesized):
    env = load_environment("prod")
    account = env.aws.account_id
    for region in env.regions_on("aws"):
        endpoints = resources(synthesized.stacks[f"prod-{region.name}"], "aws_vpc_endpoint").values()
        s3 = next(json.loads(e["policy"]) for e in endpoints if e["service_name"].endswith(".s3"))
        buckets = {s["Sid"]: s["Resource"] for s in s3["Statement"]}["EnvironmentBuckets"]
        assert buckets == sorted([f"arn:aws:s3:::mlfleet-prod-{account}-{region.name}",
                                  f"arn:aws:s3:::mlfleet-prod-{account}-{region.name}/*",
                                  f"arn:aws:s3:::mlfleet-tfstate-{account}-{region.name}",
                                  f"arn:aws:s3:::mlfleet-tfstate-{account}-{region.name}/*"])
        assert all(e.get("policy") for e in endpoints)


def test_flow_logs_turned_off_with_a_reason_are_not_created_and_the_reason_acknowledges_mlf044():
    data = yaml.safe_load((ENVIRONMENTS_DIR / "staging.yaml").read_text())
    data["regions"][1]["network"]["flow_logs"] = {"enabled": False, "reason": "recorded at the transit gateway"}
    env = parse_environment(data, "test")
    assert _network_props(env, env.regions[1]).flow_logs is None
    on = _network_props(env, env.regions[0]).flow_logs
    assert on is not None and on.name_prefix == f"mlfleet-staging-{env.regions[0].name}"
    stack = RegionalStack(cdktn.Testing.app(), env, env.regions[1])
    assert [a.reason for a in acknowledgements_for(stack.network, "MLF044")] == ["recorded at the transit gateway"]
    assert acknowledgements_for(RegionalStack(cdktn.Testing.app(), env, env.regions[0]).network, "MLF044") == []
