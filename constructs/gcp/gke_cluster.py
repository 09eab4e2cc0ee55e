"""A regional GKE Standard cluster for serving, private and hardened, with a small system pool.

- Regional: the control plane and the system pool span the region's zones.
- Private nodes (no public IPs; egress through Cloud NAT) and, by default, a private control
  plane endpoint reachable only from the listed networks.
- Workload Identity: pods get Google credentials from their Kubernetes service account through
  the GKE metadata server, never the node's.
- Dataplane V2 (eBPF, with Kubernetes network policy built in), intranode visibility (flow logs see
  pod-to-pod traffic on a node), shielded nodes, a release channel.
- Binary Authorization: pods run only what the project's policy admits (`ImageAdmissionPolicy`).
- Application-layer secrets encryption with a Cloud KMS key in the cluster's region; node boot
  disks encrypted with the same key.
- Nodes run as a dedicated service account with GKE's minimal node role, not the Compute
  default account (which holds Editor on the project).

The default node pool is removed: pools are separate resources (`GkeGpuNodePool`), and a
CPU system pool runs cluster add-ons, which cannot schedule on tainted GPU nodes.
"""
from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field, fields
from typing import Literal

from cdktn import TerraformOutput, TerraformResourceLifecycle, Token
from cdktn_provider_google.container_cluster import (
    ContainerCluster,
    ContainerClusterAuthenticatorGroupsConfig,
    ContainerClusterBinaryAuthorization,
    ContainerClusterDatabaseEncryption,
    ContainerClusterGatewayApiConfig,
    ContainerClusterIpAllocationPolicy,
    ContainerClusterMasterAuth,
    ContainerClusterMasterAuthClientCertificateConfig,
    ContainerClusterMasterAuthorizedNetworksConfig,
    ContainerClusterMasterAuthorizedNetworksConfigCidrBlocks,
    ContainerClusterNodeConfig,
    ContainerClusterNodeConfigShieldedInstanceConfig,
    ContainerClusterNodeConfigWorkloadMetadataConfig,
    ContainerClusterPrivateClusterConfig,
    ContainerClusterPrivateClusterConfigMasterGlobalAccessConfig,
    ContainerClusterReleaseChannel,
    ContainerClusterWorkloadIdentityConfig,
)
from cdktn_provider_google.container_node_pool import (
    ContainerNodePool,
    ContainerNodePoolAutoscaling,
    ContainerNodePoolManagement,
    ContainerNodePoolNodeConfig,
    ContainerNodePoolNodeConfigShieldedInstanceConfig,
    ContainerNodePoolNodeConfigWorkloadMetadataConfig,
    ContainerNodePoolUpgradeSettings,
)
from cdktn_provider_google.project_iam_member import ProjectIamMember
from cdktn_provider_google.service_account import ServiceAccount
from constructs import Construct

from mlfleet.constructs.gcp.gke_gpu_node_pool import GkeGpuNodePool, GkeGpuNodePoolProps, GkeGpuPoolOptions
from mlfleet.constructs.gcp.kms_key import grant_service_agent, require_key_id
from mlfleet.constructs.service_limits import GKE_CLUSTER_NAME_MAX
from mlfleet.constructs.validation import (
    GKE_SECURITY_GROUP,
    GOOGLE_PROJECT_ID,
    GOOGLE_PROJECT_NUMBER,
    GOOGLE_REGION,
    GOOGLE_RESOURCE_NAME,
    GOOGLE_SERVICE_ACCOUNT_ID,
    PropsError,
    require,
    require_google_labels,
)

RELEASE_CHANNELS = ("RAPID", "REGULAR", "STABLE", "EXTENDED")
NODE_ROLES = (
    # Logs, metrics and autoscaler signals: GKE's own minimal role for node service accounts.
    "roles/container.defaultNodeServiceAccount",
    # Pull container images from Artifact Registry.
    "roles/artifactregistry.reader",
)
CLOUD_PLATFORM_SCOPE = "https://www.googleapis.com/auth/cloud-platform"
NODE_METADATA = {"disable-legacy-endpoints": "true"}


