"""The model registry's database: an Aurora PostgreSQL global database.

`AuroraGlobalCluster` goes in the `<env>-global` stack. Each regional stack adds a
`AuroraRegistryDatabase`: the primary region's cluster is the global writer, every standby's is a
read-only secondary. Regional clusters join the global cluster by its deterministic
identifier (a string, never a cross-stack token), so a standby plans while the primary region
is down. Deploy order on first creation: global stack, primary region, then standbys.

Failover moves the writer outside Terraform (the DR runbooks call the RDS API). Afterwards AWS
rewrites each member's replication source, and may detach a member from the global cluster:
both attributes are ignored on every member so that the next plan never "fixes" a failover
by promoting or re-attaching a cluster.

`rds.global_db_rpo` makes Aurora pause commits on the writer when no secondary is within the
RPO, so a region loss can never lose more than that: the parameter is set from the RPO target
on every member, since any of them may become the writer.

Every member also refuses plaintext connections (`rds.force_ssl`) and keeps a statement record:
pgaudit logs DDL, role changes and writes (`pgaudit.log`), PostgreSQL itself logs DDL and slow
statements, and the log goes to CloudWatch Logs. Reads are not audited statement by statement:
serving and the runbooks read the registry all the time, and `read` would bury the writes that
matter (who approved a champion) under them; artifact reads are audited by CloudTrail data events
(`artifact_audit_trail`). Instances report OS metrics through enhanced monitoring, with a role
that holds only AWS's managed enhanced-monitoring policy.
"""
from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field
from typing import Literal

from cdktn import TerraformOutput, TerraformResourceLifecycle, Token
from cdktn_provider_aws.db_subnet_group import DbSubnetGroup
from cdktn_provider_aws.iam_role import IamRole
from cdktn_provider_aws.iam_role_policy_attachment import IamRolePolicyAttachment
from cdktn_provider_aws.rds_cluster import RdsCluster
from cdktn_provider_aws.rds_cluster_instance import RdsClusterInstance
from cdktn_provider_aws.rds_cluster_parameter_group import RdsClusterParameterGroup, RdsClusterParameterGroupParameter
from cdktn_provider_aws.rds_global_cluster import RdsGlobalCluster
from cdktn_provider_aws.security_group import SecurityGroup, SecurityGroupIngress
from constructs import Construct

from mlfleet.constructs.aws.iam_policy import policy_document
from mlfleet.constructs.aws.kms_key import KmsKey, KmsKeyProps
from mlfleet.constructs.validation import (
    ACCOUNT_ID,
    AURORA_NAME,
    IAM_ROLE_NAME,
    RDS_IDENTIFIER,
    RDS_INSTANCE_CLASS,
    SUBNET_ID,
    VPC_ID,
    PropsError,
    require,
)

ENGINE = "aurora-postgresql"
PORT = 5432
MIN_GLOBAL_DB_RPO_SECONDS = 20  # Aurora rejects a smaller rds.global_db_rpo
# What Database Migration Service needs of an Aurora PostgreSQL source (with pglogical preloaded).
LOGICAL_REPLICATION_PARAMETERS = (("rds.logical_replication", "1"),)
# Preloaded on every member: statement statistics and pgaudit; pglogical too for a DMS source.
PRELOAD_LIBRARIES = ("pg_stat_statements", "pgaudit")
LOGICAL_REPLICATION_LIBRARY = "pglogical"
# Dynamic parameters every member sets (applied immediately). pgaudit's `read` class is left out:
# see the module docstring. log_statement = ddl keeps a schema-change record even in a database
# where the pgaudit extension has not been created; slow statements are logged from 1 s.
AUDIT_PARAMETERS = (("rds.force_ssl", "1"), ("pgaudit.log", "ddl,role,write"), ("pgaudit.log_parameter", "0"),
                    ("log_statement", "ddl"), ("log_min_duration_statement", "1000"))
ENHANCED_MONITORING_POLICY_ARN = "arn:aws:iam::aws:policy/service-role/AmazonRDSEnhancedMonitoringRole"
MONITORING_INTERVALS = (1, 5, 10, 15, 30, 60)
_ENGINE_VERSION = re.compile(r"^(\d+)\.\d+$")


@dataclass(frozen=True, kw_only=True)
class AuroraGlobalClusterProps:
    global_cluster_identifier: str
    engine_version: str = "16.6"
    """Aurora PostgreSQL version; every regional cluster must use the same one. Default: `16.6`."""
    tags: dict[str, str] = field(default_factory=dict)
    """AWS tags on the global cluster; default none."""


