"""Synthesis: environments → one CDK app → one Terraform stack per environment × region.

Everything is validated before anything is written: the environment model first, then the
policy pass during synth into a temporary directory that replaces `outdir` only on success.
"""
from __future__ import annotations

import json
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from mlfleet.stacks.environment import AwsRegion, Environment, GcpRegion
from mlfleet.stacks.environment.errors import MlfleetError
from mlfleet.stacks.node_runtime import use_project_node

# The Terraform releases the synthesized stacks need: S3 native state locking arrived in
# 1.10. The same value stands in cdktf.json for the CLI; a test keeps the two equal.
TARGET_VERSIONS = {"terraform": ">=1.10.0", "opentofu": ">=1.10.0"}


class PolicyViolation(MlfleetError):
    exit_code = 3

    def __init__(self, findings):
        self.findings = findings
        lines = [f"{len(findings)} policy finding(s) not acknowledged; nothing was written:"]
        lines += [f"  {f.rule} [{f.severity}] {f.stack}: {f.path}: {f.message} (fix: {f.fix})" for f in findings]
        lines.append("  To accept one knowingly, add it to the environment's acknowledgements with a reason.")
        super().__init__("\n".join(lines))


@dataclass(frozen=True)
class SynthResult:
    outdir: Path
    environments: list[Environment]
    stacks: dict[str, dict]          # stack name → Terraform JSON
    findings: list                   # every policy finding, acknowledged ones included


def build_app(environments: list[Environment], outdir: Path, context: dict | None = None):
    """The CDK app with every stack of `environments` and the policy aspect on each."""
    use_project_node()
    from cdktn import App, TerraformStack

    from mlfleet.constructs.policy import ConfigAcknowledgement, PolicyAspect
    from mlfleet.stacks.global_stack import GlobalStack
    from mlfleet.stacks.regional_stack import RegionalStack
    from mlfleet.stacks.serving_stack import ServingStack

    app = App(outdir=str(outdir), context={"targetVersions": TARGET_VERSIONS, **(context or {})},
              stack_traces=False)
    aspects = []
    for env in environments:
        acks = [ConfigAcknowledgement(a.rule, a.reason, a.resource) for a in env.acknowledgements]
        stacks: list[TerraformStack] = []
        for region in env.regions:
            if isinstance(region, AwsRegion):
                stacks += [RegionalStack(app, env, region), ServingStack(app, env, region)]
        if env.regions_on("gcp"):
            # Only now: the Google provider's bindings take seconds and ~800 MB to load.
            from mlfleet.stacks.gcp_global_stack import GcpGlobalStack
            from mlfleet.stacks.gcp_regional_stack import GcpRegionalStack
            from mlfleet.stacks.gcp_serving_stack import GcpServingStack
            for region in env.regions:
                if isinstance(region, GcpRegion):
                    stacks += [GcpRegionalStack(app, env, region), GcpServingStack(app, env, region)]
            stacks.append(GcpGlobalStack(app, env))
        stacks.append(GlobalStack(app, env))
        aspect = PolicyAspect(acks)
        for stack in stacks:
            # Not Aspects.of(stack).add(aspect): an aspect is called back for every construct of
            # the tree (~0.2 s for prod), and the rules read the synthesized JSON of each stack.
            aspect.watch(stack)
        aspects.append(aspect)
    return app, aspects


def synth_into(environments: list[Environment], outdir: Path) -> tuple[dict[str, dict], list]:
    """Synthesize into `outdir`: (stack name → Terraform JSON, every policy finding).
    Enforces nothing: `synthesize` refuses unacknowledged findings, the review reports them."""
    app, aspects = build_app(environments, outdir)
    app.synth()
    stacks = {p.parent.name: json.loads(p.read_text()) for p in sorted(outdir.glob("stacks/*/cdk.tf.json"))}
    findings = [f for aspect in aspects for name in aspect.stack_names
                for f in aspect.evaluate(name, stacks[name])]
    return stacks, findings


def synthesize(environments: list[Environment], outdir: Path) -> SynthResult:
    names = [e.name for e in environments]
    if len(set(names)) != len(names):
        raise MlfleetError(f"environment names must be unique, got {names}")
    outdir = outdir.resolve()
    outdir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{outdir.name}.", dir=outdir.parent))
    try:
        stacks, findings = synth_into(environments, staging)
        violations = [f for f in findings if f.acknowledged is None]
        if violations:
            raise PolicyViolation(violations)
        if outdir.exists():
            shutil.rmtree(outdir)
        staging.rename(outdir)
    finally:
        if staging.exists():
            shutil.rmtree(staging)
    return SynthResult(outdir, environments, stacks, findings)
