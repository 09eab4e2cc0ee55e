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
