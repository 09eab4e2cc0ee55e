"""The runtime's Kubernetes deployment onto a GPU pool, synthesized in process."""
from __future__ import annotations

import argparse
import json

import pytest

from mlfleet.constructs.serving_deployment import ServingDeployment, ServingDeploymentProps
from mlfleet.constructs.validation import PropsError
from mlfleet.runtime.cli import add_serve_arguments

from helpers.template import ABSENT, Template, only_resource, resources

DIGEST = "sha256:" + "0123456789abcdef" * 4
IMAGE = f"111111111111.dkr.ecr.eu-west-1.amazonaws.com/mlfleet-prod/runtime@{DIGEST}"
POOL = {"eks.amazonaws.com/nodegroup": "inference-gpu"}
LB_CIDRS = ("10.0.0.0/24", "10.0.1.0/24")


def _props(**overrides) -> ServingDeploymentProps:
    return ServingDeploymentProps(**{**dict(model_repository="s3://models-eu-west-1/models/", region="eu-west-1",
                                            image=IMAGE, node_selector=POOL, load_balancer_cidrs=LB_CIDRS),
                                     **overrides})


def _synth(synth, **overrides) -> dict:
    from cdktn_provider_kubernetes.provider import KubernetesProvider

    props = _props(**overrides)

    def build(stack):
        KubernetesProvider(stack, "kubernetes", config_path="~/.kube/config")
        ServingDeployment(stack, "serving", props)

    return synth(build, with_provider=False)


def _container(tf: dict) -> dict:
    return only_resource(tf, "kubernetes_deployment_v1")["spec"]["template"]["spec"]["container"][0]


def _arg(args: list[str], flag: str) -> str:
    return args[args.index(flag) + 1]


