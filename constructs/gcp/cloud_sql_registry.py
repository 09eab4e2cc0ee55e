"""The model-registry database on Google Cloud: Cloud SQL for PostgreSQL, Enterprise Plus.

`CloudSqlRegistry` is the primary, in the primary region: regional HA (a standby in a second
zone), automated backups with point-in-time recovery, a final backup kept on delete,
deletion protection at both Terraform and API level, a private IP only, IAM database
authentication, TLS required, pgAudit and statement logging (`AUDIT_FLAGS`), and a customer-managed key of
its region.

`CloudSqlReplica` is the cross-region DR replica, in the DR region's stack. It names its
primary by the primary's deterministic instance NAME, never by a reference into the primary's
stack, so the DR region can be planned and applied while the primary region is down. A
failover promotes it (the runbooks read `registry_replica_instance` from the region's state).

The primary can name its DR replica (`dr_replica_name`) once the replica exists: Enterprise
Plus then supports switchover and replica failover that keep the primary's connection name.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Literal

from cdktn import TerraformOutput, Token
from cdktn_provider_google.sql_database import SqlDatabase
from cdktn_provider_google.sql_database_instance import (
    SqlDatabaseInstance,
    SqlDatabaseInstanceReplicaConfiguration,
    SqlDatabaseInstanceReplicationCluster,
    SqlDatabaseInstanceSettings,
    SqlDatabaseInstanceSettingsBackupConfiguration,
    SqlDatabaseInstanceSettingsBackupConfigurationBackupRetentionSettings,
    SqlDatabaseInstanceSettingsDatabaseFlags,
    SqlDatabaseInstanceSettingsDataCacheConfig,
    SqlDatabaseInstanceSettingsFinalBackupConfig,
    SqlDatabaseInstanceSettingsInsightsConfig,
    SqlDatabaseInstanceSettingsIpConfiguration,
    SqlDatabaseInstanceSettingsMaintenanceWindow,
)
from cdktn_provider_google.sql_user import SqlUser
from constructs import Construct

from mlfleet.constructs.gcp.kms_key import grant_service_agent, require_key_id
from mlfleet.constructs.validation import (
    GOOGLE_PROJECT_ID,
    GOOGLE_PROJECT_NUMBER,
    GOOGLE_REGION,
    GOOGLE_RESOURCE_NAME,
    GOOGLE_SERVICE_ACCOUNT_EMAIL,
    POSTGRES_NAME,
    require,
    require_google_labels,
)

POSTGRES_VERSIONS = ("POSTGRES_15", "POSTGRES_16", "POSTGRES_17")
IAM_AUTH_FLAG = "cloudsql.iam_authentication"
# Audit and diagnostics logging, always on. Statement text is logged only for DDL and role changes (pgAudit's
# `ddl,role`, `log_statement=ddl`) and for statements that fail: data statements may carry data. Durations
# are logged without their statements (`log_duration` on, `log_min_duration_statement` -1).
AUDIT_FLAGS = {
    "log_connections": "on", "log_disconnections": "on", "log_hostname": "on",
    "cloudsql.enable_pgaudit": "on", "pgaudit.log": "ddl,role", "log_statement": "ddl",
    "log_checkpoints": "on", "log_lock_waits": "on", "log_duration": "on", "log_min_duration_statement": "-1",
    "log_min_messages": "warning", "log_min_error_statement": "error",
}
SERVICE_ACCOUNT_SUFFIX = ".gserviceaccount.com"
_TIER = re.compile(r"^db-perf-optimized-N-(2|4|8|16|32|48|64|80|96|128)$")
_HHMM = re.compile(r"^([01]\d|2[0-3]):[0-5]\d$")


@dataclass(frozen=True, kw_only=True)
class CloudSqlInstanceSettings:
    """What the primary and its replica share: a replica is sized like its primary."""
    database_version: Literal["POSTGRES_15", "POSTGRES_16", "POSTGRES_17"] = "POSTGRES_16"
    """A Cloud SQL PostgreSQL version; default `POSTGRES_16`."""
    tier: str = "db-perf-optimized-N-2"
    """An Enterprise Plus machine tier (`db-perf-optimized-N-<vCPUs>`). Default: `db-perf-optimized-N-2`."""
    disk_size_gb: int = 100
    """Starting size; storage grows automatically. Default: `100`."""
    database_flags: dict[str, str] = field(default_factory=dict)
    """Extra PostgreSQL flags (IAM authentication and the audit logging of `AUDIT_FLAGS` are always on). Default:
    none."""


@dataclass(frozen=True, kw_only=True)
class CloudSqlRegistryProps:
    project_id: str
    project_number: str
    """Names the Cloud SQL service agent that encrypts with the key."""
    region: str
    instance_name: str
    """Deterministic: the DR replica names its primary by it."""
    private_network: str
    """The VPC's self link; it needs private services access (`GcpVpc`)."""
    kms_key_id: str
    """Crypto key in the instance's region."""
    settings: CloudSqlInstanceSettings = field(default_factory=CloudSqlInstanceSettings)
    """Machine, disk and flags of the instance; default `CloudSqlInstanceSettings()`."""
    database_name: str = "mlfleet_registry"
    """The registry's database; default `mlfleet_registry`."""
    iam_service_accounts: tuple[str, ...] = ()
    """Service account emails that log in with IAM database authentication (no passwords). Default: none."""
    backup_start_time: str = "03:00"
    """UTC start of the daily backup window (HH:MM). Default: `03:00`."""
    retained_backups: int = 14
    """Automated backups kept; default `14`."""
    transaction_log_retention_days: int = 14
    """Point-in-time recovery window (Enterprise Plus: 1 to 35 days). Default: `14`."""
    backup_location: str | None = None
    """Where backups are stored; default the multi-region nearest the instance (outlives the region)."""
    maintenance_day: int = 7
    """1 (Monday) to 7 (Sunday). Default: `7`."""
    maintenance_hour: int = 4
    """UTC hour of the maintenance window (0 to 23); default `4`."""
    dr_replica_name: str | None = None
    """The DR replica's instance name, once it exists: enables switchover and replica failover. Default: none."""
    labels: dict[str, str] = field(default_factory=dict)
    """Google Cloud labels on the instance; default none."""