class AuroraGlobalCluster(Construct):
    """The global cluster every region's registry database joins (no data of its own)."""

    def __init__(self, scope: Construct, id_: str, props: AuroraGlobalClusterProps):
        super().__init__(scope, id_)
        _require_identifier(self, "global_cluster_identifier", props.global_cluster_identifier)
        _require_engine_version(self, props.engine_version)
        self.global_cluster_identifier = props.global_cluster_identifier
        self.global_cluster = RdsGlobalCluster(
            self, "global-cluster", global_cluster_identifier=props.global_cluster_identifier,
            engine=ENGINE, engine_version=props.engine_version, storage_encrypted=True,
            deletion_protection=True, tags=props.tags or None)
        TerraformOutput(self, "identifier", value=props.global_cluster_identifier).override_logical_id(
            "registry_global_cluster_identifier")


@dataclass(frozen=True, kw_only=True)
class AuroraRegistryDatabaseProps:
    role: Literal["primary", "secondary"]
    """`primary` creates the global writer; `secondary` a read-only replica cluster."""
    cluster_identifier: str
    global_cluster_identifier: str
    """The `AuroraGlobalCluster`'s identifier, as a string (never a token from another stack)."""
    account_id: str
    vpc_id: str
    subnet_ids: tuple[str, ...]
    """Private subnets in at least two availability zones."""
    allowed_cidrs: tuple[str, ...]
    """Private IPv4 ranges that may connect on 5432 (the cluster's VPC, the DR runner's network)."""
    rpo_seconds: int
    """RPO target: Aurora blocks commits when no secondary is within it (at least 20 s)."""
    engine_version: str = "16.6"
    """Aurora PostgreSQL version, the global cluster's; default `16.6`."""
    instance_class: str = "db.r7g.large"
    """Instance class of every instance of the regional cluster; default `db.r7g.large`."""
    instance_count: int = 2
    """Instances of the regional cluster (1 to 15); default `2`."""
    backup_retention_days: int = 14
    """Automated backups and point-in-time recovery window (7 to 35 days). Default: `14`."""
    database_name: str = "registry"
    """The registry's database; default `registry`."""
    master_username: str = "mlfleet_admin"
    """The master user (on the primary, RDS keeps its password in Secrets Manager); default `mlfleet_admin`."""
    key_alias: str | None = None
    """Alias of this region's database key; default `<cluster_identifier>`."""
    logical_replication: bool = False
    """Logical replication (pglogical) for a Cloud SQL replica through DMS (`cross_cloud_registry`).
    A static parameter: it takes effect at the cluster's next reboot. Default: off."""
    monitoring_interval_seconds: int = 60
    """Enhanced monitoring granularity (1, 5, 10, 15, 30 or 60 s); default `60`."""
    monitoring_role_name: str | None = None
    """IAM role RDS publishes enhanced monitoring with; default `<cluster_identifier>-monitoring`
    (IAM names are global: the cluster identifier carries the region)."""
    tags: dict[str, str] = field(default_factory=dict)
    """AWS tags on the construct's resources; default none."""


