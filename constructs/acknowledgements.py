"""Explicit, reasoned exceptions to mlfleet's policy rules.

A construct (or a user, through the environment file) that must break a rule says so here,
with a reason; the policy pass then reports the finding as acknowledged instead of failing
synth, and the review shows the reason.
"""
from __future__ import annotations

from dataclasses import dataclass

from constructs import Construct, IConstruct

_METADATA_TYPE = "mlfleet:acknowledgement"


@dataclass(frozen=True)
class Acknowledgement:
    rule: str
    reason: str
    path: str  # construct path the acknowledgement was attached to; covers its subtree


def acknowledge(scope: Construct, rule: str, reason: str) -> None:
    """Acknowledge that `rule` is knowingly broken by `scope` and everything below it."""
    if not reason or not reason.strip():
        raise ValueError(f"{scope.node.path}: acknowledgement of {rule} needs a reason")
    scope.node.add_metadata(_METADATA_TYPE, {"rule": rule, "reason": reason.strip()})


def acknowledgements_for(node: IConstruct, rule: str) -> list[Acknowledgement]:
    """Acknowledgements of `rule` on `node` or any of its ancestors (nearest first)."""
    found: list[Acknowledgement] = []
    for scope in reversed(node.node.scopes):
        for entry in scope.node.metadata:
            if entry.type == _METADATA_TYPE and entry.data["rule"] == rule:
                found.append(Acknowledgement(rule, entry.data["reason"], scope.node.path))
    return found
