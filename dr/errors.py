"""Errors a DR operator can cause or must act on. Each carries the CLI's exit code:

0 success (verdict pass), 1 runbook aborted (compensated) or verdict fail, 2 usage or
configuration error, 3 refused by a gate (RPO budget, lock held, readiness).
"""
from __future__ import annotations

from mlfleet.stacks.environment.errors import MlfleetError

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_REFUSED = 3


class DrUsageError(MlfleetError):
    """A wrong region, a missing sandbox, an unsupported combination of options."""
    exit_code = EXIT_USAGE


class Refused(MlfleetError):
    """A gate refused to start or continue: nothing was changed by the refused step."""
    exit_code = EXIT_REFUSED


class LockHeld(Refused):
    def __init__(self, lock: str, holder: dict):
        self.holder = holder
        who = ", ".join(f"{k}={v}" for k, v in sorted(holder.items()))
        super().__init__(f"another DR run holds {lock} ({who}); wait for it to finish, "
                         "or resume that run with the same command")


class RunbookAborted(MlfleetError):
    """A step failed or a stop condition fired; completed steps were compensated."""
    exit_code = EXIT_FAILED

    def __init__(self, message: str, *, step: str, compensated: list[str], report=None):
        self.step = step
        self.compensated = compensated
        self.report = report
        super().__init__(message)


class AuditTampered(MlfleetError):
    exit_code = EXIT_FAILED
