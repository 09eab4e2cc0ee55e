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
    Rule("MLF007", "pods or anyone on the instance can reach its metadata credentials", "high",
         "set metadata_options.http_tokens = required and http_put_response_hop_limit = 1 (pods use EKS Pod "
         "Identity, not IMDS); on GKE, the GKE metadata server"),
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
    # Security v2 (MLF040–MLF048); MLF043–MLF047 hold the hardening of the stacks.
    Rule("MLF040", "an identity may pass any role to any service", "high",
         "scope iam:PassRole to the roles it hands over and add an iam:PassedToService condition"),
    Rule("MLF041", "a policy allows any principal", "high",
         "name the principals, or narrow Principal \"*\" with a condition on the caller's account, organisation, "
         "ARN, source or VPC (iam_rules.NARROWING_KEYS); pin a web identity's subject (<issuer>:sub)"),
    Rule("MLF042", "a member may act as every service account of a project, folder or organization", "high",
         "grant token-creator, service-account-user, workload-identity-user and key-admin roles on the one "
         "service account (google_service_account_iam_member), not on its project"),
    Rule("MLF043", "a policy statement has an empty condition", "medium",
         "write the condition the statement needs, or drop the Condition element"),
    Rule("MLF044", "VPC traffic is not logged", "medium",
         "add an aws_flow_log for the VPC (to CloudWatch Logs or S3, encrypted with a KmsKey)"),
    Rule("MLF045", "VPC endpoint has no policy", "medium",
         "attach an endpoint policy that allows the actions the VPC needs on the stack's own resources "
         "(aws:ResourceAccount / aws:PrincipalAccount)"),
    Rule("MLF046", "PostgreSQL accepts connections without TLS", "high",
         "set rds.force_ssl = 1 in the cluster's (or instance's) parameter group"),
    Rule("MLF047", "GKE does not enforce Binary Authorization", "medium",
         "set binary_authorization.evaluation_mode = PROJECT_SINGLETON_POLICY_ENFORCE"),
    Rule("MLF048", "a secret passes through Terraform state", "high",
         "use the write-only argument (password_wo, Terraform 1.11+) or a service-managed secret "
         "(manage_master_user_password); where the provider has neither, acknowledge it and guard the state"),
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
