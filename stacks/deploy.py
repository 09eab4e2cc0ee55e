"""`mlfleet deploy`: plan and apply synthesized stacks with Terraform.

The same contract as `cdktn deploy <stack>`: synthesize, `terraform init`, then `apply` in
`<outdir>/stacks/<stack>`. Terraform speaks for itself (credentials, registry access, plan);
mlfleet adds only which stack, which step failed and the exit code — and, before a serving
stack, whether its cluster exists: without it the stack's data sources fail deep in a plan.
"""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from mlfleet.stacks.environment import Environment, Region, naming
from mlfleet.stacks.environment.errors import MlfleetError


class DeployError(MlfleetError):
    exit_code = 1


def terraform_steps(stack_dir: Path, *, plan_only: bool, auto_approve: bool) -> list[list[str]]:
    if plan_only:
        apply = ["plan", "-input=false"]
    else:
        apply = ["apply", "-input=false"] + (["-auto-approve"] if auto_approve else [])
    return [["init", "-input=false"], apply]


def deploy_stack(stack_dir: Path, stack: str, *, plan_only: bool = False, auto_approve: bool = False) -> None:
    terraform = shutil.which("terraform") or shutil.which("tofu")
    if terraform is None:
        raise DeployError("terraform (>= 1.10) or tofu is not on PATH; install it to deploy "
                          f"{stack} (the synthesized stack is in {stack_dir})")
    if not (stack_dir / "cdk.tf.json").is_file():
        raise DeployError(f"no synthesized stack {stack} in {stack_dir.parent}")
    for args in terraform_steps(stack_dir, plan_only=plan_only, auto_approve=auto_approve):
        code = subprocess.run([terraform, *args], cwd=stack_dir).returncode
        if code != 0:
            raise DeployError(f"terraform {args[0]} failed for {stack} (exit {code}); "
                              "Terraform's own message is above")


def cluster_exists(env: Environment, region: Region, *, gcp_endpoint: str | None = None) -> bool:
    """Whether the region's cluster (made by `<env>-<region>`) exists, asked of the cloud's API."""
    if region.cloud == "aws":
        import boto3

        eks = boto3.client("eks", region_name=region.name)
        try:
            eks.describe_cluster(name=naming.cluster_name(env.name, region.name))
        except eks.exceptions.ResourceNotFoundException:
            return False
        return True
    from google.api_core.exceptions import NotFound

    from mlfleet.stacks.clients.google_cloud import GcpClients
    assert env.gcp is not None  # a Google Cloud region has its project
    name = (f"projects/{env.gcp.project_id}/locations/{region.name}/clusters/"
            f"{naming.gke_cluster_name(env.name, region.name)}")
    try:
        GcpClients(endpoint=gcp_endpoint).container().get_cluster(name=name)
    except NotFound:
        return False
    return True


def require_cluster(env: Environment, region: Region, *, gcp_endpoint: str | None = None) -> None:
    if not cluster_exists(env, region, gcp_endpoint=gcp_endpoint):
        cluster = naming.cluster_name(env.name, region.name) if region.cloud == "aws" \
            else naming.gke_cluster_name(env.name, region.name)
        raise DeployError(f"{naming.serving_stack_name(env.name, region.name)} deploys onto cluster {cluster}, "
                          f"which does not exist yet: deploy {naming.stack_name(env.name, region.name)} first "
                          f"(mlfleet deploy --env {env.name} --region {region.name} applies both in order)")