@dataclass(frozen=True, kw_only=True)
class GkeClusterProps:
    project_id: str
    project_number: str
    """Names the GKE and Compute service agents that use the key."""
    region: str
    name: str
    network: str
    """The VPC's self link (`GcpRegionalNetwork.network_self_link`)."""
    subnetwork: str
    """The region's subnet self link (`GcpRegionalNetwork.subnetwork_self_link`)."""
    pods_range_name: str
    services_range_name: str
    kms_key_id: str
    """Crypto key in the cluster's region: Kubernetes secrets and node boot disks."""
    master_ipv4_cidr: str = "172.16.0.0/28"
    """The control plane's private /28 (unique per VPC: give each region's cluster its own).
    Default: `172.16.0.0/28`."""
    authorized_networks: dict[str, str] = field(default_factory=dict)
    """Display name -> CIDR allowed to reach the control plane (the nodes' subnet needs no entry). Default: none."""
    private_endpoint: bool = True
    """Only a private control plane endpoint (reach it from the VPC, a VPN or a bastion). Default: on."""
    release_channel: Literal["RAPID", "REGULAR", "STABLE", "EXTENDED"] = "REGULAR"
    """GKE release channel the control plane and nodes follow; default `REGULAR`."""
    node_service_account_id: str | None = None
    """Account id of the nodes' service account; default `<name>-nodes` (6 to 30 characters)."""
    system_machine_type: str = "e2-standard-4"
    """Machine type of the system pool (cluster add-ons); default `e2-standard-4`."""
    system_nodes_per_zone_min: int = 1
    """Fewest system nodes per zone; default `1`."""
    system_nodes_per_zone_max: int = 3
    """Most system nodes per zone; default `3`."""
    maintenance_start_time: str = "03:00"
    """Daily maintenance window start, UTC (HH:MM). Default: `03:00`."""
    rbac_security_group: str | None = None
    """Google Groups for RBAC: the Workspace group `gke-security-groups@<domain>` whose member groups RBAC
    bindings may name. Default: none (bindings name users and service accounts)."""
    labels: dict[str, str] = field(default_factory=dict)
    """Google Cloud labels on the cluster; default none."""