class AuroraRegistryDatabase(Construct):
    """One region's member of the registry's global database, with its own KMS key."""

    def __init__(self, scope: Construct, id_: str, props: AuroraRegistryDatabaseProps):
        super().__init__(scope, id_)
        _validate(self, props)
        primary = props.role == "primary"
        tags = dict(props.tags) or None
        self.role = props.role
        self.cluster_identifier = props.cluster_identifier
        self.global_cluster_identifier = props.global_cluster_identifier

        self.key = KmsKey(self, "key", KmsKeyProps(
            alias=props.key_alias or props.cluster_identifier, account_id=props.account_id,
            description=f"mlfleet registry database {props.cluster_identifier}", tags=props.tags))
        subnet_group = DbSubnetGroup(
            self, "subnet-group", name=props.cluster_identifier, subnet_ids=list(props.subnet_ids),
            description=f"mlfleet registry {props.cluster_identifier}", tags=tags)
        self.security_group = SecurityGroup(
            self, "security-group", name=f"{props.cluster_identifier}-db", vpc_id=props.vpc_id,
            description=f"PostgreSQL to the mlfleet registry {props.cluster_identifier}",
            ingress=[SecurityGroupIngress(
                description="PostgreSQL from allowed networks", protocol="tcp", from_port=PORT, to_port=PORT,
                cidr_blocks=list(props.allowed_cidrs))],
            # Aurora replicates across regions outside the VPC; the cluster opens no connections.
            egress=[], tags=tags)
        version = _ENGINE_VERSION.fullmatch(props.engine_version)
        assert version is not None  # validated above
        major = version.group(1)
        libraries = PRELOAD_LIBRARIES + ((LOGICAL_REPLICATION_LIBRARY,) if props.logical_replication else ())
        static = (("shared_preload_libraries", ",".join(libraries)),) + (
            LOGICAL_REPLICATION_PARAMETERS if props.logical_replication else ())
        parameters = RdsClusterParameterGroup(
            self, "parameters", name=props.cluster_identifier, family=f"{ENGINE}{major}",
            description=f"mlfleet registry {props.cluster_identifier}: RPO {props.rpo_seconds}s",
            parameter=[RdsClusterParameterGroupParameter(name=name, value=value, apply_method="immediate")
                       for name, value in (("rds.global_db_rpo", str(props.rpo_seconds)), *AUDIT_PARAMETERS)]
            # Static parameters: they take effect at the cluster's next reboot.
            + [RdsClusterParameterGroupParameter(name=name, value=value, apply_method="pending-reboot")
               for name, value in static],
            tags=tags)
        self.monitoring_role = IamRole(
            self, "monitoring-role", name=props.monitoring_role_name or f"{props.cluster_identifier}-monitoring",
            description=f"RDS enhanced monitoring of {props.cluster_identifier}",
            assume_role_policy=policy_document([{
                "Effect": "Allow", "Principal": {"Service": "monitoring.rds.amazonaws.com"},
                "Action": "sts:AssumeRole", "Condition": {"StringEquals": {"aws:SourceAccount": props.account_id}}}]),
            tags=tags)
        monitoring_policy = IamRolePolicyAttachment(self, "monitoring-policy", role=self.monitoring_role.name,
                                                    policy_arn=ENHANCED_MONITORING_POLICY_ARN)

        self.cluster = RdsCluster(
            self, "cluster", cluster_identifier=props.cluster_identifier, engine=ENGINE,
            engine_version=props.engine_version, global_cluster_identifier=props.global_cluster_identifier,
            db_subnet_group_name=subnet_group.name, vpc_security_group_ids=[self.security_group.id],
            db_cluster_parameter_group_name=parameters.name, port=PORT,
            storage_encrypted=True, kms_key_id=self.key.key_arn, deletion_protection=True,
            backup_retention_period=props.backup_retention_days, copy_tags_to_snapshot=True,
            skip_final_snapshot=False, final_snapshot_identifier=f"{props.cluster_identifier}-final",
            delete_automated_backups=False,
            iam_database_authentication_enabled=True, enabled_cloudwatch_logs_exports=["postgresql"],
            # Only the writer has credentials: a secondary gets the primary's through replication.
            database_name=props.database_name if primary else None,
            master_username=props.master_username if primary else None,
            manage_master_user_password=True if primary else None,
            master_user_secret_kms_key_id=self.key.key_arn if primary else None,
            lifecycle=TerraformResourceLifecycle(
                ignore_changes=["replication_source_identifier", "global_cluster_identifier"]),
            tags=tags)

        self.instances = [RdsClusterInstance(
            self, f"instance-{n}", identifier=f"{props.cluster_identifier}-{n}",
            cluster_identifier=self.cluster.id, engine=ENGINE, engine_version=props.engine_version,
            instance_class=props.instance_class, db_subnet_group_name=subnet_group.name,
            publicly_accessible=False, performance_insights_enabled=True,
            performance_insights_kms_key_id=self.key.key_arn,
            monitoring_interval=props.monitoring_interval_seconds, monitoring_role_arn=self.monitoring_role.arn,
            # A global database upgrades its members together, through the global cluster.
            auto_minor_version_upgrade=False, promotion_tier=n - 1, depends_on=[monitoring_policy], tags=tags)
            for n in range(1, props.instance_count + 1)]

        for name, value in (("registry_cluster_identifier", props.cluster_identifier),
                            ("registry_global_cluster_identifier", props.global_cluster_identifier),
                            ("registry_role", props.role)):
            TerraformOutput(self, name, value=value).override_logical_id(name)

    @property
    def cluster_arn(self) -> str:
        return self.cluster.arn

    @property
    def writer_endpoint(self) -> str:
        return self.cluster.endpoint

    @property
    def reader_endpoint(self) -> str:
        return self.cluster.reader_endpoint


