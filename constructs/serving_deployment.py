"""The serving runtime deployed onto a GPU node pool: a Kubernetes Deployment that tolerates the
pool's taint and selects its nodes, asks for whole GPUs, probes live/ready (never failover
health, which is for Route 53 and the drills), spreads across zones, drains gracefully, plus a
PodDisruptionBudget and a ClusterIP Service (HTTP and gRPC only), and on request a PodMonitor
for Prometheus.

Secure by default:
- the image is pinned by digest (`<repository>@sha256:<64 hex>`): a tag can be moved under a
  running fleet, a digest cannot;
- the runtime verifies the manifest's signature before it loads anything: the public key of the
  manifest signing key is a ConfigMap (`public.pem`), mounted read-only at
  `/etc/mlfleet/manifest-key` and passed as `--manifest-public-key`; a pod without it does not start;
- the namespace enforces the `restricted` Pod Security Standard; the pods run as non-root on a
  read-only root filesystem, with an `emptyDir` at /tmp as their only writable path (the
  runtime's image sets HOME and its working folder there: torch's caches and any temporary
  file; model artifacts are verified and loaded from memory, see runtime/sources.py);
- the service account mounts no Kubernetes API token: the runtime never calls the API (EKS Pod
  Identity injects its own token, GKE Workload Identity answers on the metadata server);
- a NetworkPolicy admits the HTTP and gRPC ports only from the load balancers' CIDRs, and the
  metrics port only from the monitoring namespace; any other ingress to the pods is denied.
  Egress stays open (object storage, KMS);
- Prometheus /metrics (model and version labels, GPU UUIDs and memory, process metrics) is served
  only on `metrics_port`, a container port named `metrics` that no Service lists, so the load
  balancer never reaches it; the HTTP port answers /metrics 404. A PodMonitor (Prometheus
  Operator) scrapes it when `pod_monitor` asks for one: like gpu_plumbing's ServiceMonitor it is
  opt-in, since Terraform reads the PodMonitor CRD from the cluster when it plans;
- management (pinning, model load/unload) is served only on `management_port`, bound to the
  pod's loopback and listed in no container or Service port: an operator reaches it through the
  Kubernetes API's port-forward (RBAC `pods/portforward` on the namespace). Its bearer token is
  the `token` key of the Secret `admin_token_secret`, which the platform team creates out of
  band (`kubectl create secret generic ...`) so that the token never enters Terraform state.
  The Secret is optional: without it the runtime starts with management disabled.

`replicas` applies at creation only: on failover the DR runbook scales the Deployment through
the scale subresource, so Terraform ignores `spec[0].replicas` afterwards and a later apply
does not scale a promoted region back down.

The construct does not configure the kubernetes provider; the caller does (one per cluster)."""
from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field

