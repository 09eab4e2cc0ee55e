"""Synthesis for review: the same app and policy pass as `mlfleet synth`, but unacknowledged
findings are returned for the report instead of stopping it, and nothing is kept on disk
unless asked."""
from __future__ import annotations

import json
import tempfile
from pathlib import Path

from mlfleet.stacks.config import Environment


def synthesize_for_review(env: Environment, outdir: Path | None = None) -> tuple[dict[str, dict], list]:
    """(stack name → Terraform JSON, every policy finding); files go to `outdir` when given."""
    from mlfleet.stacks.app import build_app

    with tempfile.TemporaryDirectory(prefix="mlfleet-review-") as tmp:
        target = outdir if outdir is not None else Path(tmp)
        app, aspects = build_app([env], target)
        app.synth()
        stacks = {p.parent.name: json.loads(p.read_text()) for p in sorted(target.glob("stacks/*/cdk.tf.json"))}
    findings = [f for aspect in aspects for name in aspect.stack_names for f in aspect.evaluate(name, stacks[name])]
    return stacks, findings
