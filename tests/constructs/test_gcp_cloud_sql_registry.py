from __future__ import annotations

import cdktn
import pytest

from mlfleet.constructs.gcp.cloud_sql_registry import (
    CloudSqlInstanceSettings,
    CloudSqlRegistry,
    CloudSqlRegistryProps,
    CloudSqlReplica,
    CloudSqlReplicaProps,
)
from mlfleet.constructs.gcp.kms_key import crypto_key_id
from mlfleet.constructs.validation import PropsError

from helpers.template import only_resource, resources

PROJECT, NUMBER = "mlfleet-prod", "123456789012"
NETWORK = f"projects/{PROJECT}/global/networks/mlfleet"
REVIEW = f"mlfleet-prod-review@{PROJECT}.iam.gserviceaccount.com"


def google(build):
    from cdktn_provider_google.provider import GoogleProvider

    def _build(stack):
        GoogleProvider(stack, "google", project="p", region="us-central1")
        return build(stack)
    return _build


def primary(**overrides) -> CloudSqlRegistryProps:
    return CloudSqlRegistryProps(**{**dict(
        project_id=PROJECT, project_number=NUMBER, region="us-central1", instance_name="mlfleet-prod-registry",
        private_network=NETWORK, kms_key_id=crypto_key_id(PROJECT, "us-central1", "r", "registry")), **overrides})


def replica(**overrides) -> CloudSqlReplicaProps:
    return CloudSqlReplicaProps(**{**dict(
        project_id=PROJECT, project_number=NUMBER, region="us-east1", instance_name="mlfleet-prod-registry-dr",
        primary_instance_name="mlfleet-prod-registry", primary_region="us-central1", private_network=NETWORK,
        kms_key_id=crypto_key_id(PROJECT, "us-east1", "r", "registry")), **overrides})


def test_primary_is_enterprise_plus_regional_ha_private_iam_auth_with_pitr_and_deletion_protection(synth):
    tf = synth(google(lambda s: CloudSqlRegistry(s, "registry", primary(
        iam_service_accounts=(REVIEW,), dr_replica_name="mlfleet-prod-registry-dr",
        settings=CloudSqlInstanceSettings(tier="db-perf-optimized-N-4", database_flags={"max_connections": "400"})))),
        with_provider=False)
    instance = only_resource(tf, "google_sql_database_instance")
    settings = instance["settings"]
    assert instance["database_version"] == "POSTGRES_16" and instance["deletion_protection"] is True
    assert instance["encryption_key_name"] == crypto_key_id(PROJECT, "us-central1", "r", "registry")
    assert instance["replication_cluster"] == {"failover_dr_replica_name": f"{PROJECT}:mlfleet-prod-registry-dr"}
    assert settings["edition"] == "ENTERPRISE_PLUS" and settings["tier"] == "db-perf-optimized-N-4"
    assert settings["availability_type"] == "REGIONAL" and settings["deletion_protection_enabled"] is True
    assert settings["ip_configuration"] == {"ipv4_enabled": False, "private_network": NETWORK,
                                            "ssl_mode": "ENCRYPTED_ONLY"}
    assert settings["backup_configuration"] == {
        "enabled": True, "point_in_time_recovery_enabled": True, "start_time": "03:00",
        "transaction_log_retention_days": 14,
        "backup_retention_settings": {"retained_backups": 14, "retention_unit": "COUNT"}}
    assert settings["final_backup_config"] == {"enabled": True, "retention_days": 30}
    assert settings["retain_backups_on_delete"] is True
    assert {f["name"]: f["value"] for f in settings["database_flags"]} == {
        "cloudsql.iam_authentication": "on", "log_connections": "on", "log_disconnections": "on",
        "log_hostname": "on", "cloudsql.enable_pgaudit": "on", "pgaudit.log": "ddl,role", "log_statement": "ddl",
        "log_checkpoints": "on", "log_lock_waits": "on", "log_duration": "on", "log_min_duration_statement": "-1",
        "log_min_messages": "warning", "log_min_error_statement": "error", "max_connections": "400"}
    assert only_resource(tf, "google_kms_crypto_key_iam_member")["member"] == \
        f"serviceAccount:service-{NUMBER}@gcp-sa-cloud-sql.iam.gserviceaccount.com"
    assert instance["depends_on"][0].startswith("google_kms_crypto_key_iam_member.")
    assert only_resource(tf, "google_sql_database")["name"] == "mlfleet_registry"
    user = only_resource(tf, "google_sql_user")
    assert user["type"] == "CLOUD_IAM_SERVICE_ACCOUNT" and user["name"] == f"mlfleet-prod-review@{PROJECT}.iam"
    assert "password" not in user
    assert tf["output"]["registry_instance"]["value"] == "mlfleet-prod-registry"
    assert tf["output"]["registry_connection_name"]["value"] == f"{PROJECT}:us-central1:mlfleet-prod-registry"