from cdktn import TerraformResourceLifecycle, Token
from cdktn_provider_kubernetes.config_map_v1 import ConfigMapV1, ConfigMapV1Metadata
from cdktn_provider_kubernetes.deployment_v1 import (
    DeploymentV1,
    DeploymentV1Metadata,
    DeploymentV1Spec,
    DeploymentV1SpecSelector,
    DeploymentV1SpecTemplate,
    DeploymentV1SpecTemplateMetadata,
    DeploymentV1SpecTemplateSpec,
    DeploymentV1SpecTemplateSpecContainer,
    DeploymentV1SpecTemplateSpecContainerLivenessProbe,
    DeploymentV1SpecTemplateSpecContainerLivenessProbeHttpGet,
    DeploymentV1SpecTemplateSpecContainerPort,
    DeploymentV1SpecTemplateSpecContainerReadinessProbe,
    DeploymentV1SpecTemplateSpecContainerReadinessProbeHttpGet,
    DeploymentV1SpecTemplateSpecContainerResources,
    DeploymentV1SpecTemplateSpecContainerSecurityContext,
    DeploymentV1SpecTemplateSpecContainerSecurityContextCapabilities,
    DeploymentV1SpecTemplateSpecContainerStartupProbe,
    DeploymentV1SpecTemplateSpecContainerStartupProbeHttpGet,
    DeploymentV1SpecTemplateSpecContainerVolumeMount,
    DeploymentV1SpecTemplateSpecSecurityContext,
    DeploymentV1SpecTemplateSpecSecurityContextSeccompProfile,
    DeploymentV1SpecTemplateSpecToleration,
    DeploymentV1SpecTemplateSpecTopologySpreadConstraint,
    DeploymentV1SpecTemplateSpecTopologySpreadConstraintLabelSelector,
    DeploymentV1SpecTemplateSpecVolume,
    DeploymentV1SpecTemplateSpecVolumeConfigMap,
    DeploymentV1SpecTemplateSpecVolumeEmptyDir,
    DeploymentV1SpecTemplateSpecVolumeSecret,
)
from cdktn_provider_kubernetes.manifest import Manifest
from cdktn_provider_kubernetes.namespace_v1 import NamespaceV1, NamespaceV1Metadata
from cdktn_provider_kubernetes.network_policy_v1 import (
    NetworkPolicyV1,
    NetworkPolicyV1Metadata,
    NetworkPolicyV1Spec,
    NetworkPolicyV1SpecIngress,
    NetworkPolicyV1SpecIngressFrom,
    NetworkPolicyV1SpecIngressFromIpBlock,
    NetworkPolicyV1SpecIngressFromNamespaceSelector,
    NetworkPolicyV1SpecIngressPorts,
    NetworkPolicyV1SpecPodSelector,
)
from cdktn_provider_kubernetes.pod_disruption_budget_v1 import (
    PodDisruptionBudgetV1,
    PodDisruptionBudgetV1Metadata,
    PodDisruptionBudgetV1Spec,
    PodDisruptionBudgetV1SpecSelector,
)
from cdktn_provider_kubernetes.service_account_v1 import ServiceAccountV1, ServiceAccountV1Metadata
from cdktn_provider_kubernetes.service_v1 import ServiceV1, ServiceV1Metadata, ServiceV1Spec, ServiceV1SpecPort
from constructs import Construct

from mlfleet.constructs.validation import (
    IMAGE_REFERENCE,
    KUBERNETES_LABEL_KEY,
    KUBERNETES_LABEL_VALUE,
    KUBERNETES_NAME,
    PropsError,
    require,
    require_kubernetes_labels,
)

_QUANTITY = re.compile(r"^\d+(\.\d+)?(m|Ki|Mi|Gi|Ti|k|M|G|T)?$")
RUNTIME_USER_ID = 10001  # the non-root user of the runtime's Dockerfiles
ADMIN_TOKEN_DIR = "/var/run/secrets/mlfleet/admin-token"
ADMIN_TOKEN_KEY = "token"
MANIFEST_KEY_DIR = "/etc/mlfleet/manifest-key"
MANIFEST_KEY_FILE = "public.pem"
SCRATCH_DIR = "/tmp"
POD_SECURITY_LABELS = {"pod-security.kubernetes.io/enforce": "restricted"}
# Set by the API server on every namespace to its name (Kubernetes 1.22+): a selector on it cannot be
# met by relabelling another namespace.
NAMESPACE_NAME_LABEL = "kubernetes.io/metadata.name"
METRICS_PORT_NAME = "metrics"
PROMETHEUS_OPERATOR_API = "monitoring.coreos.com/v1"


