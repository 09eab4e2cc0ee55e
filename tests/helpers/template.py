"""Assertions on a synthesized stack, in the spirit of aws-cdk's `Template.fromStack(stack)`:

    template = Template(tf)
    template.resource_count_is("aws_s3_bucket", 1)
    template.has_resource_properties("aws_s3_bucket_versioning", {
        "versioning_configuration": {"status": "Enabled"}})

Built on `mlfleet.constructs.terraform_json`, the reader the policy pass and the review use.
`has_resource_properties` matches a subset deeply: every key the expectation names must be there
with a matching value (`ABSENT`: must not be there); lists match element by element.
"""
from __future__ import annotations

import json
from typing import Any

from mlfleet.constructs import terraform_json


class _Absent:
    def __repr__(self) -> str:
        return "ABSENT"


ABSENT: Any = _Absent()
"""As an expected value: the key must not be present."""


class Template:
    def __init__(self, tf: dict):
        self.tf = tf

    @classmethod
    def from_json(cls, text: str) -> Template:
        """From a stack's synthesized JSON text (`Testing.synth(stack)`, a `cdk.tf.json`)."""
        return cls(json.loads(text))

    def resources(self, rtype: str) -> dict[str, dict]:
        """Every resource of one type, by logical id."""
        return terraform_json.resources(self.tf, rtype)

    def only(self, rtype: str) -> dict:
        """The one resource of a type (fails when there are none or several)."""
        found = self.resources(rtype)
        assert len(found) == 1, f"expected one {rtype}, found {sorted(found)}"
        return next(iter(found.values()))

    def resource_count_is(self, rtype: str, count: int) -> None:
        found = self.resources(rtype)
        assert len(found) == count, f"expected {count} {rtype}, found {len(found)}: {sorted(found)}"

    def find_resources(self, rtype: str, props: dict) -> dict[str, dict]:
        """The resources of a type whose bodies match `props` (a deep subset), by logical id."""
        return {name: body for name, body in self.resources(rtype).items() if _mismatch(props, body, "") is None}

    def has_resource_properties(self, rtype: str, props: dict) -> dict:
        """The first resource of a type that matches `props`; fails with why each one does not."""
        found = self.resources(rtype)
        assert found, f"no {rtype} in the template (types: {sorted(terraform_json.resource_types(self.tf))})"
        reasons = []
        for name, body in found.items():
            reason = _mismatch(props, body, "")
            if reason is None:
                return body
            reasons.append(f"  {rtype}.{name}: {reason}")
        raise AssertionError(f"no {rtype} has the expected properties:\n" + "\n".join(reasons))

    def output_value(self, name: str) -> Any:
        outputs = terraform_json.outputs(self.tf)
        assert name in outputs, f"no output {name!r} (outputs: {sorted(outputs)})"
        return outputs[name].get("value")

    def data_sources(self, dtype: str) -> dict[str, dict]:
        return terraform_json.data_sources(self.tf, dtype)

    def remote_states(self) -> dict[str, dict]:
        """`terraform_remote_state` reads of another stack's state (principle 1: a regional stack has none)."""
        return terraform_json.remote_states(self.tf)

    def providers(self, ptype: str) -> list[dict]:
        return terraform_json.providers(self.tf, ptype)

    def backend(self) -> tuple[str, dict] | None:
        return terraform_json.backend(self.tf)


def _mismatch(expected: Any, actual: Any, path: str) -> str | None:
    """Why `actual` does not match `expected` (at which path), or None when it does."""
    where = path or "the body"
    if isinstance(expected, dict):
        if not isinstance(actual, dict):
            return f"at {where}: expected an object, found {actual!r}"
        for key, value in expected.items():
            child = f"{path}.{key}" if path else key
            if value is ABSENT:
                if key in actual:
                    return f"at {child}: expected no value, found {actual[key]!r}"
            elif key not in actual:
                return f"at {child}: missing (expected {value!r})"
            else:
                reason = _mismatch(value, actual[key], child)
                if reason is not None:
                    return reason
        return None
    if isinstance(expected, list):
        if not isinstance(actual, list) or len(actual) != len(expected):
            return f"at {where}: expected a list of {len(expected)}, found {actual!r}"
        for index, (value, item) in enumerate(zip(expected, actual, strict=True)):
            reason = _mismatch(value, item, f"{path}[{index}]")
            if reason is not None:
                return reason
        return None
    if expected != actual:
        return f"at {where}: expected {expected!r}, found {actual!r}"
    return None


def resources(tf: dict, rtype: str) -> dict[str, dict]:
    """All resources of one Terraform type in a synthesized stack, by logical id."""
    return Template(tf).resources(rtype)


def only_resource(tf: dict, rtype: str) -> dict:
    """The one resource of a type in a synthesized stack (fails when there are none or several)."""
    return Template(tf).only(rtype)
