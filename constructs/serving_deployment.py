"""The serving runtime deployed onto a GPU node pool: a Kubernetes Deployment that tolerates the
pool's taint and selects its nodes, asks for whole GPUs, probes live/ready (never failover
health, which is for Route 53 and the drills), spreads across zones, drains gracefully, plus a
PodDisruptionBudget and a ClusterIP Service.

The construct does not configure the kubernetes provider; the caller does (one per cluster)."""
from __future__ import annotations

import re
from dataclasses import dataclass, field

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
    DeploymentV1SpecTemplateSpecSecurityContext,
    DeploymentV1SpecTemplateSpecSecurityContextSeccompProfile,
    DeploymentV1SpecTemplateSpecToleration,
    DeploymentV1SpecTemplateSpecTopologySpreadConstraint,
    DeploymentV1SpecTemplateSpecTopologySpreadConstraintLabelSelector,
)
from cdktn_provider_kubernetes.pod_disruption_budget_v1 import (
    PodDisruptionBudgetV1,
    PodDisruptionBudgetV1Metadata,
    PodDisruptionBudgetV1Spec,
    PodDisruptionBudgetV1SpecSelector,
)
from cdktn_provider_kubernetes.service_v1 import ServiceV1, ServiceV1Metadata, ServiceV1Spec, ServiceV1SpecPort
from constructs import Construct

from mlfleet.constructs.validation import KUBERNETES_LABEL_KEY, KUBERNETES_LABEL_VALUE, KUBERNETES_NAME, require

_QUANTITY = re.compile(r"^\d+(\.\d+)?(m|Ki|Mi|Gi|Ti|k|M|G|T)?$")
RUNTIME_USER_ID = 10001  # the non-root user of the runtime's Dockerfiles


