"""The regional serving endpoint: a TLS network load balancer in front of the runtime's pods,
made by the AWS Load Balancer Controller from a Kubernetes `LoadBalancer` Service.

- TLS ends at the NLB with an ACM certificate and a TLS 1.2+ security policy; 443 forwards to
  the runtime's HTTP port and 8443 to its gRPC port, as TCP to the pod IPs (`ip` targets, so no
  node ports). Nothing else is exposed: never a management or metrics port.
- The targets are health-checked over HTTP on `/v2/health/ready` at the HTTP port, the runtime's
  readiness, for both listeners: a pod that is not ready takes neither kind of traffic.
- `hostname` is the NLB's DNS name; the kubernetes provider waits for it before the Service
  counts as created, so the failover record built from it never points at nothing.

An internet-facing NLB is an explicit exception to "no public access" (rule MLF002, acknowledged
on the Service with `public_access_reason`): Route 53's failover health checkers probe
`<region>.<dns_name>` from the internet, and so do the clients the record fails over. Narrow
`source_ranges` where clients allow it (Route 53 publishes its checkers' ranges).

ALPN: the controller takes one ALPN policy per Service (the `aws-load-balancer-alpn-policy`
annotation), applied to every TLS listener. Offering h2 on 443 would let HTTP clients negotiate
HTTP/2 towards the runtime's HTTP/1.1 port, so none is set: gRPC clients that require ALPN
`h2` from the server need a Service of their own for 8443.

The construct does not configure the kubernetes provider; the caller does (one per cluster).
"""
from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

from cdktn import Token
from cdktn_provider_kubernetes.service_v1 import ServiceV1, ServiceV1Metadata, ServiceV1Spec, ServiceV1SpecPort
from constructs import Construct

from mlfleet.constructs.acknowledgements import acknowledge
from mlfleet.constructs.validation import (
    ACM_CERTIFICATE_ARN,
    KUBERNETES_NAME,
    PropsError,
    require,
    require_kubernetes_labels,
)

LOAD_BALANCER_CLASS = "service.k8s.aws/nlb"
HTTPS_PORT = 443
GRPCS_PORT = 8443
READY_PATH = "/v2/health/ready"
DEFAULT_SSL_POLICY = "ELBSecurityPolicy-TLS13-1-2-2021-06"
SSL_POLICY_PREFIXES = ("ELBSecurityPolicy-TLS13-", "ELBSecurityPolicy-TLS-1-2-")
"""ELB security policies whose minimum is TLS 1.2 (TLS 1.3 policies included)."""
INTERNET_FACING_REASON = ("Route 53 failover health checkers and the serving clients reach the "
                          "regional endpoint from the internet")
_ANNOTATION = "service.beta.kubernetes.io/aws-load-balancer-"
_SCHEMES = ("internet-facing", "internal")
_SET_HERE = frozenset(_ANNOTATION + suffix for suffix in (
    "type", "nlb-target-type", "scheme", "ssl-cert", "ssl-ports", "ssl-negotiation-policy", "backend-protocol",
    "healthcheck-protocol", "healthcheck-port", "healthcheck-path", "healthcheck-success-codes"))


@dataclass(frozen=True, kw_only=True)
class NlbServingEndpointProps:
    name: str
    """The Service's name."""
    namespace: str
    """The runtime's namespace."""
    selector: dict[str, str]
    """Labels of the runtime's pods (a `ServingDeployment`'s `labels`)."""
    certificate_arn: str
    """The ACM certificate of `<region>.<dns_name>`: a `DnsValidatedCertificate`'s `certificate_arn`."""
    http_port: int = 8000
    """The runtime's HTTP port, behind 443 and health-checked; default `8000`."""
    grpc_port: int = 8001
    """The runtime's gRPC port, behind 8443; default `8001`."""
    ssl_policy: str = DEFAULT_SSL_POLICY
    """The listeners' ELB security policy, TLS 1.2 or newer; default `ELBSecurityPolicy-TLS13-1-2-2021-06`."""
    scheme: str = "internet-facing"
    """`internet-facing` or `internal`; default `internet-facing` (see the module docstring for why)."""
    public_access_reason: str = INTERNET_FACING_REASON
    """Why an internet-facing endpoint is public, shown in the review; default: Route 53's checkers are on the
    internet."""
    source_ranges: tuple[str, ...] = ("0.0.0.0/0",)
    """CIDRs the NLB admits; default `0.0.0.0/0` (Route 53's checkers and the clients)."""
    annotations: dict[str, str] = field(default_factory=dict)
    """More Service annotations (e.g. load balancer attributes); default none. They cannot replace the ones
    this construct sets."""


