"""`<env>-<region>`: one region's failure domain — network, GPU cluster and pools, artifact
store, registry database member, identities and alarms. It names other regions only through
deterministic names from the environment, never through their state."""
from __future__ import annotations

from cdktn import TerraformStack
from constructs import Construct

from mlfleet.constructs.acknowledgements import acknowledge
from mlfleet.constructs.aws.artifact_audit_trail import ArtifactAuditTrail, ArtifactAuditTrailProps
from mlfleet.constructs.aws.aurora_registry import AuroraRegistryDatabase, AuroraRegistryDatabaseProps
from mlfleet.constructs.aws.dr_lock_table import DrLockTable, DrLockTableProps
from mlfleet.constructs.aws.eks_cluster import AccessEntry, EksCluster, EksClusterProps
from mlfleet.constructs.aws.eks_gpu_node_pool import EksGpuPoolOptions, Reservation
from mlfleet.constructs.aws.gcs_transfer_role import S3ToGcsTransferRole, S3ToGcsTransferRoleProps
from mlfleet.constructs.aws.image_repository import (
    EcrImageRepository,
    EcrImageRepositoryProps,
    EcrReplicaTemplate,
    EcrReplicaTemplateProps,
)
from mlfleet.constructs.aws.kms_key import KmsKey, KmsKeyProps
from mlfleet.constructs.aws.manifest_signing_key import (
    ManifestSigningGrants,
    ManifestSigningKey,
    ManifestSigningKeyAlias,
    ManifestSigningKeyProps,
    SigningKeyReplica,
)
from mlfleet.constructs.aws.monitoring import (
    CloudWatchMonitoring,
    CloudWatchMonitoringProps,
    DatabaseLagWatch,
    GpuCapacityWatch,
    ReplicationWatch,
)
from mlfleet.constructs.aws.network import ExistingNetwork, FlowLogs, VpcNetwork, VpcNetworkProps
from mlfleet.constructs.aws.s3_artifact_store import (
    ObjectLockProps,
    ReplicaTarget,
    S3ArtifactStore,
    S3ArtifactStoreProps,
)
from mlfleet.constructs.aws.serving_identity import IamServingIdentity, IamServingIdentityProps
from mlfleet.stacks.environment import AwsRegion, Environment, naming
from mlfleet.stacks.environment import Reservation as PoolReservation
from mlfleet.stacks.environment.checks import gpus_per_node
from mlfleet.stacks.stack_base import aws_provider, configure_aws_stack, gcp_project

EKS_ACCESS_POLICY_PREFIX = "arn:aws:eks::aws:cluster-access-policy/"


