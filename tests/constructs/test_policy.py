"""The policy pass: every rule has a failing and a passing case, and acknowledgements carry
their reason through the aspect."""
from __future__ import annotations

import json

import pytest

from mlfleet.constructs.policy import RULES, evaluate_terraform, is_gpu_instance_type


def _tf(resources: dict, provider_tags: dict | None = None, data: dict | None = None) -> dict:
    tags = {"owner": "ml-platform", "cost-center": "ml"} if provider_tags is None else provider_tags
    return {"provider": {"aws": [{"region": "us-east-1", "default_tags": [{"tags": tags}]}]},
            "resource": resources, "data": data or {}}


def _rules(tf: dict) -> set[str]:
    return {f.rule for f in evaluate_terraform("s", tf)}


def _with(base: dict, rtype: str, name: str, **changes) -> dict:
    out = json.loads(json.dumps(base))
    out[rtype][name].update(changes)
    return out


GOOD_BUCKET = {
    "aws_s3_bucket": {"b": {"bucket": "x"}},
    "aws_s3_bucket_server_side_encryption_configuration": {"e": {
        "bucket": "${aws_s3_bucket.b.id}",
        "rule": [{"apply_server_side_encryption_by_default": {"sse_algorithm": "aws:kms",
                                                              "kms_master_key_id": "${aws_kms_key.k.arn}"}}]}},
    "aws_s3_bucket_public_access_block": {"p": {
        "bucket": "${aws_s3_bucket.b.id}", "block_public_acls": True, "block_public_policy": True,
        "ignore_public_acls": True, "restrict_public_buckets": True}},
}
GOOD_DB = {"aws_rds_cluster": {"c": {"storage_encrypted": True, "kms_key_id": "${aws_kms_key.k.arn}",
                                     "deletion_protection": True, "skip_final_snapshot": False}},
           "aws_rds_cluster_instance": {"i": {"publicly_accessible": False}}}
GOOD_NODES = {
    "aws_launch_template": {"lt": {"metadata_options": {"http_tokens": "required", "http_put_response_hop_limit": 1},
                                   "block_device_mappings": [
                                       {"device_name": "/dev/xvda", "ebs": {"encrypted": "true", "kms_key_id": "k"}}]}},
    "aws_eks_node_group": {"ng": {"ami_type": "AL2023_x86_64_NVIDIA", "instance_types": ["g6.12xlarge"],
                                  "taint": [{"key": "nvidia.com/gpu", "value": "present", "effect": "NO_SCHEDULE"}],
                                  "launch_template": {"id": "${aws_launch_template.lt.id}", "version": "1"}}},
}
# System nodes (standard AMI, general-purpose instances) need no GPU taint.
GOOD_SYSTEM_NODES = {
    "aws_launch_template": GOOD_NODES["aws_launch_template"],
    "aws_eks_node_group": {"ng": {"ami_type": "AL2023_x86_64_STANDARD", "instance_types": ["m7i.large", "m6i.large"],
                                  "launch_template": {"id": "${aws_launch_template.lt.id}", "version": "1"}}},
}
GOOD_IAM = {"aws_iam_role_policy": {"p": {"policy": json.dumps({"Statement": [
    {"Effect": "Allow", "Action": ["s3:GetObject"], "Resource": "arn:aws:s3:::b/*"},
    {"Effect": "Deny", "Action": "s3:*", "Resource": "*"}]})}}}


@pytest.mark.parametrize("good", [GOOD_BUCKET, GOOD_DB, GOOD_NODES, GOOD_SYSTEM_NODES, GOOD_IAM],
                         ids=["s3", "db", "nodes", "system-nodes", "iam"])
def test_secure_resources_pass(good):
    assert _rules(_tf(good)) == set()


