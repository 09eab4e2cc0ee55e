"""Running runbooks against a sandbox target as the CLI does, and killing them between journal
writes, for the DR tests of every world (staging, research, hybrid)."""
from __future__ import annotations

from typing import Callable

from mlfleet.dr.audit import AuditLog
from mlfleet.dr.engine import Runbook, RunContext, RunResult
from mlfleet.dr.target import Target


class Crash(BaseException):
    """The process dying (kill -9) at a chosen journal event: not an Exception, so nothing
    in the engine catches it."""


def crash_at(block: str, event: str) -> Callable[[str, str], None]:
    """An `on_event` that kills the run at that journal event of that block."""
    def crash(at_block: str, at_event: str) -> None:
        if (at_block, at_event) == (block, event):
            raise Crash()

    return crash


def context(target: Target) -> RunContext:
    return RunContext(retry=target.retry, poll_interval_s=target.poll_interval_s)


def execute(target: Target, runbook: Runbook, *, lock=None, **kw) -> RunResult:
    """As `mlfleet failover` runs it: the target warmed first, the lock in the runbook's region."""
    target.warm()
    return runbook.execute(context(target), state_dir=target.runs_dir,
                           lock=lock or target.lock(runbook.lock_region), audit=AuditLog(target.audit_path), **kw)


def crash_through_every_block(target: Target, make_runbook: Callable[[], Runbook]) -> list[str]:
    """Kill the run right after the side effect (`applied`) of the first block it applies, then
    resume it (the dead run's lock taken over), again and again: each attempt gets one block
    further, so the run is killed once after every block. Return the blocks killed at, in order."""
    crashed_at: list[str] = []
    for _ in range(3 * len(make_runbook().steps)):
        lock = target.lock(make_runbook().lock_region)
        applied: list[str] = []

        def crash(block, event, applied=applied):
            if event == "applied" and block not in crashed_at:  # killed once after each block
                applied.append(block)
                raise Crash()

        try:
            result = execute(target, make_runbook(), lock=lock, on_event=crash, take_over_lock=True)
        except Crash:
            crashed_at.append(applied[0])
            lock.abandon()
            continue
        assert result.status == "completed", result.error
        return crashed_at
    raise AssertionError(f"the run never completed; killed at {crashed_at}")
