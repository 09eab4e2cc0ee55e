"""runtime/requirements.txt (what the runtime image installs) stays in step with pyproject.toml:
the same specifiers for every library both name, the whole runtime block, and every third-party
import of runtime/ covered."""
from __future__ import annotations

import ast
import sys
import tomllib
from importlib.metadata import packages_distributions, requires
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]
# pyproject's runtime block: the lines between its `# runtime` comment and the next comment
RUNTIME_BLOCK_START = "# runtime"


def image_requirements() -> dict[str, Requirement]:
    lines = (ROOT / "runtime" / "requirements.txt").read_text().splitlines()
    parsed = [Requirement(line) for line in (raw.split("#")[0].strip() for raw in lines) if line]
    return {canonicalize_name(r.name): r for r in parsed}


def project_requirements() -> dict[str, Requirement]:
    dependencies = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    return {canonicalize_name(r.name): r for r in map(Requirement, dependencies)}


def runtime_block() -> set[str]:
    names: set[str] = set()
    inside = False
    for line in (ROOT / "pyproject.toml").read_text().splitlines():
        stripped = line.strip()
        if stripped.startswith("#"):
            inside = stripped == RUNTIME_BLOCK_START
        elif inside and stripped.startswith('"'):
            line = stripped.split("#")[0].strip()  # a line may say why in a comment of its own
            names.add(canonicalize_name(Requirement(line.rstrip(",").strip('"')).name))
        elif inside and stripped.startswith("]"):
            break
    return names


def test_every_image_requirement_has_pyprojects_specifier():
    image, project = image_requirements(), project_requirements()
    assert image.keys() <= project.keys(), f"not in pyproject.toml: {sorted(image.keys() - project.keys())}"
    for name, requirement in image.items():
        assert requirement.specifier == project[name].specifier, (name, str(requirement), str(project[name]))
        # extras may be fewer (the image needs tritonclient's gRPC protos, not its HTTP client)
        assert requirement.extras <= project[name].extras, (name, requirement.extras)


def test_the_whole_runtime_block_is_installed():
    block = runtime_block()
    assert "torch" in block and "tritonclient" in block  # the block was found
    assert block <= image_requirements().keys()


def _third_party_imports() -> set[str]:
    modules: set[str] = set()
    for source in (ROOT / "runtime").glob("*.py"):
        for node in ast.walk(ast.parse(source.read_text())):
            if isinstance(node, ast.Import):
                modules.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
                modules.add(node.module)
    return {m for m in modules if m.split(".")[0] not in {*sys.stdlib_module_names, "__future__", "mlfleet"}}


def test_every_third_party_import_of_the_runtime_is_a_requirement_or_one_of_its_extras():
    image = image_requirements()
    # the listed requirements' own dependencies, with the extras asked for (uvicorn[standard]
    # brings uvloop, google-cloud-storage brings google-auth and google-api-core)
    provided = set(image)
    for name, requirement in image.items():
        for line in requires(name) or []:
            dependency = Requirement(line)
            if dependency.marker is None or any(dependency.marker.evaluate({"extra": extra})
                                                for extra in requirement.extras or {""}):
                provided.add(canonicalize_name(dependency.name))
    distributions = packages_distributions()
    uncovered = {}
    for module in _third_party_imports():
        # namespace packages (google.*) map through their second part
        parts = module.split(".")
        candidates = distributions.get(parts[0], [])
        if len(candidates) > 1 and len(parts) > 1:
            candidates = [d for d in candidates if any(p in canonicalize_name(d) for p in parts[1:])] or candidates
        if not {canonicalize_name(d) for d in candidates} & provided:
            uncovered[module] = candidates
    assert not uncovered, uncovered
