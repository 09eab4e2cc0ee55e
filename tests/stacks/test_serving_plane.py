"""The serving plane over every example environment: every region deploys the runtime by digest
from its own registry onto a pool that exists, every EKS cluster gets the NVIDIA device plugin,
every name a health check probes is a record some stack creates, the image reaches every AWS
standby, and the management port is exposed nowhere."""
from __future__ import annotations

import json

import pytest

from mlfleet.constructs.terraform_json import first_block
from mlfleet.stacks.environment import environment_names, load_environment, naming

from helpers.template import resources

ENVIRONMENTS = [load_environment(n) for n in environment_names()]
MANAGEMENT_PORT = 8002


def _serving(synthesized, env, region) -> dict:
    return synthesized.stacks[naming.serving_stack_name(env.name, region.name)]


def _regional_pools(tf: dict) -> set[str]:
    return ({g["node_group_name"] for g in resources(tf, "aws_eks_node_group").values()}
            | {p["name"] for p in resources(tf, "google_container_node_pool").values()})


@pytest.mark.parametrize("env", ENVIRONMENTS, ids=lambda e: e.name)
def test_every_region_deploys_the_runtime_by_digest_from_its_own_registry(synthesized, env):
    replicas = env.serving.replicas
    for region in env.regions:
        tf = _serving(synthesized, env, region)
        pools = _regional_pools(synthesized.stacks[naming.stack_name(env.name, region.name)])
        deployments = list(resources(tf, "kubernetes_deployment_v1").values())
        assert len(deployments) == len(env.serving_pools) >= 1, region.name
        for deployment in deployments:
            spec = deployment["spec"]
            (container,) = spec["template"]["spec"]["container"]
            registry = (f"{env.aws.account_id}.dkr.ecr.{region.name}.amazonaws.com/" if region.cloud == "aws"
                        else f"{region.name}-docker.pkg.dev/")
            assert container["image"].startswith(registry), (region.name, container["image"])
            assert container["image"].endswith(f"@{env.serving.image.digest}")
            expected = replicas.primary if region.role == "primary" else replicas.standby
            assert int(spec["replicas"]) == expected, region.name
            # The node selector names a pool the region's own stack creates, by the cloud's own label.
            ((label, pool),) = spec["template"]["spec"]["node_selector"].items()
            own_label = "eks.amazonaws.com/nodegroup" if region.cloud == "aws" else "cloud.google.com/gke-nodepool"
            assert label == own_label
            assert pool in pools, (region.name, pool, pools)
            assert container["resources"]["limits"]["nvidia.com/gpu"] == str(env.serving.resources.gpus)
            assert container["security_context"]["read_only_root_filesystem"] is True
            assert container["security_context"]["allow_privilege_escalation"] is False
            assert "privileged" not in container["security_context"]
            # The DR runbook scales it on failover; Terraform must not scale it back.
            assert "spec[0].replicas" in deployment["lifecycle"]["ignore_changes"]


