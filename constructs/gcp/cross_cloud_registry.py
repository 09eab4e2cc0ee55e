"""The model registry from an AWS primary to a Google Cloud standby: a Database Migration
Service continuous job that keeps a Cloud SQL for PostgreSQL instance in step with the Aurora
PostgreSQL writer, ready to promote.

Cloud SQL cannot be a physical replica of Aurora, so DMS replicates logically (pglogical) from
the Aurora cluster to a Cloud SQL instance it creates and keeps read-only until the job is
promoted: a failover to the Google Cloud region promotes the migration job, which makes the
instance a writable primary. What this needs, and where it comes from:

- the Aurora cluster with logical replication on (`RegistryDatabaseProps.logical_replication`:
  `rds.logical_replication` and pglogical preloaded, applied at the cluster's next reboot);
- a network path from the Google Cloud VPC to the Aurora writer (an HA VPN or Interconnect
  between the clouds, which mlfleet does not provision) and Aurora admitting the VPC's private
  services range, from which DMS connects (the AWS primary's stack adds that range);
- a replication user on Aurora, its password in Secret Manager (`password_secret`). The
  password passes through Terraform state: the google provider (8.7) has no write-only password
  on a DMS connection profile, and the secret version it is read from is in state too. Keep the
  state bucket's access as tight as the database's (docs/security.md).

DMS verifies the Aurora server's certificate (`SERVER_ONLY`) against the Amazon RDS CA bundle
shipped with mlfleet (`mlfleet.constructs.aws.rds_ca`), or against `source_ca_certificate`; Aurora
refuses plaintext connections (`rds.force_ssl`).

The source profile names the Aurora cluster endpoint, known once the primary is deployed. The
destination instance is created and owned by DMS: it takes the region's key, a private IP only
and Enterprise Plus. Two things DMS's destination settings cannot say, and a promotion must do
after it: deletion protection (the migration job's `deletion_policy = ABANDON` keeps a
`terraform destroy` from dropping it meanwhile) and regional high availability (the instance is
zonal until then). The region's replica-lag alert watches the instance; if Cloud SQL reports no
lag for it, the alert treats the silence as a breach and fires, rather than staying quiet.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from cdktn import TerraformOutput, Token
from cdktn_provider_google.data_google_secret_manager_secret_version import DataGoogleSecretManagerSecretVersion
from cdktn_provider_google.database_migration_service_connection_profile import (
    DatabaseMigrationServiceConnectionProfile,
    DatabaseMigrationServiceConnectionProfileCloudsql,
    DatabaseMigrationServiceConnectionProfileCloudsqlSettings,
    DatabaseMigrationServiceConnectionProfileCloudsqlSettingsIpConfig,
    DatabaseMigrationServiceConnectionProfilePostgresql,
    DatabaseMigrationServiceConnectionProfilePostgresqlSsl,
)
from cdktn_provider_google.database_migration_service_migration_job import (
    DatabaseMigrationServiceMigrationJob,
    DatabaseMigrationServiceMigrationJobVpcPeeringConnectivity,
)
from constructs import Construct

from mlfleet.constructs.acknowledgements import acknowledge
from mlfleet.constructs.aws.rds_ca import rds_ca_bundle
from mlfleet.constructs.gcp.cloud_sql_registry import (
    AUDIT_FLAGS,
    IAM_AUTH_FLAG,
    POSTGRES_VERSIONS,
    CloudSqlInstanceSettings,
)
from mlfleet.constructs.gcp.kms_key import grant_service_agent, require_key_id
from mlfleet.constructs.validation import (
    DMS_CONNECTION_PROFILE_ID,
    DNS_NAME,
    GOOGLE_PROJECT_ID,
    GOOGLE_PROJECT_NUMBER,
    GOOGLE_REGION,
    GOOGLE_RESOURCE_NAME,
    POSTGRES_NAME,
    SECRET_MANAGER_SECRET_ID,
    require,
    require_google_labels,
)

# The google provider has no write-only password on a DMS connection profile (see the docstring).
STATE_PASSWORD_REASON = ("the google provider (8.7) offers no write-only password on a DMS connection profile; "
                         "the replication user's password is in the Google regional stack's state, which is "
                         "guarded like the database (docs/security.md)")


@dataclass(frozen=True, kw_only=True)
class AuroraToCloudSqlReplicaProps:
    project_id: str
    project_number: str
    """Names the Cloud SQL service agent that encrypts with the key."""
    region: str
    """The Google Cloud standby region."""
    instance_name: str
    """The Cloud SQL instance DMS creates (deterministic: the runbooks name it)."""
    source_host: str
    """The Aurora cluster (writer) endpoint, reachable from the VPC."""
    password_secret: str
    """Secret Manager secret (in the project) with the replication user's password."""
    private_network: str
    """The VPC's self link; DMS peers with it and the instance gets a private IP in it."""
    kms_key_id: str
    """Crypto key in the region, for the instance."""
    source_port: int = 5432
    """The Aurora writer's port; default `5432`."""
    replication_user: str = "mlfleet_replication"
    """The PostgreSQL user DMS replicates as; default `mlfleet_replication`."""
    source_database: str = "mlfleet_registry"
    """The database replicated; default `mlfleet_registry`."""
    source_ca_certificate: str | None = None
    """PEM of the CAs the Aurora server's certificate is verified against (e.g. the region's RDS
    bundle); default the Amazon RDS global CA bundle shipped with mlfleet (`rds_ca.rds_ca_bundle`)."""
    settings: CloudSqlInstanceSettings = field(default_factory=CloudSqlInstanceSettings)
    """Machine, disk and flags of the destination instance; default `CloudSqlInstanceSettings()`."""
    labels: dict[str, str] = field(default_factory=dict)
    """Google Cloud labels on the construct's resources; default none."""


