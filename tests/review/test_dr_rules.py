"""Each DR review rule (MLF020–MLF025) with a passing and a failing case, on hand-written
Terraform JSON shaped like the synthesized stacks (Google types included)."""
from __future__ import annotations

import pytest

from mlfleet.stacks.environment import load_environment, naming
from mlfleet.stacks.review.dr_rules import DR_RULES, evaluate

from helpers.examples import EXAMPLES


@pytest.fixture(scope="module")
def prod():
    return load_environment("prod")


def _stack(region: str, resources: dict, outputs: dict | None = None) -> dict:
    return {"provider": {"aws": [{"region": region}]}, "resource": resources, "output": outputs or {}}


def _rule_ids(env, stacks) -> list[str]:
    return [f.rule for f in evaluate(env, stacks)]


def _replication(rtc: bool = True, metrics: bool = True) -> dict:
    destination: dict[str, object] = {"bucket": "arn:aws:s3:::replica"}
    if rtc:
        destination["replication_time"] = {"status": "Enabled", "time": {"minutes": 15}}
    if metrics:
        destination["metrics"] = {"status": "Enabled", "event_threshold": {"minutes": 15}}
    return {"aws_s3_bucket_replication_configuration": {"replication": {
        "//": {"metadata": {"path": "prod-us-east-1/artifacts/replication"}},
        "bucket": "${aws_s3_bucket.b.id}",
        "rule": [{"id": "to-west", "status": "Enabled", "destination": destination}]}}}


def test_every_dr_rule_has_a_stable_id_severity_and_fix():
    assert sorted(DR_RULES) == ["MLF020", "MLF021", "MLF022", "MLF023", "MLF024", "MLF025"]
    assert all(r.severity in ("high", "medium", "low") and r.fix for r in DR_RULES.values())


def test_mlf020_replication_needs_rtc_and_metrics(prod):
    assert _rule_ids(prod, {"prod-us-east-1": _stack("us-east-1", _replication())}) == []
    for rtc, metrics, missing in ((False, True, "Replication Time Control"), (True, False, "replication metrics")):
        findings = evaluate(prod, {"prod-us-east-1": _stack("us-east-1", _replication(rtc, metrics))})
        assert [f.rule for f in findings] == ["MLF020"]
        assert missing in findings[0].message and findings[0].path == "prod-us-east-1/artifacts/replication"


def _registry(*member_regions: str) -> dict:
    stacks = {"prod-global": _stack("us-east-1", {"aws_rds_global_cluster": {"g": {
        "global_cluster_identifier": "mlfleet-prod-registry"}}})}
    for region in member_regions:
        stacks[f"prod-{region}"] = _stack(region, _aurora_member(region))
    return stacks


def test_mlf021_global_cluster_needs_a_member_in_a_second_region(prod):
    assert _rule_ids(prod, _registry("us-east-1", "us-west-2")) == []
    assert _rule_ids(prod, _registry("us-east-1")) == ["MLF021"]
    assert _rule_ids(prod, _registry()) == ["MLF021"]


def _aurora_member(region: str) -> dict:
    return {"aws_rds_cluster": {"c": {"cluster_identifier": f"mlfleet-prod-registry-{region}",
                                      "global_cluster_identifier": "mlfleet-prod-registry"}}}


def _standby_pool(warm: int, failover: int, reservation: bool = False) -> dict:
    template: dict[str, object] = {"metadata_options": {"http_tokens": "required"}}
    if reservation:
        template["capacity_reservation_specification"] = {
            "capacity_reservation_target": {"capacity_reservation_id": "cr-0123456789abcdef0"}}
    return _stack("us-west-2", {
        "aws_eks_node_group": {"ng": {"node_group_name": "inference-gpu",
                                      "scaling_config": {"min_size": warm, "desired_size": warm, "max_size": 8},
                                      "launch_template": {"id": "${aws_launch_template.lt.id}"}}},
        "aws_launch_template": {"lt": template}, **_aurora_member("us-west-2")},
        {"inference_gpu_failover_size": {"value": failover}})


def test_mlf022_short_rto_needs_warm_nodes_or_a_reservation(prod):
    assert prod.targets.rto < 3600
    assert _rule_ids(prod, {"prod-us-west-2": _standby_pool(warm=1, failover=4)}) == []
    assert _rule_ids(prod, {"prod-us-west-2": _standby_pool(warm=0, failover=4, reservation=True)}) == []
    assert _rule_ids(prod, {"prod-us-west-2": _standby_pool(warm=0, failover=0)}) == []  # scales from zero to zero
    assert _rule_ids(prod, {"prod-us-west-2": _standby_pool(warm=0, failover=4)}) == ["MLF022"]
    relaxed = prod.model_copy(update={"targets": prod.targets.model_copy(update={"rto": 4 * 3600})})
    assert _rule_ids(relaxed, {"prod-us-west-2": _standby_pool(warm=0, failover=4)}) == []


def test_mlf022_short_rto_without_any_standby_region():
    dev = load_environment("dev")
    short = dev.model_copy(update={"targets": dev.targets.model_copy(update={"rto": 600})})
    assert _rule_ids(dev, {}) == []
    assert _rule_ids(short, {}) == ["MLF022"]


def _gcs(**body) -> dict:
    return {"prod-gcp": {"provider": {"google": [{"region": "us-central1"}]},
                         "resource": {"google_storage_bucket": {"artifacts": {"name": "artifacts", **body}}}}}


