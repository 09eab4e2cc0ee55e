"""The runtime's TLS endpoint in one Google Cloud region: a GKE Gateway on a regional external
Application Load Balancer, at `<region>.<dns_name>` in the environment's Route 53 hosted zone.

Why these parts:
- GatewayClass `gke-l7-regional-external-managed`: the load balancer, its certificate, SSL policy
  and address all live in the serving region, so losing another region never touches this
  endpoint (the global classes put every region behind one global forwarding rule and URL map).
  A regional class needs the region's proxy-only subnet (`GcpRegionalNetworkProps.proxy_subnet_cidr`)
  and a cluster with the Gateway API on (`GkeCluster` turns it on).
- A Google-managed Certificate Manager certificate in the region, authorized by a regional DNS
  authorization (`PER_PROJECT_RECORD`, the only kind a regional certificate takes), whose CNAME
  goes into the Route 53 zone: the zone is on AWS even for Google Cloud regions, and the stack
  has an AWS provider.
- A regional SSL policy (TLS 1.2 or newer, `RESTRICTED` ciphers by default) attached with a
  `GCPGatewayPolicy`; HTTPS only, no plain HTTP listener.
- A `HealthCheckPolicy` so the load balancer probes `health_path` on the serving port rather
  than `/`.

The address is external on purpose: Route 53's failover health checkers probe
`https://<hostname>/v2/health/failover` from the internet. It is the one public part; the runtime
behind it stays a ClusterIP Service, and its NetworkPolicy admits only
`load_balancer_source_cidrs` (the proxy-only subnet the load balancer's proxies connect from, and
Google's health-check ranges).

gRPC is not exposed here: GKE's Gateway controller does not implement `GRPCRoute`, and gRPC through
an `HTTPRoute` would need TLS on the backend, which the runtime's plaintext gRPC port does not
speak. gRPC clients stay inside the cluster (or the VPC).

The Kubernetes objects are `kubernetes_manifest` resources: Terraform reads their CRDs from the
cluster when it plans, so the cluster (with the Gateway API on) must exist first. The construct does
not configure the kubernetes provider; the caller does (one per cluster), as for `ServingDeployment`.
"""
from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Any, Literal

from cdktn import TerraformOutput
from cdktn_provider_aws.route53_record import Route53Record
from cdktn_provider_google.certificate_manager_certificate import (
    CertificateManagerCertificate,
    CertificateManagerCertificateManaged,
)
from cdktn_provider_google.certificate_manager_dns_authorization import CertificateManagerDnsAuthorization
from cdktn_provider_google.compute_address import ComputeAddress
from cdktn_provider_google.compute_region_ssl_policy import ComputeRegionSslPolicy
from cdktn_provider_kubernetes.manifest import Manifest
from constructs import Construct

from mlfleet.constructs.acknowledgements import acknowledge
from mlfleet.constructs.gcp.network import PRIVATE_RANGES
from mlfleet.constructs.validation import (
    DNS_NAME,
    GOOGLE_PROJECT_ID,
    GOOGLE_REGION,
    GOOGLE_RESOURCE_NAME,
    HOSTED_ZONE_ID,
    HTTP_PATH,
    KUBERNETES_NAME,
    PropsError,
    require,
)

GATEWAY_CLASS = "gke-l7-regional-external-managed"
GATEWAY_API = "gateway.networking.k8s.io/v1"
GKE_POLICY_API = "networking.gke.io/v1"
# Where Google's load balancer health checks come from (they must reach the pods).
HEALTH_CHECK_RANGES = ("35.191.0.0/16", "130.211.0.0/22")
HTTPS_PORT = 443
NAME_MAX = 54  # leaves room for the longest suffix below (`-dns-auth`) within 63
DNS_AUTHORIZATION_TTL = 300
HOSTNAME_TTL = 60  # short: a re-created address is followed within a minute
PROXY_SUBNET_MAX_PREFIX = 26  # Google's smallest proxy-only subnet
EXTERNAL_REASON = ("Route 53 failover health checkers probe the region's endpoint from the internet, and "
                   "serving clients reach it there")


