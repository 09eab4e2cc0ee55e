from __future__ import annotations

import json

import pytest

from mlfleet.constructs.aws.aurora_registry import (
    AuroraGlobalCluster,
    AuroraGlobalClusterProps,
    AuroraRegistryDatabase,
    AuroraRegistryDatabaseProps,
)
from mlfleet.constructs.policy import evaluate_terraform
from mlfleet.constructs.validation import PropsError

from helpers.template import only_resource, resources

ACCOUNT = "333333333333"


def props(**overrides) -> AuroraRegistryDatabaseProps:
    base = dict(role="primary", cluster_identifier="mlfleet-prod-registry-us-east-1",
                global_cluster_identifier="mlfleet-prod-registry", account_id=ACCOUNT,
                vpc_id="vpc-0123456789abcdef0", subnet_ids=("subnet-0a1b2c3d", "subnet-1a2b3c4d", "subnet-2a3b4c5d"),
                allowed_cidrs=("10.40.0.0/16", "10.41.0.0/16"), rpo_seconds=900)
    return AuroraRegistryDatabaseProps(**{**base, **overrides})


def findings(tf: dict) -> list:
    return [f for f in evaluate_terraform("test", tf) if f.rule != "MLF006"]


def test_global_cluster_is_encrypted_protected_and_named_deterministically(synth):
    tf = synth(lambda stack: AuroraGlobalCluster(stack, "registry", AuroraGlobalClusterProps(
        global_cluster_identifier="mlfleet-prod-registry", engine_version="16.4")))
    assert findings(tf) == []
    cluster = only_resource(tf, "aws_rds_global_cluster")
    assert cluster == {"global_cluster_identifier": "mlfleet-prod-registry", "engine": "aurora-postgresql",
                       "engine_version": "16.4", "storage_encrypted": True, "deletion_protection": True}
    assert tf["output"]["registry_global_cluster_identifier"]["value"] == "mlfleet-prod-registry"


def test_primary_is_the_protected_encrypted_writer_with_a_managed_password(synth):
    tf = synth(lambda stack: AuroraRegistryDatabase(stack, "registry", props()))
    assert findings(tf) == []
    cluster = only_resource(tf, "aws_rds_cluster")
    key_ref = cluster["kms_key_id"]
    assert key_ref.startswith("${aws_kms_key.") and cluster["storage_encrypted"] is True
    assert cluster["global_cluster_identifier"] == "mlfleet-prod-registry"  # a string, not a token
    assert cluster["deletion_protection"] is True and cluster["skip_final_snapshot"] is False
    assert cluster["final_snapshot_identifier"] == "mlfleet-prod-registry-us-east-1-final"
    assert cluster["backup_retention_period"] == 14 and cluster["copy_tags_to_snapshot"] is True
    assert cluster["delete_automated_backups"] is False
    assert cluster["manage_master_user_password"] is True and cluster["master_user_secret_kms_key_id"] == key_ref
    assert cluster["master_username"] == "mlfleet_admin" and cluster["database_name"] == "registry"
    assert cluster["iam_database_authentication_enabled"] is True
    assert cluster["enabled_cloudwatch_logs_exports"] == ["postgresql"]
    assert set(cluster["lifecycle"]["ignore_changes"]) == {"replication_source_identifier", "global_cluster_identifier"}

    params = only_resource(tf, "aws_rds_cluster_parameter_group")
    assert params["family"] == "aurora-postgresql16"
    assert params["parameter"][0] == {"name": "rds.global_db_rpo", "value": "900", "apply_method": "immediate"}

    instances = resources(tf, "aws_rds_cluster_instance")
    assert sorted(i["identifier"] for i in instances.values()) == [
        "mlfleet-prod-registry-us-east-1-1", "mlfleet-prod-registry-us-east-1-2"]
    for instance in instances.values():
        assert instance["publicly_accessible"] is False and instance["instance_class"] == "db.r7g.large"
        assert instance["performance_insights_enabled"] is True
        assert instance["performance_insights_kms_key_id"] == key_ref

    sg = only_resource(tf, "aws_security_group")
    assert sg["egress"] == []
    assert [(r["from_port"], r["to_port"], r["protocol"], r["cidr_blocks"]) for r in sg["ingress"]] == [
        (5432, 5432, "tcp", ["10.40.0.0/16", "10.41.0.0/16"])]
    assert only_resource(tf, "aws_db_subnet_group")["subnet_ids"] == list(props().subnet_ids)
    assert {k: v["value"] for k, v in tf["output"].items()} == {
        "registry_cluster_identifier": "mlfleet-prod-registry-us-east-1",
        "registry_global_cluster_identifier": "mlfleet-prod-registry", "registry_role": "primary"}


def test_secondary_joins_by_identifier_without_credentials_and_survives_writer_moves(synth):
    tf = synth(lambda stack: AuroraRegistryDatabase(stack, "registry", props(
        role="secondary", cluster_identifier="mlfleet-prod-registry-us-west-2", instance_count=1,
        rpo_seconds=20)), region="us-west-2")
    assert findings(tf) == []
    cluster = only_resource(tf, "aws_rds_cluster")
    assert cluster["global_cluster_identifier"] == "mlfleet-prod-registry"
    for absent in ("manage_master_user_password", "master_username", "master_user_secret_kms_key_id",
                   "database_name"):
        assert absent not in cluster
    assert set(cluster["lifecycle"]["ignore_changes"]) == {"replication_source_identifier", "global_cluster_identifier"}
    assert cluster["kms_key_id"].startswith("${aws_kms_key.")
    assert only_resource(tf, "aws_kms_alias")["name"] == "alias/mlfleet-prod-registry-us-west-2"
    assert len(resources(tf, "aws_rds_cluster_instance")) == 1
    assert only_resource(tf, "aws_rds_cluster_parameter_group")["parameter"][0]["value"] == "20"
    assert tf["output"]["registry_role"]["value"] == "secondary"


