"""No policy document in any example environment carries an empty condition.

An empty `Condition` (or an operator with no keys) is what is left when a generator drops a
restriction it could not compute: the statement then applies unconditionally, wider than written.
Every stack of the five examples is read: JSON policy documents wherever a resource or data source
holds one (role, inline and managed policies, trust policies, bucket and key policies, …), the
`condition` blocks of `aws_iam_policy_document` data sources and of Google IAM bindings and members.
"""
from __future__ import annotations

import json
from typing import Any, Iterator

import pytest

from mlfleet.constructs.terraform_json import blocks

# Where the examples hold policy documents: each must be found, or the test would read nothing.
EXPECTED_DOCUMENT_HOLDERS = {"aws_iam_role.assume_role_policy", "aws_iam_role_policy.policy",
                             "aws_s3_bucket_policy.policy", "aws_kms_key.policy"}


@pytest.fixture(scope="module")
def example_stacks(examples) -> dict[str, dict]:
    """`<stack>` → Terraform JSON of every stack of every example environment."""
    return {stack: tf for _, stacks, _ in examples.values() for stack, tf in stacks.items()}


def _policy_documents(value: Any, where: str) -> Iterator[tuple[str, dict]]:
    """(where, document) of every JSON policy document (a string with a `Statement`) in `value`."""
    if isinstance(value, str) and value.lstrip().startswith("{"):
        try:
            document = json.loads(value)
        except ValueError:
            return
        if isinstance(document, dict) and "Statement" in document:
            yield where, document
    elif isinstance(value, dict):
        for key, item in value.items():
            if key != "//":
                yield from _policy_documents(item, f"{where}.{key}")
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from _policy_documents(item, f"{where}[{i}]")


def _empty_json_conditions(document: dict) -> list[str]:
    problems = []
    for i, statement in enumerate(blocks(document.get("Statement"))):
        if "Condition" not in statement:
            continue
        condition = statement["Condition"]
        if not condition:
            problems.append(f"Statement[{i}] ({statement.get('Sid', 'no Sid')}): empty Condition")
            continue
        problems += [f"Statement[{i}] ({statement.get('Sid', 'no Sid')}): {operator} has no keys"
                     for operator, keys in condition.items() if not keys]
    return problems


def _condition_blocks(value: Any, where: str) -> Iterator[tuple[str, Any]]:
    """(where, block) of every HCL `condition` block anywhere in a resource or data source."""
    if isinstance(value, dict):
        for key, item in value.items():
            if key == "condition":
                for i, block in enumerate(blocks(item) or [item]):
                    yield f"{where}.condition[{i}]", block
            elif key != "//":
                yield from _condition_blocks(item, f"{where}.{key}")
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from _condition_blocks(item, f"{where}[{i}]")


def _empty_block(kind: str, block: Any) -> bool:
    """An `aws_iam_policy_document` condition needs a test, a variable and values; a Google IAM
    condition an expression."""
    if not isinstance(block, dict) or not block:
        return True
    if kind == "aws_iam_policy_document":
        return not (block.get("test") and block.get("variable") and block.get("values"))
    return not str(block.get("expression") or "").strip()


def _holds_iam_conditions(kind: str) -> bool:
    """Condition blocks that are IAM conditions (a bucket's lifecycle `condition` is not one)."""
    return kind == "aws_iam_policy_document" or kind == "google_iam_policy" or (
        kind.startswith("google_") and "_iam_" in kind)


def _bodies(tf: dict) -> Iterator[tuple[str, str, dict]]:
    for section in ("resource", "data"):
        for kind, items in tf.get(section, {}).items():
            for name, body in items.items():
                yield kind, f"{'data.' if section == 'data' else ''}{kind}.{name}", body


def test_no_policy_document_in_any_example_has_an_empty_condition(example_stacks):
    problems: list[str] = []
    holders: set[str] = set()
    for stack, tf in example_stacks.items():
        for kind, address, body in _bodies(tf):
            for where, document in _policy_documents(body, address):
                attribute = where[len(address) + 1:].split(".")[0].split("[")[0]
                holders.add(f"{kind}.{attribute}")
                problems += [f"{stack}: {where}: {p}" for p in _empty_json_conditions(document)]
            if _holds_iam_conditions(kind):
                problems += [f"{stack}: {where}: empty condition" for where, block in _condition_blocks(body, address)
                             if _empty_block(kind, block)]
    assert EXPECTED_DOCUMENT_HOLDERS <= holders, "the walk found none of some policy documents"
    assert problems == []


def test_the_checks_see_an_empty_condition_and_an_empty_operator():
    document = {"Statement": [{"Sid": "A", "Effect": "Allow", "Action": "kms:Decrypt", "Resource": "*",
                               "Condition": {}},
                              {"Sid": "B", "Effect": "Allow", "Action": "kms:Decrypt", "Resource": "*",
                               "Condition": {"StringEquals": {}, "Bool": {"aws:SecureTransport": "true"}}}]}
    assert _empty_json_conditions(document) == ["Statement[0] (A): empty Condition",
                                                "Statement[1] (B): StringEquals has no keys"]
    body = {"policy": json.dumps(document), "inline_policy": [{"policy": json.dumps({"Statement": []})}]}
    assert [where for where, _ in _policy_documents(body, "aws_iam_role.r")] == [
        "aws_iam_role.r.policy", "aws_iam_role.r.inline_policy[0].policy"]
    binding = {"binding": [{"role": "roles/x", "members": ["user:a@example.com"], "condition": {"title": "t"}}]}
    assert [_empty_block("google_iam_policy", b) for _, b in _condition_blocks(binding, "data.google_iam_policy.p")] \
        == [True]
    statement = {"statement": [{"actions": ["s3:GetObject"], "condition": [{"test": "StringEquals", "values": []}]}]}
    assert [_empty_block("aws_iam_policy_document", b) for _, b in _condition_blocks(statement, "d")] == [True]
