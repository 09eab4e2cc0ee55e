"""The cost estimate and the RTO/RPO budget, computed from the synthesized stacks."""
from __future__ import annotations

import copy

from mlfleet.constructs.service_limits import GCS_DEFAULT_RPO_SECONDS, GCS_TURBO_RPO_SECONDS
from mlfleet.stacks.review.cost import estimate
from mlfleet.stacks.review.prices import Prices
from mlfleet.stacks.review.rto import (
    AURORA_GLOBAL_FAILOVER_SECONDS,
    CLOUD_SQL_PROMOTION_SECONDS,
    DMS_PROMOTION_SECONDS,
    GKE_SCALE_STEP_SECONDS,
    GPU_SCALE_STEP_SECONDS,
    MODEL_LOAD_SECONDS,
    rpo_budget,
    rto_budget,
)


def test_each_cloud_price_table_is_dated_sourced_and_labelled_an_estimate():
    prices = Prices.load()
    assert prices.hours_per_month == 730 and sorted(prices.tables) == ["aws", "gcp"]
    for table in prices.tables.values():
        assert table.generated_at and "not fetched" in table.source and "estimate" in table.estimate.lower()
        machines = [p for region in table.regions.values()
                    for p in region.get("ec2", region.get("compute", {})).values()]
        assert machines
        assert all(p["spot"] < p["on_demand"] for p in machines if "spot" in p and "on_demand" in p)


def test_prod_cost_follows_nodes_and_prices(examples):
    env, stacks, _ = examples["prod"]
    table = Prices.load().table("aws")
    cost = estimate(stacks)
    inference = {line.region: line for line in cost.lines if line.item == "GPU pool inference-gpu"}
    hourly = table.instance("us-west-2", "g6e.2xlarge", "ON_DEMAND")
    assert hourly is not None
    assert (inference["us-west-2"].units_warm, inference["us-west-2"].units_min) == (2, 4)
    assert inference["us-west-2"].monthly(2, 730) == round(hourly * 2 * 730, 2)
    batch = [line for line in cost.lines if line.item == "GPU pool batch-gpu"][0]
    assert batch.priced_as == "g6.2xlarge spot"
    # Scaling the standbys to their minimum costs exactly the standby nodes it adds.
    added = sum(hourly * 730 * (line.units_min - line.units_warm) for line in inference.values())
    assert abs(cost.total("min") - cost.total("warm") - added) < 0.05
    assert cost.unpriced == [] and [t.cloud for t in cost.tables] == ["aws"]


def test_cost_says_what_it_could_not_price(examples):
    _, stacks, _ = examples["staging"]
    loaded = Prices.load()
    emptied = Prices(loaded.hours_per_month, {})
    cost = estimate(stacks, emptied)
    # Only the routing controls' cluster has a fixed published price (no table needed).
    fixed = [line for line in cost.lines if "ARC cluster" in line.item]
    assert fixed and cost.total("warm") == sum(line.monthly(line.units_warm, emptied.hours_per_month) or 0
                                               for line in fixed) > 0
    assert len(cost.unpriced) == len(cost.lines) - len(fixed) > 0


def test_gke_pools_are_priced_as_machines_with_their_gpus(examples):
    env, stacks, _ = examples["research"]
    table = Prices.load().table("gcp")
    cost = estimate(stacks)
    # Google Cloud's table, and AWS's for the Route 53 routing controls that move its traffic.
    assert [t.cloud for t in cost.tables] == ["aws", "gcp"]
    pool = next(p for p in env.gpu_pools if not p.gcp.queued_provisioning)
    standby = env.standbys[0].name
    line = next(li for li in cost.lines if li.region == standby and li.item == f"GPU pool {pool.name}-gpu")
    assert line.hourly == table.instance(standby, pool.gcp.machine_type, "ON_DEMAND") is not None
    assert (line.units_warm, line.units_min) == (pool.warm_standby, pool.min_size)
    # Queued provisioning is billed at flex-start prices, which no table holds: never guessed.
    queued = [li for li in cost.lines if "queued provisioning" in li.priced_as]
    assert queued and all(li.hourly is None and li in cost.unpriced for li in queued)


