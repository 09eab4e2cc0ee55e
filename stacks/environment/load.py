"""Reading environments: YAML files into a validated `Environment`, every problem reported with
its field path; the shipped examples by name; the JSON Schema editors check the files with."""
from __future__ import annotations

from pathlib import Path

import yaml
from pydantic import ValidationError

from mlfleet.stacks.environment.checks import FieldError
from mlfleet.stacks.environment.errors import ConfigError, MlfleetError
from mlfleet.stacks.environment.model import Environment
from mlfleet.stacks.environment.regions import REGION_TAGS

ENVIRONMENTS_DIR = Path(__file__).resolve().parent / "examples"


def _format_loc(loc: tuple[str | int, ...]) -> str:
    path = ""
    for part in loc:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    return path or "(top level)"


def parse_environment(data: object, source: str) -> Environment:
    """Validate already-loaded data; raise ConfigError listing every problem with its path."""
    try:
        return Environment.model_validate(data)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            ctx_error = (err.get("ctx") or {}).get("error")
            if isinstance(ctx_error, FieldError):
                problems.append((_format_loc(ctx_error.loc), str(ctx_error)))
                continue
            loc = tuple(p for p in err["loc"]
                        if not (isinstance(p, str) and (p.startswith("function-") or p in REGION_TAGS)))
            message = err["msg"].removeprefix("Value error, ")
            if err["type"] == "extra_forbidden":
                message = "unknown key (a typo?)"
            problems.append((_format_loc(loc), message))
        raise ConfigError(source, problems) from None


def load_environment_file(path: Path) -> Environment:
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(str(path), [("(file)", exc.strerror or str(exc))]) from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "(file)"
        raise ConfigError(str(path), [(where, f"not valid YAML: {getattr(exc, 'problem', exc)}")]) from None
    if not isinstance(data, dict):
        raise ConfigError(str(path), [("(top level)", "expected a mapping of environment settings")])
    env = parse_environment(data, str(path))
    if path.parent == ENVIRONMENTS_DIR and path.stem != env.name:
        raise ConfigError(str(path), [("name", f"{env.name!r} must match the file name {path.stem!r}")])
    return env


def environment_names() -> list[str]:
    return sorted(p.stem for p in ENVIRONMENTS_DIR.glob("*.yaml"))


def load_environment(name: str) -> Environment:
    """Load a shipped environment by name (stacks/environment/examples/<name>.yaml)."""
    path = ENVIRONMENTS_DIR / f"{name}.yaml"
    if not path.is_file():
        raise MlfleetError(f"no environment {name!r}; known: {', '.join(environment_names())} "
                           "(or give a file with --config)")
    return load_environment_file(path)


def json_schema() -> dict:
    schema = Environment.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "mlfleet environment"
    return schema
