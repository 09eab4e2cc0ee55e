"""What an EKS GPU node needs before a pod can ask for `nvidia.com/gpu`: NVIDIA's device plugin
(advertises the GPUs to the kubelet) and, by default, NVIDIA's DCGM exporter (GPU utilisation,
memory, temperature and XID errors as Prometheus metrics on port 9400), each a Helm release of
NVIDIA's own chart at a pinned version.

Both DaemonSets run ONLY on the GPU pools: a required node affinity `node_label_key In
node_label_values` (the cloud's own pool label, so nothing else has to label the nodes) and a
toleration of the pools' NoSchedule taint replace the charts' defaults, which would otherwise
wait for Node Feature Discovery labels or skip tainted nodes.

Not for GKE: there the node pool installs the drivers and GKE manages the device plugin itself;
a second device plugin would fight GKE's over the same GPUs. Nor for EKS node groups on a
Bottlerocket NVIDIA AMI, which runs the device plugin on the host: name only Amazon Linux 2023
NVIDIA groups in `node_label_values`.

Explicit exceptions to the secure defaults, both the charts' own and required by what they do:
the device plugin mounts the kubelet's device-plugin socket folder from the host, and the DCGM
exporter runs as root with `SYS_ADMIN` to read the GPUs' profiling counters. They therefore go
to a namespace that admits privileged pods (`kube-system` by default; never the runtime's
namespace, which enforces the `restricted` Pod Security Standard). The exporter's Service stays
ClusterIP; a ServiceMonitor (for the Prometheus Operator, whose CRD must then exist) is made
only when `service_monitor` asks for one.

The construct does not configure the helm provider; the caller does (one per cluster).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field

from cdktn_provider_helm.release import Release
from constructs import Construct

from mlfleet.constructs.validation import (
    HELM_CHART_VERSION,
    HTTPS_URL,
    KUBERNETES_LABEL_KEY,
    KUBERNETES_LABEL_VALUE,
    KUBERNETES_NAME,
    require,
    require_kubernetes_labels,
)

DEVICE_PLUGIN_CHART = "nvidia-device-plugin"
DCGM_EXPORTER_CHART = "dcgm-exporter"


@dataclass(frozen=True, kw_only=True)
class NvidiaGpuPlumbingProps:
    node_label_values: tuple[str, ...]
    """The GPU pools, as values of `node_label_key`: on EKS, the GPU node groups' names."""
    node_label_key: str = "eks.amazonaws.com/nodegroup"
    """The node label that names a node's pool; default `eks.amazonaws.com/nodegroup`."""
    taint_key: str = "nvidia.com/gpu"
    """The GPU pools' NoSchedule taint; both DaemonSets tolerate it (any value). Default: `nvidia.com/gpu`."""
    namespace: str = "kube-system"
    """An existing namespace that admits privileged pods; default `kube-system`."""
    device_plugin_chart_version: str = "0.20.0"
    """The exact `nvidia-device-plugin` chart version; default `0.20.0`."""
    device_plugin_repository: str = "https://nvidia.github.io/k8s-device-plugin"
    """The chart repository (a mirror for clusters without internet access); default NVIDIA's,
    `https://nvidia.github.io/k8s-device-plugin`."""
    dcgm_exporter: bool = True
    """Install NVIDIA's DCGM exporter beside the device plugin; default `True`."""
    dcgm_exporter_chart_version: str = "4.8.2"
    """The exact `dcgm-exporter` chart version; default `4.8.2`."""
    dcgm_exporter_repository: str = "https://nvidia.github.io/dcgm-exporter/helm-charts"
    """The chart repository; default NVIDIA's, `https://nvidia.github.io/dcgm-exporter/helm-charts`."""
    service_monitor: bool = False
    """Make a ServiceMonitor for the exporter (needs the Prometheus Operator's CRD); default `False`."""
    service_monitor_labels: dict[str, str] = field(default_factory=dict)
    """Labels the Prometheus Operator selects ServiceMonitors by (e.g. `release: kube-prometheus-stack`);
    only with `service_monitor`. Default: none."""