def _validate(scope: Construct, props: AuroraRegistryDatabaseProps) -> None:
    require(props.role in ("primary", "secondary"), scope, "role", f"{props.role!r} is not 'primary' or 'secondary'")
    _require_identifier(scope, "cluster_identifier", props.cluster_identifier)
    _require_identifier(scope, "global_cluster_identifier", props.global_cluster_identifier)
    require(props.cluster_identifier != props.global_cluster_identifier, scope, "cluster_identifier",
            "must differ from global_cluster_identifier")
    require(bool(ACCOUNT_ID.fullmatch(props.account_id)), scope, "account_id",
            f"{props.account_id!r} is not a 12-digit AWS account id")
    _require_engine_version(scope, props.engine_version)
    require(Token.is_unresolved(props.vpc_id) or bool(VPC_ID.fullmatch(props.vpc_id)), scope, "vpc_id",
            f"{props.vpc_id!r} is not a VPC id")
    require(len(props.subnet_ids) >= 2, scope, "subnet_ids",
            "Aurora needs subnets in at least two availability zones")
    require(len(set(props.subnet_ids)) == len(props.subnet_ids), scope, "subnet_ids", "lists a subnet twice")
    for i, subnet in enumerate(props.subnet_ids):
        require(Token.is_unresolved(subnet) or bool(SUBNET_ID.fullmatch(subnet)), scope, f"subnet_ids[{i}]",
                f"{subnet!r} is not a subnet id")
    require(len(props.allowed_cidrs) >= 1, scope, "allowed_cidrs",
            "name at least one network that may connect, or nothing can reach the registry")
    for i, cidr in enumerate(props.allowed_cidrs):
        try:
            network = ipaddress.IPv4Network(cidr, strict=True)
        except ValueError as exc:
            raise PropsError(scope, f"allowed_cidrs[{i}]", f"{cidr!r} is not an IPv4 network CIDR ({exc})") from None
        require(network.is_private, scope, f"allowed_cidrs[{i}]",
                f"{cidr} is not a private range; the registry is never reachable from the internet")
    require(props.rpo_seconds >= MIN_GLOBAL_DB_RPO_SECONDS, scope, "rpo_seconds",
            f"{props.rpo_seconds}s is below Aurora's minimum rds.global_db_rpo of {MIN_GLOBAL_DB_RPO_SECONDS}s")
    require(7 <= props.backup_retention_days <= 35, scope, "backup_retention_days",
            f"{props.backup_retention_days} is outside 7 to 35 days")
    require(1 <= props.instance_count <= 15, scope, "instance_count", f"{props.instance_count} is outside 1 to 15")
    require(props.monitoring_interval_seconds in MONITORING_INTERVALS, scope, "monitoring_interval_seconds",
            f"{props.monitoring_interval_seconds} is not one of {', '.join(map(str, MONITORING_INTERVALS))} seconds")
    monitoring_role = props.monitoring_role_name or f"{props.cluster_identifier}-monitoring"
    require(bool(IAM_ROLE_NAME.fullmatch(monitoring_role)), scope, "monitoring_role_name",
            f"{monitoring_role!r} is not a valid IAM role name (at most 64 characters); set one explicitly")
    require(bool(RDS_INSTANCE_CLASS.fullmatch(props.instance_class)), scope, "instance_class",
            f"{props.instance_class!r} is not an RDS instance class like db.r7g.large")
    require(bool(AURORA_NAME.fullmatch(props.database_name)), scope, "database_name",
            f"{props.database_name!r} is not a PostgreSQL identifier (lowercase, letters, digits, _)")
    require(bool(AURORA_NAME.fullmatch(props.master_username))
            and props.master_username not in ("postgres", "rdsadmin"),
            scope, "master_username", f"{props.master_username!r} is not a usable PostgreSQL user name")


def _require_identifier(scope: Construct, prop: str, value: str) -> None:
    require(len(value) <= 63 and bool(RDS_IDENTIFIER.fullmatch(value)), scope, prop,
            f"{value!r} is not an RDS identifier (lowercase letters, digits and single hyphens, "
            "starting with a letter, at most 63 characters)")


def _require_engine_version(scope: Construct, version: str) -> None:
    require(bool(_ENGINE_VERSION.fullmatch(version)), scope, "engine_version",
            f"{version!r} is not an Aurora PostgreSQL version like 16.6")