def test_mlf023_dual_region_bucket_needs_turbo_replication(prod):
    dual = {"location": "US", "custom_placement_config": {"data_locations": ["US-CENTRAL1", "US-EAST1"]}}
    assert _rule_ids(prod, _gcs(**dual, rpo="ASYNC_TURBO")) == []
    assert _rule_ids(prod, _gcs(location="US-CENTRAL1")) == []   # a single region: nothing to replicate
    assert _rule_ids(prod, _gcs(**dual)) == ["MLF023"]
    assert _rule_ids(prod, _gcs(**dual, rpo="DEFAULT")) == ["MLF023"]
    assert _rule_ids(prod, _gcs(location="NAM4")) == ["MLF023"]


def _sql(*replicas: tuple[str, str]) -> dict:
    resources = {"primary": {"name": "registry", "region": "us-central1", "database_version": "POSTGRES_16"}}
    for index, (master, region) in enumerate(replicas):
        resources[f"replica{index}"] = {"name": f"registry-replica-{index}", "region": region,
                                        "master_instance_name": master}
    return {"prod-gcp": {"provider": {"google": [{"region": "us-central1"}]},
                         "resource": {"google_sql_database_instance": resources}}}


def test_mlf024_cloud_sql_primary_needs_a_cross_region_replica(prod):
    assert _rule_ids(prod, _sql(("registry", "us-east1"))) == []
    assert _rule_ids(prod, _sql(("${google_sql_database_instance.primary.name}", "us-east1"))) == []
    assert _rule_ids(prod, _sql()) == ["MLF024"]
    findings = evaluate(prod, _sql(("registry", "us-central1")))
    assert [f.rule for f in findings] == ["MLF024"] and "same-region" in findings[0].message


def test_acknowledgement_in_the_environment_file_covers_a_dr_finding(prod):
    stacks = {"prod-us-east-1": _stack("us-east-1", _replication(rtc=False))}
    data = prod.model_dump()
    data["acknowledgements"] = [{"rule": "MLF020", "reason": "replica is a cold archive, RPO not promised",
                                 "resource": "prod-us-east-1/artifacts/*"}]
    acknowledged = type(prod).model_validate(data)
    [finding] = evaluate(acknowledged, stacks)
    assert finding.acknowledged == "replica is a cold archive, RPO not promised" and not finding.blocking
    data["acknowledgements"][0]["resource"] = "prod-us-west-2/*"
    [finding] = evaluate(type(prod).model_validate(data), stacks)
    assert finding.acknowledged is None and finding.blocking


def _google_standby(**resources) -> dict:
    return {"provider": {"google": [{"region": "us-central1"}]}, "resource": resources}


def test_mlf025_standby_needs_a_registry_replica(examples, prod):
    hybrid = examples["hybrid"][0]
    standby = f"{hybrid.name}-{hybrid.standbys[0].name}"
    dms = {"google_database_migration_service_migration_job": {"job": {"type": "CONTINUOUS",
                                                                       "migration_job_id": "registry"}}}
    replica = {"google_sql_database_instance": {"r": {"name": "registry-dr", "master_instance_name": "registry"}}}
    assert "MLF025" not in _rule_ids(hybrid, {standby: _google_standby(**dms)})
    assert "MLF025" not in _rule_ids(hybrid, {standby: _google_standby(**replica)})
    primary_only = {"google_sql_database_instance": {"p": {"name": "registry"}}}
    one_off = {"google_database_migration_service_migration_job": {"job": {"type": "ONE_TIME"}}}
    for resources in ({}, primary_only, one_off):
        findings = [f for f in evaluate(hybrid, {standby: _google_standby(**resources)}) if f.rule == "MLF025"]
        assert [f.stack for f in findings] == [standby] and hybrid.standbys[0].name in findings[0].message
    # An AWS standby: a member of the environment's global cluster, and of no other.
    assert "MLF025" not in _rule_ids(prod, {"prod-us-west-2": _stack("us-west-2", _aurora_member("us-west-2"))})
    stranger = {"aws_rds_cluster": {"c": {"cluster_identifier": "x", "global_cluster_identifier": "someone-else"}}}
    assert "MLF025" in _rule_ids(prod, {"prod-us-west-2": _stack("us-west-2", stranger)})
    # A standby whose stack is not in the review says nothing; the primary needs no replica.
    assert "MLF025" not in _rule_ids(prod, {"prod-us-east-1": _stack("us-east-1", {})})


def test_mlf025_on_the_examples(examples, hybrid_without_registry_replica):
    for name in EXAMPLES:
        env, stacks, _ = examples[name]
        assert "MLF025" not in _rule_ids(env, stacks), name
    env, stacks = hybrid_without_registry_replica
    findings = [f for f in evaluate(env, stacks) if f.rule == "MLF025"]
    assert [f.stack for f in findings] == [naming.stack_name(env.name, r.name) for r in env.regions_on("gcp")]
    assert all(f.blocking for f in findings)


def test_mlf021_spares_a_global_cluster_whose_standbys_replicate_through_dms(examples, hybrid_without_registry_replica):
    env, stacks, _ = examples["hybrid"]
    assert "MLF021" not in _rule_ids(env, stacks)
    # Without the DMS job the single-region global cluster is the registry's only copy again.
    env, stacks = hybrid_without_registry_replica
    assert "MLF021" in _rule_ids(env, stacks)
