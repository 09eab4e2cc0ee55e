"""Shared fixtures. The CDK's provider bindings cost seconds to import, so every test in a
session shares one import and synthesizes stacks in-process (no subprocess per test)."""
from __future__ import annotations

import atexit
import json
import os
import shutil
import tempfile
from typing import TYPE_CHECKING, Callable

import pytest

from mlfleet.stacks.node_runtime import use_project_node

use_project_node()  # before anything imports cdktn


def _start_jsii_kernel_in_a_session_folder() -> None:
    """`Testing.app()` without an outdir leaves a `cdktf.outdir.*` folder per app in the jsii
    kernel's temp folder: the kernel (started by the first `import cdktn`) gets one of the
    session's own, removed at exit. Only the kernel's environment changes."""
    folder = tempfile.mkdtemp(prefix="mlfleet-tests-jsii-")
    atexit.register(shutil.rmtree, folder, True)
    previous = os.environ.get("TMPDIR")
    os.environ["TMPDIR"] = folder
    try:
        import cdktn  # noqa: F401 - starts the kernel with TMPDIR set
    finally:
        if previous is None:
            os.environ.pop("TMPDIR", None)
        else:
            os.environ["TMPDIR"] = previous


_start_jsii_kernel_in_a_session_folder()

if TYPE_CHECKING:
    from helpers.runtime_signing import ManifestKeyPair


@pytest.fixture(scope="session")
def examples() -> dict:
    """name → (environment, stacks, policy findings) for every shipped example, synthesized once
    per session for the tests that read them all (the review's, the empty-condition check)."""
    from mlfleet.stacks.environment import environment_names, load_environment
    from mlfleet.stacks.review.synth import synthesize_for_review

    from helpers.examples import EXAMPLES

    assert sorted(EXAMPLES) == environment_names(), "a new example needs a golden review"
    found = {}
    for name in EXAMPLES:
        env = load_environment(name)
        stacks, findings = synthesize_for_review(env)
        found[name] = (env, stacks, findings)
    return found


@pytest.fixture(scope="session")
def manifest_key(tmp_path_factory) -> ManifestKeyPair:
    """The session's manifest signing key pair (generated here, never stored in the repository):
    example repositories are signed with it and runtimes verify against its public key."""
    from helpers.runtime_signing import generate_key_pair

    return generate_key_pair(tmp_path_factory.mktemp("manifest-key"))


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