@dataclass(frozen=True, kw_only=True)
class ServingDeploymentProps:
    model_repository: str
    """Where the runtime reads the signed manifest and the approved models, e.g.
    `s3://mlfleet-prod-333333333333-eu-west-1/models/approved/` or, on GKE, `gs://<project>-<env>-models/models/approved/`."""
    region: str
    """Reported by failover health."""
    image: str
    """The runtime image pinned by digest alone: `<repository>@sha256:<64 lowercase hex>` (no tag)."""
    node_selector: dict[str, str]
    """Labels of the GPU pool's nodes, in the cloud's own pool label: `eks.amazonaws.com/nodegroup: <group>` or
    `cloud.google.com/gke-nodepool: <pool>`."""
    load_balancer_cidrs: tuple[str, ...]
    """Sources the NetworkPolicy admits to the HTTP and gRPC ports: the load balancers' subnets (an NLB on IP
    targets without client IP preservation) or, on GKE, Google's front-end and health-check ranges
    (`130.211.0.0/22`, `35.191.0.0/16`). Nothing else reaches the pods."""
    name: str = "mlfleet-runtime"
    """Name of the Deployment, its Service, PodDisruptionBudget and NetworkPolicy; default `mlfleet-runtime`."""
    namespace: str = "mlfleet"
    """The Kubernetes namespace; default `mlfleet`. With `create_namespace=False`, pass the `namespace_ref` of
    the deployment that creates it, so that Terraform creates the namespace first."""
    create_namespace: bool = True
    """Create the namespace (labelled to enforce the `restricted` Pod Security Standard). Default: `True`; when
    several deployments share one namespace, only the first creates it and the others pass `False`."""
    service_account: str = "mlfleet-runtime"
    """The pods' Kubernetes service account (the serving identity's); default `mlfleet-runtime`. With
    `create_service_account=False`, pass the `service_account_ref` of the deployment that creates it."""
    create_service_account: bool = True
    """Create the service account (it mounts no API token). Default: `True`; when several deployments share
    one, only the first creates it and the others pass `False`."""
    service_account_annotations: dict[str, str] = field(default_factory=dict)
    """Annotations on the service account: GKE Workload Identity names its Google service account
    (`iam.gke.io/gcp-service-account`); EKS Pod Identity needs none. Default: none."""
    replicas: int = 2
    """Runtime pods at creation; afterwards the DR runbooks own the count (see the module docstring).
    Default: `2`."""
    gpus_per_pod: int = 1
    """Whole GPUs per pod (`nvidia.com/gpu` limit); 0 runs on CPU nodes without the toleration. Default: `1`."""
    taint_key: str = "nvidia.com/gpu"
    """The GPU pool's NoSchedule taint; the pods tolerate it. Default: `nvidia.com/gpu`."""
    http_port: int = 8000
    """The runtime's HTTP port; default `8000`."""
    grpc_port: int = 8001
    """The runtime's gRPC port; default `8001`."""
    management_port: int = 8002
    """The runtime's management port, on the pod's loopback only (never a container or Service port); default
    `8002`."""
    metrics_port: int = 8003
    """The runtime's Prometheus /metrics port (`--metrics-port`), the container port named `metrics`: no Service
    lists it, and the NetworkPolicy admits it only from `monitoring_namespace`. Default `8003`."""
    monitoring_namespace: str = "monitoring"
    """The namespace of the Prometheus that scrapes the runtime, the only source the NetworkPolicy admits to the
    metrics port (by its `kubernetes.io/metadata.name` label); default `monitoring`, where kube-prometheus-stack
    (the operator whose ServiceMonitor `NvidiaGpuPlumbingProps.service_monitor` makes) usually runs."""
    pod_monitor: bool = False
    """Make a PodMonitor that scrapes the `metrics` port (needs the Prometheus Operator's CRD in the cluster
    before the plan); default `False`, as `NvidiaGpuPlumbingProps.service_monitor`."""
    pod_monitor_labels: dict[str, str] = field(default_factory=dict)
    """Labels the Prometheus Operator selects PodMonitors by (e.g. `release: kube-prometheus-stack`); only with
    `pod_monitor`. Default: none."""
    manifest_public_key_config_map: str = "mlfleet-manifest-key"
    """The ConfigMap whose `public.pem` is the manifest signing key's public key (PEM), mounted read-only and
    passed as `--manifest-public-key`; default `mlfleet-manifest-key`. Without `manifest_public_key_pem`, pass
    the `manifest_public_key_config_map_ref` of the deployment that creates it."""
    manifest_public_key_pem: str | None = None
    """Create that ConfigMap with this PEM (usually a KMS data source's attribute). Default: none, the
    ConfigMap is created by another deployment of the namespace."""
    admin_token_secret: str = "mlfleet-runtime-admin"
    """The Secret (key `token`) holding the management bearer token, created out of band; default
    `mlfleet-runtime-admin`."""
    scratch_size_limit: str = "2Gi"
    """Size limit of the `emptyDir` at /tmp, the pods' only writable path; default `2Gi`."""
    cpu_request: str = "2"
    """CPU each pod requests, and its limit: a serving pod gets exactly the CPU the scheduler reserved for it
    (see `_deployment_spec`); default `2`."""
    memory_request: str = "8Gi"
    """Memory each pod requests; default `8Gi`."""
    memory_limit: str = "16Gi"
    """Memory each pod may use; default `16Gi`."""
    pdb_min_available: int = 1
    """Pods that voluntary disruptions (node drains, upgrades) must leave running. Default: `1`."""
    zone_topology_key: str = "topology.kubernetes.io/zone"
    """The node label pods spread over; default `topology.kubernetes.io/zone`."""
    zone_max_skew: int = 1
    """Most pods one zone may have beyond another; default `1`."""
    termination_grace_period_s: int = 60
    """Seconds a pod may take to drain after SIGTERM; default `60`."""
    shutdown_delay_s: int = 5
    """Seconds the runtime keeps serving after SIGTERM with readiness false, while endpoints drop it. Default: `5`."""


