"""Validation of construct props: one error type that names the construct, the prop and the reason."""
from __future__ import annotations

import re

from constructs import Construct

# Shapes of AWS identifiers that props commonly carry.
ACCOUNT_ID = re.compile(r"^\d{12}$")
REGION = re.compile(r"^[a-z]{2}(-gov)?-[a-z]+-\d$")


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
