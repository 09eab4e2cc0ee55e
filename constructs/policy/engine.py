"""The rule pack run on one stack's resolved Terraform JSON: every check of both clouds."""
from __future__ import annotations

from mlfleet.constructs.policy import (
    aws_rules,
    exposure_rules,
    gcp_iam_rules,
    gcp_rules,
    iam_rules,
    registry_rules,
    serving_rules,
    state_secret_rules,
)
from mlfleet.constructs.policy.findings import Check, Finding
from mlfleet.constructs.terraform_json import construct_paths

CHECKS: tuple[Check, ...] = (*aws_rules.CHECKS, *gcp_rules.CHECKS, *exposure_rules.CHECKS, *iam_rules.CHECKS,
                             *gcp_iam_rules.CHECKS, *serving_rules.CHECKS, *registry_rules.CHECKS,
                             *state_secret_rules.CHECKS)


def evaluate_terraform(stack_name: str, tf: dict, checks: tuple[Check, ...] = CHECKS) -> list[Finding]:
    """Every finding of the rule pack (or of `checks`) in one stack's Terraform JSON (unacknowledged)."""
    paths = construct_paths(tf)
    findings = []
    for check in checks:
        for rule, address, message in check(tf):
            findings.append(Finding(rule, stack_name, address, paths.get(address, address), message))
    return sorted(findings, key=lambda f: (f.rule, f.address))
