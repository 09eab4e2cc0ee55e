"""`<env>-<region>` for a Google Cloud region: the region's failure domain — its Cloud KMS key,
subnet and NAT, GKE cluster and GPU pools, the registry's Cloud SQL primary or DR replica, and
the failover health check and alerts. Like the AWS regional stack, it keeps its state in its own
region and names everything elsewhere (the VPC, the primary instance) by deterministic names."""
from __future__ import annotations

from cdktn import TerraformStack
from constructs import Construct

from mlfleet.constructs.gcp.artifact_registry import ArtifactRegistryRepository, ArtifactRegistryRepositoryProps
from mlfleet.constructs.gcp.cloud_sql_registry import (
    CloudSqlInstanceSettings,
    CloudSqlRegistry,
    CloudSqlRegistryProps,
    CloudSqlReplica,
    CloudSqlReplicaProps,
)
from mlfleet.constructs.gcp.cross_cloud_registry import AuroraToCloudSqlReplica, AuroraToCloudSqlReplicaProps
from mlfleet.constructs.gcp.gke_cluster import GkeCluster, GkeClusterProps
from mlfleet.constructs.gcp.gke_gpu_node_pool import GkeGpuPoolOptions, GpuSharing, ReservationAffinity
from mlfleet.constructs.gcp.kms_key import CloudKmsKey, CloudKmsKeyProps
from mlfleet.constructs.gcp.monitoring import FailoverHealthCheck, GcpMonitoring, GcpMonitoringProps, ReplicaLagWatch
from mlfleet.constructs.gcp.network import GcpRegionalNetwork, GcpRegionalNetworkProps
from mlfleet.stacks.environment import Environment, GcpRegion, GpuPool, gke_node_locations, naming
from mlfleet.stacks.stack_base import configure_backend, gcp_project, google_labels, google_provider

REGION_KEY = "mlfleet"


class GcpRegionalStack(TerraformStack):
    def __init__(self, scope: Construct, env: Environment, region: GcpRegion):
        super().__init__(scope, naming.stack_name(env.name, region.name))
        gcp = gcp_project(env)
        project, number = gcp.project_id, gcp.project_number
        primary = region.role == "primary"
        labels = google_labels(env)
        configure_backend(self, env, region.name, region.name)
        google_provider(self, env, region.name)

        self.key = CloudKmsKey(self, "key", CloudKmsKeyProps(
            project_id=project, location=region.name, key_ring=naming.gcp_key_ring(env.name, region.name),
            key=REGION_KEY))

        network = region.network
        existing = network.existing
        network_name = env.gcp_network_name
        assert network_name is not None  # the environment has its gcp section
        self.network = GcpRegionalNetwork(self, "network", GcpRegionalNetworkProps(
            project_id=project, region=region.name, network_name=network_name,
            subnet_name=existing.subnet_name if existing else naming.gcp_subnet(env.name, region.name),
            subnet_cidr=network.cidr, pods_cidr=network.pods_cidr, services_cidr=network.services_cidr,
            pods_range_name=existing.pods_range_name if existing else None,
            services_range_name=existing.services_range_name if existing else None,
            existing_subnet=existing is not None,
            # An existing subnet comes with its region's proxy-only subnet (the environment names its range).
            proxy_subnet_cidr=None if existing else network.proxy_cidr))

        self.cluster = GkeCluster(self, "cluster", GkeClusterProps(
            project_id=project, project_number=number, region=region.name,
            name=naming.gke_cluster_name(env.name, region.name),
            network=self.network.network_self_link, subnetwork=self.network.subnetwork_self_link,
            pods_range_name=self.network.pods_range_name, services_range_name=self.network.services_range_name,
            kms_key_id=self.key.key_id, master_ipv4_cidr=env.gke_control_plane_cidr(region),
            release_channel=gcp.release_channel, authorized_networks=dict(gcp.control_plane_networks),
            node_service_account_id=naming.gke_node_service_account(env.name, region.name),
            rbac_security_group=gcp.rbac_security_group, labels=labels))

        self.pools = [self.cluster.add_gpu_pool(f"pool-{pool.name}", _pool_options(env, region, pool))
                      for pool in env.gpu_pools]

        # The runtime image: pushed to each region's repository (Artifact Registry does not replicate a
        # regional repository), pulled by the region's nodes.
        self.image_repository = ArtifactRegistryRepository(self, "image-repository", ArtifactRegistryRepositoryProps(
            project_id=project, project_number=number, location=region.name,
            repository_id=naming.artifact_registry_repository(env.name), kms_key_id=self.key.key_id,
            reader_members=(f"serviceAccount:{self.cluster.node_service_account.email}",)))

        settings = CloudSqlInstanceSettings(database_version=gcp.registry.database_version, tier=gcp.registry.tier,
                                            disk_size_gb=gcp.registry.disk_size_gb)
        instance = naming.cloud_sql_instance(env.name, region.name)
        self.registry: CloudSqlRegistry | None = None
        self.registry_replica: CloudSqlReplica | AuroraToCloudSqlReplica | None = None
        if primary:
            self.registry = CloudSqlRegistry(self, "registry", CloudSqlRegistryProps(
                project_id=project, project_number=number, region=region.name, instance_name=instance,
                private_network=self.network.network_self_link, kms_key_id=self.key.key_id, settings=settings,
                backup_location=_multi_region(region.name), labels=labels))
        elif env.primary.cloud == "gcp":
            self.registry_replica = CloudSqlReplica(self, "registry", CloudSqlReplicaProps(
                project_id=project, project_number=number, region=region.name, instance_name=instance,
                primary_instance_name=naming.cloud_sql_instance(env.name, env.primary.name),
                primary_region=env.primary.name, private_network=self.network.network_self_link,
                kms_key_id=self.key.key_id, settings=settings, labels=labels))
        elif gcp.registry_source is not None:
            # Cloud SQL cannot follow Aurora physically: DMS replicates logically (see the construct).
            source = gcp.registry_source
            self.registry_replica = AuroraToCloudSqlReplica(self, "registry", AuroraToCloudSqlReplicaProps(
                project_id=project, project_number=number, region=region.name, instance_name=instance,
                source_host=source.host, source_port=source.port, replication_user=source.replication_user,
                password_secret=source.password_secret or naming.registry_replication_secret(env.name),
                source_ca_certificate=source.ca_certificate, source_database=naming.registry_database(),
                private_network=self.network.network_self_link, kms_key_id=self.key.key_id, settings=settings,
                labels=labels))
        # Otherwise a standby of an AWS primary has no registry replica yet (the review reports it).

        self.monitoring = GcpMonitoring(self, "monitoring", GcpMonitoringProps(
            project_id=project, region=region.name, name_prefix=f"mlfleet-{env.name}-{region.name}",
            health_check=FailoverHealthCheck(path=env.serving.failover_health_path,
                                             public_hostname=env.endpoint(region)),
            replica_lag=(ReplicaLagWatch(instance_name=instance, rpo_seconds=env.targets.rpo),)
            if self.registry_replica else (),
            alert_emails=tuple(gcp.alert_emails), notification_channels=tuple(gcp.notification_channels),
            labels=labels))


