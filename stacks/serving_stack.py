"""`<env>-<region>-serving`: what runs inside one AWS region's EKS cluster — the NVIDIA device plugin
and DCGM exporter on the GPU nodes, the AWS Load Balancer Controller, the runtime on each serving
pool, and the region's endpoint: a TLS network load balancer with a DNS-validated certificate and
the record `<region>.<dns_name>` that Route 53's failover health check probes.

The runtime reads the region's bucket's approved area (`s3://<bucket>/<models_prefix>approved/`)
and verifies the manifest's signature with the public key of the manifest signing key, which this
stack reads from the key (the multi-Region primary or its replica) under the signing alias in its
own region (`aws_kms_public_key`): no other region's state, and nothing of the primary region
once its replica exists.

Kubernetes objects need the cluster's endpoint and credentials, which exist only once
`<env>-<region>` is applied: this stack reads its cluster by its derived name through data
sources, so planning it never depends on the cluster being created in the same apply. Its state
lives in its own region, like the regional stack's.
"""
from __future__ import annotations

from cdktn import Fn, TerraformOutput, TerraformStack
from cdktn_provider_aws.data_aws_eks_cluster import DataAwsEksCluster
from cdktn_provider_aws.data_aws_eks_cluster_auth import DataAwsEksClusterAuth
from cdktn_provider_aws.data_aws_kms_public_key import DataAwsKmsPublicKey
from cdktn_provider_aws.route53_record import Route53Record
from cdktn_provider_helm.provider import HelmProvider, HelmProviderKubernetes
from cdktn_provider_kubernetes.provider import KubernetesProvider
from constructs import Construct

from mlfleet.constructs.aws.certificate import DnsValidatedCertificate, DnsValidatedCertificateProps
from mlfleet.constructs.aws.load_balancer_controller import AwsLoadBalancerController, AwsLoadBalancerControllerProps
from mlfleet.constructs.aws.network import plan_subnets
from mlfleet.constructs.aws.serving_load_balancer import NlbServingEndpoint, NlbServingEndpointProps
from mlfleet.constructs.gpu_plumbing import NvidiaGpuPlumbing, NvidiaGpuPlumbingProps
from mlfleet.constructs.serving_deployment import ServingDeployment, ServingDeploymentProps
from mlfleet.stacks.environment import AwsRegion, Environment, Region, naming
from mlfleet.stacks.stack_base import configure_aws_stack

EKS_NODE_GROUP_LABEL = "eks.amazonaws.com/nodegroup"
"""Set by EKS on every node of a managed node group: the runtime selects its pool by it."""
MANIFEST_KEY_CONFIG_MAP = "mlfleet-manifest-key"
"""The ConfigMap in the runtime's namespace that holds the manifest signing key's public key."""


