"""The runtime's Kubernetes deployment onto a GPU pool, synthesized in process."""
from __future__ import annotations

import pytest

from mlfleet.constructs.serving_deployment import ServingDeployment, ServingDeploymentProps
from mlfleet.constructs.validation import PropsError

from helpers.template import only_resource


def _synth(synth, **overrides):
    from cdktn_provider_kubernetes.provider import KubernetesProvider

    props = ServingDeploymentProps(model_repository="s3://models-eu-west-1/models/", region="eu-west-1", **overrides)

    def build(stack):
        KubernetesProvider(stack, "kubernetes", config_path="~/.kube/config")
        ServingDeployment(stack, "serving", props)

    return synth(build, with_provider=False)


def test_deployment_targets_the_gpu_pool_with_probes_spread_and_budget(synth):
    tf = _synth(synth, replicas=3, gpus_per_pod=2, node_selector={"mlfleet.io/pool": "gpu-a100"})
    deployment = only_resource(tf, "kubernetes_deployment_v1")
    pod = deployment["spec"]["template"]["spec"]
    container = pod["container"][0]
    assert deployment["spec"]["replicas"] == "3"
    assert pod["node_selector"] == {"mlfleet.io/pool": "gpu-a100"}
    assert pod["toleration"] == [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == "2"
    assert container["liveness_probe"]["http_get"]["path"] == "/v2/health/live"
    assert container["readiness_probe"]["http_get"]["path"] == "/v2/health/ready"
    assert "failover" not in str(container)  # Kubernetes probes never use failover health
    spread = pod["topology_spread_constraint"][0]
    assert spread["topology_key"] == "topology.kubernetes.io/zone" and spread["max_skew"] == 1
    assert pod["security_context"]["run_as_non_root"] is True
    assert container["security_context"]["allow_privilege_escalation"] is False
    args = container["args"]
    assert args[args.index("--model-repository") + 1] == "s3://models-eu-west-1/models/"
    assert args[args.index("--host") + 1] == "0.0.0.0" and args[args.index("--region") + 1] == "eu-west-1"
    assert int(args[args.index("--grace-period") + 1]) < pod["termination_grace_period_seconds"]
    budget = only_resource(tf, "kubernetes_pod_disruption_budget_v1")
    assert budget["spec"]["min_available"] == "1"
    assert budget["spec"]["selector"]["match_labels"] == deployment["spec"]["selector"]["match_labels"]
    service = only_resource(tf, "kubernetes_service_v1")
    assert {p["name"]: p["port"] for p in service["spec"]["port"]} == {"http": 8000, "grpc": 8001}


def test_cpu_deployment_has_no_gpu_limit_or_toleration(synth):
    pod = only_resource(_synth(synth, gpus_per_pod=0), "kubernetes_deployment_v1")["spec"]["template"]["spec"]
    assert "nvidia.com/gpu" not in pod["container"][0]["resources"]["limits"]
    assert not pod.get("toleration")


@pytest.mark.parametrize("overrides, prop", [
    ({"replicas": 0}, "replicas"),
    ({"replicas": 2, "pdb_min_available": 2}, "pdb_min_available"),
    ({"gpus_per_pod": -1}, "gpus_per_pod"),
    ({"http_port": 80}, "http_port"),
    ({"grpc_port": 8000}, "grpc_port"),
    ({"node_selector": {}}, "node_selector"),
    ({"name": "Bad_Name"}, "name"),
    ({"memory_limit": "lots"}, "memory_limit"),
    ({"termination_grace_period_s": 8}, "termination_grace_period_s"),
    ({"taint_key": "bad key"}, "taint_key"),
])
def test_invalid_props_name_the_prop(synth, overrides, prop):
    with pytest.raises(PropsError) as caught:
        _synth(synth, **overrides)
    assert caught.value.prop == prop and "serving" in str(caught.value)
