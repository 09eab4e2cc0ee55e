"""The rule pack's vocabulary: rules, the findings a check yields, and acknowledgements from the
environment file. Pure Python, so the review can read rules without loading the CDK."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Iterator


@dataclass(frozen=True)
class Rule:
    id: str
    title: str
    severity: str  # "high" | "medium" | "low"
    fix: str


RULES: dict[str, Rule] = {r.id: r for r in (
    Rule("MLF001", "storage is not encrypted with a customer-managed KMS key", "high",
         "encrypt with an mlfleet KmsKey (SSE-KMS, storage_encrypted, encrypted volumes)"),
    Rule("MLF002", "resource is reachable from the internet", "high",
         "block public access; keep endpoints private; no 0.0.0.0/0 ingress"),
    Rule("MLF003", "stateful resource can be deleted without protection", "high",
         "set deletion_protection, keep a final snapshot, never force_destroy"),
    Rule("MLF004", "GPU node group lacks the nvidia.com/gpu NoSchedule taint", "high",
         "taint GPU nodes so only pods that tolerate GPUs land there"),
    Rule("MLF005", "IAM policy allows a wildcard action", "high",
         "list the actions the identity needs; scope resources"),
    Rule("MLF006", "required tags are missing", "medium",
         "set owner and cost-center through the provider's default_tags"),
    Rule("MLF007", "instances do not require IMDSv2", "high",
         "set metadata_options.http_tokens = required in the launch template"),
    # The serving plane's rules (MLF030–MLF035; MLF010 is the config's RPO rule, MLF020–MLF025 the review's DR rules).
    Rule("MLF030", "container image is not pinned by digest", "high",
         "reference the image as name@sha256:<digest> (serving.image.digest); a tag can be moved"),
    Rule("MLF031", "container may run as root", "high",
         "set run_as_non_root = true (and a non-zero run_as_user) in the pod or container security context"),
    Rule("MLF032", "container root filesystem is writable", "medium",
         "set read_only_root_filesystem = true; mount an emptyDir where the process must write"),
    Rule("MLF033", "container is privileged or may escalate privileges", "high",
         "never set privileged; set allow_privilege_escalation = false"),
    Rule("MLF034", "load balancer admits TLS below 1.2", "high",
         "terminate TLS with ELBSecurityPolicy-TLS13-1-2-2021-06 (NLB) or an SSL policy with min_tls_version "
         "TLS_1_2 attached through a GCPGatewayPolicy (GKE)"),
    Rule("MLF035", "the runtime's management port is exposed", "high",
         "keep the management port (--management-port, 8002 by default) off container ports, Services and "
         "NetworkPolicies: it is reached on loopback only"),
    # The model registry's separation of duties (MLF036–MLF037).
    Rule("MLF036", "a role other than review may write the approved model area", "high",
         "grant writes under <models_prefix>candidates/ only (grant_write_candidates); only review writes "
         "<models_prefix>approved/ (grant_approve / grant_publish_approved) and the bucket guard exempts it alone"),
    Rule("MLF037", "the runtime does not verify the signed manifest", "high",
         "pass --manifest-public-key with the manifest signing key's public key (ServingDeployment mounts it); "
         "--allow-unsigned is for local development only"),
)}
REQUIRED_TAGS = ("owner", "cost-center")


@dataclass(frozen=True)
class Finding:
    rule: str
    stack: str
    address: str        # Terraform address, e.g. aws_s3_bucket.artifacts_bucket_1A2B
    path: str           # construct path, e.g. prod-us-east-1/artifacts/bucket
    message: str
    acknowledged: str | None = None  # the reason, when acknowledged

    @property
    def severity(self) -> str:
        return RULES[self.rule].severity

    @property
    def fix(self) -> str:
        return RULES[self.rule].fix


@dataclass(frozen=True)
class ConfigAcknowledgement:
    """An acknowledgement from the environment file: a rule and a construct-path glob."""
    rule: str
    reason: str
    resource: str = "*"


Hits = Iterator[tuple[str, str, str]]  # (rule, address, message)
Check = Callable[[dict[str, Any]], Hits]