class ServingStack(TerraformStack):
    def __init__(self, scope: Construct, env: Environment, region: AwsRegion):
        super().__init__(scope, naming.serving_stack_name(env.name, region.name))
        account = env.aws.account_id
        configure_aws_stack(self, env, region.name, state_region=region.name,
                            state_name=naming.serving_state_name(region.name))
        cluster_name = naming.cluster_name(env.name, region.name)
        cluster = DataAwsEksCluster(self, "cluster", name=cluster_name)
        auth = DataAwsEksClusterAuth(self, "cluster-auth", name=cluster_name)
        ca = Fn.base64decode(cluster.certificate_authority.get(0).data)
        # A token from the data source lasts 15 minutes: enough for this stack's apply.
        KubernetesProvider(self, "kubernetes", host=cluster.endpoint, cluster_ca_certificate=ca, token=auth.token)
        HelmProvider(self, "helm", kubernetes=HelmProviderKubernetes(host=cluster.endpoint,
                                                                     cluster_ca_certificate=ca, token=auth.token))

        # Every GPU pool gets the device plugin, serving or not: batch pods ask for GPUs too.
        self.gpu_plumbing = NvidiaGpuPlumbing(self, "gpu-plumbing", NvidiaGpuPlumbingProps(
            node_label_key=EKS_NODE_GROUP_LABEL,
            node_label_values=tuple(naming.node_group_name(p.name) for p in env.gpu_pools)))
        self.load_balancer_controller = AwsLoadBalancerController(
            self, "load-balancer-controller", AwsLoadBalancerControllerProps(
                cluster_name=cluster_name, account_id=account, region=region.name,
                vpc_id=cluster.vpc_config.get(0).vpc_id,
                role_name=naming.role_name(env.name, region.name, "lb-controller")))

        image = (f"{account}.dkr.ecr.{region.name}.amazonaws.com/"
                 f"{naming.image_repository(env.name, env.serving.image.name)}@{env.serving.image.digest}")
        bucket = naming.artifact_bucket(env.name, account, region.name)
        self.manifest_public_key = DataAwsKmsPublicKey(
            self, "manifest-signing-key", key_id=f"alias/{naming.manifest_signing_key_alias(env.name)}")
        self.deployments = runtime_deployments(
            self, env, region, image=image,
            model_repository=f"s3://{bucket}/{naming.approved_prefix(env.artifact_store.models_prefix)}",
            manifest_public_key_pem=self.manifest_public_key.public_key_pem,
            node_label_key=EKS_NODE_GROUP_LABEL, load_balancer_cidrs=_load_balancer_cidrs(region))

        hostname = env.endpoint(region)
        self.certificate = DnsValidatedCertificate(self, "certificate", DnsValidatedCertificateProps(
            domain_name=hostname, hosted_zone_id=env.serving.hosted_zone_id,
            subject_alternative_names=(env.serving.tls_name,)))
        first = self.deployments[0]
        self.endpoint = NlbServingEndpoint(self, "endpoint", NlbServingEndpointProps(
            name=naming.runtime_endpoint_service(), namespace=first.namespace,
            selector=endpoint_selector(first), http_port=first.http_port, grpc_port=first.grpc_port,
            certificate_arn=self.certificate.certificate_arn))
        # The controller reconciles the Service: it must run before the Service asks for a load balancer.
        assert first.namespace_resource is not None  # the first deployment creates the namespace
        self.endpoint.service.depends_on = [self.load_balancer_controller.release.fqn,
                                            first.namespace_resource.fqn]
        self.record = Route53Record(self, "endpoint-record", zone_id=env.serving.hosted_zone_id, name=hostname,
                                    type="CNAME", ttl=env.serving.record_ttl, records=[self.endpoint.hostname])
        TerraformOutput(self, "endpoint-hostname", value=hostname,
                        description="What the region's failover health check probes").override_logical_id("endpoint")


def endpoint_selector(deployment: ServingDeployment) -> dict[str, str]:
    """Every runtime pod of the region, whichever serving pool it runs on."""
    return {k: v for k, v in deployment.selector_labels.items() if k == "app.kubernetes.io/name"}


def runtime_deployments(scope: Construct, env: Environment, region: Region, *, image: str, model_repository: str,
                        manifest_public_key_pem: str, node_label_key: str, load_balancer_cidrs: tuple[str, ...],
                        service_account_annotations: dict[str, str] | None = None) -> list[ServingDeployment]:
    """One runtime Deployment per serving pool, all in the runtime's namespace (the first creates it,
    and the ConfigMap of the manifest's public key)."""
    resources, metrics = env.serving.resources, env.serving.metrics
    replicas = env.serving.replicas.deployed(region.role)
    deployments: list[ServingDeployment] = []
    for pool in env.serving_pools:
        # The first creates the namespace and service account; the others refer to them, so they wait.
        first = deployments[0] if deployments else None
        deployments.append(ServingDeployment(scope, f"runtime-{pool.name}", ServingDeploymentProps(
            model_repository=model_repository, region=region.name, image=image,
            name=naming.runtime_deployment(pool.name),
            namespace=first.namespace_ref if first else naming.serving_namespace(),
            service_account=first.service_account_ref if first else naming.runtime_service_account(),
            create_namespace=first is None, create_service_account=first is None,
            service_account_annotations=service_account_annotations or {},
            manifest_public_key_config_map=first.manifest_public_key_config_map_ref if first
            else MANIFEST_KEY_CONFIG_MAP,
            manifest_public_key_pem=None if first else manifest_public_key_pem,
            replicas=replicas, gpus_per_pod=resources.gpus,
            node_selector={node_label_key: naming.node_group_name(pool.name)},
            cpu_request=resources.cpu, memory_request=resources.memory, memory_limit=resources.memory_limit,
            pdb_min_available=min(1, replicas - 1), load_balancer_cidrs=load_balancer_cidrs,
            monitoring_namespace=metrics.namespace, pod_monitor=metrics.pod_monitor,
            pod_monitor_labels=dict(metrics.pod_monitor_labels))))
    return deployments


def _load_balancer_cidrs(region: AwsRegion) -> tuple[str, ...]:
    """Where the NLB's nodes send from: it lands in the public subnets, and with IP targets and no
    client-IP preservation the runtime sees their private addresses. An imported network's subnets
    are not known here: its whole CIDR is admitted (documented)."""
    network = region.network
    if network.cidr is None:
        return (network.effective_cidr,)
    return tuple(str(n) for n in plan_subnets(network.cidr, network.availability_zones).public)