def parameters(tf: dict) -> dict[str, tuple[str, str]]:
    return {p["name"]: (p["value"], p["apply_method"])
            for p in only_resource(tf, "aws_rds_cluster_parameter_group")["parameter"]}


@pytest.mark.parametrize("role", ["primary", "secondary"])
def test_every_member_forces_tls_and_audits_statements(synth, role):
    tf = synth(lambda stack: AuroraRegistryDatabase(stack, "registry", props(role=role)))
    assert parameters(tf) == {
        "rds.global_db_rpo": ("900", "immediate"),
        "rds.force_ssl": ("1", "immediate"),
        "pgaudit.log": ("ddl,role,write", "immediate"),
        "pgaudit.log_parameter": ("0", "immediate"),
        "log_statement": ("ddl", "immediate"),
        "log_min_duration_statement": ("1000", "immediate"),
        "shared_preload_libraries": ("pg_stat_statements,pgaudit", "pending-reboot"),
    }
    assert only_resource(tf, "aws_rds_cluster")["enabled_cloudwatch_logs_exports"] == ["postgresql"]


def test_a_dms_source_preloads_pglogical_beside_the_audit_libraries(synth):
    tf = synth(lambda stack: AuroraRegistryDatabase(stack, "registry", props(logical_replication=True)))
    found = parameters(tf)
    assert found["shared_preload_libraries"] == ("pg_stat_statements,pgaudit,pglogical", "pending-reboot")
    assert found["rds.logical_replication"] == ("1", "pending-reboot")
    assert found["rds.force_ssl"] == ("1", "immediate")


def test_instances_report_enhanced_monitoring_through_a_role_with_only_the_managed_policy(synth):
    tf = synth(lambda stack: AuroraRegistryDatabase(stack, "registry", props()))
    (role_id, role), = resources(tf, "aws_iam_role").items()
    assert role["name"] == "mlfleet-prod-registry-us-east-1-monitoring"
    (trust,) = json.loads(role["assume_role_policy"])["Statement"]
    assert trust == {"Effect": "Allow", "Principal": {"Service": "monitoring.rds.amazonaws.com"},
                     "Action": "sts:AssumeRole", "Condition": {"StringEquals": {"aws:SourceAccount": ACCOUNT}}}
    attachment = only_resource(tf, "aws_iam_role_policy_attachment")
    assert attachment["policy_arn"] == "arn:aws:iam::aws:policy/service-role/AmazonRDSEnhancedMonitoringRole"
    assert attachment["role"] == f"${{aws_iam_role.{role_id}.name}}"
    assert not resources(tf, "aws_iam_role_policy")  # nothing beyond the managed policy
    for instance in resources(tf, "aws_rds_cluster_instance").values():
        assert instance["monitoring_interval"] == 60
        assert instance["monitoring_role_arn"] == f"${{aws_iam_role.{role_id}.arn}}"


@pytest.mark.parametrize(("overrides", "prop", "reason"), [
    (dict(role="writer"), "role", "not 'primary' or 'secondary'"),
    (dict(cluster_identifier="Registry_1"), "cluster_identifier", "not an RDS identifier"),
    (dict(global_cluster_identifier="mlfleet-prod-registry-us-east-1"), "cluster_identifier", "must differ"),
    (dict(rpo_seconds=19), "rpo_seconds", "minimum rds.global_db_rpo of 20s"),
    (dict(backup_retention_days=3), "backup_retention_days", "outside 7 to 35"),
    (dict(subnet_ids=("subnet-0a1b2c3d",)), "subnet_ids", "at least two availability zones"),
    (dict(subnet_ids=("subnet-0a1b2c3d", "subnet-0a1b2c3d")), "subnet_ids", "twice"),
    (dict(subnet_ids=("subnet-0a1b2c3d", "sn-1")), r"subnet_ids\[1\]", "not a subnet id"),
    (dict(allowed_cidrs=()), "allowed_cidrs", "at least one network"),
    (dict(allowed_cidrs=("0.0.0.0/0",)), r"allowed_cidrs\[0\]", "not a private range"),
    (dict(allowed_cidrs=("10.40.0.1/16",)), r"allowed_cidrs\[0\]", "not an IPv4 network CIDR"),
    (dict(engine_version="16"), "engine_version", "not an Aurora PostgreSQL version"),
    (dict(instance_count=0), "instance_count", "outside 1 to 15"),
    (dict(master_username="postgres"), "master_username", "not a usable"),
    (dict(monitoring_interval_seconds=45), "monitoring_interval_seconds", "not one of 1, 5, 10, 15, 30, 60"),
    (dict(cluster_identifier="mlfleet-" + "x" * 50), "monitoring_role_name", "not a valid IAM role name"),
])
def test_invalid_props_are_rejected_with_the_prop_and_the_reason(synth, overrides, prop, reason):
    with pytest.raises(PropsError, match=f"registry: {prop}: .*{reason}"):
        synth(lambda stack: AuroraRegistryDatabase(stack, "registry", props(**overrides)))