class CloudSqlRegistry(Construct):
    """The primary registry instance, its database and its IAM users (see module docstring)."""

    def __init__(self, scope: Construct, id_: str, props: CloudSqlRegistryProps):
        super().__init__(scope, id_)
        _validate_common(self, props.project_id, props.project_number, props.region, props.instance_name,
                         props.private_network, props.kms_key_id, props.settings, props.labels)
        _validate_primary(self, props)
        grant = grant_service_agent(self, "cloudsql-key-grant", props.kms_key_id, props.project_number, "cloudsql")
        self.instance = SqlDatabaseInstance(
            self, "instance", project=props.project_id, region=props.region, name=props.instance_name,
            database_version=props.settings.database_version, encryption_key_name=props.kms_key_id,
            deletion_protection=True,
            settings=_settings(props.settings, props.private_network, props.labels,
                               backup_configuration=SqlDatabaseInstanceSettingsBackupConfiguration(
                                   enabled=True, point_in_time_recovery_enabled=True,
                                   start_time=props.backup_start_time, location=props.backup_location,
                                   transaction_log_retention_days=props.transaction_log_retention_days,
                                   backup_retention_settings=SqlDatabaseInstanceSettingsBackupConfigurationBackupRetentionSettings(
                                       retained_backups=props.retained_backups, retention_unit="COUNT")),
                               final_backup_config=SqlDatabaseInstanceSettingsFinalBackupConfig(
                                   enabled=True, retention_days=30),
                               retain_backups_on_delete=True,
                               maintenance_window=SqlDatabaseInstanceSettingsMaintenanceWindow(
                                   day=props.maintenance_day, hour=props.maintenance_hour, update_track="stable")),
            replication_cluster=SqlDatabaseInstanceReplicationCluster(
                failover_dr_replica_name=f"{props.project_id}:{props.dr_replica_name}")
            if props.dr_replica_name else None,
            depends_on=[grant])
        self.database = SqlDatabase(self, "database", project=props.project_id, instance=self.instance.name,
                                    name=props.database_name, deletion_policy="ABANDON")
        self.iam_users = [
            SqlUser(self, f"iam-user-{email.split('@')[0]}", project=props.project_id, instance=self.instance.name,
                    # Cloud SQL names a service account's database user by its email without the suffix.
                    name=email.removesuffix(SERVICE_ACCOUNT_SUFFIX), type="CLOUD_IAM_SERVICE_ACCOUNT")
            for email in props.iam_service_accounts]

        self.instance_name = props.instance_name
        self.connection_name = f"{props.project_id}:{props.region}:{props.instance_name}"
        self.database_name = props.database_name
        self.private_ip: str = self.instance.private_ip_address
        for name, value, description in (
                ("registry_instance", props.instance_name, "Primary Cloud SQL instance of the registry"),
                ("registry_connection_name", self.connection_name, "Connection name of the primary instance"),
                ("registry_private_ip", self.private_ip, "Private IP of the primary instance")):
            TerraformOutput(self, name, value=value, description=description).override_logical_id(name)


