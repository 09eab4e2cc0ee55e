"""The regional serving endpoint: a TLS NLB Service reconciled by the AWS Load Balancer Controller."""
from __future__ import annotations

import pytest

from mlfleet.constructs.acknowledgements import acknowledgements_for
from mlfleet.constructs.aws.serving_load_balancer import NlbServingEndpoint, NlbServingEndpointProps
from mlfleet.constructs.validation import PropsError

from helpers.template import Template

CERT = "arn:aws:acm:us-east-1:111111111111:certificate/0123abcd-0000-0000-0000-000000000000"
SELECTOR = {"app.kubernetes.io/name": "mlfleet-runtime", "app.kubernetes.io/instance": "mlfleet-runtime"}
LB = "service.beta.kubernetes.io/aws-load-balancer-"


def props(**overrides) -> NlbServingEndpointProps:
    base = dict(name="mlfleet-runtime-public", namespace="mlfleet", selector=SELECTOR, certificate_arn=CERT)
    return NlbServingEndpointProps(**{**base, **overrides})


def _synth(synth, **overrides):
    from cdktn import TerraformOutput
    from cdktn_provider_kubernetes.provider import KubernetesProvider

    built = {}

    def build(stack):
        KubernetesProvider(stack, "kubernetes", config_path="~/.kube/config")
        endpoint = built["endpoint"] = NlbServingEndpoint(stack, "endpoint", props(**overrides))
        TerraformOutput(stack, "hostname", value=endpoint.hostname)

    return Template(synth(build, with_provider=False)), built["endpoint"]


def test_tls_nlb_forwards_443_and_8443_to_the_runtime_and_checks_readiness(synth):
    template, endpoint = _synth(synth)
    service = template.only("kubernetes_service_v1")
    annotations = service["metadata"]["annotations"]
    assert annotations == {
        LB + "type": "external", LB + "nlb-target-type": "ip", LB + "scheme": "internet-facing",
        LB + "ssl-cert": CERT, LB + "ssl-ports": "443,8443",
        LB + "ssl-negotiation-policy": "ELBSecurityPolicy-TLS13-1-2-2021-06", LB + "backend-protocol": "tcp",
        LB + "healthcheck-protocol": "http", LB + "healthcheck-port": "8000",
        LB + "healthcheck-path": "/v2/health/ready", LB + "healthcheck-success-codes": "200"}
    spec = service["spec"]
    assert spec["type"] == "LoadBalancer" and spec["load_balancer_class"] == "service.k8s.aws/nlb"
    assert spec["selector"] == SELECTOR and spec["allocate_load_balancer_node_ports"] is False
    # Exactly the two TLS listeners: never a management or metrics port.
    assert [(p["port"], p["target_port"], p["protocol"]) for p in spec["port"]] == [
        (443, "8000", "TCP"), (8443, "8001", "TCP")]
    assert spec["load_balancer_source_ranges"] == ["0.0.0.0/0"]
    assert service["wait_for_load_balancer"] is True
    service_id = next(iter(template.resources("kubernetes_service_v1")))
    assert template.output_value("hostname") == (
        f"${{kubernetes_service_v1.{service_id}.status[0].load_balancer[0].ingress[0].hostname}}")
    # The public endpoint is an acknowledged exception, with its reason.
    (ack,) = acknowledgements_for(endpoint.service, "MLF002")
    assert "Route 53" in ack.reason


def test_custom_ports_move_the_targets_and_the_health_check(synth):
    template, endpoint = _synth(synth, http_port=9000, grpc_port=9001, scheme="internal",
                                source_ranges=("10.0.0.0/8",), ssl_policy="ELBSecurityPolicy-TLS-1-2-Ext-2018-06",
                                annotations={LB + "attributes": "load_balancing.cross_zone.enabled=true"})
    service = template.only("kubernetes_service_v1")
    annotations = service["metadata"]["annotations"]
    assert annotations[LB + "healthcheck-port"] == "9000" and annotations[LB + "scheme"] == "internal"
    assert annotations[LB + "ssl-negotiation-policy"] == "ELBSecurityPolicy-TLS-1-2-Ext-2018-06"
    assert annotations[LB + "attributes"] == "load_balancing.cross_zone.enabled=true"
    assert [p["target_port"] for p in service["spec"]["port"]] == ["9000", "9001"]
    assert service["spec"]["load_balancer_source_ranges"] == ["10.0.0.0/8"]
    assert acknowledgements_for(endpoint.service, "MLF002") == []  # internal: nothing public to acknowledge


@pytest.mark.parametrize("overrides, match", [
    (dict(ssl_policy="ELBSecurityPolicy-2016-08"), r"ssl_policy: 'ELBSecurityPolicy-2016-08' allows TLS below 1.2"),
    (dict(ssl_policy="ELBSecurityPolicy-TLS-1-1-2017-01"), r"ssl_policy: .* allows TLS below 1.2"),
    (dict(scheme="public"), r"scheme: 'public' is not 'internet-facing' or 'internal'"),
    (dict(public_access_reason=" "), r"public_access_reason: an internet-facing endpoint needs a reason"),
    (dict(certificate_arn="arn:aws:iam::111111111111:server-certificate/x"), r"certificate_arn: .* not an ACM"),
    (dict(selector={}), r"selector: select the runtime's pods"),
    (dict(selector={"app": "bad value!"}), r"selector\['app'\]"),
    (dict(name="Runtime"), r"name: 'Runtime' is not a Kubernetes DNS label"),
    (dict(http_port=8001), r"grpc_port: is the same port as http_port"),
    (dict(grpc_port=70000), r"grpc_port: 70000 is not a TCP port"),
    (dict(source_ranges=("10.0.0.1/8",)), r"source_ranges\[0\]: '10.0.0.1/8' is not a CIDR"),
    (dict(source_ranges=()), r"source_ranges: name the CIDRs"),
    (dict(annotations={LB + "ssl-ports": "443"}), r"annotations\[.*ssl-ports'\]: is set by the construct"),
    (dict(annotations={LB + "alpn-policy": "HTTP2Preferred"}), r"annotations\[.*alpn-policy'\]"),
])
def test_invalid_props_are_rejected_with_the_prop_named(synth, overrides, match):
    with pytest.raises(PropsError, match=match):
        _synth(synth, **overrides)