def test_cloud_sql_is_priced_by_tier_and_availability(examples):
    env, stacks, _ = examples["research"]
    table = Prices.load().table("gcp")
    lines = [li for li in estimate(stacks).lines if li.item.startswith("Cloud SQL")]
    assert {li.region for li in lines} == {r.name for r in env.regions}
    for line in lines:
        assert line.priced_as == "on-demand, HA (regional)"
        assert line.hourly == table.service(line.region, "cloud_sql_enterprise_plus", env.gcp.registry.tier, "ha")
    zonal = copy.deepcopy(stacks)
    for tf in zonal.values():
        for body in tf["resource"].get("google_sql_database_instance", {}).values():
            body["settings"]["availability_type"] = "ZONAL"
    ha = next(li for li in lines if li.region == env.primary.name)
    primary = next(li for li in estimate(zonal).lines
                   if li.item.startswith("Cloud SQL") and li.region == env.primary.name)
    assert primary.priced_as == "on-demand, zonal"
    assert primary.hourly == table.service(env.primary.name, "cloud_sql_enterprise_plus", env.gcp.registry.tier,
                                           "zonal")
    assert primary.hourly is not None and ha.hourly is not None and primary.hourly < ha.hourly


def test_a_cross_cloud_estimate_prints_each_clouds_provenance(examples):
    from mlfleet.stacks.review.report import build_review, render_markdown

    env, stacks, findings = examples["hybrid"]
    review = build_review(env, synthesized=(stacks, findings), run_checkov=False)
    assert [t.cloud for t in review.cost.tables] == ["aws", "gcp"]
    markdown = render_markdown(review)
    for table in review.cost.tables:
        assert f"price table of {table.generated_at} ({table.source})" in markdown
    # The DMS destination instance is the registry's cost in the standby.
    assert any("DMS replica" in li.item and li.hourly for li in review.cost.lines)


def test_rto_budget_is_the_longest_path_detection_then_promotion_beside_routing_and_ttl(examples):
    env, stacks, _ = examples["prod"]
    budget = rto_budget(env, stacks)
    serving = env.serving
    # Promotion runs beside routing and its TTL; the warm pods serve while the nodes scale up.
    detection = serving.health_check_interval * serving.health_check_failure_threshold
    assert budget.total == detection + max(AURORA_GLOBAL_FAILOVER_SECONDS, serving.record_ttl) <= 120
    parts = {p.name: p for p in budget.parts}
    scale = parts["standby scale-up"]
    assert scale.seconds == GPU_SCALE_STEP_SECONDS and not scale.on_critical_path
    assert parts["health-check detection"].on_critical_path and parts["registry promotion"].on_critical_path
    runtime = {p.name: p for p in budget.parts}["runtime scale-up to failover replicas"]
    assert runtime.seconds == 0 and "not on the critical path" in runtime.basis
    assert f"to {serving.replicas.on_failover}" in runtime.basis and "model load" not in {p.name for p in budget.parts}
    assert budget.verdict == "pass" and budget.total is not None
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
    assert parts["standby scale-up"] == 0 and parts["runtime scale-up to failover replicas"] == 0
    assert {p.name: p.seconds for p in rto_budget(env, stacks).parts}["standby scale-up"] == GPU_SCALE_STEP_SECONDS


def test_rto_budget_loads_the_model_where_a_standby_keeps_no_warm_runtime(examples):
    # Without the standby's serving stack (or with no warm pod in it) nothing serves until new
    # nodes have loaded the champion: the model load is back on the critical path.
    env, stacks, _ = examples["prod"]
    without = {name: tf for name, tf in stacks.items() if name != "prod-us-east-2-serving"}
    parts = {p.name: p.seconds for p in rto_budget(env, without).parts}
    assert parts["model load"] == MODEL_LOAD_SECONDS and "runtime scale-up to failover replicas" not in parts
    cold = copy.deepcopy(stacks)
    for deployment in cold["prod-us-west-2-serving"]["resource"]["kubernetes_deployment_v1"].values():
        deployment["spec"]["replicas"] = "0"
    assert {p.name: p.seconds for p in rto_budget(env, cold).parts}["model load"] == MODEL_LOAD_SECONDS


def test_rto_budget_promotes_the_registry_replica_the_standby_holds(examples):
    env, stacks, _ = examples["research"]
    parts = {p.name: p for p in rto_budget(env, stacks).parts}
    assert parts["registry promotion"].seconds == CLOUD_SQL_PROMOTION_SECONDS
    assert "Cloud SQL" in parts["registry promotion"].basis
    env, stacks, _ = examples["hybrid"]
    parts = {p.name: p for p in rto_budget(env, stacks).parts}
    assert parts["registry promotion"].seconds == DMS_PROMOTION_SECONDS and "DMS" in parts["registry promotion"].basis