CASES = [
    ("MLF001", {"aws_s3_bucket": {"b": {"bucket": "x"}},
                "aws_s3_bucket_public_access_block": GOOD_BUCKET["aws_s3_bucket_public_access_block"]}),
    ("MLF001", {**GOOD_BUCKET, "aws_s3_bucket_server_side_encryption_configuration": {"e": {
        "bucket": "${aws_s3_bucket.b.id}",
        "rule": [{"apply_server_side_encryption_by_default": {"sse_algorithm": "AES256"}}]}}}),
    ("MLF001", _with(GOOD_DB, "aws_rds_cluster", "c", storage_encrypted=False)),
    ("MLF001", {"aws_eks_cluster": {"c": {"vpc_config": {"endpoint_public_access": False}}}}),
    ("MLF001", {"aws_sns_topic": {"t": {"name": "alarms"}}}),
    ("MLF001", _with(GOOD_NODES, "aws_launch_template", "lt", block_device_mappings=[{"device_name": "/dev/xvda",
                                                                                      "ebs": {"encrypted": "false"}}])),
    ("MLF002", {k: v for k, v in GOOD_BUCKET.items() if k != "aws_s3_bucket_public_access_block"}),
    ("MLF002", _with(GOOD_DB, "aws_rds_cluster_instance", "i", publicly_accessible=True)),
    ("MLF002", {"aws_eks_cluster": {"c": {"vpc_config": {"endpoint_public_access": True},
                                          "encryption_config": {"provider": {}}}}}),
    ("MLF002", {"aws_security_group": {"s": {"ingress": [{"cidr_blocks": ["0.0.0.0/0"], "from_port": 443}]}}}),
    ("MLF002", {"aws_subnet": {"s": {"map_public_ip_on_launch": True}}}),
    ("MLF003", _with(GOOD_DB, "aws_rds_cluster", "c", deletion_protection=False)),
    ("MLF003", _with(GOOD_DB, "aws_rds_cluster", "c", skip_final_snapshot=True)),
    ("MLF003", _with(GOOD_BUCKET, "aws_s3_bucket", "b", force_destroy=True)),
    ("MLF003", {"aws_rds_global_cluster": {"g": {"storage_encrypted": True}}}),
    ("MLF004", _with(GOOD_NODES, "aws_eks_node_group", "ng", taint=[{"key": "nvidia.com/gpu",
                                                                     "effect": "PREFER_NO_SCHEDULE"}])),
    ("MLF004", _with(GOOD_SYSTEM_NODES, "aws_eks_node_group", "ng", instance_types=["m7i.large", "g6e.xlarge"])),
    ("MLF004", _with(GOOD_NODES, "aws_eks_node_group", "ng", instance_types=["m7i.large"], taint=None)),
    ("MLF004", _with(GOOD_SYSTEM_NODES, "aws_eks_node_group", "ng", instance_types="${var.node_types}")),
    ("MLF004", _with(_with(GOOD_SYSTEM_NODES, "aws_launch_template", "lt", instance_type="p5.48xlarge"),
                     "aws_eks_node_group", "ng", instance_types=None)),
    ("MLF005", _with(GOOD_IAM, "aws_iam_role_policy", "p", policy=json.dumps(
        {"Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}))),
    ("MLF005", _with(GOOD_IAM, "aws_iam_role_policy", "p", policy=json.dumps(
        {"Statement": {"Action": "*", "Resource": "*"}}))),
    ("MLF005", _with(GOOD_IAM, "aws_iam_role_policy", "p", policy=json.dumps(
        {"Statement": [{"Effect": "Allow", "NotAction": "iam:*", "Resource": "*"}]}))),
    ("MLF007", _with(GOOD_NODES, "aws_launch_template", "lt", metadata_options={"http_tokens": "optional",
                                                                                "http_put_response_hop_limit": 1})),
    ("MLF007", _with(GOOD_NODES, "aws_eks_node_group", "ng", launch_template=None)),
]


@pytest.mark.parametrize("rule,resources", CASES, ids=[f"{r}-{i}" for i, (r, _) in enumerate(CASES)])
def test_each_rule_catches_its_violation(rule, resources):
    assert rule in _rules(_tf(resources))


def test_untainted_gpu_node_group_with_a_standard_ami_is_named_by_its_instance_type():
    tf = _tf(_with(GOOD_SYSTEM_NODES, "aws_eks_node_group", "ng", instance_types=["g6e.xlarge"]))
    [finding] = evaluate_terraform("s", tf)
    assert (finding.rule, finding.address) == ("MLF004", "aws_eks_node_group.ng")
    assert "g6e.xlarge" in finding.message


@pytest.mark.parametrize("instance_type, gpu", [
    *((t, True) for t in ("g4dn.xlarge", "g5.48xlarge", "g6.12xlarge", "g6e.2xlarge", "gr6.4xlarge", "g7e.8xlarge",
                          "p3dn.24xlarge", "p4d.24xlarge", "p4de.24xlarge", "p5.48xlarge", "p5e.48xlarge",
                          "p5en.48xlarge", "p6-b200.48xlarge")),
    *((t, False) for t in ("m7i.large", "m6i.large", "c7gn.xlarge", "t3.medium", "inf2.xlarge", "trn1.2xlarge",
                           "g4ad.xlarge", "p5x.large", "gp6.large")),
])
def test_gpu_instance_families(instance_type, gpu):
    assert is_gpu_instance_type(instance_type) is gpu


def test_missing_required_tags():
    assert _rules(_tf({}, provider_tags={"owner": "me"})) == {"MLF006"}
    assert _rules(_tf({})) == set()


def test_every_rule_has_severity_and_fix():
    for rule in RULES.values():
        assert rule.severity in {"high", "medium", "low"} and rule.fix


def test_aspect_applies_code_and_config_acknowledgements(synth):
    from cdktn import Aspects, TerraformStack, Testing
    from cdktn_provider_aws.provider import AwsProvider
    from cdktn_provider_aws.s3_bucket import S3Bucket
    from constructs import Construct

    from mlfleet.constructs.acknowledgements import acknowledge
    from mlfleet.constructs.policy import ConfigAcknowledgement, PolicyAspect

    app = Testing.app()
    stack = TerraformStack(app, "stack")
    AwsProvider(stack, "aws", region="us-east-1", default_tags=[{"tags": {"owner": "a", "cost-center": "b"}}])
    group = Construct(stack, "scratch")
    acknowledge(group, "MLF001", "scratch data, regenerated nightly")
    S3Bucket(group, "bucket", bucket="scratch")
    aspect = PolicyAspect([ConfigAcknowledgement("MLF002", "public dataset mirror", "stack/scratch/*")])
    Aspects.of(stack).add(aspect)
    Testing.synth(stack)  # runs the aspects
    assert aspect.stack_names == ["stack"]
    tf = stack.to_terraform()  # with the construct paths, which Testing.synth leaves out
    by_rule = {f.rule: f for f in aspect.evaluate("stack", tf)}
    assert by_rule["MLF001"].acknowledged == "scratch data, regenerated nightly"
    assert by_rule["MLF001"].path == "stack/scratch/bucket"
    assert by_rule["MLF002"].acknowledged == "public dataset mirror"
    assert aspect.violations == []


def test_acknowledgement_needs_a_reason():
    from cdktn import Testing
    from constructs import Construct

    from mlfleet.constructs.acknowledgements import acknowledge

    with pytest.raises(ValueError, match="needs a reason"):
        acknowledge(Construct(Testing.app(), "x"), "MLF001", "  ")


# --- Google Cloud resources --------------------------------------------------------------

def _gtf(resources: dict, labels: dict | None = None) -> dict:
    labels = {"owner": "ml-platform", "cost-center": "ml"} if labels is None else labels
    return {"provider": {"google": [{"project": "p", "default_labels": labels}]}, "resource": resources}


GOOD_GOOGLE = {
    "google_storage_bucket": {"b": {"encryption": {"default_kms_key_name": "k"}, "public_access_prevention": "enforced",
                                    "uniform_bucket_level_access": True}},
    "google_sql_database_instance": {"db": {"encryption_key_name": "k", "deletion_protection": True, "settings": {
        "deletion_protection_enabled": True, "ip_configuration": {"ipv4_enabled": False}}}},
    "google_container_cluster": {"c": {"database_encryption": {"state": "ENCRYPTED", "key_name": "k"},
                                       "private_cluster_config": {"enable_private_nodes": True,
                                                                  "enable_private_endpoint": True},
                                       "binary_authorization": {
                                           "evaluation_mode": "PROJECT_SINGLETON_POLICY_ENFORCE"}}},
    "google_container_node_pool": {"np": {"node_config": {
        "guest_accelerator": [{"type": "nvidia-l4", "count": 1}],
        "taint": [{"key": "nvidia.com/gpu", "value": "present", "effect": "NO_SCHEDULE"}],
        "workload_metadata_config": {"mode": "GKE_METADATA"}, "boot_disk_kms_key": "k"}}},
    "google_database_migration_service_connection_profile": {"dms": {"cloudsql": {"settings": {
        "cmek_key_name": "k", "ip_config": {"enable_ipv4": False, "private_network": "n"}}}}},
    "google_storage_bucket_iam_member": {"m": {"role": "roles/storage.objectViewer",
                                               "member": "serviceAccount:s@p.iam.gserviceaccount.com"}},
    "google_compute_firewall": {"f": {"source_ranges": ["35.191.0.0/16"], "allow": [{"protocol": "tcp"}]}},
}


def test_secure_google_resources_pass():
    assert _rules(_gtf(GOOD_GOOGLE)) == set()


GOOGLE_CASES = [
    ("MLF001", "google_storage_bucket", "b", {"encryption": None}),
    ("MLF001", "google_sql_database_instance", "db", {"encryption_key_name": None}),
    ("MLF001", "google_container_cluster", "c", {"database_encryption": {"state": "DECRYPTED"}}),
    ("MLF001", "google_container_node_pool", "np", {"node_config": {
        "taint": [{"key": "nvidia.com/gpu", "effect": "NO_SCHEDULE"}],
        "workload_metadata_config": {"mode": "GKE_METADATA"}}}),
    ("MLF001", "google_database_migration_service_connection_profile", "dms", {"cloudsql": {"settings": {
        "ip_config": {"enable_ipv4": False}}}}),
    ("MLF002", "google_database_migration_service_connection_profile", "dms", {"cloudsql": {"settings": {
        "cmek_key_name": "k", "ip_config": {"enable_ipv4": True}}}}),
    ("MLF002", "google_storage_bucket", "b", {"public_access_prevention": "inherited"}),
    ("MLF002", "google_sql_database_instance", "db", {"settings": {"deletion_protection_enabled": True,
                                                                   "ip_configuration": {"ipv4_enabled": True}}}),
    ("MLF002", "google_container_cluster", "c", {"private_cluster_config": None}),
    ("MLF002", "google_storage_bucket_iam_member", "m", {"member": "allUsers"}),
    ("MLF002", "google_compute_firewall", "f", {"source_ranges": ["0.0.0.0/0"]}),
    ("MLF003", "google_storage_bucket", "b", {"force_destroy": True}),
    ("MLF003", "google_sql_database_instance", "db", {"deletion_protection": False}),
    ("MLF003", "google_container_cluster", "c", {"deletion_protection": False}),
    ("MLF004", "google_container_node_pool", "np", {"node_config": {
        "guest_accelerator": [{"type": "nvidia-l4", "count": 1}],
        "workload_metadata_config": {"mode": "GKE_METADATA"}}}),
    ("MLF005", "google_storage_bucket_iam_member", "m", {"role": "roles/editor"}),
    ("MLF007", "google_container_node_pool", "np", {"node_config": {
        "taint": [{"key": "nvidia.com/gpu", "effect": "NO_SCHEDULE"}],
        "workload_metadata_config": {"mode": "GCE_METADATA"}}}),
]


@pytest.mark.parametrize("rule,rtype,name,changes", GOOGLE_CASES, ids=[f"{c[0]}-{c[1]}" for c in GOOGLE_CASES])
def test_each_rule_catches_its_google_violation(rule, rtype, name, changes):
    assert rule in _rules(_gtf(_with(GOOD_GOOGLE, rtype, name, **changes)))


def test_missing_google_labels():
    assert _rules(_gtf({}, labels={"owner": "me"})) == {"MLF006"}


# --- The serving plane (pods, load balancer TLS, management port) ------------------------

_DIGEST = "sha256:" + "ab" * 32
_SELECTOR = {"app.kubernetes.io/name": "mlfleet-runtime"}
_NLB = "service.beta.kubernetes.io/aws-load-balancer-"
GOOD_SERVING = {
    "kubernetes_deployment_v1": {"runtime": {"spec": {"replicas": "2", "template": {"spec": {
        "security_context": {"run_as_non_root": True, "run_as_user": "10001"},
        "container": [{
            "name": "runtime", "image": f"123456789012.dkr.ecr.us-east-1.amazonaws.com/mlfleet-prod/runtime@{_DIGEST}",
            "args": ["--http-port", "8000", "--management-port", "8012", "--management-host", "127.0.0.1"],
            "port": [{"container_port": 8000, "name": "http"}, {"container_port": 8001, "name": "grpc"}],
            "security_context": {"allow_privilege_escalation": False, "read_only_root_filesystem": True,
                                 "run_as_non_root": True, "capabilities": {"drop": ["ALL"]}}}]}}}}},
    "kubernetes_service_v1": {
        "nlb": {"metadata": {"annotations": {
            _NLB + "type": "external", _NLB + "ssl-cert": "${aws_acm_certificate_validation.v.certificate_arn}",
            _NLB + "ssl-negotiation-policy": "ELBSecurityPolicy-TLS13-1-2-2021-06", _NLB + "ssl-ports": "443,8443"}},
            "spec": {"type": "LoadBalancer", "load_balancer_class": "service.k8s.aws/nlb", "selector": _SELECTOR,
                     "port": [{"name": "https", "port": 443, "target_port": "8000"},
                              {"name": "grpcs", "port": 8443, "target_port": "8001"}]}},
        "internal": {"spec": {"type": "ClusterIP", "port": [{"port": 8000, "target_port": "8000"}]}}},
    "kubernetes_network_policy_v1": {"np": {"spec": {"policy_types": ["Ingress"], "ingress": [
        {"from": [{"ip_block": {"cidr": "10.0.0.0/24"}}],
         "ports": [{"port": "8000", "protocol": "TCP"}, {"port": "8001", "protocol": "TCP"}]}]}}},
    "google_compute_region_ssl_policy": {"ssl": {"min_tls_version": "TLS_1_2", "profile": "RESTRICTED"}},
    "kubernetes_manifest": {
        "gateway": {"manifest": {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway",
                                 "metadata": {"name": "mlfleet-runtime", "namespace": "mlfleet"},
                                 "spec": {"gatewayClassName": "gke-l7-rilb",
                                          "listeners": [{"name": "https", "port": 443, "protocol": "HTTPS"}]}}},
        "gateway-policy": {"manifest": {"apiVersion": "networking.gke.io/v1", "kind": "GCPGatewayPolicy",
                                        "metadata": {"name": "mlfleet-runtime", "namespace": "mlfleet"},
                                        "spec": {"default": {"sslPolicy": "mlfleet-runtime-tls"},
                                                 "targetRef": {"kind": "Gateway", "name": "mlfleet-runtime"}}}}},
}


def _serving(change) -> dict:
    """GOOD_SERVING with `change` applied to a deep copy (a function of the resources)."""
    resources = json.loads(json.dumps(GOOD_SERVING))
    change(resources)
    return resources


def _container(resources: dict) -> dict:
    return resources["kubernetes_deployment_v1"]["runtime"]["spec"]["template"]["spec"]["container"][0]


def _nlb_annotations(resources: dict) -> dict:
    return resources["kubernetes_service_v1"]["nlb"]["metadata"]["annotations"]


def test_secure_serving_plane_passes():
    assert _rules(_tf(GOOD_SERVING)) == set()
    # TLS 1.3-only and forward-secrecy TLS 1.2 policies pass too.
    for policy in ("ELBSecurityPolicy-TLS13-1-3-2021-06", "ELBSecurityPolicy-FS-1-2-Res-2020-10",
                   "ELBSecurityPolicy-TLS13-1-2-Res-FIPS-2023-04"):
        def use(r: dict, policy: str = policy) -> None:
            _nlb_annotations(r)[_NLB + "ssl-negotiation-policy"] = policy
        assert _rules(_tf(_serving(use))) == set(), policy


SERVING_CASES = [
    ("MLF030", "tag only", lambda r: _container(r).update(image="registry.example.com/runtime:1.4.2")),
    ("MLF030", "no tag, no digest", lambda r: _container(r).update(image="runtime")),
    ("MLF030", "short digest", lambda r: _container(r).update(image="runtime@sha256:abcd")),
    ("MLF030", "init container by tag", lambda r: r["kubernetes_deployment_v1"]["runtime"]["spec"]["template"]["spec"]
     .update(init_container=[{**_container(r), "name": "fetch", "image": "busybox:latest"}])),
    ("MLF031", "container overrides non-root", lambda r: _container(r)["security_context"].update(
        run_as_non_root=False)),
    ("MLF031", "unset everywhere", lambda r: (_container(r)["security_context"].pop("run_as_non_root"),
                                              r["kubernetes_deployment_v1"]["runtime"]["spec"]["template"]["spec"]
                                              .pop("security_context"))),
    ("MLF031", "user 0", lambda r: _container(r)["security_context"].update(run_as_user="0")),
    ("MLF032", "writable root", lambda r: _container(r)["security_context"].update(read_only_root_filesystem=False)),
    ("MLF033", "privileged", lambda r: _container(r)["security_context"].update(privileged=True)),
    ("MLF033", "escalation left to the default", lambda r: _container(r)["security_context"].pop(
        "allow_privilege_escalation")),
    ("MLF034", "TLS 1.0 policy", lambda r: _nlb_annotations(r).update(
        {_NLB + "ssl-negotiation-policy": "ELBSecurityPolicy-TLS13-1-0-2021-06"})),
    ("MLF034", "controller default policy", lambda r: _nlb_annotations(r).pop(_NLB + "ssl-negotiation-policy")),
    ("MLF034", "no certificate", lambda r: _nlb_annotations(r).pop(_NLB + "ssl-cert")),
    ("MLF034", "a plain listener", lambda r: _nlb_annotations(r).update({_NLB + "ssl-ports": "443"})),
    ("MLF034", "GKE SSL policy TLS 1.0", lambda r: r["google_compute_region_ssl_policy"]["ssl"].update(
        min_tls_version="TLS_1_0")),
    ("MLF034", "GKE SSL policy unset", lambda r: r["google_compute_region_ssl_policy"]["ssl"].pop("min_tls_version")),
    ("MLF034", "Gateway without its policy", lambda r: r["kubernetes_manifest"].pop("gateway-policy")),
    ("MLF035", "container port", lambda r: _container(r)["port"].append({"container_port": 8012, "name": "mgmt"})),
    ("MLF035", "8002 when the args name none", lambda r: (_container(r).update(args=[]),
                                                          _container(r)["port"].append({"container_port": 8002}))),
    ("MLF035", "service target", lambda r: r["kubernetes_service_v1"]["internal"]["spec"]["port"].append(
        {"port": 9000, "target_port": "8012"})),
    ("MLF035", "network policy port range", lambda r: r["kubernetes_network_policy_v1"]["np"]["spec"]["ingress"][0][
        "ports"].append({"port": "8010", "end_port": 8020, "protocol": "TCP"})),
    ("MLF035", "--management-port=N form", lambda r: (
        _container(r).update(args=["--management-port=9100"]),
        r["kubernetes_network_policy_v1"]["np"]["spec"]["ingress"][0]["ports"].append({"port": "9100"}))),
]


@pytest.mark.parametrize("rule,_why,change", SERVING_CASES, ids=[f"{c[0]}-{c[1]}" for c in SERVING_CASES])
def test_each_serving_rule_catches_its_violation(rule, _why, change):
    found = _rules(_tf(_serving(change)))
    assert rule in found
    # Each case breaks exactly the rule it is about.
    assert found == {rule}


def test_management_port_finding_names_the_port_and_the_resource():
    tf = _tf(_serving(lambda r: r["kubernetes_service_v1"]["internal"]["spec"]["port"].append(
        {"port": 8012, "target_port": "8012"})))
    [finding] = evaluate_terraform("s", tf)
    assert (finding.rule, finding.address) == ("MLF035", "kubernetes_service_v1.internal")
    assert "8012" in finding.message


def test_serving_and_registry_rules_are_the_ids_after_the_dr_rules():
    # MLF030-MLF035 the serving plane's, MLF036-MLF037 the model registry's, MLF040-MLF048 Security v2's.
    assert {r for r in RULES if r >= "MLF030"} == {f"MLF03{i}" for i in range(8)} | {f"MLF04{i}" for i in range(9)}
