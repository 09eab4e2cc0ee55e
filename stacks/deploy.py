"""`mlfleet deploy`: plan and apply one synthesized stack with Terraform.

The same contract as `cdktn deploy <stack>`: synthesize, `terraform init`, then `apply` in
`<outdir>/stacks/<stack>`. Terraform speaks for itself (credentials, registry access, plan);
mlfleet adds only which stack, which step failed and the exit code.
"""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

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