@dataclass(frozen=True, kw_only=True)
class ServingDeploymentProps:
    model_repository: str
    """Where the runtime reads manifest and models, e.g. `s3://mlfleet-prod-models-eu-west-1/models/` or, on
    GKE, `gs://<project>-<env>-models/models/champion/`."""
    region: str
    """Reported by failover health."""
    image: str = "mlfleet/runtime:0.1.0-cuda"
    """The runtime image; default `mlfleet/runtime:0.1.0-cuda`."""
    name: str = "mlfleet-runtime"
    """Name of the Deployment, its Service and its PodDisruptionBudget; default `mlfleet-runtime`."""
    namespace: str = "mlfleet"
    """The Kubernetes namespace; default `mlfleet`."""
    service_account: str = "mlfleet-runtime"
    """The pods' Kubernetes service account (the serving identity's); default `mlfleet-runtime`."""
    replicas: int = 2
    """Runtime pods; default `2`."""
    gpus_per_pod: int = 1
    """Whole GPUs per pod (`nvidia.com/gpu` limit); 0 runs on CPU nodes without the toleration. Default: `1`."""
    taint_key: str = "nvidia.com/gpu"
    """The GPU pool's NoSchedule taint; the pods tolerate it. Default: `nvidia.com/gpu`."""
    node_selector: dict[str, str] = field(default_factory=lambda: {"mlfleet.io/pool": "gpu"})
    """Labels of the GPU pool's nodes; default `mlfleet.io/pool=gpu`."""
    http_port: int = 8000
    """The runtime's HTTP port; default `8000`."""
    grpc_port: int = 8001
    """The runtime's gRPC port; default `8001`."""
    cpu_request: str = "2"
    """CPU each pod requests; default `2`."""
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
    def __init__(self, scope: Construct, id: str, props: ServingDeploymentProps):
        super().__init__(scope, id)
        self._validate(props)
        self.props = props
        self.labels = {"app.kubernetes.io/name": "mlfleet-runtime", "app.kubernetes.io/instance": props.name}
        metadata = {"name": props.name, "namespace": props.namespace, "labels": self.labels}

        self.deployment = DeploymentV1(self, "deployment", wait_for_rollout=False,
                                       metadata=DeploymentV1Metadata(**metadata),
                                       spec=self._deployment_spec(props))
        self.disruption_budget = PodDisruptionBudgetV1(
            self, "disruption-budget", metadata=PodDisruptionBudgetV1Metadata(**metadata),
            spec=PodDisruptionBudgetV1Spec(min_available=str(props.pdb_min_available),
                                           selector=PodDisruptionBudgetV1SpecSelector(match_labels=self.labels)))
        self.service = ServiceV1(self, "service", metadata=ServiceV1Metadata(**metadata), spec=ServiceV1Spec(
            selector=self.labels, type="ClusterIP",
            port=[ServiceV1SpecPort(name="http", port=props.http_port, target_port=str(props.http_port)),
                  ServiceV1SpecPort(name="grpc", port=props.grpc_port, target_port=str(props.grpc_port))]))

    def _deployment_spec(self, props: ServingDeploymentProps) -> DeploymentV1Spec:
        limits = {"memory": props.memory_limit}
        tolerations = []
        if props.gpus_per_pod:
            limits["nvidia.com/gpu"] = str(props.gpus_per_pod)
            tolerations.append(DeploymentV1SpecTemplateSpecToleration(key=props.taint_key, operator="Exists",
                                                                      effect="NoSchedule"))
        args = ["--model-repository", props.model_repository, "--host", "0.0.0.0",
                "--http-port", str(props.http_port), "--grpc-port", str(props.grpc_port), "--region", props.region,
                "--shutdown-delay", str(props.shutdown_delay_s),
                # leave the kubelet a margin before it sends SIGKILL
                "--grace-period", str(props.termination_grace_period_s - props.shutdown_delay_s - 5)]
        container = DeploymentV1SpecTemplateSpecContainer(
            name="runtime", image=props.image, args=args,
            port=[DeploymentV1SpecTemplateSpecContainerPort(name="http", container_port=props.http_port),
                  DeploymentV1SpecTemplateSpecContainerPort(name="grpc", container_port=props.grpc_port)],
            resources=DeploymentV1SpecTemplateSpecContainerResources(
                requests={"cpu": props.cpu_request, "memory": props.memory_request}, limits=limits),
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
        return DeploymentV1Spec(
            replicas=str(props.replicas),
            selector=DeploymentV1SpecSelector(match_labels=self.labels),
            template=DeploymentV1SpecTemplate(
                metadata=DeploymentV1SpecTemplateMetadata(labels=self.labels),
                spec=DeploymentV1SpecTemplateSpec(
                    service_account_name=props.service_account,
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
                        seccomp_profile=DeploymentV1SpecTemplateSpecSecurityContextSeccompProfile(
                            type="RuntimeDefault")),
                    container=[container])))

    def _validate(self, p: ServingDeploymentProps) -> None:
        require(bool(p.model_repository.strip()), self, "model_repository", "must not be empty")
        require(bool(p.region.strip()), self, "region", "must not be empty")
        require(bool(p.image.strip()) and " " not in p.image, self, "image", f"{p.image!r} is not an image reference")
        for prop in ("name", "namespace", "service_account"):
            require(bool(KUBERNETES_NAME.fullmatch(getattr(p, prop))), self, prop,
                    f"{getattr(p, prop)!r} must be a DNS label (lower-case letters, digits, '-', at most 63)")
        require(p.replicas >= 1, self, "replicas", f"must be at least 1, got {p.replicas}")
        require(0 <= p.gpus_per_pod <= 16, self, "gpus_per_pod", f"must be 0..16, got {p.gpus_per_pod}")
        require(bool(KUBERNETES_LABEL_KEY.fullmatch(p.taint_key)), self, "taint_key",
                f"{p.taint_key!r} is not a valid taint key")
        require(bool(p.node_selector), self, "node_selector", "must select the GPU pool's nodes (at least one label)")
        for key, value in p.node_selector.items():
            require(bool(KUBERNETES_LABEL_KEY.fullmatch(key)),
                    self, "node_selector", f"{key!r} is not a valid label key")
            require(bool(KUBERNETES_LABEL_VALUE.fullmatch(value)), self, "node_selector",
                    f"{value!r} is not a valid label value")
        for prop in ("http_port", "grpc_port"):
            require(1024 <= getattr(p, prop) <= 65535, self, prop,
                    f"must be 1024..65535 (the runtime runs as non-root), got {getattr(p, prop)}")
        require(p.http_port != p.grpc_port, self, "grpc_port", "must differ from http_port")
        for prop in ("cpu_request", "memory_request", "memory_limit"):
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