class ServingDeployment(Construct):
    """The runtime on one GPU pool: namespace, service account, Deployment, budget, Service, NetworkPolicy
    and, on request, PodMonitor."""

    def __init__(self, scope: Construct, id: str, props: ServingDeploymentProps):
        super().__init__(scope, id)
        self._validate(props)
        self.props = props
        self.deployment_name = props.name
        self.service_name = props.name
        self.namespace = props.namespace
        self.http_port = props.http_port
        self.grpc_port = props.grpc_port
        self.metrics_port = props.metrics_port
        self.selector_labels = {"app.kubernetes.io/name": "mlfleet-runtime", "app.kubernetes.io/instance": props.name}
        self.labels = self.selector_labels

        # The namespace and service account as Terraform references when this construct creates them, so that
        # whatever names them (here, or a deployment sharing them) is created after them.
        self.namespace_resource: NamespaceV1 | None = None
        self.namespace_ref = props.namespace
        if props.create_namespace:
            self.namespace_resource = NamespaceV1(self, "namespace", metadata=[NamespaceV1Metadata(
                name=props.namespace, labels=dict(POD_SECURITY_LABELS))])
            self.namespace_ref = self.namespace_resource.metadata.get(0).name
        self.service_account_resource: ServiceAccountV1 | None = None
        self.service_account_ref = props.service_account
        if props.create_service_account:
            self.service_account_resource = ServiceAccountV1(
                self, "service-account", automount_service_account_token=False,
                metadata=ServiceAccountV1Metadata(name=props.service_account, namespace=self.namespace_ref,
                                                  labels=self.labels,
                                                  annotations=dict(props.service_account_annotations) or None))
            self.service_account_ref = self.service_account_resource.metadata.name
        metadata = {"name": props.name, "namespace": self.namespace_ref, "labels": self.labels}
        self.manifest_key_config_map: ConfigMapV1 | None = None
        self.manifest_public_key_config_map_ref = props.manifest_public_key_config_map
        if props.manifest_public_key_pem is not None:
            self.manifest_key_config_map = ConfigMapV1(self, "manifest-key", metadata=ConfigMapV1Metadata(
                name=props.manifest_public_key_config_map, namespace=self.namespace_ref,
                labels={"app.kubernetes.io/name": self.selector_labels["app.kubernetes.io/name"]}),
                data={MANIFEST_KEY_FILE: props.manifest_public_key_pem})
            self.manifest_public_key_config_map_ref = self.manifest_key_config_map.metadata.name

        self.deployment = DeploymentV1(
            self, "deployment", wait_for_rollout=False, metadata=DeploymentV1Metadata(**metadata),
            spec=self._deployment_spec(props, self.service_account_ref, self.manifest_public_key_config_map_ref),
            # the DR runbooks scale through the scale subresource; an apply must not undo a failover
            lifecycle=TerraformResourceLifecycle(ignore_changes=["spec[0].replicas"]))
        self.disruption_budget = PodDisruptionBudgetV1(
            self, "disruption-budget", metadata=PodDisruptionBudgetV1Metadata(**metadata),
            spec=PodDisruptionBudgetV1Spec(min_available=str(props.pdb_min_available),
                                           selector=PodDisruptionBudgetV1SpecSelector(match_labels=self.labels)))
        # Management is deliberately absent (it listens on the pod's loopback only), and so is metrics: this
        # Service is what the load balancer fronts, and Prometheus scrapes the pods directly.
        self.service = ServiceV1(self, "service", metadata=ServiceV1Metadata(**metadata), spec=ServiceV1Spec(
            selector=self.labels, type="ClusterIP",
            port=[ServiceV1SpecPort(name="http", port=props.http_port, target_port=str(props.http_port)),
                  ServiceV1SpecPort(name="grpc", port=props.grpc_port, target_port=str(props.grpc_port))]))
        # Selecting the pods denies every ingress the rule does not name.
        allowed = NetworkPolicyV1SpecIngress(
            from_=[NetworkPolicyV1SpecIngressFrom(ip_block=NetworkPolicyV1SpecIngressFromIpBlock(cidr=cidr))
                   for cidr in props.load_balancer_cidrs],
            ports=[NetworkPolicyV1SpecIngressPorts(port=str(port), protocol="TCP")
                   for port in (props.http_port, props.grpc_port)])
        scrape = NetworkPolicyV1SpecIngress(
            from_=[NetworkPolicyV1SpecIngressFrom(namespace_selector=NetworkPolicyV1SpecIngressFromNamespaceSelector(
                match_labels={NAMESPACE_NAME_LABEL: props.monitoring_namespace}))],
            ports=[NetworkPolicyV1SpecIngressPorts(port=str(props.metrics_port), protocol="TCP")])
        self.network_policy = NetworkPolicyV1(
            self, "network-policy", metadata=NetworkPolicyV1Metadata(**metadata), spec=NetworkPolicyV1Spec(
                pod_selector=NetworkPolicyV1SpecPodSelector(match_labels=self.labels), policy_types=["Ingress"],
                ingress=[allowed, scrape]))
        self.pod_monitor: Manifest | None = None
        if props.pod_monitor:
            self.pod_monitor = Manifest(self, "pod-monitor", manifest={
                "apiVersion": PROMETHEUS_OPERATOR_API, "kind": "PodMonitor",
                "metadata": {"name": props.name, "namespace": self.namespace_ref,
                             "labels": {**self.labels, **props.pod_monitor_labels}},
                "spec": {"selector": {"matchLabels": dict(self.labels)},
                         "podMetricsEndpoints": [{"port": METRICS_PORT_NAME, "path": "/metrics"}]}})

    def _deployment_spec(self, props: ServingDeploymentProps, service_account: str,
                         manifest_key_config_map: str) -> DeploymentV1Spec:
        # CPU limit = request: pods sharing a GPU node cannot take each other's CPU (pre- and post-processing,
        # the health endpoints that failover trusts), and with memory limit = request too a pod is Guaranteed
        # QoS (exclusive cores under the kubelet's static CPU manager, evicted last).
        limits = {"cpu": props.cpu_request, "memory": props.memory_limit}
        tolerations = []
        if props.gpus_per_pod:
            limits["nvidia.com/gpu"] = str(props.gpus_per_pod)
            tolerations.append(DeploymentV1SpecTemplateSpecToleration(key=props.taint_key, operator="Exists",
                                                                      effect="NoSchedule"))
        args = ["--model-repository", props.model_repository,
                # the manifest must carry a valid signature by this key, or nothing loads
                "--manifest-public-key", f"{MANIFEST_KEY_DIR}/{MANIFEST_KEY_FILE}", "--host", "0.0.0.0",
                "--http-port", str(props.http_port), "--grpc-port", str(props.grpc_port), "--region", props.region,
                "--management-port", str(props.management_port), "--management-host", "127.0.0.1",
                "--metrics-port", str(props.metrics_port),
                # a missing Secret starts the runtime with management disabled instead of crash-looping
                "--admin-token-file", f"{ADMIN_TOKEN_DIR}/{ADMIN_TOKEN_KEY}", "--admin-token-optional",
                "--shutdown-delay", str(props.shutdown_delay_s),
                # leave the kubelet a margin before it sends SIGKILL
                "--grace-period", str(props.termination_grace_period_s - props.shutdown_delay_s - 5)]
        container = DeploymentV1SpecTemplateSpecContainer(
            name="runtime", image=props.image, args=args,
            port=[DeploymentV1SpecTemplateSpecContainerPort(name="http", container_port=props.http_port),
                  DeploymentV1SpecTemplateSpecContainerPort(name="grpc", container_port=props.grpc_port),
                  DeploymentV1SpecTemplateSpecContainerPort(name=METRICS_PORT_NAME, container_port=props.metrics_port)],
            resources=DeploymentV1SpecTemplateSpecContainerResources(
                requests={"cpu": props.cpu_request, "memory": props.memory_request}, limits=limits),
            volume_mount=[
                DeploymentV1SpecTemplateSpecContainerVolumeMount(name="scratch", mount_path=SCRATCH_DIR),
                DeploymentV1SpecTemplateSpecContainerVolumeMount(name="admin-token", mount_path=ADMIN_TOKEN_DIR,
                                                                 read_only=True),
                DeploymentV1SpecTemplateSpecContainerVolumeMount(name="manifest-key", mount_path=MANIFEST_KEY_DIR,
                                                                 read_only=True)],
            # startup covers model download, verification and the canary; after that, live/ready only
            startup_probe=DeploymentV1SpecTemplateSpecContainerStartupProbe(
                http_get=DeploymentV1SpecTemplateSpecContainerStartupProbeHttpGet(path="/v2/health/live",
                                                                                  port=str(props.http_port)),
                period_seconds=5, failure_threshold=60),
            liveness_probe=DeploymentV1SpecTemplateSpecContainerLivenessProbe(
                http_get=DeploymentV1SpecTemplateSpecContainerLivenessProbeHttpGet(path="/v2/health/live",
                                                                                   port=str(props.http_port)),
                period_seconds=10, timeout_seconds=2, failure_threshold=3),
            readiness_probe=DeploymentV1SpecTemplateSpecContainerReadinessProbe(
                http_get=DeploymentV1SpecTemplateSpecContainerReadinessProbeHttpGet(path="/v2/health/ready",
                                                                                    port=str(props.http_port)),
                period_seconds=2, timeout_seconds=2, failure_threshold=1),
            security_context=DeploymentV1SpecTemplateSpecContainerSecurityContext(
                allow_privilege_escalation=False, read_only_root_filesystem=True, run_as_non_root=True,
                capabilities=DeploymentV1SpecTemplateSpecContainerSecurityContextCapabilities(drop=["ALL"])))
        volumes = [
            DeploymentV1SpecTemplateSpecVolume(name="scratch", empty_dir=DeploymentV1SpecTemplateSpecVolumeEmptyDir(
                size_limit=props.scratch_size_limit)),
            # optional: the pods start before (or without) the Secret; readable by the runtime's group (fsGroup)
            DeploymentV1SpecTemplateSpecVolume(name="admin-token", secret=DeploymentV1SpecTemplateSpecVolumeSecret(
                secret_name=props.admin_token_secret, optional=True, default_mode="0440")),
            # not optional: a pod that cannot verify the manifest must not start
            DeploymentV1SpecTemplateSpecVolume(
                name="manifest-key", config_map=DeploymentV1SpecTemplateSpecVolumeConfigMap(
                    name=manifest_key_config_map, optional=False, default_mode="0444"))]
        return DeploymentV1Spec(
            replicas=str(props.replicas),
            selector=DeploymentV1SpecSelector(match_labels=self.labels),
            template=DeploymentV1SpecTemplate(
                metadata=DeploymentV1SpecTemplateMetadata(labels=self.labels),
                spec=DeploymentV1SpecTemplateSpec(
                    service_account_name=service_account,
                    automount_service_account_token=False,
                    enable_service_links=False,
                    node_selector=dict(props.node_selector),
                    toleration=tolerations,
                    termination_grace_period_seconds=props.termination_grace_period_s,
                    topology_spread_constraint=[DeploymentV1SpecTemplateSpecTopologySpreadConstraint(
                        topology_key=props.zone_topology_key, max_skew=props.zone_max_skew,
                        when_unsatisfiable="ScheduleAnyway",
                        label_selector=[DeploymentV1SpecTemplateSpecTopologySpreadConstraintLabelSelector(
                            match_labels=self.labels)])],
                    security_context=DeploymentV1SpecTemplateSpecSecurityContext(
                        run_as_non_root=True, run_as_user=str(RUNTIME_USER_ID), run_as_group=str(RUNTIME_USER_ID),
                        fs_group=str(RUNTIME_USER_ID),
                        seccomp_profile=DeploymentV1SpecTemplateSpecSecurityContextSeccompProfile(
                            type="RuntimeDefault")),
                    container=[container],
                    volume=volumes)))

    def _validate(self, p: ServingDeploymentProps) -> None:
        require(bool(p.model_repository.strip()), self, "model_repository", "must not be empty")
        require(p.manifest_public_key_pem is None or bool(p.manifest_public_key_pem.strip()), self,
                "manifest_public_key_pem", "must not be empty: the runtime verifies the manifest with it")
        require(bool(p.region.strip()), self, "region", "must not be empty")
        require(bool(IMAGE_REFERENCE.fullmatch(p.image)), self, "image", _image_reason(p.image))
        for prop in ("name", "admin_token_secret", "monitoring_namespace"):
            require(bool(KUBERNETES_NAME.fullmatch(getattr(p, prop))), self, prop,
                    f"{getattr(p, prop)!r} must be a DNS label (lower-case letters, digits, '-', at most 63)")
        # a namespace or service account made by another deployment arrives as its Terraform reference
        for prop, created in (("namespace", p.create_namespace), ("service_account", p.create_service_account),
                              ("manifest_public_key_config_map", p.manifest_public_key_pem is not None)):
            value = getattr(p, prop)
            require((not created and Token.is_unresolved(value)) or bool(KUBERNETES_NAME.fullmatch(value)), self,
                    prop, f"{value!r} must be a DNS label (lower-case letters, digits, '-', at most 63)")
        for key in p.service_account_annotations:
            require(bool(KUBERNETES_LABEL_KEY.fullmatch(key)), self, "service_account_annotations",
                    f"{key!r} is not a valid annotation key")
        require(p.replicas >= 1, self, "replicas", f"must be at least 1, got {p.replicas}")
        require(0 <= p.gpus_per_pod <= 16, self, "gpus_per_pod", f"must be 0..16, got {p.gpus_per_pod}")
        require(bool(KUBERNETES_LABEL_KEY.fullmatch(p.taint_key)), self, "taint_key",
                f"{p.taint_key!r} is not a valid taint key")
        require(bool(p.node_selector), self, "node_selector",
                "must select the GPU pool's nodes by the cloud's pool label (at least one label)")
        for key, value in p.node_selector.items():
            require(bool(KUBERNETES_LABEL_KEY.fullmatch(key)),
                    self, "node_selector", f"{key!r} is not a valid label key")
            require(bool(KUBERNETES_LABEL_VALUE.fullmatch(value)), self, "node_selector",
                    f"{value!r} is not a valid label value")
        self._validate_cidrs(p.load_balancer_cidrs)
        for prop in ("http_port", "grpc_port", "management_port", "metrics_port"):
            require(1024 <= getattr(p, prop) <= 65535, self, prop,
                    f"must be 1024..65535 (the runtime runs as non-root), got {getattr(p, prop)}")
        require(p.http_port != p.grpc_port, self, "grpc_port", "must differ from http_port")
        require(p.management_port not in (p.http_port, p.grpc_port), self, "management_port",
                "must differ from http_port and grpc_port (the public ports refuse management calls)")
        require(p.metrics_port not in (p.http_port, p.grpc_port, p.management_port), self, "metrics_port",
                "must differ from http_port, grpc_port and management_port (a listener of its own, which the "
                "load balancer does not reach)")
        require(p.pod_monitor or not p.pod_monitor_labels, self, "pod_monitor_labels",
                "only apply with pod_monitor=True")
        require_kubernetes_labels(self, "pod_monitor_labels", p.pod_monitor_labels)
        for prop in ("cpu_request", "memory_request", "memory_limit", "scratch_size_limit"):
            require(bool(_QUANTITY.fullmatch(getattr(p, prop))), self, prop,
                    f"{getattr(p, prop)!r} is not a Kubernetes quantity")
        require(0 <= p.pdb_min_available < p.replicas, self, "pdb_min_available",
                f"must be below replicas ({p.replicas}) or node drains can never evict a pod, "
                f"got {p.pdb_min_available}")
        require(p.zone_max_skew >= 1, self, "zone_max_skew", f"must be at least 1, got {p.zone_max_skew}")
        require(p.shutdown_delay_s >= 0, self, "shutdown_delay_s", "must not be negative")
        require(p.termination_grace_period_s >= p.shutdown_delay_s + 10, self, "termination_grace_period_s",
                f"must leave at least 10 s after shutdown_delay_s ({p.shutdown_delay_s}) to drain, "
                f"got {p.termination_grace_period_s}")

    def _validate_cidrs(self, cidrs: tuple[str, ...]) -> None:
        require(len(cidrs) >= 1, self, "load_balancer_cidrs",
                "name at least one source: with none, the NetworkPolicy would admit no traffic at all")
        for i, cidr in enumerate(cidrs):
            try:
                network = ipaddress.ip_network(cidr, strict=True)
            except ValueError as exc:
                raise PropsError(self, f"load_balancer_cidrs[{i}]", f"{cidr!r} is not a CIDR block ({exc})") from None
            require(network.prefixlen > 0, self, f"load_balancer_cidrs[{i}]",
                    f"{cidr!r} admits every address; name the load balancers' ranges")


def _image_reason(image: str) -> str:
    """Why `image` is not `<repository>@sha256:<64 hex>`."""
    repository, _, digest = image.partition("@")
    if not digest:
        return f"{image!r} is not pinned by digest: give <repository>@sha256:<64 lowercase hex> (a tag can be moved)"
    if ":" in repository.rsplit("/", 1)[-1]:
        return (f"{image!r} names a tag and a digest: give the digest alone, <repository>@sha256:<64 lowercase hex>"
                " (with both, the tag is ignored and misleads readers)")
    return f"{image!r} is not <repository>@sha256:<64 lowercase hex> (a lower-case repository, a sha256 digest)"
