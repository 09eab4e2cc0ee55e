"""`<env>-<region>`: one region's failure domain — network, GPU cluster and pools, artifact
store, registry database member, identities and alarms. It names other regions only through
deterministic names from the environment, never through their state."""
from __future__ import annotations

from cdktn import TerraformStack
from constructs import Construct

from mlfleet.constructs.artifact_store import (ArtifactStore, ArtifactStoreProps, ObjectLockProps,
                                               ReplicaTarget)
from mlfleet.constructs.cross_cloud_artifact_copy import S3ToGcsTransferRole, S3ToGcsTransferRoleProps
from mlfleet.constructs.gpu_cluster import GpuCluster, GpuClusterProps
from mlfleet.constructs.gpu_node_pool import GpuNodePool, GpuNodePoolProps, ReservationTarget
from mlfleet.constructs.monitoring import (DatabaseLagWatch, GpuCapacityWatch, Monitoring, MonitoringProps,
                                          ReplicationWatch)
from mlfleet.constructs.network import ExistingNetwork, Network, NetworkProps
from mlfleet.constructs.registry_database import RegistryDatabase, RegistryDatabaseProps
from mlfleet.constructs.serving_identity import ServingIdentity, ServingIdentityProps
from mlfleet.constructs.system_node_pool import SystemNodePool, SystemNodePoolProps
from mlfleet.stacks import naming
from mlfleet.stacks.config import AwsRegion, Environment
from mlfleet.stacks.offerings import GpuOfferings
from mlfleet.stacks.stack_base import configure_aws_stack