def _multi_region(region: str) -> str:
    """Backups go to the multi-region around the instance, so they outlive its region; a region
    outside the three multi-regions keeps them in itself rather than move data across a border."""
    return {"us": "us", "europe": "eu", "asia": "asia"}.get(region.split("-")[0], region)


def _pool_options(env: Environment, region: GcpRegion, pool: GpuPool) -> GkeGpuPoolOptions:
    shape = pool.gcp
    assert shape is not None  # the environment's checks give every pool a shape once a region is on Google Cloud
    reservation = pool.reservations.get(region.name)
    affinity = ReservationAffinity.specific(reservation.name) if reservation and reservation.name is not None \
        else ReservationAffinity(type=shape.reservation_affinity)
    standby = region.role == "standby"
    return GkeGpuPoolOptions(
        name=naming.node_group_name(pool.name), node_locations=gke_node_locations(region, shape.accelerator_type),
        machine_type=shape.machine_type, accelerator_type=shape.accelerator_type,
        accelerator_count=shape.accelerator_count, min_size=pool.min_size, max_size=pool.max_size,
        driver_version=shape.driver_version,
        gpu_sharing=GpuSharing(strategy=shape.gpu_sharing.strategy,
                               max_shared_clients_per_gpu=shape.gpu_sharing.max_shared_clients_per_gpu)
        if shape.gpu_sharing else None,
        mig_partition_size=shape.mig_partition_size,
        # Queued provisioning takes capacity wherever Dynamic Workload Scheduler finds it.
        location_policy="ANY" if shape.queued_provisioning else shape.location_policy,
        spot=pool.spot, reservation=affinity, queued_provisioning=shape.queued_provisioning,
        standby=standby and not shape.queued_provisioning, warm_size=pool.warm_standby if standby else 0,
        failover_size=pool.min_size if standby and not shape.queued_provisioning else None,
        labels=dict(pool.labels), resource_labels=google_labels(env))
