"""The runbook engine: an ordered graph of typed steps, planned before it is executed.

A step has a precondition (is it safe and meaningful now?), an idempotent action (looks at the
world first and changes only what is not yet done), a verification polled until it holds or
its timeout passes, and a compensation that undoes the action when a later step fails.

`plan` evaluates every precondition and describes what each step would change; nothing is
modified. `execute` takes the run lock, journals every step (so a crash resumes without
repeating a side effect), audits every action, checks the stop conditions between steps, and
on a failure runs the compensations of the steps already applied, newest first.

Time is split into waiting (cloud API calls, polling intervals, backoff) and orchestration
(everything else), so a drill can tell the platform's speed from mlfleet's own.
"""
from __future__ import annotations

import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Callable, Iterator

from mlfleet.dr.audit import AuditLog
from mlfleet.dr.errors import Refused, RunbookAborted
from mlfleet.dr.journal import APPLIED, COMPENSATED, DONE, FAILED, FINISHED, STARTED, Journal, find_unfinished
from mlfleet.dr.locks import RunLock
from mlfleet.dr.retry import GaveUp, RetryPolicy, call_with_retry

PHASES = ("fault_injected", "fault_detected", "declared", "registry_writable", "routing_flipped",
          "first_inference", "slo_recovered")


class StepFailed(Exception):
    """A step's action or verification could not complete."""


class Clock:
    """Accumulates the time spent waiting on the world; nested waits count once."""

    def __init__(self) -> None:
        self.waiting_s = 0.0
        self._depth = 0

    @contextmanager
    def waiting(self) -> Iterator[None]:
        self._depth += 1
        start = time.monotonic()
        try:
            yield
        finally:
            self._depth -= 1
            if self._depth == 0:
                self.waiting_s += time.monotonic() - start

    def sleep(self, seconds: float) -> None:
        with self.waiting():
            time.sleep(seconds)


class Timeline:
    """Wall-clock time of each phase, first occurrence wins (a resumed run keeps its marks)."""

    def __init__(self, marks: dict[str, float] | None = None):
        self.marks: dict[str, float] = dict(marks or {})

    def mark(self, phase: str, at: float | None = None) -> None:
        if phase not in PHASES:
            raise ValueError(f"unknown phase {phase!r}")
        self.marks.setdefault(phase, time.time() if at is None else at)


@dataclass(frozen=True)
class Check:
    ok: bool
    detail: str

    @classmethod
    def passed(cls, detail: str = "ok") -> "Check":
        return cls(True, detail)

    @classmethod
    def failed(cls, detail: str) -> "Check":
        return cls(False, detail)


class Gate(Check):
    """A failed precondition that refuses the run (exit 3) instead of failing it."""


Probe = Callable[["RunContext"], "bool | str"]


@dataclass(frozen=True)
class Step:
    name: str
    summary: str
    action: Callable[["RunContext"], dict | None]
    preview: Callable[["RunContext"], str]
    precondition: Callable[["RunContext"], Check] = lambda ctx: Check.passed()
    verify: Probe | None = None
    verify_timeout_s: float = 60.0
    compensate: Callable[["RunContext"], None] | None = None
    after: tuple[str, ...] = ()
    phase: str | None = None
    """Timeline phase reached when this step is verified."""


@dataclass
class StepRecord:
    name: str
    status: str
    started: float | None = None
    ended: float | None = None
    detail: str = ""
    facts: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        return {"step": self.name, "status": self.status, "started": self.started, "ended": self.ended,
                "seconds": round(self.ended - self.started, 3) if self.started and self.ended else None,
                "detail": self.detail, "facts": self.facts}


@dataclass
class RunResult:
    runbook: str
    run_id: str
    status: str  # completed | aborted | refused
    steps: list[StepRecord]
    timeline: dict[str, float]
    started: float
    ended: float
    waiting_s: float
    facts: dict
    resumed: bool = False
    audit_head: str | None = None
    error: str | None = None

    @property
    def total_s(self) -> float:
        return self.ended - self.started

    @property
    def orchestration_s(self) -> float:
        return max(0.0, self.total_s - self.waiting_s)


@dataclass(frozen=True)
class PlanLine:
    step: str
    summary: str
    ok: bool
    precondition: str
    change: str
    gate: bool = False


