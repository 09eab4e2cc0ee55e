"""The one reader of a synthesized stack's Terraform JSON (`cdk.tf.json` loaded as a dict).

The policy pass, the synth summary, the review, drift and the tests all read the same shapes:
resources by type and logical id, nested blocks that the CDK writes as an object or as a list of
objects, outputs, providers, the state backend and data sources. Pure Python on purpose: nothing
here loads the CDK, so the review and the tests can read a file without the provider bindings.
"""
from __future__ import annotations

import json
import re
from typing import Any, Iterator

TerraformJson = dict[str, Any]
# A resource's (or output's, provider's) body: JSON, so its values are whatever the stack wrote.
Body = Any


def blocks(value: Any) -> list[Any]:
    """A nested block's value as a list: Terraform JSON writes one block as an object, several
    as a list of objects; an absent block is no block."""
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def first_block(value: Any) -> Body:
    """The first block of a nested block's value, or an empty dict when there is none."""
    return (blocks(value) or [{}])[0]


def address(rtype: str, name: str) -> str:
    """A resource's Terraform address, e.g. `aws_s3_bucket.artifacts_bucket_1A2B`."""
    return f"{rtype}.{name}"


def resources(tf: TerraformJson, rtype: str) -> dict[str, Body]:
    """Every resource of one type, by logical id, in the order the stack wrote them."""
    return tf.get("resource", {}).get(rtype, {})


def sorted_resources(tf: TerraformJson, rtype: str) -> list[tuple[str, Body]]:
    """(logical id, body) of every resource of one type, by logical id: an order that does not
    depend on the order constructs were added in."""
    return sorted(resources(tf, rtype).items())


def addressed(tf: TerraformJson, rtype: str) -> list[tuple[str, Body]]:
    """(address, body) of every resource of one type, in the order the stack wrote them."""
    return [(address(rtype, name), body) for name, body in resources(tf, rtype).items()]


def resource_types(tf: TerraformJson) -> dict[str, dict[str, Body]]:
    """Resource type → (logical id → body), for every type the stack creates."""
    return tf.get("resource", {})


def all_resources(tf: TerraformJson) -> Iterator[tuple[str, str, Body]]:
    """(type, logical id, body) of every resource, in the order the stack wrote them."""
    for rtype, items in resource_types(tf).items():
        for name, body in items.items():
            yield rtype, name, body


def by_address(tf: TerraformJson) -> dict[str, Body]:
    """Every resource of the stack, by Terraform address."""
    return {address(rtype, name): body for rtype, name, body in all_resources(tf)}


def resource_count(tf: TerraformJson) -> int:
    return sum(len(items) for items in resource_types(tf).values())


def construct_path(body: Body) -> str | None:
    """The construct path the CDK recorded in a resource's metadata (`<stack>/<id>/…`)."""
    return body.get("//", {}).get("metadata", {}).get("path")


def construct_paths(tf: TerraformJson) -> dict[str, str]:
    """Terraform address → construct path of every resource (the address where none is recorded)."""
    return {resource: construct_path(body) or resource for resource, body in by_address(tf).items()}


def references(value: Any, rtype: str) -> set[str]:
    """Addresses of the `rtype` resources that `value` references anywhere (`${rtype.name.attr}`)."""
    pattern = r"\$\{(" + re.escape(rtype) + r"\.[A-Za-z0-9_-]+)\."
    return set(re.findall(pattern, json.dumps(value)))


def data_sources(tf: TerraformJson, dtype: str) -> dict[str, Body]:
    """Every data source of one type, by logical id (e.g. `aws_iam_policy_document`)."""
    return tf.get("data", {}).get(dtype, {})


def remote_states(tf: TerraformJson) -> dict[str, Body]:
    """The stack's `terraform_remote_state` data sources: reads of another stack's state."""
    return data_sources(tf, "terraform_remote_state")


def outputs(tf: TerraformJson) -> dict[str, Body]:
    """Every output, by name (each a dict with its `value`)."""
    return tf.get("output", {})


def output_value(tf: TerraformJson, name: str, default: Any = None) -> Any:
    return outputs(tf).get(name, {}).get("value", default)


def providers(tf: TerraformJson, ptype: str) -> list[Body]:
    """Every configuration of one provider (`aws`, `google`): the CDK writes a list, one per alias."""
    return blocks(tf.get("provider", {}).get(ptype))


def provider_region(tf: TerraformJson) -> str | None:
    """The region a stack is about: its Google provider's when it makes Google resources (a GKE
    serving stack also has an AWS provider, in us-east-1, for its Route 53 records), else its first
    AWS provider's, else its first Google provider's."""
    google = providers(tf, "google")
    if google and any(rtype.startswith("google_") for rtype in resource_types(tf)):
        return google[0].get("region")
    found = providers(tf, "aws") or google or [{}]
    return found[0].get("region")


def backend(tf: TerraformJson) -> tuple[str, Body] | None:
    """The state backend as (type, settings), e.g. ("s3", {"bucket": …}); None when the stack has none."""
    for kind, settings in tf.get("terraform", {}).get("backend", {}).items():
        return kind, settings
    return None
