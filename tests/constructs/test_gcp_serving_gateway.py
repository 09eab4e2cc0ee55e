from __future__ import annotations

import cdktn
import pytest

from mlfleet.constructs.gcp.serving_gateway import GkeServingGateway, GkeServingGatewayProps
from mlfleet.constructs.policy import evaluate_terraform
from mlfleet.constructs.validation import PropsError

from helpers.template import Template

PROJECT, REGION = "mlfleet-prod", "us-central1"
HOSTNAME, ZONE = "us-central1.serve.example.com", "Z0123456789ABCDEFGHIJ"


def providers(build):
    from cdktn_provider_google.provider import GoogleProvider
    from cdktn_provider_kubernetes.provider import KubernetesProvider

    def _build(stack):
        GoogleProvider(stack, "google", project=PROJECT, region=REGION)
        KubernetesProvider(stack, "kubernetes", config_path="~/.kube/config")
        return build(stack)
    return _build


def props(**overrides) -> GkeServingGatewayProps:
    return GkeServingGatewayProps(**{**dict(
        project_id=PROJECT, region=REGION, name="mlfleet-prod-usc1-serving", namespace="mlfleet",
        hostname=HOSTNAME, hosted_zone_id=ZONE, service_name="mlfleet-runtime",
        proxy_subnet_cidr="10.129.0.0/23"), **overrides})


def manifests(template: Template) -> dict[str, dict]:
    """The Kubernetes objects by kind."""
    objects = [m["manifest"] for m in template.resources("kubernetes_manifest").values()]
    assert len(objects) == len({o["kind"] for o in objects})
    return {o["kind"]: o for o in objects}


def ref(template: Template, rtype: str, attribute: str) -> str:
    return f"${{{rtype}.{next(iter(template.resources(rtype)))}.{attribute}}}"


@pytest.fixture(scope="module")
def synthesized(tmp_path_factory):
    import json

    from cdktn import TerraformStack, Testing
    from cdktn_provider_aws.provider import AwsProvider

    app = Testing.app(outdir=str(tmp_path_factory.mktemp("out")))
    stack = TerraformStack(app, "test")
    AwsProvider(stack, "aws", region="us-east-1")
    gateway = providers(lambda s: GkeServingGateway(s, "gateway", props()))(stack)
    return gateway, Template(json.loads(Testing.synth(stack)))


def test_the_load_balancer_is_regional_with_a_regional_certificate_address_and_tls_policy(synthesized):
    _, template = synthesized
    address = template.has_resource_properties("google_compute_address", {
        "name": "mlfleet-prod-usc1-serving", "region": REGION, "address_type": "EXTERNAL"})
    assert "purpose" not in address
    template.has_resource_properties("google_certificate_manager_dns_authorization", {
        "location": REGION, "domain": HOSTNAME, "type": "PER_PROJECT_RECORD"})
    certificate = template.has_resource_properties("google_certificate_manager_certificate", {
        "location": REGION, "name": "mlfleet-prod-usc1-serving-cert",
        "managed": {"domains": [HOSTNAME],
                    "dns_authorizations": [ref(template, "google_certificate_manager_dns_authorization", "id")]}})
    template.has_resource_properties("google_compute_region_ssl_policy", {
        "region": REGION, "min_tls_version": "TLS_1_2", "profile": "RESTRICTED"})
    # The certificate is requested once its DNS authorization answers in Route 53.
    records = {r["type"]: r for r in template.resources("aws_route53_record").values()}
    assert certificate["depends_on"] == [
        f"aws_route53_record.{n}" for n, r in template.resources("aws_route53_record").items() if r["type"] == "CNAME"]
    authorization = next(iter(template.resources("google_certificate_manager_dns_authorization")))
    assert records["CNAME"] == {**records["CNAME"], "zone_id": ZONE, "records": [
        f"${{google_certificate_manager_dns_authorization.{authorization}.dns_resource_record[0].data}}"],
        "name": f"${{google_certificate_manager_dns_authorization.{authorization}.dns_resource_record[0].name}}"}
    assert (records["A"]["name"], records["A"]["zone_id"], records["A"]["records"]) == (
        HOSTNAME, ZONE, [ref(template, "google_compute_address", "address")])
    assert template.output_value("serving_gateway_address") == ref(template, "google_compute_address", "address")


