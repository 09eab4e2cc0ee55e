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
        super().__init__(f"another DR run holds {lock} ({who}); wait for it to finish (a live process holds it)")


class WorldMoved(Refused):
    """A resumed run found that what an earlier attempt did no longer holds in the live world."""


class LockAbandoned(Refused):
    """The lock's holder died (lease expired, or its process is gone) and left its run unfinished."""

    def __init__(self, lock: str, holder: dict):
        self.holder = holder
        who = ", ".join(f"{k}={v}" for k, v in sorted(holder.items()))
        super().__init__(f"{lock} is held by a DR run that died ({who}); nothing was changed. Check what it "
                         "left, then pass --take-over-lock to take the lock over (the takeover is audited)")


class RunbookAborted(MlfleetError):
    """A step failed or a stop condition fired; completed steps were compensated."""
    exit_code = EXIT_FAILED

    def __init__(self, message: str, *, step: str, compensated: list[str], not_undone: dict[str, str] | None = None,
                 report=None):
        self.step = step
        self.compensated = compensated
        self.not_undone = not_undone or {}
        """Block -> why its compensation failed: what the operator must still put right."""
        self.report = report
        super().__init__(message)


class AuditTampered(MlfleetError):
    exit_code = EXIT_FAILED
