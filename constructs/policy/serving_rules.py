"""The rule pack on the serving plane: the runtime's pods (Kubernetes workloads of either cloud),
the TLS policy of its load balancers (the AWS Load Balancer Controller's NLB annotations, Google
Cloud SSL policies and the GKE Gateway that uses them), and its management port."""
from __future__ import annotations

import re
from typing import Any, Iterator

from mlfleet.constructs.policy.findings import Check, Hits
from mlfleet.constructs.terraform_json import addressed, blocks, first_block, resources

# Where each workload type keeps its pod spec (nested blocks, each possibly a list).
_POD_SPEC_PATHS: dict[str, tuple[str, ...]] = {
    "kubernetes_deployment_v1": ("spec", "template", "spec"),
    "kubernetes_deployment": ("spec", "template", "spec"),
    "kubernetes_stateful_set_v1": ("spec", "template", "spec"),
    "kubernetes_daemon_set_v1": ("spec", "template", "spec"),
    "kubernetes_daemonset": ("spec", "template", "spec"),
    "kubernetes_job_v1": ("spec", "template", "spec"),
    "kubernetes_cron_job_v1": ("spec", "job_template", "spec", "template", "spec"),
    "kubernetes_pod_v1": ("spec",),
}
# A digest pins the image's content; a tag can be moved to other content at any time.
_DIGEST = re.compile(r"@sha256:[0-9a-f]{64}")
# The runtime's management port when its args do not name one (runtime/cli.py's default).
DEFAULT_MANAGEMENT_PORT = 8002
_MANAGEMENT_FLAG = "--management-port"
# ELB security policies name their lowest protocol: TLS13-1-2 (TLS 1.2 and 1.3), TLS13-1-3,
# TLS-1-2, FS-1-2. The controller's default without the annotation is ELBSecurityPolicy-2016-08 (TLS 1.0).
_ELB_TLS12_POLICY = re.compile(r"ELBSecurityPolicy-(TLS13-1-[23]|TLS-1-2|FS-1-2)(-.*)?")
_AWS_LB = "service.beta.kubernetes.io/aws-load-balancer-"
_GCP_TLS12 = {"TLS_1_2", "TLS_1_3"}


def _true(value: Any) -> bool:
    return value is True or value == "true"


def _pod_spec(body: dict, path: tuple[str, ...]) -> dict:
    node: Any = body
    for key in path:
        node = first_block(node.get(key) if isinstance(node, dict) else None)
    return node if isinstance(node, dict) else {}


def _containers(tf: dict) -> Iterator[tuple[str, dict, dict]]:
    """(workload address, pod spec, container) of every container and init container."""
    for rtype, path in _POD_SPEC_PATHS.items():
        for workload, body in addressed(tf, rtype):
            pod = _pod_spec(body, path)
            for container in blocks(pod.get("container")) + blocks(pod.get("init_container")):
                yield workload, pod, container


def _image(tf: dict) -> Hits:
    for workload, _, container in _containers(tf):
        image = str(container.get("image") or "")
        if "${" in image:
            yield "MLF030", workload, f"container {container.get('name')}: image {image} is only known at apply"
        elif not _DIGEST.search(image):
            yield ("MLF030", workload,
                   f"container {container.get('name')}: image {image or '(none)'} is not pinned by digest")


def _pod_security(tf: dict) -> Hits:
    for workload, pod, container in _containers(tf):
        name = container.get("name")
        pod_context = first_block(pod.get("security_context"))
        context = first_block(container.get("security_context"))
        # The container's setting overrides the pod's.
        non_root = context.get("run_as_non_root", pod_context.get("run_as_non_root"))
        user = context.get("run_as_user", pod_context.get("run_as_user"))
        if not _true(non_root) or str(user) == "0":
            yield "MLF031", workload, f"container {name} may run as root (run_as_non_root is not true)"
        if not _true(context.get("read_only_root_filesystem")):
            yield "MLF032", workload, f"container {name}: read_only_root_filesystem is not true"
        if _true(context.get("privileged")):
            yield "MLF033", workload, f"container {name} is privileged"
        # Kubernetes allows escalation unless the container says false.
        if context.get("allow_privilege_escalation") not in (False, "false"):
            yield "MLF033", workload, f"container {name}: allow_privilege_escalation is not false"