class AuroraToCloudSqlReplica(Construct):
    """Aurora PostgreSQL → Cloud SQL continuous replication through DMS (see module docstring)."""

    def __init__(self, scope: Construct, id_: str, props: AuroraToCloudSqlReplicaProps):
        super().__init__(scope, id_)
        _validate(self, props)
        project, region = props.project_id, props.region
        labels = dict(props.labels) or None
        password = DataGoogleSecretManagerSecretVersion(self, "replication-password", project=project,
                                                        secret=props.password_secret)
        source = DatabaseMigrationServiceConnectionProfile(
            self, "source", project=project, location=region, connection_profile_id=f"{props.instance_name}-source",
            display_name=f"Aurora source of {props.instance_name}", labels=labels,
            postgresql=DatabaseMigrationServiceConnectionProfilePostgresql(
                host=props.source_host, port=props.source_port, username=props.replication_user,
                password=password.secret_data, database=props.source_database,
                # REQUIRED would encrypt without checking whom DMS talks to.
                ssl=DatabaseMigrationServiceConnectionProfilePostgresqlSsl(
                    type="SERVER_ONLY", ca_certificate=props.source_ca_certificate or rds_ca_bundle())))
        acknowledge(source, "MLF048", STATE_PASSWORD_REASON)
        grant = grant_service_agent(self, "cloudsql-key-grant", props.kms_key_id, props.project_number, "cloudsql")
        s = props.settings
        destination = DatabaseMigrationServiceConnectionProfile(
            self, "destination", project=project, location=region, connection_profile_id=props.instance_name,
            display_name=f"Cloud SQL replica {props.instance_name}", labels=labels,
            cloudsql=DatabaseMigrationServiceConnectionProfileCloudsql(
                settings=DatabaseMigrationServiceConnectionProfileCloudsqlSettings(
                    source_id=source.id, database_version=s.database_version, tier=s.tier, edition="ENTERPRISE_PLUS",
                    data_disk_type="PD_SSD", data_disk_size_gb=str(s.disk_size_gb), auto_storage_increase=True,
                    cmek_key_name=props.kms_key_id, activation_policy="ALWAYS",
                    ip_config=DatabaseMigrationServiceConnectionProfileCloudsqlSettingsIpConfig(
                        enable_ipv4=False, private_network=props.private_network, require_ssl=True),
                    database_flags={**s.database_flags, **AUDIT_FLAGS, IAM_AUTH_FLAG: "on"}, user_labels=labels)),
            depends_on=[grant])
        self.migration_job = DatabaseMigrationServiceMigrationJob(
            self, "job", project=project, location=region, migration_job_id=props.instance_name,
            display_name=f"mlfleet registry to {region}", type="CONTINUOUS",
            source=source.name, destination=destination.name,
            vpc_peering_connectivity=DatabaseMigrationServiceMigrationJobVpcPeeringConnectivity(
                vpc=props.private_network),
            deletion_policy="ABANDON", labels=labels)
        self.instance_name = props.instance_name
        for name, value, description in (
                ("registry_replica_instance", props.instance_name, "Cloud SQL instance DMS keeps in step with Aurora"),
                ("registry_migration_job", self.migration_job.id, "DMS job to promote on failover")):
            TerraformOutput(self, name, value=value, description=description).override_logical_id(name)


def _validate(scope: Construct, p: AuroraToCloudSqlReplicaProps) -> None:
    require(bool(GOOGLE_PROJECT_ID.fullmatch(p.project_id)), scope, "project_id",
            f"{p.project_id!r} is not a Google Cloud project id")
    require(bool(GOOGLE_PROJECT_NUMBER.fullmatch(p.project_number)), scope, "project_number",
            f"{p.project_number!r} is not a project number (digits only)")
    require(bool(GOOGLE_REGION.fullmatch(p.region)), scope, "region", f"{p.region!r} is not a Google Cloud region")
    require(bool(GOOGLE_RESOURCE_NAME.fullmatch(p.instance_name))
            and bool(DMS_CONNECTION_PROFILE_ID.fullmatch(f"{p.instance_name}-source")), scope, "instance_name",
            f"{p.instance_name!r}: lowercase letters, digits and '-', at most 53 characters")
    require(bool(DNS_NAME.fullmatch(p.source_host)), scope, "source_host", f"{p.source_host!r} is not a DNS name")
    require(1 <= p.source_port <= 65535, scope, "source_port", f"{p.source_port} is not a TCP port")
    require(bool(POSTGRES_NAME.fullmatch(p.replication_user)), scope, "replication_user",
            f"{p.replication_user!r} is not a PostgreSQL user name")
    require(bool(POSTGRES_NAME.fullmatch(p.source_database)), scope, "source_database",
            f"{p.source_database!r} is not a PostgreSQL database name")
    require(bool(SECRET_MANAGER_SECRET_ID.fullmatch(p.password_secret)), scope, "password_secret",
            f"{p.password_secret!r} is not a Secret Manager secret id")
    if not Token.is_unresolved(p.private_network):
        require("/global/networks/" in p.private_network, scope, "private_network",
                f"{p.private_network!r} is not a VPC self link (projects/P/global/networks/N)")
    require_key_id(scope, "kms_key_id", p.kms_key_id, p.region)
    require(p.settings.database_version in POSTGRES_VERSIONS, scope, "settings.database_version",
            f"{p.settings.database_version!r} is not one of {', '.join(POSTGRES_VERSIONS)}")
    require(p.source_ca_certificate is None or "BEGIN CERTIFICATE" in p.source_ca_certificate, scope,
            "source_ca_certificate", "is not a PEM certificate")
    require_google_labels(scope, p.labels)
