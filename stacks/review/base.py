"""The base a review compares against: a directory of a previous synth (the cdktf.out layout,
stacks/<name>/cdk.tf.json), or a git ref whose copy of the environment file is synthesized
with today's constructs (so the difference shows what the configuration change does)."""
from __future__ import annotations

import json
import subprocess
from pathlib import Path

import yaml

from mlfleet.stacks.environment.errors import MlfleetError


def load_base(spec: str, env_name: str, env_file: Path) -> tuple[dict[str, dict], str]:
    """(stacks of `env_name` by name, a label saying what the base was)."""
    directory = Path(spec)
    if directory.is_dir():
        return _from_directory(directory, env_name), f"synth directory {directory.name or spec}"
    return _from_git(spec, env_name, env_file)


def _from_directory(directory: Path, env_name: str) -> dict[str, dict]:
    files = sorted(directory.glob("stacks/*/cdk.tf.json"))
    if not files:
        raise MlfleetError(f"--base {directory}: no stacks/<name>/cdk.tf.json inside; give the output "
                           "directory of a previous `mlfleet synth` (e.g. cdktf.out) or a git ref")
    stacks = {}
    for path in files:
        if not path.parent.name.startswith(f"{env_name}-"):
            continue
        try:
            stacks[path.parent.name] = json.loads(path.read_text())
        except ValueError as exc:
            raise MlfleetError(f"--base {directory}: {path.relative_to(directory)} is not valid JSON ({exc})") from None
    if not stacks:
        raise MlfleetError(f"--base {directory}: no stack of environment {env_name} "
                           f"(found {', '.join(sorted(p.parent.name for p in files))})")
    return stacks


# The shipped examples lived in stacks/environments/ before the environment core became a package.
_EXAMPLES_DIR, _FORMER_EXAMPLES_DIR = "stacks/environment/examples/", "stacks/environments/"


def _paths_at_ref(relative: str) -> list[str]:
    """Where the environment file at `relative` may be at an older ref: there, or where the examples were."""
    if relative.startswith(_EXAMPLES_DIR):
        return [relative, _FORMER_EXAMPLES_DIR + relative.removeprefix(_EXAMPLES_DIR)]
    return [relative]


def _git(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=False)


def _from_git(ref: str, env_name: str, env_file: Path) -> tuple[dict[str, dict], str]:
    from mlfleet.stacks.environment import parse_environment
    from mlfleet.stacks.review.synth import synthesize_for_review

    if ref.startswith("-"):
        raise MlfleetError(f"--base {ref!r}: not a directory or a git ref")
    env_file = env_file.resolve()
    top = _git(["rev-parse", "--show-toplevel"], env_file.parent)
    if top.returncode != 0:
        raise MlfleetError(f"--base {ref}: not a directory, and {env_file.name} is not in a git repository")
    commit = _git(["rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}"], env_file.parent)
    if commit.returncode != 0:
        raise MlfleetError(f"--base {ref}: neither a directory nor a git ref of this repository")
    now = env_file.relative_to(Path(top.stdout.strip())).as_posix()
    relative, shown = now, None
    for candidate in _paths_at_ref(now):
        result = _git(["show", f"{commit.stdout.strip()}:{candidate}"], env_file.parent)
        if result.returncode == 0:
            relative, shown = candidate, result
            break
    label = f"git {ref} ({commit.stdout.strip()[:12]}) {relative}"
    if shown is None:
        return {}, f"{label}: the file does not exist there, so everything is new"
    try:
        data = yaml.safe_load(shown.stdout)
    except yaml.YAMLError as exc:
        raise MlfleetError(f"--base {ref}: {relative} is not valid YAML at that ref ({exc})") from None
    base_env = parse_environment(data, f"{relative} at {ref}")
    if base_env.name != env_name:
        raise MlfleetError(f"--base {ref}: {relative} there is environment {base_env.name!r}, not {env_name!r}")
    return synthesize_for_review(base_env)[0], label