class RunContext:
    """What steps see: facts recorded so far, the clock, the timeline, retries and progress."""

    def __init__(self, *, retry: RetryPolicy | None = None, progress: Callable[[str], None] = lambda line: None,
                 poll_interval_s: float = 1.0, dry_run: bool = False, timeline: Timeline | None = None):
        self.facts: dict = {}
        self.clock = Clock()
        self.timeline = timeline or Timeline()
        self.retry = retry or RetryPolicy()
        self.progress = progress
        self.poll_interval_s = poll_interval_s
        self.dry_run = dry_run
        self.run_id = ""
        self.audit: Callable[..., object] = lambda **record: None  # what it returns is not used

    def call(self, what: str, fn: Callable, *args, **kwargs):
        """A cloud call with retries for transient failures; its time counts as waiting."""
        with self.clock.waiting():
            return call_with_retry(what, lambda: fn(*args, **kwargs), self.retry, sleep=time.sleep)

    def wait_until(self, what: str, probe: Callable[[], "bool | str"], timeout_s: float,
                   interval_s: float | None = None) -> None:
        """Poll `probe` (True when done, else a reason) until it holds; StepFailed on timeout."""
        interval = self.poll_interval_s if interval_s is None else interval_s
        deadline = time.monotonic() + timeout_s
        with self.clock.waiting():
            while True:
                outcome = probe()
                if outcome is True:
                    return
                if time.monotonic() >= deadline:
                    raise StepFailed(f"{what}: not reached within {timeout_s:g}s ({outcome or 'no detail'})")
                time.sleep(interval)