def test_deployment_targets_the_gpu_pool_with_probes_spread_and_budget(synth):
    tf = _synth(synth, replicas=3, gpus_per_pod=2, node_selector={"cloud.google.com/gke-nodepool": "l4-pool"})
    deployment = only_resource(tf, "kubernetes_deployment_v1")
    pod = deployment["spec"]["template"]["spec"]
    container = pod["container"][0]
    assert deployment["spec"]["replicas"] == "3"
    assert pod["node_selector"] == {"cloud.google.com/gke-nodepool": "l4-pool"}
    assert pod["toleration"] == [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
    assert container["image"] == IMAGE
    assert container["resources"]["limits"]["nvidia.com/gpu"] == "2"
    assert container["liveness_probe"]["http_get"]["path"] == "/v2/health/live"
    assert container["readiness_probe"]["http_get"]["path"] == "/v2/health/ready"
    assert "failover" not in str(container)  # Kubernetes probes never use failover health
    spread = pod["topology_spread_constraint"][0]
    assert spread["topology_key"] == "topology.kubernetes.io/zone" and spread["max_skew"] == 1
    assert pod["security_context"]["run_as_non_root"] is True
    assert pod["security_context"]["seccomp_profile"] == {"type": "RuntimeDefault"}
    assert container["security_context"]["allow_privilege_escalation"] is False
    assert container["security_context"]["capabilities"] == {"drop": ["ALL"]}
    args = container["args"]
    assert _arg(args, "--model-repository") == "s3://models-eu-west-1/models/"
    assert _arg(args, "--host") == "0.0.0.0" and _arg(args, "--region") == "eu-west-1"
    assert int(_arg(args, "--grace-period")) < pod["termination_grace_period_seconds"]
    budget = only_resource(tf, "kubernetes_pod_disruption_budget_v1")
    assert budget["spec"]["min_available"] == "1"
    assert budget["spec"]["selector"]["match_labels"] == deployment["spec"]["selector"]["match_labels"]
    service = only_resource(tf, "kubernetes_service_v1")
    assert service["spec"]["type"] == "ClusterIP"
    assert {p["name"]: p["port"] for p in service["spec"]["port"]} == {"http": 8000, "grpc": 8001}


def test_each_pod_is_limited_to_the_cpu_it_requests(synth):
    tf = _synth(synth, cpu_request="3")
    resources_ = only_resource(tf, "kubernetes_deployment_v1")["spec"]["template"]["spec"]["container"][0]["resources"]
    assert resources_["requests"]["cpu"] == resources_["limits"]["cpu"] == "3"


def test_the_runtime_accepts_every_argument_the_deployment_passes(synth):
    # Parsed by the runtime's own parser: a renamed or dropped flag fails here, not in a crash-looping pod.
    parser = argparse.ArgumentParser(exit_on_error=False)
    add_serve_arguments(parser)
    args = parser.parse_args(_container(_synth(synth))["args"])
    assert (args.http_port, args.grpc_port, args.management_port, args.metrics_port) == (8000, 8001, 8002, 8003)
    assert args.management_host == "127.0.0.1" and args.host == "0.0.0.0"
    assert args.admin_token_file == "/var/run/secrets/mlfleet/admin-token/token" and args.admin_token_optional


def test_the_runtime_verifies_the_manifest_with_the_mounted_public_key(synth):
    pem = "-----BEGIN PUBLIC KEY-----\nMFkw\n-----END PUBLIC KEY-----\n"
    tf = _synth(synth, manifest_public_key_pem=pem)
    config_map = only_resource(tf, "kubernetes_config_map_v1")
    assert config_map["data"] == {"public.pem": pem}
    assert config_map["metadata"]["name"] == "mlfleet-manifest-key"
    pod = only_resource(tf, "kubernetes_deployment_v1")["spec"]["template"]["spec"]
    container = pod["container"][0]
    assert _arg(container["args"], "--manifest-public-key") == "/etc/mlfleet/manifest-key/public.pem"
    assert "--allow-unsigned" not in container["args"]
    mount = next(m for m in container["volume_mount"] if m["mount_path"] == "/etc/mlfleet/manifest-key")
    volume = next(v for v in pod["volume"] if v["name"] == mount["name"])
    assert mount["read_only"] is True
    # Not optional: a pod that cannot verify the manifest does not start.
    assert volume["config_map"]["optional"] is False
    assert volume["config_map"]["name"].startswith("${kubernetes_config_map_v1.")
    parser = argparse.ArgumentParser(exit_on_error=False)
    add_serve_arguments(parser)
    assert parser.parse_args(container["args"]).manifest_public_key == "/etc/mlfleet/manifest-key/public.pem"


def test_without_the_pem_the_deployment_mounts_the_config_map_another_one_creates(synth):
    tf = _synth(synth)
    assert resources(tf, "kubernetes_config_map_v1") == {}
    pod = only_resource(tf, "kubernetes_deployment_v1")["spec"]["template"]["spec"]
    assert next(v for v in pod["volume"] if "config_map" in v)["config_map"]["name"] == "mlfleet-manifest-key"


def test_replicas_apply_at_creation_and_terraform_leaves_scaling_to_the_runbooks(synth):
    deployment = only_resource(_synth(synth, replicas=4), "kubernetes_deployment_v1")
    assert deployment["spec"]["replicas"] == "4"
    assert deployment["lifecycle"] == {"ignore_changes": ["spec[0].replicas"]}


def test_cpu_deployment_has_no_gpu_limit_or_toleration(synth):
    pod = only_resource(_synth(synth, gpus_per_pod=0), "kubernetes_deployment_v1")["spec"]["template"]["spec"]
    assert "nvidia.com/gpu" not in pod["container"][0]["resources"]["limits"]
    assert not pod.get("toleration")


def test_the_management_port_is_passed_but_exposed_nowhere(synth):
    tf = _synth(synth, management_port=9002)
    template = Template(tf)
    container = _container(tf)
    assert _arg(container["args"], "--management-port") == "9002"
    assert _arg(container["args"], "--management-host") == "127.0.0.1"
    assert {p["container_port"] for p in container["port"]} == {8000, 8001, 8003}
    service = template.only("kubernetes_service_v1")
    assert {(p["port"], p["target_port"]) for p in service["spec"]["port"]} == {(8000, "8000"), (8001, "8001")}
    policy = template.only("kubernetes_network_policy_v1")
    assert {p["port"] for rule in policy["spec"]["ingress"] for p in rule["ports"]} == {"8000", "8001", "8003"}
    # Nowhere else either: the only mention of the port is the runtime's argument.
    assert json.dumps(tf).count("9002") == 1


def test_the_network_policy_admits_only_the_load_balancers_to_the_serving_ports(synth):
    tf = _synth(synth, load_balancer_cidrs=("130.211.0.0/22", "35.191.0.0/16"), http_port=9000, grpc_port=9001)
    template = Template(tf)
    deployment = template.only("kubernetes_deployment_v1")
    template.has_resource_properties("kubernetes_network_policy_v1", {
        "metadata": {"name": "mlfleet-runtime", "namespace": deployment["metadata"]["namespace"]},
        "spec": {
            "pod_selector": {"match_labels": deployment["spec"]["selector"]["match_labels"]},
            "policy_types": ["Ingress"],  # egress stays open: object storage, KMS
            "egress": ABSENT,
            "ingress": [{
                "from": [{"ip_block": {"cidr": "130.211.0.0/22"}}, {"ip_block": {"cidr": "35.191.0.0/16"}}],
                "ports": [{"port": "9000", "protocol": "TCP"}, {"port": "9001", "protocol": "TCP"}]},
                # the metrics port, from Prometheus' namespace only (test_the_metrics_port_...)
                {"ports": [{"port": "8003", "protocol": "TCP"}]}]}})


def test_the_metrics_port_is_a_named_container_port_that_only_the_monitoring_namespace_reaches(synth):
    tf = _synth(synth, metrics_port=9003, monitoring_namespace="prometheus")
    template = Template(tf)
    container = _container(tf)
    assert _arg(container["args"], "--metrics-port") == "9003"
    assert {"name": "metrics", "container_port": 9003} in container["port"]
    # not on the Service the load balancer fronts
    service = template.only("kubernetes_service_v1")
    assert {p["name"] for p in service["spec"]["port"]} == {"http", "grpc"}
    assert "9003" not in json.dumps(service)
    load_balancers, scrape = template.only("kubernetes_network_policy_v1")["spec"]["ingress"]
    assert "9003" not in json.dumps(load_balancers)
    # the namespace's name label is set by the API server: another namespace cannot take it on
    assert scrape == {"from": [{"namespace_selector": {"match_labels": {"kubernetes.io/metadata.name": "prometheus"}}}],
                      "ports": [{"port": "9003", "protocol": "TCP"}]}


def test_the_pod_monitor_is_made_on_request_and_scrapes_the_metrics_port(synth):
    assert Template(_synth(synth)).resources("kubernetes_manifest") == {}  # the CRD may not exist
    tf = _synth(synth, pod_monitor=True, pod_monitor_labels={"release": "kube-prometheus-stack"}, namespace="serving")
    template = Template(tf)
    deployment = template.only("kubernetes_deployment_v1")
    monitor = template.only("kubernetes_manifest")["manifest"]
    assert (monitor["apiVersion"], monitor["kind"]) == ("monitoring.coreos.com/v1", "PodMonitor")
    assert monitor["metadata"]["namespace"] == deployment["metadata"]["namespace"]
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    # exactly this deployment's pods, on the port the container names `metrics`
    assert monitor["spec"]["selector"] == {"matchLabels": deployment["spec"]["selector"]["match_labels"]}
    (endpoint,) = monitor["spec"]["podMetricsEndpoints"]
    assert endpoint == {"port": "metrics", "path": "/metrics"}
    assert endpoint["port"] in {p.get("name") for p in _container(tf)["port"]}


def test_the_rule_pack_passes_the_deployment_with_its_metrics_port(synth):
    from mlfleet.constructs.policy import evaluate_terraform

    # MLF035 keeps the management port off every port list; the metrics port is not it
    assert evaluate_terraform("serving", _synth(synth, pod_monitor=True)) == []


def test_the_namespace_enforces_restricted_and_everything_lands_after_it(synth):
    tf = _synth(synth, namespace="serving")
    template = Template(tf)
    namespace = template.only("kubernetes_namespace_v1")
    assert namespace["metadata"] == [
        {"name": "serving", "labels": {"pod-security.kubernetes.io/enforce": "restricted"}}]
    ns_id = next(iter(template.resources("kubernetes_namespace_v1")))
    ref = f"${{kubernetes_namespace_v1.{ns_id}.metadata[0].name}}"
    for rtype in ("kubernetes_deployment_v1", "kubernetes_service_v1", "kubernetes_pod_disruption_budget_v1",
                  "kubernetes_network_policy_v1", "kubernetes_service_account_v1"):
        assert template.only(rtype)["metadata"]["namespace"] == ref, rtype


def test_deployments_sharing_a_namespace_create_it_and_the_service_account_once(synth):
    from cdktn_provider_kubernetes.provider import KubernetesProvider

    built = {}

    def build(stack):
        KubernetesProvider(stack, "kubernetes", config_path="~/.kube/config")
        first = built["first"] = ServingDeployment(stack, "serving-a", _props(name="runtime-a"))
        built["second"] = ServingDeployment(stack, "serving-b", _props(
            name="runtime-b", node_selector={"eks.amazonaws.com/nodegroup": "other-gpu"},
            namespace=first.namespace_ref, create_namespace=False,
            service_account=first.service_account_ref, create_service_account=False))

    template = Template(synth(build, with_provider=False))
    template.resource_count_is("kubernetes_namespace_v1", 1)
    template.resource_count_is("kubernetes_service_account_v1", 1)
    template.resource_count_is("kubernetes_deployment_v1", 2)
    template.resource_count_is("kubernetes_network_policy_v1", 2)
    ns_id = next(iter(template.resources("kubernetes_namespace_v1")))
    sa_id = next(iter(template.resources("kubernetes_service_account_v1")))
    second = template.has_resource_properties("kubernetes_deployment_v1", {"metadata": {"name": "runtime-b"}})
    assert second["metadata"]["namespace"] == f"${{kubernetes_namespace_v1.{ns_id}.metadata[0].name}}"
    assert second["spec"]["template"]["spec"]["service_account_name"] == \
        f"${{kubernetes_service_account_v1.{sa_id}.metadata[0].name}}"
    # Each deployment's policy and budget select only its own pods.
    selectors = {p["spec"]["pod_selector"]["match_labels"]["app.kubernetes.io/instance"]
                 for p in template.resources("kubernetes_network_policy_v1").values()}
    assert selectors == {"runtime-a", "runtime-b"}
    assert built["second"].namespace_resource is None and built["second"].service_account_resource is None


def test_the_service_account_mounts_no_token_and_carries_workload_identity(synth):
    annotation = {"iam.gke.io/gcp-service-account": "serving@mlfleet-prod.iam.gserviceaccount.com"}
    tf = _synth(synth, service_account_annotations=annotation)
    account = only_resource(tf, "kubernetes_service_account_v1")
    assert account["automount_service_account_token"] is False
    assert account["metadata"]["name"] == "mlfleet-runtime" and account["metadata"]["annotations"] == annotation
    pod = only_resource(tf, "kubernetes_deployment_v1")["spec"]["template"]["spec"]
    assert pod["automount_service_account_token"] is False
    # EKS Pod Identity: no annotation at all.
    assert "annotations" not in only_resource(_synth(synth), "kubernetes_service_account_v1")["metadata"]


def test_the_root_filesystem_is_read_only_with_a_bounded_scratch_at_tmp(synth):
    tf = _synth(synth, scratch_size_limit="5Gi")
    pod = only_resource(tf, "kubernetes_deployment_v1")["spec"]["template"]["spec"]
    container = pod["container"][0]
    assert container["security_context"]["read_only_root_filesystem"] is True
    volumes = {v["name"]: v for v in pod["volume"]}
    mounts = {m["mount_path"]: m for m in container["volume_mount"]}
    assert volumes[mounts["/tmp"]["name"]]["empty_dir"] == {"size_limit": "5Gi"}
    assert not mounts["/tmp"].get("read_only")


def test_the_admin_token_is_an_optional_read_only_secret_mount(synth):
    tf = _synth(synth, admin_token_secret="runtime-admin")
    pod = only_resource(tf, "kubernetes_deployment_v1")["spec"]["template"]["spec"]
    container = pod["container"][0]
    mount = next(m for m in container["volume_mount"] if m["mount_path"] == "/var/run/secrets/mlfleet/admin-token")
    assert mount["read_only"] is True
    volume = next(v for v in pod["volume"] if v["name"] == mount["name"])
    assert volume["secret"]["secret_name"] == "runtime-admin" and volume["secret"]["optional"] is True
    assert _arg(container["args"], "--admin-token-file") == "/var/run/secrets/mlfleet/admin-token/token"
    assert "--admin-token-optional" in container["args"]
    # Created out of band: neither the Secret nor the token is in the Terraform state.
    assert not Template(tf).resources("kubernetes_secret_v1")


@pytest.mark.parametrize("image, reason", [
    ("mlfleet/runtime:0.1.0-cuda", "not pinned by digest"),
    ("mlfleet/runtime", "not pinned by digest"),
    (f"mlfleet/runtime:0.1.0@{DIGEST}", "a tag and a digest"),
    (f"registry.example.com:5000/runtime:1@{DIGEST}", "a tag and a digest"),
    ("mlfleet/runtime@sha256:" + "0123456789ABCDEF" * 4, "lowercase hex"),
    ("mlfleet/runtime@sha256:0123abcd", "lowercase hex"),
    (f"Mlfleet/Runtime@{DIGEST}", "lowercase hex"),
    (f"mlfleet/runtime@{DIGEST}\n", "lowercase hex"),
])
def test_an_image_not_pinned_by_digest_alone_is_refused(synth, image, reason):
    with pytest.raises(PropsError) as caught:
        _synth(synth, image=image)
    assert caught.value.prop == "image" and reason in caught.value.reason


@pytest.mark.parametrize("image", [
    f"mlfleet/runtime@{DIGEST}",
    f"registry.example.com:5000/mlfleet/runtime@{DIGEST}",
    f"us-docker.pkg.dev/mlfleet-prod/mlfleet-prod/runtime@{DIGEST}",
])
def test_digest_pinned_images_from_any_registry_are_accepted(synth, image):
    assert _container(_synth(synth, image=image))["image"] == image


@pytest.mark.parametrize("overrides, prop", [
    ({"replicas": 0}, "replicas"),
    ({"replicas": 2, "pdb_min_available": 2}, "pdb_min_available"),
    ({"gpus_per_pod": -1}, "gpus_per_pod"),
    ({"http_port": 80}, "http_port"),
    ({"grpc_port": 8000}, "grpc_port"),
    ({"management_port": 8001}, "management_port"),
    ({"management_port": 443}, "management_port"),
    ({"metrics_port": 8002}, "metrics_port"),
    ({"metrics_port": 8000}, "metrics_port"),
    ({"metrics_port": 9090, "grpc_port": 9090}, "metrics_port"),
    ({"metrics_port": 80}, "metrics_port"),
    ({"monitoring_namespace": "Monitoring"}, "monitoring_namespace"),
    ({"pod_monitor_labels": {"release": "prometheus"}}, "pod_monitor_labels"),
    ({"pod_monitor": True, "pod_monitor_labels": {"release": "bad value!"}}, "pod_monitor_labels['release']"),
    ({"node_selector": {}}, "node_selector"),
    ({"node_selector": {"eks.amazonaws.com/nodegroup": "bad value!"}}, "node_selector"),
    ({"name": "Bad_Name"}, "name"),
    ({"namespace": "Bad_Name"}, "namespace"),
    ({"namespace": "${TfToken[TOKEN.1]}"}, "namespace"),  # a reference only when another deployment owns it
    ({"admin_token_secret": "bad secret"}, "admin_token_secret"),
    ({"manifest_public_key_pem": " "}, "manifest_public_key_pem"),
    ({"manifest_public_key_config_map": "Bad_Name", "manifest_public_key_pem": "PEM"},
     "manifest_public_key_config_map"),
    ({"service_account_annotations": {"bad key!": "x"}}, "service_account_annotations"),
    ({"memory_limit": "lots"}, "memory_limit"),
    ({"scratch_size_limit": "big"}, "scratch_size_limit"),
    ({"termination_grace_period_s": 8}, "termination_grace_period_s"),
    ({"taint_key": "bad key"}, "taint_key"),
    ({"load_balancer_cidrs": ()}, "load_balancer_cidrs"),
    ({"load_balancer_cidrs": ("10.0.0.0/24", "10.0.1.1/24")}, "load_balancer_cidrs[1]"),  # host bits set
    ({"load_balancer_cidrs": ("not-a-cidr",)}, "load_balancer_cidrs[0]"),
    ({"load_balancer_cidrs": ("0.0.0.0/0",)}, "load_balancer_cidrs[0]"),
    ({"load_balancer_cidrs": ("::/0",)}, "load_balancer_cidrs[0]"),
])
def test_invalid_props_name_the_prop(synth, overrides, prop):
    with pytest.raises(PropsError) as caught:
        _synth(synth, **overrides)
    assert caught.value.prop == prop and "serving" in str(caught.value)
