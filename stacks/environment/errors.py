"""Errors a user can cause. The CLI prints them without a traceback and exits non-zero."""
from __future__ import annotations


class MlfleetError(Exception):
    """A problem the user can fix; `exit_code` is what the CLI exits with."""
    exit_code = 2


class ConfigError(MlfleetError):
    """An invalid environment: every problem, each with the field path and the reason."""

    def __init__(self, source: str, problems: list[tuple[str, str]]):
        self.source = source
        self.problems = problems
        lines = [f"invalid environment {source}:"] + [f"  {path}: {reason}" for path, reason in problems]
        super().__init__("\n".join(lines))
