"""What every mlfleet stack starts with: its own state backend, in the region (and cloud) it
names, and its providers."""
from __future__ import annotations

import re
from typing import TYPE_CHECKING

from cdktn import GcsBackend, S3Backend, TerraformStack
from cdktn_provider_aws.provider import AwsProvider

from mlfleet.stacks.environment import Environment, Gcp, MlfleetError, naming

if TYPE_CHECKING:
    from cdktn_provider_google.provider import GoogleProvider


def configure_backend(stack: TerraformStack, env: Environment, state_region: str, state_name: str) -> None:
    """Terraform state in `state_region`, on that region's cloud: an S3 backend (native S3
    locking, encrypted) or a GCS backend (GCS locks natively and encrypts at rest)."""
    if env.region(state_region).cloud == "gcp":
        GcsBackend(stack, bucket=naming.gcp_state_bucket(gcp_project(env).project_id, state_region),
                   prefix=naming.gcp_state_prefix(env.name, state_name))
        return
    S3Backend(stack, bucket=naming.state_bucket(env.aws.account_id, state_region),
              key=naming.state_key(env.name, state_name), region=state_region,
              encrypt=True, use_lockfile=True)


def gcp_project(env: Environment) -> Gcp:
    """The environment's Google Cloud project. A validated environment with a region on Google
    Cloud always has one; a stack on Google Cloud asks for it through here."""
    if env.gcp is None:
        raise MlfleetError(f"environment {env.name} has no gcp section: a Google Cloud stack needs its project")
    return env.gcp


def resource_tags(env: Environment) -> dict[str, str]:
    return {**env.tags, "mlfleet:environment": env.name, "managed-by": "mlfleet"}


def configure_aws_stack(stack: TerraformStack, env: Environment, region: str, *, state_region: str,
                        state_name: str) -> AwsProvider:
    """State in `state_region` and an AWS provider pinned to the environment's account,
    tagging everything it creates."""
    configure_backend(stack, env, state_region, state_name)
    return aws_provider(stack, env, region)


def aws_provider(stack: TerraformStack, env: Environment, region: str, *, alias: str | None = None) -> AwsProvider:
    """The stack's AWS provider in `region`; with `alias`, one more for resources in another region."""
    return AwsProvider(stack, f"aws-{alias}" if alias else "aws", region=region, alias=alias,
                       allowed_account_ids=[env.aws.account_id],
                       default_tags=[{"tags": dict(sorted(resource_tags(env).items()))}])


def google_labels(env: Environment) -> dict[str, str]:
    """The environment's tags as Google Cloud labels (lowercase; letters, digits, '-' and '_')."""
    return {_label(k): _label(v) for k, v in sorted(resource_tags(env).items())}


def _label(text: str) -> str:
    return re.sub(r"[^a-z0-9_-]", "-", text.lower())[:63]


def google_provider(stack: TerraformStack, env: Environment, region: str) -> GoogleProvider:
    from cdktn_provider_google.provider import GoogleProvider
    # Google's own attribution label would differ from the intent the review compares with.
    provider = GoogleProvider(stack, "google", project=gcp_project(env).project_id, region=region,
                              add_terraform_attribution_label=False)
    # Set as an override: the provider block's keys are rewritten to snake_case on synth,
    # which would turn the `cost-center` label into `cost_center`.
    provider.add_override("default_labels", google_labels(env))
    return provider