def _load_balancer_tls(tf: dict) -> Hits:
    for rtype in ("kubernetes_service_v1", "kubernetes_service"):
        for service, body in addressed(tf, rtype):
            spec = first_block(body.get("spec"))
            annotations = first_block(body.get("metadata")).get("annotations") or {}
            aws = spec.get("load_balancer_class") == "service.k8s.aws/nlb" or any(
                key.startswith(_AWS_LB) for key in annotations)
            if spec.get("type") != "LoadBalancer" or not aws:
                continue
            if not annotations.get(_AWS_LB + "ssl-cert"):
                yield "MLF034", service, "the NLB's listeners are not TLS (no aws-load-balancer-ssl-cert annotation)"
                continue
            policy = annotations.get(_AWS_LB + "ssl-negotiation-policy")
            if not policy or not _ELB_TLS12_POLICY.fullmatch(policy):
                yield ("MLF034", service, f"ssl-negotiation-policy {policy or '(unset: ELBSecurityPolicy-2016-08)'} "
                       "admits protocols below TLS 1.2")
            tls_ports = {p.strip() for p in str(annotations.get(_AWS_LB + "ssl-ports", "*")).split(",")}
            for port in blocks(spec.get("port")):
                if "*" not in tls_ports and str(port.get("port")) not in tls_ports and \
                        str(port.get("name")) not in tls_ports:
                    yield "MLF034", service, f"listener {port.get('port')} is not in ssl-ports: plain TCP"
    for rtype in ("google_compute_region_ssl_policy", "google_compute_ssl_policy"):
        for policy, body in addressed(tf, rtype):
            if body.get("min_tls_version") not in _GCP_TLS12:
                yield "MLF034", policy, f"min_tls_version {body.get('min_tls_version') or '(unset: TLS_1_0)'}"
    yield from _gateways_without_policy(tf)


def _gateways_without_policy(tf: dict) -> Hits:
    """A GKE Gateway with an HTTPS listener and no GCPGatewayPolicy naming an SSL policy gets
    Google's default SSL policy, which admits TLS 1.0."""
    manifests = [(f"kubernetes_manifest.{name}", body.get("manifest") or {})
                 for name, body in resources(tf, "kubernetes_manifest").items()]
    covered = {(m.get("metadata", {}).get("namespace"), m.get("spec", {}).get("targetRef", {}).get("name"))
               for _, m in manifests if m.get("kind") == "GCPGatewayPolicy"
               and m.get("spec", {}).get("default", {}).get("sslPolicy")}
    for manifest, m in manifests:
        spec = m.get("spec", {})
        https = any(listener.get("protocol") == "HTTPS" for listener in spec.get("listeners", []))
        if m.get("kind") != "Gateway" or not https or not str(spec.get("gatewayClassName", "")).startswith("gke-l7"):
            continue
        if (m.get("metadata", {}).get("namespace"), m.get("metadata", {}).get("name")) not in covered:
            yield ("MLF034", manifest,
                   "HTTPS Gateway without a GCPGatewayPolicy sslPolicy: Google's default admits TLS 1.0")


def _management_port_of(container: dict) -> int:
    """The runtime's management port in a container's args (`--management-port N` or `=N`), else the default."""
    args = [str(a) for a in container.get("args") or []]
    for i, arg in enumerate(args):
        value = args[i + 1] if arg == _MANAGEMENT_FLAG and i + 1 < len(args) else \
            arg.split("=", 1)[1] if arg.startswith(_MANAGEMENT_FLAG + "=") else None
        if value is not None and value.isdigit():
            return int(value)
    return DEFAULT_MANAGEMENT_PORT


def _port(value: Any) -> int | None:
    return int(value) if str(value).isdigit() else None


def _management_port(tf: dict) -> Hits:
    # A Service or NetworkPolicy may reach any container of the stack: every management port counts there.
    management = {_management_port_of(container) for _, _, container in _containers(tf)}
    for workload, _, container in _containers(tf):
        for port in blocks(container.get("port")):
            own = _management_port_of(container)
            if own in {_port(port.get("container_port")), _port(port.get("host_port"))}:
                yield "MLF035", workload, f"container {container.get('name')} exposes management port {own}"
    for rtype in ("kubernetes_service_v1", "kubernetes_service"):
        for service, body in addressed(tf, rtype):
            for port in blocks(first_block(body.get("spec")).get("port")):
                exposed = {p for p in (_port(port.get("port")), _port(port.get("target_port"))) if p is not None} \
                    & management
                if exposed:
                    yield "MLF035", service, f"service port {port.get('port')} reaches management port {min(exposed)}"
    for rtype in ("kubernetes_network_policy_v1", "kubernetes_network_policy"):
        for policy, body in addressed(tf, rtype):
            for rule in blocks(first_block(body.get("spec")).get("ingress")):
                for port in blocks(rule.get("ports")):
                    low, high = _port(port.get("port")), _port(port.get("end_port"))
                    if low is not None and any(low <= m <= (high or low) for m in management):
                        yield "MLF035", policy, f"ingress admits management port {port.get('port')}"


CHECKS: tuple[Check, ...] = (_image, _pod_security, _load_balancer_tls, _management_port)
