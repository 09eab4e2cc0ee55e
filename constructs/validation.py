"""Validation of construct props: one error type that names the construct, the prop and the reason."""
from __future__ import annotations

import re

from constructs import Construct

# Shapes of AWS identifiers that props commonly carry.
ACCOUNT_ID = re.compile(r"^\d{12}$")
REGION = re.compile(r"^[a-z]{2}(-gov)?-[a-z]+-\d$")

# Shapes of Google Cloud identifiers. They live here, not beside the Google constructs, so that
# an AWS-only synth never imports (and pays for) the Google provider's bindings.
GOOGLE_PROJECT_ID = re.compile(r"^[a-z][a-z0-9-]{4,28}[a-z0-9]$")
GOOGLE_PROJECT_NUMBER = re.compile(r"^[1-9]\d{5,18}$")
GOOGLE_REGION = re.compile(r"^[a-z]+-[a-z]+\d+$")
GOOGLE_ZONE = re.compile(r"^([a-z]+-[a-z]+\d+)-[a-z]$")
GOOGLE_RESOURCE_NAME = re.compile(r"^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$")
"""RFC 1035 names: what Compute, GKE and Cloud SQL accept for most resources."""
GOOGLE_SERVICE_ACCOUNT_ID = re.compile(r"^[a-z]([-a-z0-9]{4,28}[a-z0-9])$")
GOOGLE_LABEL_KEY = re.compile(r"^[a-z][a-z0-9_-]{0,62}$")
GOOGLE_LABEL_VALUE = re.compile(r"^[a-z0-9_-]{0,63}$")


class PropsError(ValueError):
    """Invalid props given to an mlfleet construct. Raised in the constructor, before synth."""

    def __init__(self, scope: Construct | str, prop: str, reason: str):
        path = scope if isinstance(scope, str) else (scope.node.path or scope.node.id)
        self.construct_path = path
        self.prop = prop
        self.reason = reason
        super().__init__(f"{path}: {prop}: {reason}")


def require(condition: bool, scope: Construct | str, prop: str, reason: str) -> None:
    """Raise PropsError(scope, prop, reason) unless condition holds."""
    if not condition:
        raise PropsError(scope, prop, reason)


def require_google_labels(scope: Construct | str, labels: dict[str, str]) -> None:
    """Every key and value of `labels` is a Google Cloud label."""
    for key, value in labels.items():
        require(bool(GOOGLE_LABEL_KEY.match(key)) and bool(GOOGLE_LABEL_VALUE.match(value)), scope, f"labels[{key!r}]",
                "is not a Google Cloud label (lowercase letters, digits, '-', '_'; keys start with a letter)")
