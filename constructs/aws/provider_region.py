"""The AWS region a construct's resources are created in: its stack's default AWS provider's.

A condition that names a region (`kms:ViaService = s3.<region>.amazonaws.com`) must not depend on
parsing an ARN that may be a token until apply: the stack's provider says where its resources go.
"""
from __future__ import annotations

from cdktn import TerraformStack, Token
from cdktn_provider_aws.provider import AwsProvider
from constructs import Construct

from mlfleet.constructs.validation import REGION, PropsError


def provider_region(scope: Construct) -> str:
    """The region of the default (unaliased) AWS provider of `scope`'s stack; a PropsError names
    the scope when the stack has none, or when its region is not a literal region name."""
    stack = TerraformStack.of(scope)
    found = [c for c in stack.node.children if isinstance(c, AwsProvider) and not c.alias]
    if not found:
        raise PropsError(scope, "region", f"stack {stack.node.id} has no default AWS provider to take the region from")
    region = found[0].region
    if region is None or Token.is_unresolved(region) or not REGION.fullmatch(region):
        raise PropsError(scope, "region", f"the stack's AWS provider region {region!r} is not a literal region name")
    return region