@dataclass(frozen=True, kw_only=True)
class CloudSqlReplicaProps:
    project_id: str
    project_number: str
    region: str
    """The DR region."""
    instance_name: str
    primary_instance_name: str
    """The primary's instance name (same project), from configuration: not a reference."""
    primary_region: str
    """Where the primary runs; the replica must be in another region."""
    private_network: str
    kms_key_id: str
    """Crypto key in the replica's region."""
    settings: CloudSqlInstanceSettings = field(default_factory=CloudSqlInstanceSettings)
    """As the primary's: a promoted replica takes the primary's load. Default: `CloudSqlInstanceSettings()`."""
    labels: dict[str, str] = field(default_factory=dict)
    """Google Cloud labels on the replica; default none."""


class CloudSqlReplica(Construct):
    """A cross-region read replica of the registry, ready to promote (see module docstring)."""

    def __init__(self, scope: Construct, id_: str, props: CloudSqlReplicaProps):
        super().__init__(scope, id_)
        _validate_common(self, props.project_id, props.project_number, props.region, props.instance_name,
                         props.private_network, props.kms_key_id, props.settings, props.labels)
        require(bool(GOOGLE_RESOURCE_NAME.fullmatch(props.primary_instance_name)), self, "primary_instance_name",
                f"{props.primary_instance_name!r} is not a Cloud SQL instance name")
        require(props.primary_instance_name != props.instance_name, self, "instance_name",
                "must differ from primary_instance_name")
        require(bool(GOOGLE_REGION.fullmatch(props.primary_region)), self, "primary_region",
                f"{props.primary_region!r} is not a Google Cloud region")
        require(props.primary_region != props.region, self, "region",
                f"a DR replica runs in another region than its primary ({props.primary_region})")
        grant = grant_service_agent(self, "cloudsql-key-grant", props.kms_key_id, props.project_number, "cloudsql")
        # Backups and point-in-time recovery are a primary's: Cloud SQL refuses them on a replica,
        # and the failover runbook turns them on when it promotes this one.
        self.instance = SqlDatabaseInstance(
            self, "instance", project=props.project_id, region=props.region, name=props.instance_name,
            master_instance_name=props.primary_instance_name, database_version=props.settings.database_version,
            encryption_key_name=props.kms_key_id, deletion_protection=True,
            replica_configuration=SqlDatabaseInstanceReplicaConfiguration(failover_target=False),
            settings=_settings(props.settings, props.private_network, props.labels),
            depends_on=[grant])
        self.instance_name = props.instance_name
        self.connection_name = f"{props.project_id}:{props.region}:{props.instance_name}"
        for name, value, description in (
                ("registry_replica_instance", props.instance_name, "Cloud SQL DR replica of the registry"),
                ("registry_replica_connection_name", self.connection_name, "Connection name of the DR replica"),
                ("registry_primary_instance", props.primary_instance_name, "The instance the replica follows")):
            TerraformOutput(self, name, value=value, description=description).override_logical_id(name)


def _settings(s: CloudSqlInstanceSettings, private_network: str, labels: dict[str, str],
              **primary_only) -> SqlDatabaseInstanceSettings:
    flags = {**s.database_flags, **AUDIT_FLAGS, IAM_AUTH_FLAG: "on"}
    return SqlDatabaseInstanceSettings(
        tier=s.tier, edition="ENTERPRISE_PLUS", availability_type="REGIONAL", deletion_protection_enabled=True,
        disk_type="PD_SSD", disk_size=s.disk_size_gb, disk_autoresize=True,
        ip_configuration=SqlDatabaseInstanceSettingsIpConfiguration(
            ipv4_enabled=False, private_network=private_network, ssl_mode="ENCRYPTED_ONLY"),
        database_flags=[SqlDatabaseInstanceSettingsDatabaseFlags(name=k, value=v) for k, v in sorted(flags.items())],
        data_cache_config=SqlDatabaseInstanceSettingsDataCacheConfig(data_cache_enabled=True),
        insights_config=SqlDatabaseInstanceSettingsInsightsConfig(query_insights_enabled=True),
        user_labels=dict(labels) or None, **primary_only)


