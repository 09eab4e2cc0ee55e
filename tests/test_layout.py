"""The repository's top-level folders are the `mlfleet.*` packages, and `constructs/` never
shadows the CDK's `constructs` library, even with the repository root on sys.path."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent

PROBE = """
import sys, constructs, mlfleet.constructs.validation as ours
assert sys.path[0] == '', sys.path[0]
print(constructs.__file__)
print(ours.__file__)
print(hasattr(constructs, 'Construct'))
"""


@pytest.mark.sandbox  # a fresh interpreter
def test_constructs_library_is_not_shadowed_from_the_repository_root():
    # `python -c` puts the current directory ('') first on sys.path, like `python app.py` would.
    out = subprocess.run([sys.executable, "-c", PROBE], cwd=REPO_ROOT, capture_output=True,
                         text=True, check=True).stdout.splitlines()
    library, ours, has_construct = out
    assert "site-packages" in library and not library.startswith(str(REPO_ROOT / "constructs"))
    assert ours == str(REPO_ROOT / "constructs" / "validation.py")
    assert has_construct == "True"


def test_constructs_folder_stays_a_namespace_portion():
    assert not (REPO_ROOT / "constructs" / "__init__.py").exists()


def test_top_level_folders_map_to_mlfleet_packages():
    import mlfleet.dr
    import mlfleet.runtime
    import mlfleet.stacks

    for module, folder in ((mlfleet.stacks, "stacks"), (mlfleet.dr, "dr"), (mlfleet.runtime, "runtime")):
        assert Path(module.__file__).parent == REPO_ROOT / folder


PROVIDER_PROBE = """
import sys
from pathlib import Path
from mlfleet.stacks.node_runtime import use_project_node; use_project_node()
from mlfleet.stacks.app import build_app
from mlfleet.stacks.environment import load_environment
build_app([load_environment(sys.argv[1])], Path(sys.argv[2]))
print(sorted({m.split('.')[0] for m in sys.modules if m.startswith('cdktn_provider_')}))
"""


@pytest.mark.sandbox  # two fresh interpreters that synthesize
def test_a_synth_loads_only_the_providers_its_clouds_need(tmp_path):
    # Each provider's bindings cost seconds and hundreds of MB to load (bench/synth.py): an
    # AWS-only environment must not pay for Google's. A fresh process, since this one has both.
    def providers(env: str) -> str:
        return subprocess.run([sys.executable, "-c", PROVIDER_PROBE, env, str(tmp_path / env)], cwd=tmp_path,
                              capture_output=True, text=True, check=True).stdout.strip().splitlines()[-1]

    # The serving stacks add the kubernetes provider, and helm on EKS (GKE manages its device plugin).
    assert providers("prod") == "['cdktn_provider_aws', 'cdktn_provider_helm', 'cdktn_provider_kubernetes']"
    assert providers("hybrid") == ("['cdktn_provider_aws', 'cdktn_provider_google', 'cdktn_provider_helm', "
                                   "'cdktn_provider_kubernetes']")