@dataclass(frozen=True, kw_only=True)
class GkeServingGatewayProps:
    project_id: str
    region: str
    name: str
    """Names the Gateway and, with suffixes, its address, certificate, DNS authorization and SSL policy."""
    namespace: str
    """The runtime's namespace: the Gateway, route and policies live beside its Service."""
    hostname: str
    """The region's endpoint, `<region>.<dns_name>`, in the hosted zone."""
    hosted_zone_id: str
    """The Route 53 hosted zone of `hostname`."""
    service_name: str
    """The runtime's ClusterIP Service."""
    proxy_subnet_cidr: str
    """The region's proxy-only subnet (`GcpRegionalNetworkProps.proxy_subnet_cidr`): the proxies connect from it."""
    service_port: int = 8000
    """The Service's HTTP port; default `8000`."""
    health_path: str = "/v2/health/ready"
    """What the load balancer probes on the serving port; default `/v2/health/ready`."""
    min_tls_version: Literal["TLS_1_2", "TLS_1_3"] = "TLS_1_2"
    """Oldest TLS version clients may use; default `TLS_1_2`."""
    ssl_profile: Literal["MODERN", "RESTRICTED"] = "RESTRICTED"
    """The SSL policy's cipher profile (`TLS_1_3` needs `RESTRICTED`). Default: `RESTRICTED`."""
    public_access_reason: str = EXTERNAL_REASON
    """Why the external Gateway is public (rule MLF002), shown in the review; default: Route 53's checkers are
    on the internet."""


class GkeServingGateway(Construct):
    """A regional external Application Load Balancer in front of the runtime (see module docstring)."""

    def __init__(self, scope: Construct, id_: str, props: GkeServingGatewayProps):
        super().__init__(scope, id_)
        proxy_subnet = _validate(self, props)
        project, region, name = props.project_id, props.region, props.name

        self.compute_address = ComputeAddress(
            self, "address", project=project, region=region, name=name, address_type="EXTERNAL",
            network_tier="PREMIUM", description=f"HTTPS endpoint {props.hostname}")
        self.dns_authorization = CertificateManagerDnsAuthorization(
            self, "dns-authorization", project=project, location=region, name=f"{name}-dns-auth",
            domain=props.hostname, type="PER_PROJECT_RECORD")
        challenge = self.dns_authorization.dns_resource_record.get(0)
        self.dns_authorization_record = Route53Record(
            self, "dns-authorization-record", zone_id=props.hosted_zone_id, name=challenge.name,
            type="CNAME", ttl=DNS_AUTHORIZATION_TTL, records=[challenge.data])
        self.certificate = CertificateManagerCertificate(
            self, "certificate", project=project, location=region, name=f"{name}-cert",
            description=f"Google-managed certificate of {props.hostname}",
            managed=CertificateManagerCertificateManaged(
                domains=[props.hostname], dns_authorizations=[self.dns_authorization.id]),
            depends_on=[self.dns_authorization_record])
        self.ssl_policy = ComputeRegionSslPolicy(
            self, "ssl-policy", project=project, region=region, name=f"{name}-tls",
            min_tls_version=props.min_tls_version, profile=props.ssl_profile)
        self.hostname_record = Route53Record(
            self, "hostname-record", zone_id=props.hosted_zone_id, name=props.hostname, type="A",
            ttl=HOSTNAME_TTL, records=[self.compute_address.address])

        metadata = {"name": name, "namespace": props.namespace}
        # References to the Google resources, not plain names: the manifests are applied after them.
        self.gateway = self._manifest("gateway", "Gateway", GATEWAY_API, metadata, {
            "gatewayClassName": GATEWAY_CLASS,
            "listeners": [{
                "name": "https", "protocol": "HTTPS", "port": HTTPS_PORT, "hostname": props.hostname,
                "tls": {"mode": "Terminate",
                        "options": {"networking.gke.io/cert-manager-certs": self.certificate.name}}}],
            "addresses": [{"type": "NamedAddress", "value": self.compute_address.name}]})
        acknowledge(self.gateway, "MLF002", props.public_access_reason)
        self.route = self._manifest("http-route", "HTTPRoute", GATEWAY_API, metadata, {
            "parentRefs": [{"name": name, "sectionName": "https"}],
            "hostnames": [props.hostname],
            "rules": [{"backendRefs": [{"name": props.service_name, "port": props.service_port}]}]})
        self.health_check_policy = self._manifest("health-check-policy", "HealthCheckPolicy", GKE_POLICY_API,
                                                  metadata, {
            "targetRef": {"group": "", "kind": "Service", "name": props.service_name},
            "default": {"config": {"type": "HTTP", "httpHealthCheck": {
                # The pods' port behind the Service port the route uses (the NEG endpoints' port).
                "portSpecification": "USE_SERVING_PORT", "requestPath": props.health_path}}}})
        self.gateway_policy = self._manifest("gateway-policy", "GCPGatewayPolicy", GKE_POLICY_API, metadata, {
            "targetRef": {"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": name},
            "default": {"sslPolicy": self.ssl_policy.name}})

        self.hostname = props.hostname
        self.url = f"https://{props.hostname}"
        self.address: str = self.compute_address.address
        """The gateway's external IPv4 address (a reference)."""
        self.load_balancer_source_cidrs: tuple[str, ...] = (str(proxy_subnet), *HEALTH_CHECK_RANGES)
        """What the runtime's NetworkPolicy must admit on the serving port: the proxies and the health checks."""
        TerraformOutput(self, "serving_gateway_address", value=self.compute_address.address,
                        description=f"External address of {props.hostname}").override_logical_id(
            "serving_gateway_address")

    def _manifest(self, id_: str, kind: str, api_version: str, metadata: dict[str, str],
                  spec: dict[str, Any]) -> Manifest:
        return Manifest(self, id_, manifest={"apiVersion": api_version, "kind": kind, "metadata": dict(metadata),
                                             "spec": spec})