class NvidiaGpuPlumbing(Construct):
    """NVIDIA's device plugin and DCGM exporter, scheduled only on the GPU pools (see module docstring)."""

    def __init__(self, scope: Construct, id_: str, props: NvidiaGpuPlumbingProps):
        super().__init__(scope, id_)
        _validate(self, props)
        self.props = props
        self.namespace = props.namespace
        # Lists in Helm values replace the chart's defaults rather than merge with them.
        self.placement = gpu_pool_placement(props.node_label_key, props.node_label_values, props.taint_key)

        self.device_plugin = Release(
            self, "device-plugin", name=DEVICE_PLUGIN_CHART, chart=DEVICE_PLUGIN_CHART,
            repository=props.device_plugin_repository, version=props.device_plugin_chart_version,
            namespace=props.namespace, cleanup_on_fail=True, values=[json.dumps(self.placement, sort_keys=True)])

        self.dcgm_exporter: Release | None = None
        if props.dcgm_exporter:
            # The chart makes a ServiceMonitor unless told not to; mlfleet makes one only when asked.
            monitor: dict = {"enabled": props.service_monitor}
            if props.service_monitor_labels:
                monitor["additionalLabels"] = dict(props.service_monitor_labels)
            values = {**self.placement, "serviceMonitor": monitor}
            self.dcgm_exporter = Release(
                self, "dcgm-exporter", name=DCGM_EXPORTER_CHART, chart=DCGM_EXPORTER_CHART,
                repository=props.dcgm_exporter_repository, version=props.dcgm_exporter_chart_version,
                namespace=props.namespace, cleanup_on_fail=True, values=[json.dumps(values, sort_keys=True)])


def gpu_pool_placement(label_key: str, label_values: tuple[str, ...], taint_key: str) -> dict:
    """Chart values (`affinity`, `tolerations`) that pin a DaemonSet to the GPU pools and only there."""
    return {
        "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
            {"matchExpressions": [{"key": label_key, "operator": "In", "values": list(label_values)}]}]}}},
        "tolerations": [{"key": taint_key, "operator": "Exists", "effect": "NoSchedule"}],
    }


def _validate(scope: Construct, p: NvidiaGpuPlumbingProps) -> None:
    require(len(p.node_label_values) >= 1, scope, "node_label_values",
            "name at least one GPU pool: with none, the DaemonSets would run nowhere")
    require(len(set(p.node_label_values)) == len(p.node_label_values), scope, "node_label_values",
            "names a pool twice")
    for i, value in enumerate(p.node_label_values):
        require(bool(value) and bool(KUBERNETES_LABEL_VALUE.fullmatch(value)), scope, f"node_label_values[{i}]",
                f"{value!r} is not a label value (63 characters: letters, digits, '-', '_', '.')")
    for prop in ("node_label_key", "taint_key"):
        value = getattr(p, prop)
        require(bool(KUBERNETES_LABEL_KEY.fullmatch(value)), scope, prop, f"{value!r} is not a valid label key")
    require(bool(KUBERNETES_NAME.fullmatch(p.namespace)), scope, "namespace",
            f"{p.namespace!r} is not a Kubernetes DNS label")
    for prop in ("device_plugin_chart_version", "dcgm_exporter_chart_version"):
        value = getattr(p, prop)
        require(bool(HELM_CHART_VERSION.fullmatch(value)), scope, prop,
                f"{value!r} is not one exact chart version (e.g. `0.20.0`; no range, no leading `v`)")
    for prop in ("device_plugin_repository", "dcgm_exporter_repository"):
        value = getattr(p, prop)
        require(bool(HTTPS_URL.fullmatch(value)) or value.startswith("oci://"), scope, prop,
                f"{value!r} is not an https:// or oci:// chart repository")
    require(p.dcgm_exporter or not p.service_monitor, scope, "service_monitor",
            "needs dcgm_exporter: the ServiceMonitor scrapes the exporter")
    require(p.service_monitor or not p.service_monitor_labels, scope, "service_monitor_labels",
            "only apply with service_monitor=True")
    require_kubernetes_labels(scope, "service_monitor_labels", p.service_monitor_labels)
