"""The serving plane each region runs, read from its `<env>-<region>-serving` stack's Terraform
JSON: the runtime image (by digest), the runtime pods per pool, the endpoint's hostname, the
load balancer in front of it, and the key the runtime verifies the signed manifest with.

The pods are the Deployments' `replicas` (what is created; a standby's are the warm ones, models
loaded). A standby's failover size is not in any stack: the DR runbook scales the Deployments to
`serving.replicas.failover`, so that one number comes from the environment.
"""
from __future__ import annotations

from dataclasses import dataclass

from mlfleet.constructs.terraform_json import (
    blocks,
    data_sources,
    first_block,
    output_value,
    provider_region,
    resources,
)
from mlfleet.stacks.environment import Environment, naming

# The node label each cloud's pool selector uses (EKS managed node groups, GKE node pools).
_POOL_LABELS = ("eks.amazonaws.com/nodegroup", "cloud.google.com/gke-nodepool")
_AWS_LB = "service.beta.kubernetes.io/aws-load-balancer-"
# GKE Gateway classes, as Cloud Load Balancing names the load balancer each one creates.
_GATEWAY_CLASSES = {
    "gke-l7-regional-external-managed": "regional external Application LB",
    "gke-l7-global-external-managed": "global external Application LB",
    "gke-l7-gxlb": "classic global external Application LB",
    "gke-l7-rilb": "regional internal Application LB",
}
NLB = "NLB"


@dataclass(frozen=True)
class ServingEndpoint:
    stack: str
    region: str
    cloud: str
    role: str                          # primary | standby
    image: str                         # the full reference, registry/name@sha256:…
    replicas: dict[str, int]           # pool → runtime pods created (a standby's: warm)
    failover_replicas: int | None      # a standby's pods per pool once failed over; None on the primary
    hostname: str | None               # the regional name the failover health check probes
    load_balancer: str | None          # NLB, regional external Application LB, …; None: no external endpoint
    scheme: str | None = None          # NLB: internet-facing or internal
    tls_policy: str | None = None      # the NLB's negotiation policy, or the SSL policy's minimum TLS version
    manifest_key: str | None = None    # the signing key whose public key the runtime verifies with; None: unsigned
    manifest_key_service: str | None = None   # KMS or Cloud KMS

    @property
    def digest(self) -> str:
        """The image digest, short: sha256: and its first 12 hex digits (as `docker images` shows it)."""
        _, _, digest = self.image.partition("@")
        return digest[:len("sha256:") + 12] if digest else "not pinned"

    @property
    def image_name(self) -> str:
        return self.image.partition("@")[0].rsplit("/", 1)[-1]

    @property
    def registry(self) -> str:
        return self.image.partition("@")[0].rsplit("/", 1)[0]


def serving_endpoints(env: Environment, stacks: dict[str, dict]) -> list[ServingEndpoint]:
    """Each region's serving plane, primary first; a region without its serving stack has none."""
    found = []
    for region in (env.primary, *env.standbys):
        name = naming.serving_stack_name(env.name, region.name)
        if name in stacks:
            found.append(_endpoint(env, name, stacks[name], region.role, region.cloud))
    return found


def _endpoint(env: Environment, name: str, tf: dict, role: str, cloud: str) -> ServingEndpoint:
    replicas: dict[str, int] = {}
    images = []
    for body in resources(tf, "kubernetes_deployment_v1").values():
        spec = first_block(body.get("spec"))
        pod = first_block(first_block(spec.get("template")).get("spec"))
        selector = pod.get("node_selector") or {}
        pool = next((selector[label] for label in _POOL_LABELS if label in selector), "?")
        # Kubernetes creates one pod when replicas is unset.
        replicas[pool] = replicas.get(pool, 0) + int(spec.get("replicas", 1))
        images += [str(c.get("image", "")) for c in blocks(pod.get("container"))[:1]]
    load_balancer, scheme, tls = _aws_load_balancer(tf) if cloud == "aws" else _gke_load_balancer(tf)
    verifying = [_verifies(c) for body in resources(tf, "kubernetes_deployment_v1").values()
                 for c in blocks(first_block(first_block(first_block(body.get("spec")).get("template"))
                                             .get("spec")).get("container"))[:1]]
    return ServingEndpoint(
        stack=name, region=provider_region(tf) or "?", cloud=cloud, role=role,
        image=sorted(set(images))[0] if images else "?", replicas=dict(sorted(replicas.items())),
        failover_replicas=env.serving.replicas.on_failover if role == "standby" else None,
        hostname=output_value(tf, "endpoint"), load_balancer=load_balancer, scheme=scheme, tls_policy=tls,
        **_manifest_key(tf, verifying=bool(verifying) and all(verifying)))


def _verifies(container: dict) -> bool:
    args = [str(a) for a in container.get("args") or []]
    return "--allow-unsigned" not in args and any(a.split("=", 1)[0] == "--manifest-public-key" for a in args)


def _manifest_key(tf: dict, *, verifying: bool) -> dict[str, str | None]:
    """The key the serving stack reads the manifest's public key from (a KMS alias in the stack's
    region, or a Cloud KMS key's version), when every runtime verifies with it."""
    found: dict[str, str | None] = {"manifest_key": None, "manifest_key_service": None}
    if not verifying:
        return found
    for source in data_sources(tf, "aws_kms_public_key").values():
        return {"manifest_key": str(source.get("key_id")), "manifest_key_service": "KMS"}
    for source in data_sources(tf, "google_kms_crypto_key_version").values():
        name = str(source.get("crypto_key", "?")).rsplit("/", 1)[-1]
        return {"manifest_key": f"{name} v{source.get('version', 1)}", "manifest_key_service": "Cloud KMS"}
    return found


def is_nlb_service(body: dict) -> bool:
    """A Service the AWS Load Balancer Controller fronts with a Network Load Balancer."""
    spec = first_block(body.get("spec"))
    annotations = first_block(body.get("metadata")).get("annotations") or {}
    return spec.get("type") == "LoadBalancer" and (spec.get("load_balancer_class") == "service.k8s.aws/nlb"
                                                   or annotations.get(_AWS_LB + "type") in ("external", "nlb"))


def _aws_load_balancer(tf: dict) -> tuple[str | None, str | None, str | None]:
    for body in resources(tf, "kubernetes_service_v1").values():
        annotations = first_block(body.get("metadata")).get("annotations") or {}
        if is_nlb_service(body):
            return NLB, annotations.get(_AWS_LB + "scheme", "internal"), \
                annotations.get(_AWS_LB + "ssl-negotiation-policy")
    return None, None, None


def _gke_load_balancer(tf: dict) -> tuple[str | None, str | None, str | None]:
    ssl = [body for rtype in ("google_compute_region_ssl_policy", "google_compute_ssl_policy")
           for body in resources(tf, rtype).values()]
    tls = f"{ssl[0].get('profile', 'COMPATIBLE')}, min {ssl[0].get('min_tls_version', 'TLS_1_0')}" if ssl else None
    for body in resources(tf, "kubernetes_manifest").values():
        manifest = body.get("manifest") or {}
        if manifest.get("kind") == "Gateway":
            cls = str(manifest.get("spec", {}).get("gatewayClassName", "?"))
            return _GATEWAY_CLASSES.get(cls, cls), None, tls
    return None, None, tls
