"""`<env>-<region>-serving` for a Google Cloud region: the runtime on each serving pool of the
region's GKE cluster, behind a Gateway API regional external Application Load Balancer with a
Google-managed certificate, and the Route 53 record `<region>.<dns_name>` its health check probes.

GKE installs the NVIDIA drivers through the node pool (`gpu_driver_installation_config`) and runs
its own device plugin on GPU nodes: this stack installs no second one (it would fight GKE's).
Like the AWS serving stack it reads its cluster by its derived name and keeps its state in its region.
The runtime reads `gs://<bucket>/<models_prefix>approved/` and verifies the manifest with the public
key of version 1 of the environment's manifest signing key (in its multi-region key ring), read
with `google_kms_crypto_key_version`.
"""
from __future__ import annotations

from cdktn import Fn, TerraformOutput, TerraformStack
from cdktn_provider_google.data_google_client_config import DataGoogleClientConfig
from cdktn_provider_google.data_google_container_cluster import DataGoogleContainerCluster
from cdktn_provider_google.data_google_kms_crypto_key_version import DataGoogleKmsCryptoKeyVersion
from cdktn_provider_kubernetes.provider import KubernetesProvider
from cdktn_provider_kubernetes.service_v1 import ServiceV1, ServiceV1Metadata, ServiceV1Spec, ServiceV1SpecPort
from constructs import Construct

from mlfleet.constructs.gcp.serving_gateway import GkeServingGateway, GkeServingGatewayProps
from mlfleet.stacks.environment import Environment, GcpRegion, naming
from mlfleet.stacks.gcp_global_stack import manifest_signing_key_id
from mlfleet.stacks.global_stack import ROUTE53_HOME
from mlfleet.stacks.serving_stack import endpoint_selector, runtime_deployments
from mlfleet.stacks.stack_base import aws_provider, configure_backend, gcp_project, google_provider

GKE_NODE_POOL_LABEL = "cloud.google.com/gke-nodepool"
"""Set by GKE on every node of a node pool: the runtime selects its pool by it."""


class GcpServingStack(TerraformStack):
    def __init__(self, scope: Construct, env: Environment, region: GcpRegion):
        super().__init__(scope, naming.serving_stack_name(env.name, region.name))
        gcp = gcp_project(env)
        configure_backend(self, env, region.name, naming.serving_state_name(region.name))
        google_provider(self, env, region.name)
        aws_provider(self, env, ROUTE53_HOME)  # the Route 53 records of the endpoint

        cluster = DataGoogleContainerCluster(self, "cluster", name=naming.gke_cluster_name(env.name, region.name),
                                             location=region.name, project=gcp.project_id)
        client = DataGoogleClientConfig(self, "client")
        KubernetesProvider(self, "kubernetes", host=f"https://{cluster.endpoint}",
                           cluster_ca_certificate=Fn.base64decode(cluster.master_auth.get(0).cluster_ca_certificate),
                           token=client.access_token)

        hostname = env.endpoint(region)
        service_name = naming.runtime_endpoint_service()
        namespace = naming.serving_namespace()
        # The gateway's proxies are in the proxy-only subnet; Google's health checkers in its fixed ranges.
        self.gateway = GkeServingGateway(self, "endpoint", GkeServingGatewayProps(
            project_id=gcp.project_id, region=region.name, name=service_name, namespace=namespace,
            hostname=hostname, hosted_zone_id=env.serving.hosted_zone_id, service_name=service_name,
            proxy_subnet_cidr=region.network.proxy_cidr))

        serving_account = f"{naming.gcp_identity_prefix(env.name)}-serving@{gcp.project_id}.iam.gserviceaccount.com"
        image = f"{naming.gcp_image(env.name, gcp.project_id, region.name, env.serving.image.name)}@" \
                f"{env.serving.image.digest}"
        bucket = naming.gcs_artifact_bucket(env.name, gcp.project_id)
        # Version 1: Cloud KMS never rotates an asymmetric key by itself (see CloudKmsSigningKey).
        self.manifest_public_key = DataGoogleKmsCryptoKeyVersion(
            self, "manifest-signing-key", crypto_key=manifest_signing_key_id(env), version=1)
        self.deployments = runtime_deployments(
            self, env, region, image=image,
            model_repository=f"gs://{bucket}/{naming.approved_prefix(env.artifact_store.models_prefix)}",
            manifest_public_key_pem=self.manifest_public_key.public_key.get(0).pem,
            node_label_key=GKE_NODE_POOL_LABEL, load_balancer_cidrs=self.gateway.load_balancer_source_cidrs,
            service_account_annotations={"iam.gke.io/gcp-service-account": serving_account})

        # The gateway's backend: every runtime pod of the region, whichever pool it runs on.
        first = self.deployments[0]
        self.service = ServiceV1(self, "endpoint-service", metadata=ServiceV1Metadata(
            name=service_name, namespace=first.namespace_ref, labels=endpoint_selector(first)), spec=ServiceV1Spec(
            selector=endpoint_selector(first), type="ClusterIP",
            port=[ServiceV1SpecPort(name="http", port=first.http_port, target_port=str(first.http_port))]))
        # The gateway's objects live in the runtime's namespace and route to this Service.
        for manifest in (self.gateway.gateway, self.gateway.route, self.gateway.health_check_policy,
                         self.gateway.gateway_policy):
            manifest.depends_on = [self.service.fqn]
        TerraformOutput(self, "endpoint-hostname", value=hostname,
                        description="What the region's failover health check probes").override_logical_id("endpoint")