def _validate(scope: Construct, p: GkeServingGatewayProps) -> ipaddress.IPv4Network:
    require(bool(GOOGLE_PROJECT_ID.fullmatch(p.project_id)), scope, "project_id",
            f"{p.project_id!r} is not a Google Cloud project id")
    require(bool(GOOGLE_REGION.fullmatch(p.region)), scope, "region", f"{p.region!r} is not a Google Cloud region")
    require(bool(GOOGLE_RESOURCE_NAME.fullmatch(p.name)) and len(p.name) <= NAME_MAX, scope, "name",
            f"{p.name!r}: lowercase letters, digits and '-', starting with a letter, at most {NAME_MAX}")
    for prop in ("namespace", "service_name"):
        require(bool(KUBERNETES_NAME.fullmatch(getattr(p, prop))), scope, prop,
                f"{getattr(p, prop)!r} is not a Kubernetes name")
    require(bool(DNS_NAME.fullmatch(p.hostname)), scope, "hostname",
            f"{p.hostname!r} is not a fully qualified DNS name (no trailing dot, no wildcard)")
    require(bool(HOSTED_ZONE_ID.fullmatch(p.hosted_zone_id)), scope, "hosted_zone_id",
            f"{p.hosted_zone_id!r} is not a Route 53 hosted zone id")
    require(1 <= p.service_port <= 65535, scope, "service_port", f"{p.service_port} is not a TCP port")
    require(bool(HTTP_PATH.fullmatch(p.health_path)), scope, "health_path",
            f"{p.health_path!r} is not an absolute HTTP path")
    require(bool(p.public_access_reason.strip()), scope, "public_access_reason",
            "an external Gateway needs a reason (rule MLF002)")
    require(p.min_tls_version in ("TLS_1_2", "TLS_1_3"), scope, "min_tls_version",
            f"{p.min_tls_version!r}: TLS 1.2 or newer (TLS 1.0 and 1.1 are broken)")
    require(p.ssl_profile in ("MODERN", "RESTRICTED"), scope, "ssl_profile",
            f"{p.ssl_profile!r} is not MODERN or RESTRICTED")
    require(p.min_tls_version != "TLS_1_3" or p.ssl_profile == "RESTRICTED", scope, "ssl_profile",
            "TLS_1_3 as the minimum needs the RESTRICTED profile")
    try:
        proxy_subnet = ipaddress.IPv4Network(p.proxy_subnet_cidr)
    except ValueError as error:
        raise PropsError(scope, "proxy_subnet_cidr", f"{p.proxy_subnet_cidr!r} is not an IPv4 CIDR block ({error})") \
            from None
    require(any(proxy_subnet.subnet_of(r) for r in PRIVATE_RANGES), scope, "proxy_subnet_cidr",
            f"{proxy_subnet} is not in a private range")
    require(proxy_subnet.prefixlen <= PROXY_SUBNET_MAX_PREFIX, scope, "proxy_subnet_cidr",
            f"a proxy-only subnet is at least a /{PROXY_SUBNET_MAX_PREFIX} (a /23 is recommended)")
    return proxy_subnet