class Runbook:
    def __init__(self, name: str, steps: list[Step], *, key: str,
                 stop_conditions: list[tuple[str, Callable[[RunContext], str | None]]] | None = None):
        self.name = name
        self.key = key
        self.steps = _ordered(steps)
        self.stop_conditions = stop_conditions or []

    def plan(self, ctx: RunContext) -> list[PlanLine]:
        ctx.dry_run = True
        lines = []
        for step in self.steps:
            try:
                check = step.precondition(ctx)
                change = step.preview(ctx) if check.ok else "blocked"
            except Exception as exc:  # noqa: BLE001 - a plan reports every problem it meets
                check, change = Check.failed(_reason(exc)), "blocked"
            lines.append(PlanLine(step.name, step.summary, check.ok, check.detail, change, isinstance(check, Gate)))
        return lines

    def execute(self, ctx: RunContext, *, state_dir: Path, lock: RunLock, audit: AuditLog,
                on_event: Callable[[str, str], None] = lambda step, event: None) -> RunResult:
        runs_dir = Path(state_dir) / "runs"
        existing = find_unfinished(runs_dir, self.key)
        resumed = existing is not None
        journal = Journal(existing) if existing else Journal(runs_dir / _new_run_id(self.name) / "journal.jsonl")
        run_id = journal.path.parent.name
        ctx.run_id = run_id
        ctx.dry_run = False
        ctx.audit = lambda **record: audit.append(run_id=run_id, **record)
        lock.acquire(run_id)
        header = journal.header()
        if header:
            ctx.timeline.marks = {**header.get("timeline", {}), **ctx.timeline.marks}
            ctx.progress(f"resuming run {run_id}: {len(journal.done_steps())} step(s) already done")
        else:
            journal.write("begin", key=self.key, runbook=self.name, timeline=ctx.timeline.marks)
        started = header.get("at", time.time())
        records = {s.name: StepRecord(s.name, "pending") for s in self.steps}
        done = journal.done_steps()
        applied = journal.applied_steps()
        ctx.audit(action=f"{self.name}.{'resume' if resumed else 'begin'}", target=self.key, result="ok")

        def finish(status: str, error: str | None) -> RunResult:
            journal.write(FINISHED, status=status, timeline=ctx.timeline.marks)
            ctx.audit(action=f"{self.name}.end", target=self.key, result=status,
                      detail={"error": error} if error else None)
            lock.release(run_id)
            return RunResult(self.name, run_id, status, list(records.values()), dict(ctx.timeline.marks), started,
                             time.time(), ctx.clock.waiting_s, dict(ctx.facts), resumed, audit.head(), error)

        try:
            for index, step in enumerate(self.steps, start=1):
                record = records[step.name]
                label = f"[{index}/{len(self.steps)}] {step.name}"
                if step.name in done:
                    ctx.facts.update(done[step.name])
                    record.status, record.facts, record.detail = "done", done[step.name], "done in an earlier attempt"
                    ctx.progress(f"{label}: already done, skipped")
                    continue
                self._check_stop_conditions(ctx)
                check = step.precondition(ctx)
                if not check.ok:
                    record.status, record.detail = "blocked", check.detail
                    raise (Refused(f"{step.name}: {check.detail}") if isinstance(check, Gate)
                           else StepFailed(f"precondition failed: {check.detail}"))
                record.started = time.time()
                ctx.progress(f"{label}: {step.summary}")
                journal.write(STARTED, step.name)
                on_event(step.name, STARTED)
                facts = step.action(ctx) or {}
                ctx.facts.update(facts)
                record.facts = facts
                journal.write(APPLIED, step.name, facts=facts)
                applied.append(step.name)
                ctx.audit(action=step.name, target=self.key, result="applied", detail=facts)
                on_event(step.name, APPLIED)
                if step.verify is not None:
                    ctx.wait_until(f"{step.name} verification", partial(step.verify, ctx), step.verify_timeout_s)
                if step.phase:
                    ctx.timeline.mark(step.phase)
                record.ended = time.time()
                record.status, record.detail = "done", facts.get("summary", "")
                journal.write(DONE, step.name, facts=facts, timeline=ctx.timeline.marks)
                ctx.progress(f"{label}: done in {record.ended - record.started:.2f}s"
                             + (f" ({record.detail})" if record.detail else ""))
                on_event(step.name, DONE)
        except Refused as exc:
            ctx.audit(action="gate", target=self.key, result="refused", detail={"reason": str(exc)})
            compensated = self._compensate(ctx, journal, applied, records)
            result = finish("refused", str(exc))
            exc.result = result  # type: ignore[attr-defined]
            exc.compensated = compensated  # type: ignore[attr-defined]
            raise
        except (StepFailed, GaveUp, Exception) as exc:  # any failure aborts and compensates
            failing = next((r for r in records.values() if r.status in ("pending", "blocked") and r.started), None)
            failing = failing or next((r for r in records.values() if r.status == "blocked"), None)
            name = failing.name if failing else "stop-condition"
            if failing:
                failing.status, failing.ended, failing.detail = "failed", time.time(), _reason(exc)
            journal.write(FAILED, name, error=_reason(exc))
            ctx.audit(action=name, target=self.key, result="failed", detail={"error": _reason(exc)})
            ctx.progress(f"{name}: FAILED: {_reason(exc)}; compensating")
            compensated = self._compensate(ctx, journal, applied, records)
            result = finish("aborted", _reason(exc))
            raise RunbookAborted(f"{self.name} aborted at {name}: {_reason(exc)}"
                                 + (f"; compensated: {', '.join(compensated)}" if compensated else ""),
                                 step=name, compensated=compensated, report=result) from exc
        return finish("completed", None)

    def _check_stop_conditions(self, ctx: RunContext) -> None:
        for name, condition in self.stop_conditions:
            reason = condition(ctx)
            if reason:
                raise StepFailed(f"stop condition {name}: {reason}")

    def _compensate(self, ctx: RunContext, journal: Journal, applied: list[str],
                    records: dict[str, StepRecord]) -> list[str]:
        compensated = []
        by_name = {s.name: s for s in self.steps}
        for name in reversed(list(dict.fromkeys(applied))):
            step = by_name[name]
            if step.compensate is None:
                continue
            try:
                step.compensate(ctx)
            except Exception as exc:  # noqa: BLE001 - keep undoing the rest, report this one
                journal.write(FAILED, name, error=f"compensation: {_reason(exc)}")
                ctx.audit(action=f"{name}.compensate", target=self.key, result="failed", detail={"error": _reason(exc)})
                ctx.progress(f"{name}: compensation FAILED: {_reason(exc)}")
                continue
            journal.write(COMPENSATED, name)
            ctx.audit(action=f"{name}.compensate", target=self.key, result="ok")
            records[name].status = "compensated"
            compensated.append(name)
            ctx.progress(f"{name}: compensated")
        return compensated


def _ordered(steps: list[Step]) -> list[Step]:
    """Topological order that keeps the written order where dependencies allow."""
    names = [s.name for s in steps]
    if len(set(names)) != len(names):
        raise ValueError(f"duplicate step names in {names}")
    remaining = list(steps)
    placed: list[Step] = []
    while remaining:
        for step in remaining:
            missing = [d for d in step.after if d not in names]
            if missing:
                raise ValueError(f"step {step.name} runs after unknown step(s) {missing}")
            if all(d in {p.name for p in placed} for d in step.after):
                placed.append(step)
                remaining.remove(step)
                break
        else:
            raise ValueError(f"steps {[s.name for s in remaining]} depend on each other in a cycle")
    return placed


def _new_run_id(runbook: str) -> str:
    return f"{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}-{runbook}-{uuid.uuid4().hex[:6]}"


def _reason(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
