"""The cost estimate and the RTO/RPO budget, computed from the synthesized stacks."""
from __future__ import annotations

import copy

from mlfleet.stacks.review.cost import PriceTable, estimate
from mlfleet.stacks.review.rto import (AURORA_GLOBAL_FAILOVER_SECONDS, GPU_SCALE_STEP_SECONDS, MODEL_LOAD_SECONDS,
                                       rpo_budget, rto_budget)
from review_fixtures import examples  # noqa: F401 - fixture


def test_price_table_is_dated_sourced_and_labelled_an_estimate():
    table = PriceTable.load()
    assert table.generated_at and "not fetched" in table.source and "estimate" in table.estimate.lower()
    assert table.hours_per_month == 730
    for prices in table.regions.values():
        assert all(p["spot"] < p["on_demand"] for p in prices["ec2"].values())


def test_prod_cost_follows_nodes_and_prices(examples):
    env, stacks, _ = examples["prod"]
    table = PriceTable.load()
    cost = estimate(stacks, table)
    inference = {line.region: line for line in cost.lines if line.item == "GPU pool inference-gpu"}
    hourly = table.ec2("us-west-2", "g6e.2xlarge", "ON_DEMAND")
    assert (inference["us-west-2"].units_warm, inference["us-west-2"].units_min) == (2, 4)
    assert inference["us-west-2"].monthly(2, 730) == round(hourly * 2 * 730, 2)
    batch = [line for line in cost.lines if line.item == "GPU pool batch-gpu"][0]
    assert batch.priced_as == "g6.2xlarge spot"
    # Scaling the standbys to their minimum costs exactly the standby nodes it adds.
    added = sum(hourly * 730 * (line.units_min - line.units_warm) for line in inference.values())
    assert abs(cost.total("min") - cost.total("warm") - added) < 0.05
    assert cost.unpriced == []


def test_cost_says_what_it_could_not_price(examples):
    _, stacks, _ = examples["staging"]
    table = PriceTable.load()
    emptied = PriceTable(table.generated_at, table.source, table.estimate, table.hours_per_month, {})
    cost = estimate(stacks, emptied)
    assert cost.total("warm") == 0 and len(cost.unpriced) == len(cost.lines) > 0


def test_rto_budget_adds_detection_ttl_promotion_scale_up_and_load(examples):
    env, stacks, _ = examples["prod"]
    budget = rto_budget(env, stacks)
    serving = env.serving
    assert budget.total == (serving.health_check_interval * serving.health_check_failure_threshold + serving.record_ttl
                            + AURORA_GLOBAL_FAILOVER_SECONDS + GPU_SCALE_STEP_SECONDS + MODEL_LOAD_SECONDS)
    assert budget.verdict == "pass"
    tight = env.model_copy(update={"targets": env.targets.model_copy(update={"rto": budget.total - 1})})
    assert rto_budget(tight, stacks).verdict == "fail"


def test_rto_budget_drops_scale_up_when_standbys_run_their_minimum(examples):
    env, stacks, _ = examples["staging"]
    warm = copy.deepcopy(stacks)
    for tf in warm.values():
        for output, value in tf.get("output", {}).items():
            if output.endswith("_failover_size"):
                for group in tf["resource"]["aws_eks_node_group"].values():
                    group["scaling_config"]["min_size"] = value["value"]
    parts = {p.name: p.seconds for p in rto_budget(env, warm).parts}
    assert parts["standby scale-up"] == 0 and parts["model load"] == 0
    assert {p.name: p.seconds for p in rto_budget(env, stacks).parts}["standby scale-up"] == GPU_SCALE_STEP_SECONDS


def test_rto_and_rpo_are_not_applicable_without_a_standby(examples):
    env, stacks, _ = examples["dev"]
    assert rto_budget(env, stacks).verdict == "n/a" and rpo_budget(env, stacks).verdict == "n/a"


def test_rpo_is_the_worse_of_artifacts_and_registry(examples):
    env, stacks, _ = examples["prod"]
    budget = rpo_budget(env, stacks)
    assert budget.deliverable == 900 and budget.verdict == "pass"
    no_rtc = copy.deepcopy(stacks)
    for tf in no_rtc.values():
        for config in tf["resource"].get("aws_s3_bucket_replication_configuration", {}).values():
            for rule in config["rule"]:
                del rule["destination"]["replication_time"]
    unbounded = rpo_budget(env, no_rtc)
    assert unbounded.deliverable is None and unbounded.verdict == "fail"
