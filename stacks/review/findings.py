"""One findings table for the review: mlfleet's synth-time rule pack (MLF001–MLF007,
MLF030–MLF035), its DR review rules (MLF020+) and, when installed, checkov — each row with its
source, stable rule id, severity, resource, fix and acknowledgement."""
from __future__ import annotations

import fnmatch
from dataclasses import dataclass

from mlfleet.stacks.environment import Environment

SEVERITIES = ("high", "medium", "low", "unrated")


@dataclass(frozen=True)
class ReviewFinding:
    source: str              # "mlfleet" or "checkov"
    rule: str
    title: str
    severity: str            # one of SEVERITIES
    stack: str
    address: str             # Terraform address
    path: str                # construct path (the address where the stack records none)
    message: str
    fix: str
    acknowledged: str | None = None   # the reason, when acknowledged

    @property
    def blocking(self) -> bool:
        return self.severity == "high" and self.acknowledged is None

    def sort_key(self) -> tuple:
        return (SEVERITIES.index(self.severity), self.acknowledged is not None, self.source, self.rule,
                self.stack, self.address, self.message)


def from_policy(finding) -> ReviewFinding:
    """A synth-time policy finding (mlfleet.constructs.policy.Finding) as a review row."""
    from mlfleet.constructs.policy import RULES

    rule = RULES[finding.rule]
    return ReviewFinding("mlfleet", finding.rule, rule.title, rule.severity, finding.stack, finding.address,
                         finding.path, finding.message, rule.fix, finding.acknowledged)


def acknowledgement(env: Environment, rule: str, path: str) -> str | None:
    """The reason of the environment file's acknowledgement covering `rule` at `path`, if any."""
    for ack in env.acknowledgements:
        if ack.rule == rule and fnmatch.fnmatchcase(path, ack.resource):
            return ack.reason
    return None
