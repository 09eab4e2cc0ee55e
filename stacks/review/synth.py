"""Synthesis for review: the same app and policy pass as `mlfleet synth`, but unacknowledged
findings are returned for the report instead of stopping it, and nothing is kept on disk
unless asked."""
from __future__ import annotations

import tempfile
from pathlib import Path

from mlfleet.stacks.environment import Environment


def synthesize_for_review(env: Environment, outdir: Path | None = None) -> tuple[dict[str, dict], list]:
    """(stack name → Terraform JSON, every policy finding); files go to `outdir` when given."""
    from mlfleet.stacks.app import synth_into

    with tempfile.TemporaryDirectory(prefix="mlfleet-review-") as tmp:
        return synth_into([env], outdir if outdir is not None else Path(tmp))