@pytest.mark.parametrize("env", ENVIRONMENTS, ids=lambda e: e.name)
def test_eks_gets_the_device_plugin_and_gke_keeps_its_own(synthesized, env):
    for region in env.regions:
        releases = {r["chart"]: r for r in resources(_serving(synthesized, env, region), "helm_release").values()}
        if region.cloud == "gcp":
            assert not releases, region.name  # GKE installs drivers and runs the device plugin itself
            continue
        plugin = releases["nvidia-device-plugin"]
        values = json.loads(plugin["values"][0])
        assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in values["tolerations"]
        terms = values["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
        (expression,) = terms["nodeSelectorTerms"][0]["matchExpressions"]
        assert set(expression["values"]) == {naming.node_group_name(p.name) for p in env.gpu_pools}
        assert "dcgm-exporter" in releases and "aws-load-balancer-controller" in releases


@pytest.mark.parametrize("env", ENVIRONMENTS, ids=lambda e: e.name)
def test_every_health_check_probes_a_name_some_stack_creates(synthesized, env):
    created = {r["name"]: r for name, tf in synthesized.stacks.items() if name.startswith(f"{env.name}-")
               for r in resources(tf, "aws_route53_record").values()}
    checks = {k: c for k, c in resources(synthesized.stacks[naming.global_stack_name(env.name)],
                                         "aws_route53_health_check").items() if "fqdn" in c}  # the endpoint checks
    assert len(checks) == len(env.regions)
    for check in checks.values():
        record = created.get(check["fqdn"])
        assert record is not None, f"{check['fqdn']} is probed but no stack creates it"
        assert record["zone_id"] == env.serving.hosted_zone_id
        # It points at the region's load balancer: the NLB's hostname or the gateway's address.
        target = json.dumps(record.get("records"))
        assert "kubernetes_service_v1" in target or "google_compute_address" in target, record


@pytest.mark.parametrize("env", ENVIRONMENTS, ids=lambda e: e.name)
def test_each_endpoint_terminates_tls_and_exposes_no_management_port(synthesized, env):
    for region in env.regions:
        tf = _serving(synthesized, env, region)
        services = resources(tf, "kubernetes_service_v1").values()
        ports = [p for s in services for p in s["spec"]["port"]]
        assert all(int(p.get("target_port", p["port"])) != MANAGEMENT_PORT for p in ports)
        for deployment in resources(tf, "kubernetes_deployment_v1").values():
            (container,) = deployment["spec"]["template"]["spec"]["container"]
            assert MANAGEMENT_PORT not in [p["container_port"] for p in container["port"]]
        (policy,) = resources(tf, "kubernetes_network_policy_v1").values()
        # The load balancers reach the serving ports; only the monitoring namespace the metrics port.
        load_balancers, scrape = policy["spec"]["ingress"]
        assert sorted(int(p["port"]) for p in load_balancers["ports"]) == [8000, 8001]
        assert all(b["ip_block"]["cidr"] not in ("0.0.0.0/0", "::/0") for b in load_balancers["from"])
        assert [p["port"] for p in scrape["ports"]] == ["8003"]
        assert all("namespace_selector" in b for b in scrape["from"])
        if region.cloud == "aws":
            (endpoint,) = [s for s in services if s["spec"].get("type") == "LoadBalancer"]
            annotations = endpoint["metadata"]["annotations"]
            assert annotations["service.beta.kubernetes.io/aws-load-balancer-ssl-negotiation-policy"].startswith(
                ("ELBSecurityPolicy-TLS13-", "ELBSecurityPolicy-TLS-1-2-"))
            assert sorted(p["port"] for p in endpoint["spec"]["port"]) == [443, 8443]
            (cert,) = resources(tf, "aws_acm_certificate").values()
            assert cert["domain_name"] == env.endpoint(region) and cert["validation_method"] == "DNS"
            assert env.serving.tls_name in cert["subject_alternative_names"]
        else:
            (ssl,) = resources(tf, "google_compute_region_ssl_policy").values()
            assert ssl["min_tls_version"] in ("TLS_1_2", "TLS_1_3")


@pytest.mark.parametrize("env", [e for e in ENVIRONMENTS if e.primary.cloud == "aws"], ids=lambda e: e.name)
def test_the_image_is_replicated_to_every_aws_standby(synthesized, env):
    primary = synthesized.stacks[naming.stack_name(env.name, env.primary.name)]
    standbys = {r.name for r in env.standbys if r.cloud == "aws"}
    repository = naming.image_repository(env.name, env.serving.image.name)
    (repo,) = resources(primary, "aws_ecr_repository").values()
    assert repo["name"] == repository and repo["image_tag_mutability"] == "IMMUTABLE"
    assert first_block(repo["encryption_configuration"])["encryption_type"] == "KMS"
    replication = resources(primary, "aws_ecr_replication_configuration").values()
    destinations = {d["region"] for c in replication for rule in first_block(c["replication_configuration"])["rule"]
                    for d in rule["destination"]}
    assert destinations == standbys
    for name in standbys:
        (template,) = resources(synthesized.stacks[naming.stack_name(env.name, name)],
                                "aws_ecr_repository_creation_template").values()
        assert template["applied_for"] == ["REPLICATION"]
        assert repository.startswith(template["prefix"] + "/")


@pytest.mark.parametrize("env", ENVIRONMENTS, ids=lambda e: e.name)
def test_serving_state_stays_in_its_region(synthesized, env):
    for region in env.regions:
        backend = _serving(synthesized, env, region)["terraform"]["backend"]
        if region.cloud == "aws":
            assert backend["s3"]["region"] == region.name
            assert backend["s3"]["key"] == f"{env.name}/{region.name}-serving/terraform.tfstate"
        else:
            assert backend["gcs"]["bucket"].endswith(f"-tfstate-{region.name}")
        assert "terraform_remote_state" not in json.dumps(_serving(synthesized, env, region).get("data", {}))


@pytest.mark.parametrize("env", ENVIRONMENTS, ids=lambda e: e.name)
def test_the_runtime_reads_its_own_region_and_runs_as_the_serving_identity(synthesized, env):
    for region in env.regions:
        tf = _serving(synthesized, env, region)
        (account,) = resources(tf, "kubernetes_service_account_v1").values()
        annotations = account["metadata"].get("annotations", {})
        for deployment in resources(tf, "kubernetes_deployment_v1").values():
            (container,) = deployment["spec"]["template"]["spec"]["container"]
            args = container["args"]
            repository = args[args.index("--model-repository") + 1]
            region_arg = args[args.index("--region") + 1]
            assert region_arg == region.name
            # The approved area of the shared layout: what review writes and signs, and nothing else.
            approved = naming.approved_prefix(env.artifact_store.models_prefix)
            assert approved == "models/approved/"
            bucket = naming.artifact_bucket(env.name, env.aws.account_id, region.name) if region.cloud == "aws" \
                else naming.gcs_artifact_bucket(env.name, env.gcp.project_id)
            assert repository == f"{'s3' if region.cloud == 'aws' else 'gs'}://{bucket}/{approved}"
        if region.cloud == "aws":
            # EKS Pod Identity: the regional stack associates exactly this namespace and account.
            regional = synthesized.stacks[naming.stack_name(env.name, region.name)]
            (association,) = resources(regional, "aws_eks_pod_identity_association").values()
            assert (association["namespace"], association["service_account"]) == ("mlfleet", "mlfleet-runtime")
            assert account["metadata"]["name"] == "mlfleet-runtime" and not annotations
        else:
            # GKE Workload Identity: the annotation names the serving account the Google global stack makes.
            identity = synthesized.stacks[naming.gcp_global_stack_name(env.name)]
            accounts = {a["account_id"] for a in resources(identity, "google_service_account").values()}
            email = annotations["iam.gke.io/gcp-service-account"]
            assert email == f"mlf-{env.name}-serving@{env.gcp.project_id}.iam.gserviceaccount.com"
            assert email.split("@")[0] in accounts
            members = {m["member"] for m in resources(identity, "google_service_account_iam_member").values()}
            assert f"serviceAccount:{env.gcp.project_id}.svc.id.goog[mlfleet/mlfleet-runtime]" in members
