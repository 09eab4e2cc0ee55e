"""IAM evaluation of synthesized policies, small enough to read: one identity policy (and, where
given, the bucket policy) on one concrete action and resource. An explicit deny wins, then any
allow; a statement whose condition the request context does not satisfy does not apply.

Covers what mlfleet writes: Action and Resource as a string or a list with `*` wildcards (fnmatch),
Principal `*` or an ARN list, and the condition operators StringEquals, StringLike, ArnEquals,
ArnNotEquals, StringNotEquals, Null, ForAnyValue:StringEquals, Bool and NumericLessThan."""
from __future__ import annotations

import fnmatch
import json
from typing import Any


def _listed(value: Any) -> list:
    return value if isinstance(value, list) else [value]


def _condition_holds(operator: str, key: str, expected: Any, context: dict) -> bool:
    values = [str(v) for v in _listed(expected)]
    actual = context.get(key)
    if operator == "ArnNotEquals":
        return actual is not None and actual not in values
    if operator == "StringNotEquals":  # true for a request without the key, as in IAM
        return actual is None or str(actual) not in values
    if operator == "Null":
        return (actual is None) == (values == ["true"])
    if actual is None:
        return False
    actual_values = [str(a) for a in _listed(actual)]
    if operator in ("StringEquals", "ArnEquals", "ForAnyValue:StringEquals", "Bool"):
        return any(a in values for a in actual_values)
    if operator in ("StringLike", "ArnLike"):
        return any(fnmatch.fnmatchcase(a, v) for a in actual_values for v in values)
    if operator == "NumericLessThan":
        return any(float(a) < float(v) for a in actual_values for v in values)
    raise AssertionError(f"condition operator {operator} is not modelled by tests/helpers/iam.py")


def applies(statement: dict, action: str, resource: str, context: dict | None = None) -> bool:
    """Whether `statement` speaks about (action, resource) in this request context."""
    context = context or {}
    if not any(fnmatch.fnmatchcase(action, a) for a in _listed(statement["Action"])):
        return False
    if not any(fnmatch.fnmatchcase(resource, r) for r in _listed(statement["Resource"])):
        return False
    return all(_condition_holds(operator, key, expected, context)
               for operator, conditions in statement.get("Condition", {}).items()
               for key, expected in conditions.items())


def policy_statements(policy: dict | str) -> list[dict]:
    document = json.loads(policy) if isinstance(policy, str) else policy
    return _listed(document["Statement"])


def allowed(policy: dict | str, action: str, resource: str, context: dict | None = None,
            bucket_policy: dict | str | None = None) -> bool:
    """Whether the identity `policy` lets its holder do `action` on `resource`; with `bucket_policy`,
    that policy's denies apply too (its principal must be in `context["aws:PrincipalArn"]`)."""
    effects = [s["Effect"] for s in policy_statements(policy) if applies(s, action, resource, context)]
    if bucket_policy is not None:
        effects += [s["Effect"] for s in policy_statements(bucket_policy)
                    if s["Effect"] == "Deny" and applies(s, action, resource, context)]
    return "Deny" not in effects and "Allow" in effects