def test_rto_budget_reads_gke_pool_sizes(examples):
    env, stacks, _ = examples["research"]
    short = {p.name: p for p in rto_budget(env, stacks).parts}["standby scale-up"]
    assert short.seconds == GKE_SCALE_STEP_SECONDS and "GKE" in short.basis
    # A standby pool whose autoscaler minimum (its warm size) already is its failover size needs no step.
    warm = copy.deepcopy(stacks)
    for tf in warm.values():
        for output, value in tf.get("output", {}).items():
            if output.endswith("_failover_size"):
                for pool in tf["resource"]["google_container_node_pool"].values():
                    if pool["name"].replace("-", "_") == output.removesuffix("_failover_size"):
                        pool["autoscaling"]["total_min_node_count"] = value["value"]
    parts = {p.name: p.seconds for p in rto_budget(env, warm).parts}
    assert parts["standby scale-up"] == 0 and parts["runtime scale-up to failover replicas"] == 0


def test_a_standby_without_a_registry_replica_is_not_recoverable(hybrid_without_registry_replica):
    env, stacks = hybrid_without_registry_replica
    budget = rto_budget(env, stacks)
    promotion = {p.name: p for p in budget.parts}["registry promotion"]
    assert promotion.missing and promotion.seconds is None and env.standbys[0].name in promotion.basis
    assert budget.total is None and budget.verdict == "fail"
    assert all(p.seconds is not None for p in budget.parts if not p.missing)
    recoverable = [p.seconds for p in budget.parts if not p.missing and p.seconds is not None]
    assert budget.recoverable_total == sum(recoverable) > 0
    rpo = rpo_budget(env, stacks)
    registry = [p for p in rpo.parts if p.data.startswith("model registry")]
    assert [p.missing for p in registry] == [True] and rpo.deliverable is None and rpo.verdict == "fail"


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


def _lag_thresholds(stacks: dict) -> list[float]:
    return [c["condition_threshold"]["threshold_value"] for tf in stacks.values()
            for policy in tf["resource"].get("google_monitoring_alert_policy", {}).values()
            for c in policy["conditions"] if "replica_lag" in c["condition_threshold"]["filter"]]


def test_artifacts_to_google_cloud_are_bounded_by_the_transfer_schedule(examples):
    env, stacks, _ = examples["hybrid"]
    artifacts = next(p for p in rpo_budget(env, stacks).parts if p.data.startswith("model artifacts"))
    jobs = [j for tf in stacks.values() for j in tf["resource"].get("google_storage_transfer_job", {}).values()]
    assert [artifacts.seconds] == [int(j["schedule"]["repeat_interval"].removesuffix("s")) for j in jobs]
    slower = copy.deepcopy(stacks)
    for tf in slower.values():
        for job in tf["resource"].get("google_storage_transfer_job", {}).values():
            job["schedule"]["repeat_interval"] = "7200s"
    assert next(p for p in rpo_budget(env, slower).parts if p.data.startswith("model artifacts")).seconds == 7200
    assert rpo_budget(env, slower).verdict == "fail"


def test_cloud_sql_and_dms_registry_lag_is_watched_not_enforced(examples):
    for name in ("research", "hybrid"):
        env, stacks, _ = examples[name]
        budget = rpo_budget(env, stacks)
        registry = next(p for p in budget.parts if p.data.startswith("model registry"))
        assert not registry.enforced and registry.seconds == max(_lag_thresholds(stacks)) < env.targets.rpo
        assert budget.verdict == "pass (watched, not enforced)"
        unwatched = copy.deepcopy(stacks)
        for tf in unwatched.values():
            tf["resource"].pop("google_monitoring_alert_policy", None)
        assert rpo_budget(env, unwatched).verdict == "fail"


def test_dual_region_artifacts_need_turbo_replication(examples):
    env, stacks, _ = examples["research"]
    artifacts = next(p for p in rpo_budget(env, stacks).parts if p.data.startswith("model artifacts"))
    assert artifacts.seconds == GCS_TURBO_RPO_SECONDS and "turbo" in artifacts.basis
    default = copy.deepcopy(stacks)
    for tf in default.values():
        for bucket in tf["resource"].get("google_storage_bucket", {}).values():
            bucket.pop("rpo", None)
    slow = next(p for p in rpo_budget(env, default).parts if p.data.startswith("model artifacts"))
    assert slow.seconds == GCS_DEFAULT_RPO_SECONDS and rpo_budget(env, default).verdict == "fail"