def _validate_common(scope: Construct, project_id: str, project_number: str, region: str, instance_name: str,
                     private_network: str, kms_key_id: str, settings: CloudSqlInstanceSettings,
                     labels: dict[str, str]) -> None:
    require(bool(GOOGLE_PROJECT_ID.fullmatch(project_id)), scope, "project_id",
            f"{project_id!r} is not a Google Cloud project id")
    require(bool(GOOGLE_PROJECT_NUMBER.fullmatch(project_number)), scope, "project_number",
            f"{project_number!r} is not a project number (digits only)")
    require(bool(GOOGLE_REGION.fullmatch(region)), scope, "region", f"{region!r} is not a Google Cloud region")
    require(bool(GOOGLE_RESOURCE_NAME.fullmatch(instance_name)) and len(instance_name) <= 98, scope, "instance_name",
            f"{instance_name!r}: lowercase letters, digits and '-', starting with a letter")
    if not Token.is_unresolved(private_network):
        require("/global/networks/" in private_network, scope, "private_network",
                f"{private_network!r} is not a VPC self link (projects/P/global/networks/N)")
    require_key_id(scope, "kms_key_id", kms_key_id, region)
    require(settings.database_version in POSTGRES_VERSIONS, scope, "settings.database_version",
            f"{settings.database_version!r} is not one of {', '.join(POSTGRES_VERSIONS)}")
    require(bool(_TIER.fullmatch(settings.tier)), scope, "settings.tier",
            f"{settings.tier!r} is not an Enterprise Plus tier (db-perf-optimized-N-<2…128>)")
    require(10 <= settings.disk_size_gb <= 65536, scope, "settings.disk_size_gb", "must be 10 to 65536 GB")
    for name in settings.database_flags:
        require(name not in (IAM_AUTH_FLAG, *AUDIT_FLAGS), scope, f"settings.database_flags[{name!r}]",
                "is set by mlfleet and cannot be overridden")
    require_google_labels(scope, labels)


def _validate_primary(scope: Construct, p: CloudSqlRegistryProps) -> None:
    require(bool(POSTGRES_NAME.fullmatch(p.database_name)), scope, "database_name",
            f"{p.database_name!r}: lowercase letters, digits and '_', at most 63 characters")
    for i, email in enumerate(p.iam_service_accounts):
        require(bool(GOOGLE_SERVICE_ACCOUNT_EMAIL.fullmatch(email)), scope, f"iam_service_accounts[{i}]",
                f"{email!r} is not a user-managed service account email")
    require(bool(_HHMM.fullmatch(p.backup_start_time)), scope, "backup_start_time",
            f"{p.backup_start_time!r} is not a UTC time HH:MM")
    require(1 <= p.retained_backups <= 365, scope, "retained_backups", "must be 1 to 365 backups")
    require(1 <= p.transaction_log_retention_days <= 35, scope, "transaction_log_retention_days",
            "Enterprise Plus keeps 1 to 35 days of transaction logs")
    require(p.transaction_log_retention_days <= p.retained_backups, scope, "transaction_log_retention_days",
            f"recovering to a point needs the backup before it: keep at least as many daily backups "
            f"({p.retained_backups}) as days of logs")
    require(1 <= p.maintenance_day <= 7, scope, "maintenance_day", "1 (Monday) to 7 (Sunday)")
    require(0 <= p.maintenance_hour <= 23, scope, "maintenance_hour", "0 to 23 (UTC)")
    if p.dr_replica_name is not None:
        require(bool(GOOGLE_RESOURCE_NAME.fullmatch(p.dr_replica_name)) and p.dr_replica_name != p.instance_name, scope,
                "dr_replica_name", f"{p.dr_replica_name!r} is not another Cloud SQL instance's name")