class GkeCluster(Construct):
    """A regional, private, Workload Identity GKE cluster (see module docstring)."""

    def __init__(self, scope: Construct, id_: str, props: GkeClusterProps):
        super().__init__(scope, id_)
        _validate(self, props)
        self._scope = scope
        self.project_id = props.project_id
        project = props.project_id
        labels = dict(props.labels) or None

        self.node_service_account = ServiceAccount(
            self, "node-service-account", project=project,
            account_id=props.node_service_account_id or f"{props.name}-nodes",
            display_name=f"GKE nodes of {props.name}")
        member = f"serviceAccount:{self.node_service_account.email}"
        node_roles = [ProjectIamMember(self, f"node-role-{role.split('/')[1].replace('.', '-')}", project=project,
                                       role=role, member=member) for role in NODE_ROLES]
        key_grants = [grant_service_agent(self, f"{service}-key-grant", props.kms_key_id, props.project_number,
                                          service) for service in ("container", "compute")]

        self.workload_pool = f"{project}.svc.id.goog"
        self.cluster = ContainerCluster(
            self, "cluster", project=project, name=props.name, location=props.region,
            network=props.network, subnetwork=props.subnetwork, networking_mode="VPC_NATIVE",
            ip_allocation_policy=ContainerClusterIpAllocationPolicy(
                cluster_secondary_range_name=props.pods_range_name,
                services_secondary_range_name=props.services_range_name),
            private_cluster_config=ContainerClusterPrivateClusterConfig(
                enable_private_nodes=True, enable_private_endpoint=props.private_endpoint,
                master_ipv4_cidr_block=props.master_ipv4_cidr,
                # A DR region's tooling reaches this control plane over the global VPC.
                master_global_access_config=ContainerClusterPrivateClusterConfigMasterGlobalAccessConfig(enabled=True)),
            master_authorized_networks_config=ContainerClusterMasterAuthorizedNetworksConfig(
                gcp_public_cidrs_access_enabled=False,
                cidr_blocks=[ContainerClusterMasterAuthorizedNetworksConfigCidrBlocks(
                    display_name=name, cidr_block=cidr)
                             for name, cidr in sorted(props.authorized_networks.items())] or None),
            # No client certificate: GKE's default, said explicitly (kubectl authenticates through IAM).
            master_auth=ContainerClusterMasterAuth(
                client_certificate_config=ContainerClusterMasterAuthClientCertificateConfig(
                    issue_client_certificate=False)),
            workload_identity_config=ContainerClusterWorkloadIdentityConfig(workload_pool=self.workload_pool),
            release_channel=ContainerClusterReleaseChannel(channel=props.release_channel),
            # Dataplane V2 enforces Kubernetes NetworkPolicy itself (no Calico add-on): the runtime's policy
            # admitting only the load balancer's ranges takes effect without network_policy being set.
            datapath_provider="ADVANCED_DATAPATH", enable_shielded_nodes=True, enable_legacy_abac=False,
            # Pod-to-pod traffic on one node goes through the VPC, so the subnet's flow logs see it too.
            enable_intranode_visibility=True,
            # Pods run only images the project's Binary Authorization policy admits (ImageAdmissionPolicy).
            binary_authorization=ContainerClusterBinaryAuthorization(
                evaluation_mode="PROJECT_SINGLETON_POLICY_ENFORCE"),
            authenticator_groups_config=ContainerClusterAuthenticatorGroupsConfig(
                security_group=props.rbac_security_group) if props.rbac_security_group else None,
            # The Gateway API CRDs and GKE's Gateway controller: the serving gateway (GkeServingGateway).
            gateway_api_config=ContainerClusterGatewayApiConfig(channel="CHANNEL_STANDARD"),
            database_encryption=ContainerClusterDatabaseEncryption(state="ENCRYPTED", key_name=props.kms_key_id),
            maintenance_policy={"daily_maintenance_window": {"start_time": props.maintenance_start_time}},
            # The default pool exists only while the cluster is created; its node settings still
            # apply then, so it gets the same hardening as every other pool.
            remove_default_node_pool=True, initial_node_count=1,
            node_config=ContainerClusterNodeConfig(
                service_account=self.node_service_account.email, oauth_scopes=[CLOUD_PLATFORM_SCOPE],
                boot_disk_kms_key=props.kms_key_id, metadata=NODE_METADATA,
                shielded_instance_config=ContainerClusterNodeConfigShieldedInstanceConfig(
                    enable_secure_boot=True, enable_integrity_monitoring=True),
                workload_metadata_config=ContainerClusterNodeConfigWorkloadMetadataConfig(mode="GKE_METADATA")),
            deletion_protection=True, resource_labels=labels,
            lifecycle=TerraformResourceLifecycle(ignore_changes=["node_config"]),
            depends_on=[*node_roles, *key_grants])

        self.system_pool = ContainerNodePool(
            self, "system-pool", project=project, cluster=self.cluster.id, location=props.region,
            name="system", initial_node_count=props.system_nodes_per_zone_min,
            autoscaling=ContainerNodePoolAutoscaling(min_node_count=props.system_nodes_per_zone_min,
                                                     max_node_count=props.system_nodes_per_zone_max),
            management=ContainerNodePoolManagement(auto_repair=True, auto_upgrade=True),
            upgrade_settings=ContainerNodePoolUpgradeSettings(max_surge=1, max_unavailable=0),
            node_config=ContainerNodePoolNodeConfig(
                machine_type=props.system_machine_type, service_account=self.node_service_account.email,
                oauth_scopes=[CLOUD_PLATFORM_SCOPE], boot_disk_kms_key=props.kms_key_id, metadata=NODE_METADATA,
                disk_type="pd-balanced", image_type="COS_CONTAINERD",
                labels={"mlfleet.io/pool": "system"}, resource_labels=labels,
                shielded_instance_config=ContainerNodePoolNodeConfigShieldedInstanceConfig(
                    enable_secure_boot=True, enable_integrity_monitoring=True),
                workload_metadata_config=ContainerNodePoolNodeConfigWorkloadMetadataConfig(mode="GKE_METADATA")),
            lifecycle=TerraformResourceLifecycle(ignore_changes=["initial_node_count"]))

        self.cluster_name: str = self.cluster.name
        """The cluster's name as a reference: pools made with it are created after the cluster."""
        self.cluster_id: str = self.cluster.id
        self.location = props.region
        self.kms_key_id = props.kms_key_id
        self.node_service_account_email: str = self.node_service_account.email
        for name, value, description in (
                ("gke_cluster_name", self.cluster.name, "GKE cluster of the region"),
                ("gke_cluster_location", props.region, "Location of the GKE cluster (its region)")):
            TerraformOutput(self, name, value=value, description=description).override_logical_id(name)

    def add_gpu_pool(self, id_: str, options: GkeGpuPoolOptions) -> GkeGpuNodePool:
        """A GPU node pool of this cluster, as CDK's `addNodegroupCapacity` adds one: its nodes run as
        the cluster's node service account and encrypt their boot disks with the cluster's key.

        The pool is created beside the cluster (`scope/id_`), not under it, so its Terraform address
        does not change with the cluster's."""
        settings = {f.name: getattr(options, f.name) for f in fields(options)}
        return GkeGpuNodePool(self._scope, id_, GkeGpuNodePoolProps(
            **settings, project_id=self.project_id, cluster=self.cluster_id, region=self.location,
            node_service_account=self.node_service_account_email, boot_disk_kms_key=self.kms_key_id))