def test_dr_replica_follows_its_primary_by_name_in_another_region(synth):
    tf = synth(google(lambda s: CloudSqlReplica(s, "registry-replica", replica())), with_provider=False)
    instance = only_resource(tf, "google_sql_database_instance")
    assert instance["master_instance_name"] == "mlfleet-prod-registry"  # a name from config, not a reference
    assert instance["region"] == "us-east1" and instance["deletion_protection"] is True
    assert instance["encryption_key_name"] == crypto_key_id(PROJECT, "us-east1", "r", "registry")
    assert instance["replica_configuration"] == {"failover_target": False}
    settings = instance["settings"]
    assert settings["edition"] == "ENTERPRISE_PLUS" and settings["availability_type"] == "REGIONAL"
    assert settings["ip_configuration"]["ipv4_enabled"] is False
    assert "backup_configuration" not in settings  # Cloud SQL refuses backups on a replica
    assert resources(tf, "google_sql_database") == {} and "remote_state" not in str(tf.get("data", {}))
    assert tf["output"]["registry_replica_instance"]["value"] == "mlfleet-prod-registry-dr"


@pytest.fixture
def stack():
    return cdktn.TerraformStack(cdktn.Testing.app(), "test")


@pytest.mark.parametrize("overrides, message", [
    (dict(settings=CloudSqlInstanceSettings(tier="db-custom-2-7680")), "settings.tier: 'db-custom-2-7680' is not an "
                                                                       "Enterprise Plus tier"),
    (dict(settings=CloudSqlInstanceSettings(database_version="MYSQL_8_0")), "settings.database_version: 'MYSQL_8_0'"),
    (dict(settings=CloudSqlInstanceSettings(database_flags={"cloudsql.iam_authentication": "off"})),
     r"settings.database_flags\['cloudsql.iam_authentication'\]: is set by mlfleet"),
    (dict(kms_key_id=crypto_key_id(PROJECT, "us-east1", "r", "k")), "kms_key_id: the key is in 'us-east1'"),
    (dict(private_network="mlfleet"), "private_network: 'mlfleet' is not a VPC self link"),
    (dict(transaction_log_retention_days=40), "transaction_log_retention_days: Enterprise Plus keeps 1 to 35 days"),
    (dict(retained_backups=7), r"transaction_log_retention_days: .*keep at least as many daily backups \(7\)"),
    (dict(iam_service_accounts=("someone@example.com",)), r"iam_service_accounts\[0\]: 'someone@example.com'"),
    (dict(backup_start_time="25:00"), "backup_start_time: '25:00' is not a UTC time HH:MM"),
    (dict(dr_replica_name="mlfleet-prod-registry"), "dr_replica_name: .*is not another Cloud SQL instance"),
    (dict(database_name="Registry"), "database_name: 'Registry'"),
    (dict(maintenance_day=0), r"maintenance_day: 1 \(Monday\) to 7 \(Sunday\)"),
    (dict(instance_name="Registry"), "instance_name: 'Registry'"),
])
def test_invalid_primary_props_name_the_prop(stack, overrides, message):
    with pytest.raises(PropsError, match=message):
        CloudSqlRegistry(stack, "registry", primary(**overrides))


@pytest.mark.parametrize("overrides, message", [
    (dict(region="us-central1", kms_key_id=crypto_key_id(PROJECT, "us-central1", "r", "k")),
     r"region: a DR replica runs in another region than its primary \(us-central1\)"),
    (dict(instance_name="mlfleet-prod-registry"), "instance_name: must differ from primary_instance_name"),
    (dict(primary_instance_name="${aws_rds_cluster.x.id}"), "primary_instance_name: .* is not a Cloud SQL instance"),
    (dict(primary_region="central"), "primary_region: 'central' is not a Google Cloud region"),
])
def test_invalid_replica_props_name_the_prop(stack, overrides, message):
    with pytest.raises(PropsError, match=message):
        CloudSqlReplica(stack, "replica", replica(**overrides))