class RegionalStack(TerraformStack):
    def __init__(self, scope: Construct, env: Environment, region: AwsRegion):
        super().__init__(scope, naming.stack_name(env.name, region.name))
        account = env.aws.account_id
        primary = region.role == "primary"
        configure_aws_stack(self, env, region.name, state_region=region.name, state_name=region.name)

        self.network = VpcNetwork(self, "network", _network_props(env, region))
        flow = region.network.flow_logs
        if region.network.existing is None and not flow.enabled:
            assert flow.reason is not None  # the model requires a reason to turn them off
            # The environment's reason is the exception to MLF044 (flow logs), shown in the review.
            acknowledge(self.network, "MLF044", flow.reason)
        cluster_name = naming.cluster_name(env.name, region.name)
        self.cluster = EksCluster(self, "cluster", EksClusterProps(
            name=cluster_name, account_id=account, region=region.name,
            subnet_ids=tuple(self.network.private_subnet_ids), access_entries=_access_entries(env)))

        # GPU nodes are tainted: cluster add-ons (coredns, the autoscaler) run here instead.
        self.system_pool = self.cluster.add_system_pool("system-pool")

        self.pools = []
        for pool in env.gpu_pools:
            reservation = pool.reservations.get(region.name)
            self.pools.append(self.cluster.add_gpu_pool(f"pool-{pool.name}", EksGpuPoolOptions(
                name=naming.node_group_name(pool.name),
                instance_types=tuple(pool.instance_types), ami_type=pool.ami_type,
                capacity_type=pool.capacity_type,
                gpus_per_node=gpus_per_node(pool, "aws"),
                min_size=pool.min_size, max_size=pool.max_size,
                standby=not primary, warm_size=pool.warm_standby, failover_size=pool.min_size,
                labels=dict(pool.labels), efa_interfaces=pool.efa_interfaces,
                reservation=_reservation(pool.capacity_type, reservation) if reservation else None)))

        store = env.artifact_store
        bucket = naming.artifact_bucket(env.name, account, region.name)
        self.artifacts = S3ArtifactStore(self, "artifacts", S3ArtifactStoreProps(
            bucket_name=bucket, account_id=account, region=region.name, role=region.role,
            key_alias=naming.artifact_key_alias(env.name), models_prefix=store.models_prefix,
            replicate_to=tuple(ReplicaTarget(region=r.name,
                                             bucket_name=naming.artifact_bucket(env.name, account, r.name))
                               for r in env.standbys if r.cloud == "aws") if primary else (),
            replication_time_control=store.replication_time_control,
            noncurrent_version_expiration_days=store.noncurrent_version_days,
            object_lock=ObjectLockProps(mode=store.object_lock.mode, days=store.object_lock.days)
            if store.object_lock else None,
            multi_region_key_arn=region.multi_region_key_arn,
            replication_role_name=naming.role_name(env.name, region.name, "replication"),
            # Only this region's review role writes the approved area (the bucket policy's guard).
            approved_writer_arns=(_role_arn(env, region.name, "review"),)))

        # Object-level record of the region's artifacts (approvals, reads), kept in the region.
        self.artifact_audit = ArtifactAuditTrail(self, "artifact-audit", ArtifactAuditTrailProps(
            trail_name=naming.artifact_audit_trail(env.name, region.name), account_id=account,
            audited_bucket_names=(bucket,),
            log_bucket_name=naming.artifact_audit_bucket(env.name, account, region.name),
            key_alias=naming.artifact_audit_key_alias(env.name)))

        self.signing_key = _signing_key(self, env, region)

        self.image_repository = _image_repository(self, env, region)

        # The DR runbooks' run lock, in every region a runbook may move traffic to (a single-region
        # environment has no runbook to lock).
        self.dr_lock: DrLockTable | None = None
        if len(env.regions) > 1:
            lock_key = KmsKey(self, "dr-lock-key", KmsKeyProps(
                alias=naming.dr_lock_key_alias(env.name), account_id=account,
                description=f"mlfleet {env.name} DR run locks"))
            self.dr_lock = DrLockTable(self, "dr-lock", DrLockTableProps(
                table_name=naming.dr_lock_table(env.name), kms_key_arn=lock_key.key_arn,
                key_attribute=naming.DR_LOCK_KEY))

        db = env.registry_database
        gcp = env.gcp
        replicates_to_gcp = gcp is not None and gcp.registry_source is not None
        self.registry = AuroraRegistryDatabase(self, "registry", AuroraRegistryDatabaseProps(
            role="primary" if primary else "secondary",
            cluster_identifier=naming.db_cluster_id(env.name, region.name),
            global_cluster_identifier=naming.global_cluster_id(env.name),
            account_id=account, vpc_id=self.network.vpc_id,
            subnet_ids=tuple(self.network.private_subnet_ids),
            # DMS reaches the writer from the Google Cloud VPC's private services range.
            allowed_cidrs=(region.network.effective_cidr,)
            + ((gcp.private_services_cidr,) if gcp is not None and replicates_to_gcp else ()),
            logical_replication=replicates_to_gcp, rpo_seconds=env.targets.rpo,
            database_name=naming.registry_database(),
            engine_version=db.engine_version, instance_class=db.instance_class,
            instance_count=db.instances_primary if primary else db.instances_standby,
            backup_retention_days=db.backup_retention_days))

        self.identity = IamServingIdentity(self, "identity", IamServingIdentityProps(
            name_prefix=f"mlfleet-{env.name}", account_id=account, region=region.name,
            artifacts=self.artifacts, cluster_name=self.cluster.cluster_name,
            training_principals=tuple(env.identities.of_cloud("training", "aws")),
            review_principals=tuple(env.identities.of_cloud("review", "aws")),
            signing_key=self.signing_key))

        # A Google Cloud standby pulls the primary's artifacts through Storage Transfer Service.
        self.gcs_transfer_role: S3ToGcsTransferRole | None = None
        if primary and env.regions_on("gcp"):
            subject_id = gcp_project(env).storage_transfer_subject_id
            assert subject_id is not None  # the checks require it of an AWS primary with Google Cloud standbys
            self.gcs_transfer_role = S3ToGcsTransferRole(self, "gcs-transfer", S3ToGcsTransferRoleProps(
                role_name=naming.gcs_transfer_role(env.name, region.name), account_id=account, bucket_name=bucket,
                key_arn=self.artifacts.key.key_arn, models_prefix=store.models_prefix,
                transfer_agent_subject_id=subject_id))

        self.monitoring = CloudWatchMonitoring(self, "monitoring", CloudWatchMonitoringProps(
            name_prefix=f"mlfleet-{env.name}-{region.name}", account_id=account,
            replications=ReplicationWatch.of_store(self.artifacts),
            database_lag=DatabaseLagWatch(cluster_identifier=naming.db_cluster_id(env.name, region.name),
                                          rpo_seconds=env.targets.rpo) if not primary else None,
            # A pool allowed to scale to zero here has no floor to alarm on.
            gpu_pools=tuple(GpuCapacityWatch.of_pool(pool) for pool in self.pools if pool.scaling_minimum >= 1)))


