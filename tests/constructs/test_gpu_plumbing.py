"""NVIDIA's device plugin and DCGM exporter as Helm releases pinned to the GPU pools, synthesized in process."""
from __future__ import annotations

import json

import pytest

from mlfleet.constructs.gpu_plumbing import NvidiaGpuPlumbing, NvidiaGpuPlumbingProps
from mlfleet.constructs.validation import PropsError

from helpers.template import Template

POOLS = ("inference-gpu", "train-gpu")
ONLY_ON_GPU_POOLS = {
    "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
        {"matchExpressions": [{"key": "eks.amazonaws.com/nodegroup", "operator": "In", "values": list(POOLS)}]}]}}},
    "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
}


def _synth(synth, **overrides) -> Template:
    from cdktn_provider_helm.provider import HelmProvider, HelmProviderKubernetes

    props = NvidiaGpuPlumbingProps(**{"node_label_values": POOLS, **overrides})

    def build(stack):
        HelmProvider(stack, "helm", kubernetes=HelmProviderKubernetes(config_path="~/.kube/config"))
        NvidiaGpuPlumbing(stack, "gpu-plumbing", props)

    return Template(synth(build, with_provider=False))


def _releases(template: Template) -> dict[str, dict]:
    return {r["chart"]: r for r in template.resources("helm_release").values()}


def _values(release: dict) -> dict:
    # One document of chart values, JSON (which is YAML) so that what Helm reads is what the test reads.
    (document,) = release["values"]
    return json.loads(document)


def test_both_charts_are_pinned_releases_from_nvidias_repositories(synth):
    releases = _releases(_synth(synth))
    assert set(releases) == {"nvidia-device-plugin", "dcgm-exporter"}
    plugin, exporter = releases["nvidia-device-plugin"], releases["dcgm-exporter"]
    assert (plugin["repository"], plugin["version"]) == ("https://nvidia.github.io/k8s-device-plugin", "0.20.0")
    assert (exporter["repository"], exporter["version"]) == (
        "https://nvidia.github.io/dcgm-exporter/helm-charts", "4.8.2")
    assert plugin["namespace"] == exporter["namespace"] == "kube-system"
    # Chart values go through `values`, never `set` (provider 3.x: a list of objects, easy to get wrong).
    assert "set" not in plugin and "set" not in exporter


def test_both_daemonsets_run_only_on_the_gpu_pools(synth):
    for chart, release in _releases(_synth(synth)).items():
        values = _values(release)
        assert {k: values[k] for k in ("affinity", "tolerations")} == ONLY_ON_GPU_POOLS, chart


def test_the_pool_label_and_taint_are_the_callers(synth):
    template = _synth(synth, node_label_key="node.kubernetes.io/pool", node_label_values=("a100",),
                      taint_key="example.com/gpu", namespace="gpu-system")
    plugin = _releases(template)["nvidia-device-plugin"]
    values = _values(plugin)
    term = values["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
    assert term == [{"matchExpressions": [{"key": "node.kubernetes.io/pool", "operator": "In", "values": ["a100"]}]}]
    assert values["tolerations"] == [{"key": "example.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
    assert plugin["namespace"] == "gpu-system"


def test_the_exporter_makes_a_service_monitor_only_when_asked(synth):
    # The chart's own default is a ServiceMonitor: it has to be switched off explicitly.
    default = _values(_releases(_synth(synth))["dcgm-exporter"])
    assert default["serviceMonitor"] == {"enabled": False}
    asked = _values(_releases(_synth(synth, service_monitor=True, service_monitor_labels={
        "release": "kube-prometheus-stack"}))["dcgm-exporter"])
    assert asked["serviceMonitor"] == {"enabled": True, "additionalLabels": {"release": "kube-prometheus-stack"}}
    assert "serviceMonitor" not in _values(_releases(_synth(synth))["nvidia-device-plugin"])


def test_without_the_exporter_only_the_device_plugin_is_released(synth):
    template = _synth(synth, dcgm_exporter=False, device_plugin_chart_version="0.19.3",
                      device_plugin_repository="oci://registry.example.com/charts")
    template.resource_count_is("helm_release", 1)
    plugin = _releases(template)["nvidia-device-plugin"]
    assert (plugin["version"], plugin["repository"]) == ("0.19.3", "oci://registry.example.com/charts")


def test_the_construct_configures_no_provider(synth):
    from cdktn import TerraformStack

    def build(stack: TerraformStack):
        NvidiaGpuPlumbing(stack, "gpu-plumbing", NvidiaGpuPlumbingProps(node_label_values=POOLS))

    tf = synth(build, with_provider=False)
    assert "helm" not in tf.get("provider", {})


@pytest.mark.parametrize("overrides, prop", [
    ({"node_label_values": ()}, "node_label_values"),
    ({"node_label_values": ("gpu", "gpu")}, "node_label_values"),
    ({"node_label_values": ("",)}, "node_label_values[0]"),
    ({"node_label_values": ("gpu", "bad value!")}, "node_label_values[1]"),
    ({"node_label_key": "bad key"}, "node_label_key"),
    ({"taint_key": "bad key"}, "taint_key"),
    ({"namespace": "Kube_System"}, "namespace"),
    ({"device_plugin_chart_version": "v0.20.0"}, "device_plugin_chart_version"),
    ({"device_plugin_chart_version": "~0.20"}, "device_plugin_chart_version"),
    ({"dcgm_exporter_chart_version": ""}, "dcgm_exporter_chart_version"),
    ({"dcgm_exporter_chart_version": "4.8.2\n"}, "dcgm_exporter_chart_version"),
    ({"device_plugin_repository": "http://nvidia.github.io/k8s-device-plugin"}, "device_plugin_repository"),
    ({"dcgm_exporter": False, "service_monitor": True}, "service_monitor"),
    ({"service_monitor_labels": {"release": "prom"}}, "service_monitor_labels"),
])
def test_invalid_props_name_the_prop(synth, overrides, prop):
    with pytest.raises(PropsError) as caught:
        _synth(synth, **overrides)
    assert caught.value.prop == prop and "gpu-plumbing" in str(caught.value)
