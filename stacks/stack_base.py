"""What every mlfleet stack starts with: its own state backend and its provider."""
from __future__ import annotations

from cdktn import S3Backend, TerraformStack
from cdktn_provider_aws.provider import AwsProvider

from mlfleet.stacks import naming
from mlfleet.stacks.config import Environment


def configure_aws_stack(stack: TerraformStack, env: Environment, region: str, *, state_region: str,
                        state_name: str) -> AwsProvider:
    """S3 state in `state_region` (native S3 locking, encrypted) and an AWS provider pinned
    to the environment's account, tagging everything it creates."""
    S3Backend(stack, bucket=naming.state_bucket(env.aws.account_id, state_region),
              key=naming.state_key(env.name, state_name), region=state_region,
              encrypt=True, use_lockfile=True)
    tags = {**env.tags, "mlfleet:environment": env.name, "managed-by": "mlfleet"}
    return AwsProvider(stack, "aws", region=region, allowed_account_ids=[env.aws.account_id],
                       default_tags=[{"tags": dict(sorted(tags.items()))}])