def test_the_gateway_terminates_tls_on_443_with_the_certificate_policy_and_address(synthesized):
    _, template = synthesized
    objects = manifests(template)
    assert set(objects) == {"Gateway", "HTTPRoute", "HealthCheckPolicy", "GCPGatewayPolicy"}
    assert {o["metadata"]["namespace"] for o in objects.values()} == {"mlfleet"}
    gateway = objects["Gateway"]
    assert gateway["apiVersion"] == "gateway.networking.k8s.io/v1"
    assert gateway["spec"]["gatewayClassName"] == "gke-l7-regional-external-managed"
    assert gateway["spec"]["listeners"] == [{
        "name": "https", "protocol": "HTTPS", "port": 443, "hostname": HOSTNAME,
        "tls": {"mode": "Terminate", "options": {
            "networking.gke.io/cert-manager-certs": ref(template, "google_certificate_manager_certificate", "name")}}}]
    assert gateway["spec"]["addresses"] == [{"type": "NamedAddress",
                                             "value": ref(template, "google_compute_address", "name")}]
    route = objects["HTTPRoute"]["spec"]
    assert route["parentRefs"] == [{"name": gateway["metadata"]["name"], "sectionName": "https"}]
    assert route["hostnames"] == [HOSTNAME]
    assert route["rules"] == [{"backendRefs": [{"name": "mlfleet-runtime", "port": 8000}]}]
    health = objects["HealthCheckPolicy"]
    assert health["apiVersion"] == "networking.gke.io/v1"
    assert health["spec"]["targetRef"] == {"group": "", "kind": "Service", "name": "mlfleet-runtime"}
    assert health["spec"]["default"]["config"] == {"type": "HTTP", "httpHealthCheck": {
        "portSpecification": "USE_SERVING_PORT", "requestPath": "/v2/health/ready"}}
    policy = objects["GCPGatewayPolicy"]["spec"]
    assert policy["targetRef"] == {"group": "gateway.networking.k8s.io", "kind": "Gateway",
                                   "name": gateway["metadata"]["name"]}
    assert policy["default"] == {"sslPolicy": ref(template, "google_compute_region_ssl_policy", "name")}


def test_the_gateway_exposes_its_endpoint_and_the_ranges_the_runtime_must_admit(synthesized):
    gateway, template = synthesized
    assert (gateway.hostname, gateway.url) == (HOSTNAME, f"https://{HOSTNAME}")
    assert gateway.load_balancer_source_cidrs == ("10.129.0.0/23", "35.191.0.0/16", "130.211.0.0/22")
    assert cdktn.Token.is_unresolved(gateway.address)


def test_the_external_gateway_is_the_only_public_part_and_says_why(synthesized):
    from mlfleet.constructs.acknowledgements import acknowledgements_for
    from mlfleet.constructs.gcp.serving_gateway import EXTERNAL_REASON

    gateway, template = synthesized
    # MLF006 is the stack's: tags and labels come from the providers' defaults, set by stacks.
    findings = [(f.rule, f.address.split("_")[:2]) for f in evaluate_terraform("gcp", template.tf)
                if f.rule != "MLF006"]
    assert findings == [("MLF002", ["kubernetes", "manifest.gateway"])]
    # ... acknowledged on the Gateway itself, with the reason the review shows.
    assert [a.reason for a in acknowledgements_for(gateway.gateway, "MLF002")] == [EXTERNAL_REASON]


@pytest.fixture
def stack():
    return cdktn.TerraformStack(cdktn.Testing.app(), "test")


def test_tls_1_3_and_a_custom_health_path_reach_the_policies(stack):
    GkeServingGateway(stack, "gateway", props(min_tls_version="TLS_1_3", health_path="/v2/health/live",
                                               service_port=8080))
    tf = stack.to_terraform()
    policy = next(iter(tf["resource"]["google_compute_region_ssl_policy"].values()))
    assert (policy["min_tls_version"], policy["profile"]) == ("TLS_1_3", "RESTRICTED")
    objects = {m["manifest"]["kind"]: m["manifest"] for m in tf["resource"]["kubernetes_manifest"].values()}
    assert objects["HealthCheckPolicy"]["spec"]["default"]["config"]["httpHealthCheck"]["requestPath"] == \
        "/v2/health/live"
    assert objects["HTTPRoute"]["spec"]["rules"][0]["backendRefs"][0]["port"] == 8080


@pytest.mark.parametrize("overrides, message", [
    (dict(region="us-central1-a"), "region: 'us-central1-a' is not a Google Cloud region"),
    (dict(name="mlfleet-production-us-central1-serving-gateway-primary-2"), "name: .* at most 54"),
    (dict(namespace="ML_Fleet"), "namespace: 'ML_Fleet' is not a Kubernetes name"),
    (dict(hostname="*.serve.example.com"), r"hostname: '\*.serve.example.com' is not a fully qualified DNS name"),
    (dict(hosted_zone_id="zone-1"), "hosted_zone_id: 'zone-1' is not a Route 53 hosted zone id"),
    (dict(service_port=0), "service_port: 0 is not a TCP port"),
    (dict(health_path="v2/health/ready"), "health_path: 'v2/health/ready' is not an absolute HTTP path"),
    (dict(min_tls_version="TLS_1_0"), "min_tls_version: 'TLS_1_0': TLS 1.2 or newer"),
    (dict(min_tls_version="TLS_1_3", ssl_profile="MODERN"), "ssl_profile: TLS_1_3 as the minimum needs the RESTRICTED"),
    (dict(ssl_profile="COMPATIBLE"), "ssl_profile: 'COMPATIBLE' is not MODERN or RESTRICTED"),
    (dict(proxy_subnet_cidr="10.129.0.0/27"), "proxy_subnet_cidr: a proxy-only subnet is at least a /26"),
    (dict(proxy_subnet_cidr="34.0.0.0/23"), "proxy_subnet_cidr: 34.0.0.0/23 is not in a private range"),
    (dict(proxy_subnet_cidr="10.129.0.0/33"), "proxy_subnet_cidr: '10.129.0.0/33' is not an IPv4 CIDR block"),
])
def test_invalid_props_name_the_prop(stack, overrides, message):
    with pytest.raises(PropsError, match=message):
        GkeServingGateway(stack, "gateway", props(**overrides))