def _validate(scope: Construct, p: GkeClusterProps) -> None:
    require(bool(GOOGLE_PROJECT_ID.fullmatch(p.project_id)), scope, "project_id",
            f"{p.project_id!r} is not a Google Cloud project id")
    require(bool(GOOGLE_PROJECT_NUMBER.fullmatch(p.project_number)), scope, "project_number",
            f"{p.project_number!r} is not a project number (digits only)")
    require(bool(GOOGLE_REGION.fullmatch(p.region)), scope, "region", f"{p.region!r} is not a Google Cloud region")
    require(bool(GOOGLE_RESOURCE_NAME.fullmatch(p.name)) and len(p.name) <= GKE_CLUSTER_NAME_MAX, scope, "name",
            f"{p.name!r}: lowercase letters, digits and '-', starting with a letter, at most {GKE_CLUSTER_NAME_MAX}")
    for prop in ("pods_range_name", "services_range_name"):
        require(bool(GOOGLE_RESOURCE_NAME.fullmatch(getattr(p, prop))), scope, prop,
                f"{getattr(p, prop)!r} is not a secondary range name")
    require_key_id(scope, "kms_key_id", p.kms_key_id, p.region)
    account_id = p.node_service_account_id or f"{p.name}-nodes"
    require(bool(GOOGLE_SERVICE_ACCOUNT_ID.fullmatch(account_id)), scope, "node_service_account_id",
            f"{account_id!r} is not a service account id (6 to 30 lowercase letters, digits, '-')"
            + ("; the default from name is too long, give one" if p.node_service_account_id is None else ""))
    master = _cidr(scope, "master_ipv4_cidr", p.master_ipv4_cidr)
    require(master.prefixlen == 28 and master.is_private, scope, "master_ipv4_cidr",
            f"{p.master_ipv4_cidr} is not a private /28")
    for name, cidr in p.authorized_networks.items():
        network = _cidr(scope, f"authorized_networks[{name!r}]", cidr)
        require(network.prefixlen > 0, scope, f"authorized_networks[{name!r}]",
                "0.0.0.0/0 opens the control plane to the internet")
    require(p.release_channel in RELEASE_CHANNELS, scope, "release_channel",
            f"{p.release_channel!r} is not one of {', '.join(RELEASE_CHANNELS)}")
    require(1 <= p.system_nodes_per_zone_min <= p.system_nodes_per_zone_max, scope, "system_nodes_per_zone_min",
            f"must be at least 1 (cluster add-ons need a node) and at most system_nodes_per_zone_max "
            f"({p.system_nodes_per_zone_max})")
    require(bool(_is_hhmm(p.maintenance_start_time)), scope, "maintenance_start_time",
            f"{p.maintenance_start_time!r} is not a time HH:MM")
    if p.rbac_security_group is not None:
        require(bool(GKE_SECURITY_GROUP.fullmatch(p.rbac_security_group)), scope, "rbac_security_group",
                f"{p.rbac_security_group!r} is not gke-security-groups@<domain> (GKE requires that name)")
    require_google_labels(scope, p.labels)
    if not Token.is_unresolved(p.network):
        require("/global/networks/" in p.network, scope, "network", f"{p.network!r} is not a VPC self link")


def _cidr(scope: Construct, prop: str, value: str) -> ipaddress.IPv4Network:
    try:
        return ipaddress.IPv4Network(value)
    except ValueError as error:
        raise PropsError(scope, prop, f"{value!r} is not an IPv4 CIDR block ({error})") from None


def _is_hhmm(value: str) -> bool:
    hours, _, minutes = value.partition(":")
    return len(value) == 5 and hours.isdigit() and minutes.isdigit() and int(hours) < 24 and int(minutes) < 60