class RegionalStack(TerraformStack):
    def __init__(self, scope: Construct, env: Environment, region: AwsRegion):
        super().__init__(scope, naming.stack_name(env.name, region.name))
        account = env.aws.account_id
        primary = region.role == "primary"
        configure_aws_stack(self, env, region.name, state_region=region.name, state_name=region.name)

        self.network = Network(self, "network", _network_props(region))
        cluster_name = naming.cluster_name(env.name, region.name)
        self.cluster = GpuCluster(self, "cluster", GpuClusterProps(
            name=cluster_name, account_id=account, region=region.name,
            subnet_ids=tuple(self.network.private_subnet_ids)))

        # GPU nodes are tainted: cluster add-ons (coredns, the autoscaler) run here instead.
        self.system_pool = SystemNodePool(self, "system-pool", SystemNodePoolProps(
            cluster_name=self.cluster.cluster_name, node_role_arn=self.cluster.node_role_arn,
            subnet_ids=tuple(self.network.private_subnet_ids), account_id=account,
            kms_key_arn=self.cluster.key.key_arn))

        offerings = GpuOfferings.load()
        self.pools = []
        for pool in env.gpu_pools:
            reservation = pool.reservations.get(region.name)
            subnets = tuple(self.network.private_subnet_ids)
            self.pools.append(GpuNodePool(self, f"pool-{pool.name}", GpuNodePoolProps(
                cluster_name=self.cluster.cluster_name, node_role_arn=self.cluster.node_role_arn,
                # EFA's cluster placement group lives in one AZ, and its traffic needs a
                # security group that admits its own members (the cluster's does).
                subnet_ids=subnets[:1] if pool.efa_interfaces else subnets,
                security_group_ids=(self.cluster.security_group_id,) if pool.efa_interfaces else (),
                name=naming.node_group_name(pool.name),
                instance_types=tuple(pool.instance_types), ami_type=pool.ami_type,
                capacity_type=pool.capacity_type,
                gpus_per_node=min(offerings.gpus(t) for t in pool.instance_types),
                min_size=pool.min_size, max_size=pool.max_size,
                standby=not primary, warm_size=pool.warm_standby, failover_size=pool.min_size,
                labels=dict(pool.labels), efa_interfaces=pool.efa_interfaces, account_id=account,
                reservation=ReservationTarget(
                    capacity_reservation_ids=(reservation.capacity_reservation_id,)
                    if reservation.capacity_reservation_id else (),
                    resource_group_arn=reservation.resource_group_arn) if reservation else None,
                kms_key_arn=self.cluster.key.key_arn)))

        store = env.artifact_store
        bucket = naming.artifact_bucket(env.name, account, region.name)
        self.artifacts = ArtifactStore(self, "artifacts", ArtifactStoreProps(
            bucket_name=bucket, account_id=account, region=region.name, role=region.role,
            key_alias=naming.artifact_key_alias(env.name),
            replicate_to=tuple(ReplicaTarget(region=r.name, bucket_name=naming.artifact_bucket(env.name, account, r.name))
                               for r in env.standbys if r.cloud == "aws") if primary else (),
            replication_time_control=store.replication_time_control,
            noncurrent_version_expiration_days=store.noncurrent_version_days,
            object_lock=ObjectLockProps(mode=store.object_lock.mode, days=store.object_lock.days)
            if store.object_lock else None,
            multi_region_key_arn=region.multi_region_key_arn,
            replication_role_name=naming.role_name(env.name, region.name, "replication")))

        db = env.registry_database
        replicates_to_gcp = env.gcp is not None and env.gcp.registry_source is not None
        self.registry = RegistryDatabase(self, "registry", RegistryDatabaseProps(
            role="primary" if primary else "secondary",
            cluster_identifier=naming.db_cluster_id(env.name, region.name),
            global_cluster_identifier=naming.global_cluster_id(env.name),
            account_id=account, vpc_id=self.network.vpc_id,
            subnet_ids=tuple(self.network.private_subnet_ids),
            # DMS reaches the writer from the Google Cloud VPC's private services range.
            allowed_cidrs=(region.network.effective_cidr,)
            + ((env.gcp.private_services_cidr,) if replicates_to_gcp else ()),
            logical_replication=replicates_to_gcp, rpo_seconds=env.targets.rpo,
            database_name=naming.registry_database(),
            engine_version=db.engine_version, instance_class=db.instance_class,
            instance_count=db.instances_primary if primary else db.instances_standby,
            backup_retention_days=db.backup_retention_days))

        self.identity = ServingIdentity(self, "identity", ServingIdentityProps(
            name_prefix=f"mlfleet-{env.name}", account_id=account, region=region.name,
            bucket_name=bucket, key_arn=self.artifacts.key.key_arn, cluster_name=self.cluster.cluster_name,
            training_principals=tuple(env.identities.of_cloud("training", "aws")),
            review_principals=tuple(env.identities.of_cloud("review", "aws")),
            models_prefix=store.models_prefix))

        # A Google Cloud standby pulls the primary's artifacts through Storage Transfer Service.
        self.gcs_transfer_role = S3ToGcsTransferRole(self, "gcs-transfer", S3ToGcsTransferRoleProps(
            role_name=naming.gcs_transfer_role(env.name, region.name), account_id=account, bucket_name=bucket,
            key_arn=self.artifacts.key.key_arn, models_prefix=store.models_prefix,
            transfer_agent_subject_id=env.gcp.storage_transfer_subject_id)) \
            if primary and env.regions_on("gcp") else None

        self.monitoring = Monitoring(self, "monitoring", MonitoringProps(
            name_prefix=f"mlfleet-{env.name}-{region.name}", account_id=account,
            replications=tuple(
                ReplicationWatch(source_bucket=bucket, destination_bucket=target.bucket_name,
                                 rule_id=self.artifacts.replication_rule_ids[target.region])
                for target in self.artifacts.replicate_to),
            database_lag=DatabaseLagWatch(cluster_identifier=naming.db_cluster_id(env.name, region.name),
                                          rpo_seconds=env.targets.rpo) if not primary else None,
            # A pool allowed to scale to zero here has no floor to alarm on.
            gpu_pools=tuple(GpuCapacityWatch(pool=pool.node_group_name, autoscaling_group_name=pool.autoscaling_group_name,
                                             minimum_in_service=pool.scaling_minimum)
                            for pool in self.pools if pool.scaling_minimum >= 1)))

def _network_props(region: AwsRegion) -> NetworkProps:
    network = region.network
    if network.existing is not None:
        existing = network.existing
        return NetworkProps(existing=ExistingNetwork(
            vpc_id=existing.vpc_id, private_subnet_ids=tuple(existing.private_subnet_ids), cidr=existing.cidr))
    zones = tuple(f"{region.name}{chr(ord('a') + i)}" for i in range(network.availability_zones))
    return NetworkProps(cidr=network.cidr, availability_zones=zones, nat_gateways=network.nat_gateways)