class NlbServingEndpoint(Construct):
    """A TLS NLB Service for the runtime's HTTP and gRPC ports (see module docstring)."""

    def __init__(self, scope: Construct, id_: str, props: NlbServingEndpointProps):
        super().__init__(scope, id_)
        _validate(self, props)
        annotations = {
            # The controller, not the in-tree cloud provider, makes the NLB (`external`).
            _ANNOTATION + "type": "external",
            _ANNOTATION + "nlb-target-type": "ip",
            # Always written: the controller's default (internal) is never relied on either way.
            _ANNOTATION + "scheme": props.scheme,
            _ANNOTATION + "ssl-cert": props.certificate_arn,
            _ANNOTATION + "ssl-ports": f"{HTTPS_PORT},{GRPCS_PORT}",
            _ANNOTATION + "ssl-negotiation-policy": props.ssl_policy,
            _ANNOTATION + "backend-protocol": "tcp",
            _ANNOTATION + "healthcheck-protocol": "http",
            _ANNOTATION + "healthcheck-port": str(props.http_port),
            _ANNOTATION + "healthcheck-path": READY_PATH,
            _ANNOTATION + "healthcheck-success-codes": "200",
        }
        self.service = ServiceV1(
            self, "service", wait_for_load_balancer=True,
            metadata=ServiceV1Metadata(name=props.name, namespace=props.namespace,
                                       annotations={**props.annotations, **annotations}),
            spec=ServiceV1Spec(
                type="LoadBalancer", load_balancer_class=LOAD_BALANCER_CLASS, selector=dict(props.selector),
                # `ip` targets reach the pods directly: no node port is opened on any node.
                allocate_load_balancer_node_ports=False,
                load_balancer_source_ranges=sorted(props.source_ranges),
                port=[ServiceV1SpecPort(name="https", port=HTTPS_PORT, target_port=str(props.http_port),
                                        protocol="TCP"),
                      ServiceV1SpecPort(name="grpcs", port=GRPCS_PORT, target_port=str(props.grpc_port),
                                        protocol="TCP")]))
        if props.scheme == "internet-facing":
            acknowledge(self.service, "MLF002", props.public_access_reason)

        self.hostname: str = self.service.status.get(0).load_balancer.get(0).ingress.get(0).hostname
        """The NLB's DNS name, known once the controller has created it (the provider waits for it)."""
        self.scheme = props.scheme


def _validate(scope: Construct, props: NlbServingEndpointProps) -> None:
    for prop in ("name", "namespace"):
        value = getattr(props, prop)
        require(bool(KUBERNETES_NAME.fullmatch(value)), scope, prop, f"{value!r} is not a Kubernetes DNS label")
    require(bool(props.selector), scope, "selector", "select the runtime's pods: an empty selector matches none")
    require_kubernetes_labels(scope, "selector", props.selector)
    require(Token.is_unresolved(props.certificate_arn) or bool(ACM_CERTIFICATE_ARN.fullmatch(props.certificate_arn)),
            scope, "certificate_arn",
            f"{props.certificate_arn!r} is not an ACM certificate ARN")
    for prop in ("http_port", "grpc_port"):
        port = getattr(props, prop)
        require(1 <= port <= 65535, scope, prop, f"{port} is not a TCP port")
    require(props.http_port != props.grpc_port, scope, "grpc_port", "is the same port as http_port")
    require(props.ssl_policy.startswith(SSL_POLICY_PREFIXES), scope, "ssl_policy",
            f"{props.ssl_policy!r} allows TLS below 1.2; use an ELBSecurityPolicy-TLS13-* or "
            "ELBSecurityPolicy-TLS-1-2-* policy")
    require(props.scheme in _SCHEMES, scope, "scheme",
            f"{props.scheme!r} is not 'internet-facing' or 'internal'")
    if props.scheme == "internet-facing":
        require(bool(props.public_access_reason.strip()), scope, "public_access_reason",
                "an internet-facing endpoint needs a reason (rule MLF002)")
    require(bool(props.source_ranges), scope, "source_ranges", "name the CIDRs the load balancer admits")
    for i, cidr in enumerate(props.source_ranges):
        try:
            ipaddress.ip_network(cidr, strict=True)
        except ValueError as exc:
            raise PropsError(scope, f"source_ranges[{i}]", f"{cidr!r} is not a CIDR ({exc})") from None
    require(len(set(props.source_ranges)) == len(props.source_ranges), scope, "source_ranges", "lists a CIDR twice")
    for key in props.annotations:
        require(key not in _SET_HERE and not key.startswith(_ANNOTATION + "alpn"), scope, f"annotations[{key!r}]",
                "is set by the construct (TLS, targets, scheme, health check, ALPN): change the prop instead")
