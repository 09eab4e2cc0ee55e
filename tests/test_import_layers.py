"""The layers of mlfleet, held by its import graph (read with `ast`, nothing imported):

shared leaf modules ← environment core ← constructs ← stacks ← review; dr and the clients stand on
the core; the runtime stands alone; only the command line imports everything."""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
PACKAGES = {"mlfleet.stacks": "stacks", "mlfleet.constructs": "constructs", "mlfleet.dr": "dr",
            "mlfleet.runtime": "runtime"}

# Leaf modules every layer may use; they import nothing of mlfleet and load no CDK bindings.
SHARED = {"mlfleet.constructs.validation", "mlfleet.constructs.service_limits", "mlfleet.constructs.terraform_json"}
# The command line (and the entry points that start it: the CDK CLI's app, `python -m`) wires every
# part together; nothing else imports it.
COMMAND_LINE = {"mlfleet.stacks.cli", "mlfleet.dr.cli", "mlfleet.stacks.review.cli", "mlfleet.runtime.cli",
                "mlfleet.stacks.main", "mlfleet.runtime.__main__"}
# Package prefixes, most specific first.
LAYER_PREFIXES = (("mlfleet.stacks.environment", "core"), ("mlfleet.stacks.clients", "clients"),
                  ("mlfleet.stacks.review", "review"), ("mlfleet.stacks", "stacks"),
                  ("mlfleet.constructs", "constructs"), ("mlfleet.dr", "dr"), ("mlfleet.runtime", "runtime"))
# What each layer may import besides itself.
ALLOWED = {
    "shared": set(),
    "core": {"shared"},
    "constructs": {"shared"},
    "clients": {"core", "shared"},
    "stacks": {"constructs", "core", "shared", "clients"},
    "review": {"stacks", "constructs", "core", "shared", "clients"},
    "dr": {"core", "shared", "clients", "runtime"},
    "runtime": set(),
    "command line": {"shared", "core", "constructs", "clients", "stacks", "review", "dr", "runtime", "command line"},
}


def layer_of(module: str) -> str:
    if module in SHARED:
        return "shared"
    if module in COMMAND_LINE:
        return "command line"
    for prefix, layer in LAYER_PREFIXES:
        if module == prefix or module.startswith(prefix + "."):
            return layer
    raise AssertionError(f"{module} is in no layer: add it to LAYER_PREFIXES")


def source_modules() -> dict[str, Path]:
    """Every module of mlfleet by dotted name."""
    modules = {}
    for package, folder in PACKAGES.items():
        for path in sorted((REPO_ROOT / folder).rglob("*.py")):
            parts = path.relative_to(REPO_ROOT / folder).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            modules[".".join((package, *parts))] = path
    return modules


def imports_of(module: str, path: Path, known: set[str]) -> list[tuple[str, str, int]]:
    """(imported module, imported name or '', line) for each mlfleet import of one module."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(alias.name, "", node.lineno) for alias in node.names if alias.name.startswith("mlfleet.")]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[:len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            if not base.startswith("mlfleet"):
                continue
            for alias in node.names:
                submodule = f"{base}.{alias.name}"
                found.append((submodule, "", node.lineno) if submodule in known else (base, alias.name, node.lineno))
    return found


def violations(modules: dict[str, Path]) -> list[str]:
    known = set(modules)
    problems = []
    for module, path in modules.items():
        layer = layer_of(module)
        for target, name, line in imports_of(module, path, known):
            if target == "mlfleet":
                continue  # the namespace itself carries nothing
            where = f"{path.relative_to(REPO_ROOT) if path.is_relative_to(REPO_ROOT) else path}:{line}"
            target_layer = layer_of(target)
            if target_layer != layer and target_layer not in ALLOWED[layer]:
                problems.append(f"{where}: {layer} module {module} imports {target} ({target_layer})")
            if module.startswith("mlfleet.runtime") and not target.startswith("mlfleet.runtime"):
                problems.append(f"{where}: the runtime imports {target}: it must stand alone in its image")
            if name.startswith("_") and target.rpartition(".")[0] != module.rpartition(".")[0]:
                problems.append(f"{where}: {module} imports the private {name} of {target}")
    return problems


def test_every_import_respects_the_layers():
    problems = violations(source_modules())
    assert not problems, "forbidden imports:\n" + "\n".join(problems)


@pytest.mark.parametrize(("importer", "source", "reason"), [
    ("mlfleet.stacks.environment.model", "from mlfleet.constructs.aws.network import VpcNetwork\n", "core module"),
    ("mlfleet.stacks.review.drift", "from mlfleet.dr import gcp\n", "review module"),
    ("mlfleet.dr.runbooks", "from mlfleet.stacks.cli import main\n", "dr module"),
    ("mlfleet.constructs.gcp.network", "import mlfleet.stacks.app\n", "constructs module"),
    ("mlfleet.runtime.server", "from mlfleet.constructs.validation import require\n", "the runtime imports"),
    ("mlfleet.stacks.review.drift_gcp", "from mlfleet.stacks.environment.load import _format_loc\n", "the private"),
])
def test_the_graph_check_catches_a_forbidden_edge(tmp_path, importer, source, reason):
    # The check itself can fail: one planted edge of each kind is reported.
    planted = tmp_path / "planted.py"
    planted.write_text(source)
    problems = violations({importer: planted})
    assert any(reason in problem for problem in problems), problems


SHARED_PROBE = """
import sys
import mlfleet.stacks.environment, mlfleet.constructs.validation, mlfleet.constructs.service_limits
import mlfleet.constructs.terraform_json
print(sorted(m for m in sys.modules if m.split('.')[0] in ('jsii', 'cdktn', 'constructs')))
"""


@pytest.mark.sandbox  # a fresh interpreter
def test_the_core_and_shared_modules_load_no_cdk():
    # The DR commands and the runtime's deployment read the environment without paying for jsii.
    out = subprocess.run([sys.executable, "-c", SHARED_PROBE], cwd=REPO_ROOT.parent, capture_output=True,
                         text=True, check=True).stdout.strip()
    assert out == "[]"
