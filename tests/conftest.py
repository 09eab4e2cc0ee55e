"""Shared fixtures. The CDK's provider bindings cost seconds to import, so every test in a
session shares one import and synthesizes stacks in-process (no subprocess per test)."""
from __future__ import annotations

import json
from typing import Callable

import pytest

from mlfleet.stacks.node_runtime import use_project_node

use_project_node()  # before anything imports cdktn


@pytest.fixture
def synth(tmp_path) -> Callable:
    """synth(build) -> dict: build(stack) adds constructs to a fresh TerraformStack on a
    Testing app; returns the synthesized Terraform JSON of that stack."""
    from cdktn import TerraformStack, Testing
    from cdktn_provider_aws.provider import AwsProvider

    def _synth(build: Callable, *, region: str = "us-east-1", with_provider: bool = True) -> dict:
        app = Testing.app(outdir=str(tmp_path / "cdktf.out"))
        stack = TerraformStack(app, "test")
        if with_provider:
            AwsProvider(stack, "aws", region=region)
        build(stack)
        return json.loads(Testing.synth(stack))

    return _synth