def _role_arn(env: Environment, region: str, purpose: str) -> str:
    return f"arn:aws:iam::{env.aws.account_id}:role/{naming.role_name(env.name, region, purpose)}"


def _signing_key(stack: TerraformStack, env: Environment, region: AwsRegion) -> ManifestSigningGrants:
    """The manifest signing key review signs with in this region. The primary's stack makes the
    multi-Region key and its replica in every AWS standby (see ManifestSigningKey for why there);
    a standby names its replica by the alias."""
    alias = naming.manifest_signing_key_alias(env.name)
    if region.role != "primary":
        return ManifestSigningKeyAlias(alias=alias, account_id=env.aws.account_id, region=region.name)
    aws_regions = [r.name for r in env.regions_on("aws")]
    return ManifestSigningKey(stack, "manifest-signing-key", ManifestSigningKeyProps(
        alias=alias, account_id=env.aws.account_id, region=region.name,
        signer_role_arns=tuple(_role_arn(env, r, "review") for r in aws_regions),
        replicas=tuple(SigningKeyReplica(region=r, provider=aws_provider(stack, env, r, alias=r))
                       for r in aws_regions if r != region.name),
        description=f"mlfleet {env.name} manifest signing key"))


def _access_entries(env: Environment) -> tuple[AccessEntry, ...]:
    """Deployers administer the cluster (Terraform applies the serving stack as one of them);
    operators edit the runtime's namespace only: scale its Deployments, port-forward to a pod."""
    identities = env.identities
    return tuple(AccessEntry(principal_arn=arn, policy_arn=f"{EKS_ACCESS_POLICY_PREFIX}AmazonEKSClusterAdminPolicy",
                             scope="cluster") for arn in identities.deployer_principals) + tuple(
        AccessEntry(principal_arn=arn, policy_arn=f"{EKS_ACCESS_POLICY_PREFIX}AmazonEKSEditPolicy",
                    scope="namespace", namespaces=(naming.serving_namespace(),))
        for arn in identities.operator_principals if arn not in identities.deployer_principals)


def _image_repository(stack: TerraformStack, env: Environment, region: AwsRegion) -> EcrImageRepository | None:
    """The runtime image: pushed to the primary's repository, which ECR replicates to every AWS
    standby; a standby's repository is made by replication, with the settings of its template."""
    account = env.aws.account_id
    image = env.serving.image
    name = naming.image_repository(env.name, image.name)
    key = KmsKey(stack, "image-key", KmsKeyProps(alias=naming.image_key_alias(env.name), account_id=account,
                                                 description=f"mlfleet {env.name} runtime images"))
    if region.role == "primary":
        return EcrImageRepository(stack, "image-repository", EcrImageRepositoryProps(
            name=name, account_id=account, kms_key_arn=key.key_arn,
            replicate_to=tuple(r.name for r in env.standbys if r.cloud == "aws"),
            manage_registry_replication=image.manage_registry_replication))
    EcrReplicaTemplate(stack, "image-replica-template", EcrReplicaTemplateProps(
        repository_name=name, account_id=account, region=region.name, kms_key_arn=key.key_arn,
        role_name=naming.role_name(env.name, region.name, "ecr-replica")))
    return None


def _network_props(env: Environment, region: AwsRegion) -> VpcNetworkProps:
    network = region.network
    if network.existing is not None:
        existing = network.existing
        return VpcNetworkProps.import_existing(ExistingNetwork(
            vpc_id=existing.vpc_id, private_subnet_ids=tuple(existing.private_subnet_ids), cidr=existing.cidr))
    zones = tuple(f"{region.name}{chr(ord('a') + i)}" for i in range(network.availability_zones))
    assert network.cidr is not None  # the environment model gives cidr or existing
    account, flow = env.aws.account_id, network.flow_logs
    return VpcNetworkProps.create(
        cidr=network.cidr, availability_zones=zones, nat_gateways=network.nat_gateways, account_id=account,
        # The endpoint policy admits the region's artifact bucket and Terraform state (a deployer inside the VPC).
        s3_buckets=(naming.artifact_bucket(env.name, account, region.name), naming.state_bucket(account, region.name)),
        flow_logs=FlowLogs(account_id=account, name_prefix=f"mlfleet-{env.name}-{region.name}",
                           retention_days=flow.retention_days, traffic_type=flow.traffic_type)
        if flow.enabled else None)


def _reservation(capacity_type: str, reservation: PoolReservation) -> Reservation:
    if reservation.resource_group_arn is not None:
        return Reservation.resource_group(reservation.resource_group_arn)
    assert reservation.capacity_reservation_id is not None  # the environment model holds one or the other
    if capacity_type == "CAPACITY_BLOCK":
        return Reservation.capacity_block(reservation.capacity_reservation_id)
    return Reservation.odcr(reservation.capacity_reservation_id)
