"""The runbook engine: a graph of typed blocks, planned before it is executed.

A block (see `Block`) has a precondition (is it safe and meaningful now?), a plan preview, an
idempotent action that returns the block's typed facts, a verification polled until it holds or
its timeout passes, a re-check of its effect against the live world (`still_holds`, run when a
crashed run resumes), a compensation that undoes the action when a later block fails, and the
timeline phase it reaches.

`plan` evaluates every precondition and stop condition and describes what each block would
change; nothing is modified (read-only blocks run, so later blocks see their facts). `execute`
takes the run lock, journals every block (so a crash resumes without repeating a side effect),
re-verifies what an interrupted attempt did before it resumes, audits every action, checks the
stop conditions before each block, and on a failure runs the compensations of the blocks
already applied, newest first.

Blocks whose dependencies (`after`) are done run side by side: scaling and registry promotion
overlap, and routing moves as soon as the blocks it depends on are verified, while a slow
verification (nodes joining) goes on in its own thread.

Time is split into waiting (cloud API calls, polling intervals, backoff, in any thread) and
orchestration (the rest), so a drill can tell the platform's speed from mlfleet's own.
"""
from __future__ import annotations

import dataclasses
import threading
import time
import uuid
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, ClassVar, Iterator, TypeVar

from mlfleet.dr.audit import AuditLog
from mlfleet.dr.errors import Refused, RunbookAborted, WorldMoved
from mlfleet.dr.journal import APPLIED, COMPENSATED, DONE, FAILED, FINISHED, STARTED, Journal, find_unfinished
from mlfleet.dr.locks import RunLock
from mlfleet.dr.retry import RetryPolicy, call_with_retry

PHASES = ("fault_injected", "fault_detected", "declared", "registry_writable", "routing_flipped",
          "first_inference", "slo_recovered")


class StepFailed(Exception):
    """A block's action or verification could not complete."""


class Cancelled(StepFailed):
    """Another block failed: a block still waiting stops instead of waiting out its timeout."""


class Clock:
    """Accumulates the time during which at least one thread waits on the world: nested and
    overlapping waits count once, so waiting never exceeds the wall time it covers."""

    def __init__(self) -> None:
        self.waiting_s = 0.0
        self._waiters = 0
        self._since = 0.0
        self._lock = threading.Lock()
        self._depth = threading.local()

    @contextmanager
    def waiting(self) -> Iterator[None]:
        depth = getattr(self._depth, "n", 0)
        self._depth.n = depth + 1
        if depth == 0:
            with self._lock:
                if self._waiters == 0:
                    self._since = time.monotonic()
                self._waiters += 1
        try:
            yield
        finally:
            self._depth.n = depth
            if depth == 0:
                with self._lock:
                    self._waiters -= 1
                    if self._waiters == 0:
                        self.waiting_s += time.monotonic() - self._since

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


@dataclass(frozen=True)
class Facts:
    """What a block found or did, journaled so a resumed run knows it. Blocks subclass it with
    their own typed fields; every field must survive a JSON round trip."""
    summary: str = ""

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "Facts":
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


F = TypeVar("F", bound=Facts)


class Block:
    """One typed step of a runbook. Subclasses override what applies to them; the defaults are
    those of a read-only check."""

    facts_type: ClassVar[type[Facts]] = Facts
    read_only: ClassVar[bool] = False
    """Changes nothing: the plan runs its action to learn its facts."""
    verify_timeout_s: float = 60.0

    def __init__(self, name: str, summary: str, *, after: tuple[str, ...] | None = None, phase: str | None = None):
        self.name = name
        self.summary = summary
        self.after: tuple[str, ...] | None = after
        """The blocks this one waits for; None: the one written before it (a sequence)."""
        self.phase = phase
        """Timeline phase reached when this block is verified."""

    def precondition(self, ctx: RunContext) -> Check:
        return Check.passed()

    def preview(self, ctx: RunContext) -> str:
        return "none (read only)"

    def action(self, ctx: RunContext) -> Facts:
        return self.facts_type()

    def verify(self, ctx: RunContext, facts: Any) -> bool | str:
        """True once the action's effect holds, else what is still missing; polled."""
        return True

    def still_holds(self, ctx: RunContext, facts: Any) -> Check:
        """On resume: does the live world still show what this block did? Read-only blocks'
        findings are not re-checked (the blocks after them re-check what they acted on)."""
        return Check.passed()

    def compensate(self, ctx: RunContext, facts: Any) -> None:
        """Undo the action; nothing by default."""

    @property
    def compensable(self) -> bool:
        return type(self).compensate is not Block.compensate


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
    attempt_started: float | None = None
    """When this attempt began (a resumed run began earlier: `started`)."""

    @property
    def total_s(self) -> float:
        return self.ended - (self.attempt_started or self.started)

    @property
    def orchestration_s(self) -> float:
        return min(self.total_s, max(0.0, self.total_s - self.waiting_s))


@dataclass(frozen=True)
class PlanLine:
    step: str
    summary: str
    ok: bool
    precondition: str
    change: str
    gate: bool = False


class RunContext:
    """What blocks see: the facts recorded so far, the clock, the timeline, retries and progress."""

    def __init__(self, *, retry: RetryPolicy | None = None, progress: Callable[[str], None] = lambda line: None,
                 poll_interval_s: float = 1.0, dry_run: bool = False, timeline: Timeline | None = None):
        self.results: dict[str, Facts] = {}
        self.clock = Clock()
        self.timeline = timeline or Timeline()
        self.retry = retry or RetryPolicy()
        self.progress = progress
        self.poll_interval_s = poll_interval_s
        self.dry_run = dry_run
        self.run_id = ""
        self.cancelled = threading.Event()
        self.audit: Callable[..., object] = lambda **record: None  # what it returns is not used

    @property
    def facts(self) -> dict:
        """Every block's facts merged into one dict (the reports' view)."""
        merged: dict = {}
        for facts in self.results.values():
            merged.update({k: v for k, v in facts.as_dict().items() if k != "summary"})
        return merged

    def find(self, kind: type[F]) -> F | None:
        """The facts of the (one) block of this type recorded so far."""
        return next((f for f in self.results.values() if isinstance(f, kind)), None)

    def need(self, kind: type[F]) -> F:
        found = self.find(kind)
        if found is None:
            raise StepFailed(f"no {kind.__name__} recorded before this block (a runbook wired out of order)")
        return found

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
                if self.cancelled.is_set():
                    raise Cancelled(f"{what}: stopped, another block failed ({outcome or 'no detail'})")
                if time.monotonic() >= deadline:
                    raise StepFailed(f"{what}: not reached within {timeout_s:g}s ({outcome or 'no detail'})")
                time.sleep(interval)


StopCondition = tuple[str, Callable[[RunContext], "str | None"]]


class Runbook:
    def __init__(self, name: str, blocks: list[Block], *, key: str, stop_conditions: list[StopCondition] | None = None,
                 lock_region: str | None = None):
        self.name = name
        self.key = key
        self.steps = _ordered(_resolve_dependencies(blocks))
        self.stop_conditions = stop_conditions or []
        self.lock_region = lock_region
        """Where the run's lock lives: the region that must be up for the run to matter."""

    def plan(self, ctx: RunContext) -> list[PlanLine]:
        """Every precondition and stop condition, evaluated now; read-only blocks run so the
        blocks after them are previewed with real facts. Nothing is changed."""
        ctx.dry_run = True
        lines = []
        for block in self.steps:
            try:
                check = block.precondition(ctx)
                change = block.preview(ctx) if check.ok else "blocked"
                if check.ok and block.read_only:
                    ctx.results[block.name] = block.action(ctx)
            except Exception as exc:  # noqa: BLE001 - a plan reports every problem it meets
                check, change = Check.failed(_reason(exc)), "blocked"
            lines.append(PlanLine(block.name, block.summary, check.ok, check.detail, change, isinstance(check, Gate)))
        for name, condition in self.stop_conditions:
            try:
                reason = condition(ctx)
            except Exception as exc:  # noqa: BLE001
                reason = _reason(exc)
            lines.append(PlanLine(f"stop condition {name}", "checked before every block", reason is None,
                                  reason or "holds", "none (read only)", gate=reason is not None))
        return lines

    def execute(self, ctx: RunContext, *, state_dir: Path, lock: RunLock, audit: AuditLog,
                on_event: Callable[[str, str], None] = lambda step, event: None,
                take_over_lock: bool = False) -> RunResult:
        runs_dir = Path(state_dir) / "runs"
        attempt_started = time.time()
        waiting_at_start = ctx.clock.waiting_s
        existing = find_unfinished(runs_dir, self.key)
        journal = Journal(existing) if existing else Journal(runs_dir / _new_run_id(self.name) / "journal.jsonl")
        run_id = journal.path.parent.name
        ctx.run_id = run_id
        ctx.dry_run = False
        ctx.audit = lambda **record: audit.append(run_id=run_id, **record)
        previous = lock.acquire(run_id, take_over=take_over_lock)
        if previous:
            ctx.audit(action="lock.take-over", target=self.key, result="ok", detail={"previous_holder": previous})
            ctx.progress(f"took over the lock of a dead run ({', '.join(f'{k}={v}' for k, v in previous.items())})")
        header = journal.header()
        resumed = bool(header)
        done = journal.done_steps()
        applied = journal.applied_steps()
        by_name = {b.name: b for b in self.steps}
        records = {b.name: StepRecord(b.name, "pending") for b in self.steps}
        if resumed:
            ctx.timeline.marks = {**journal.latest_timeline(), **ctx.timeline.marks}
            ctx.progress(f"resuming run {run_id}: {len(done)} step(s) already done; re-checking them")
        else:
            journal.write("begin", key=self.key, runbook=self.name, timeline=ctx.timeline.marks)
        started = header.get("at", attempt_started)
        ctx.audit(action=f"{self.name}.{'resume' if resumed else 'begin'}", target=self.key, result="ok")
        state = _RunState(journal, records, applied, ctx, on_event, self.key, len(self.steps), lock)

        def finish(status: str, error: str | None) -> RunResult:
            journal.write(FINISHED, status=status, timeline=ctx.timeline.marks)
            ctx.audit(action=f"{self.name}.end", target=self.key, result=status,
                      detail={"error": error} if error else None)
            _flush_anchor(audit, ctx)
            lock.release(run_id)
            return RunResult(self.name, run_id, status, list(records.values()), dict(ctx.timeline.marks), started,
                             time.time(), ctx.clock.waiting_s - waiting_at_start, ctx.facts, resumed, audit.head(),
                             error, attempt_started)

        try:
            moved = []  # every block whose effect no longer holds, so the refusal says all that moved
            for name, data in done.items():
                if name not in by_name:
                    continue
                block = by_name[name]
                facts = block.facts_type.from_dict(data)
                check = block.still_holds(ctx, facts)
                if not check.ok:
                    moved.append(f"{name}: {check.detail}")
                ctx.results[name] = facts
                records[name].status, records[name].facts = "done", data
                records[name].detail = "done in an earlier attempt, still holds"
            if moved:
                raise WorldMoved("; ".join(moved))
            self._run_graph(ctx, state, done)
        except WorldMoved as exc:
            message = (f"run {run_id} was interrupted and the world has moved since: {exc}; nothing was changed. "
                       "The interrupted run is closed; start the command again to plan from the world as it is")
            ctx.audit(action="resume", target=self.key, result="refused", detail={"reason": str(exc)})
            result = finish("abandoned", message)
            refusal = Refused(message)
            refusal.result = result  # type: ignore[attr-defined]
            raise refusal from None
        except Refused as exc:
            ctx.audit(action="gate", target=self.key, result="refused", detail={"reason": str(exc)})
            compensated, _ = self._compensate(ctx, journal, applied, records)
            result = finish("refused", str(exc))
            exc.result = result  # type: ignore[attr-defined]
            exc.compensated = compensated  # type: ignore[attr-defined]
            raise
        except (KeyboardInterrupt, SystemExit):
            # Stopped by its operator: the journal resumes it, and the lock is free for that (only a
            # killed process leaves its lock to be taken over explicitly).
            lock.release(run_id)
            raise
        except Exception as exc:  # any failure aborts and compensates
            name = state.failed_block or "stop-condition"
            record = records.get(name)
            if record is not None and record.status not in ("done",):
                record.status, record.ended, record.detail = "failed", time.time(), _reason(exc)
            journal.write(FAILED, name, error=_reason(exc))
            ctx.audit(action=name, target=self.key, result="failed", detail={"error": _reason(exc)})
            ctx.progress(f"{name}: FAILED: {_reason(exc)}; compensating")
            compensated, not_undone = self._compensate(ctx, journal, applied, records)
            result = finish("aborted", _reason(exc))
            raise RunbookAborted(f"{self.name} aborted at {name}: {_reason(exc)}"
                                 + (f"; compensated: {', '.join(compensated)}" if compensated else "")
                                 + "".join(f"; NOT undone: {step} ({why})" for step, why in not_undone.items()),
                                 step=name, compensated=compensated, not_undone=not_undone, report=result) from exc
        return finish("completed", None)

    def _run_graph(self, ctx: RunContext, state: _RunState, done: dict[str, dict]) -> None:
        """Run every block whose dependencies are done, side by side, until all are done or one fails."""
        finished = set(done)
        pending = [b for b in self.steps if b.name not in finished]
        running: dict[Future, Block] = {}
        failure: BaseException | None = None
        with ThreadPoolExecutor(max_workers=max(1, len(self.steps)), thread_name_prefix=self.name) as pool:
            while pending or running:
                if failure is None:
                    ready = [b for b in pending if all(d in finished for d in b.after or ())]
                    for block in ready:
                        pending.remove(block)
                        try:
                            lost = getattr(state.lock, "lost", None)
                            if lost:  # another run took the lock over: this one must not act again
                                raise StepFailed(f"lost the run lock: {lost}")
                            self._check_stop_conditions(ctx)
                            self._start(ctx, state, block, first=not state.applied and not running)
                        except BaseException as exc:  # noqa: BLE001 - refusal, failure or crash: stop, then re-raise
                            state.failed_block = state.failed_block or block.name
                            failure = exc
                            ctx.cancelled.set()
                            break
                        running[pool.submit(self._finish_block, ctx, state, block)] = block
                if not running:
                    if failure is None and pending:
                        raise StepFailed(f"blocks {[b.name for b in pending]} wait on blocks that never ran")
                    break
                complete, _ = wait(list(running), return_when=FIRST_COMPLETED)
                for future in complete:
                    block = running.pop(future)
                    raised = future.exception()
                    if raised is None:
                        finished.add(block.name)
                    elif failure is None:
                        state.failed_block = block.name
                        failure = raised
                        ctx.cancelled.set()
                if failure is not None:
                    pending.clear()
        ctx.cancelled.clear()
        if failure is not None:
            raise failure

    def _start(self, ctx: RunContext, state: _RunState, block: Block, *, first: bool) -> None:
        """The precondition, on the engine's thread, right before the block starts."""
        record = state.records[block.name]
        check = block.precondition(ctx)
        if not check.ok:
            record.status, record.detail = "blocked", check.detail
            # Nothing applied yet: the run is refused, not failed, whatever kind of check stopped it.
            if isinstance(check, Gate) or first:
                raise Refused(f"{block.name}: {check.detail}")
            raise StepFailed(f"precondition failed: {check.detail}")
        record.started = time.time()
        ctx.progress(f"{state.label(block)}: {block.summary}")
        state.journal.write(STARTED, block.name)
        state.on_event(block.name, STARTED)

    def _finish_block(self, ctx: RunContext, state: _RunState, block: Block) -> None:
        """The action and its verification, in the block's own thread (branches overlap), then DONE."""
        record = state.records[block.name]
        facts = block.action(ctx)
        data = facts.as_dict()
        ctx.results[block.name] = facts
        record.facts = data
        state.journal.write(APPLIED, block.name, facts=data)
        state.applied.append(block.name)
        if not block.read_only:
            ctx.audit(action=block.name, target=state.key, result="applied", detail=data)
        state.on_event(block.name, APPLIED)
        ctx.wait_until(f"{block.name} verification", lambda: block.verify(ctx, facts), block.verify_timeout_s)
        if block.phase:
            ctx.timeline.mark(block.phase)
        record.ended = time.time()
        record.status, record.detail = "done", facts.summary
        state.journal.write(DONE, block.name, facts=record.facts, timeline=ctx.timeline.marks)
        ctx.progress(f"{state.label(block)}: done in {record.ended - (record.started or record.ended):.2f}s"
                     + (f" ({record.detail})" if record.detail else ""))
        state.on_event(block.name, DONE)

    def _check_stop_conditions(self, ctx: RunContext) -> None:
        for name, condition in self.stop_conditions:
            reason = condition(ctx)
            if reason:
                raise StepFailed(f"stop condition {name}: {reason}")

    def _compensate(self, ctx: RunContext, journal: Journal, applied: list[str],
                    records: dict[str, StepRecord]) -> tuple[list[str], dict[str, str]]:
        """Undo the applied blocks, last first: (those undone, block -> why its undo failed)."""
        compensated: list[str] = []
        not_undone: dict[str, str] = {}
        by_name = {b.name: b for b in self.steps}
        for name in reversed(list(dict.fromkeys(applied))):
            block = by_name.get(name)
            if block is None or not block.compensable:
                continue
            facts = ctx.results.get(name) or block.facts_type()
            try:
                block.compensate(ctx, facts)
            except Exception as exc:  # noqa: BLE001 - keep undoing the rest, report this one
                journal.write(FAILED, name, error=f"compensation: {_reason(exc)}")
                ctx.audit(action=f"{name}.compensate", target=self.key, result="failed",
                          detail={"error": _reason(exc)})
                ctx.progress(f"{name}: compensation FAILED: {_reason(exc)}")
                not_undone[name] = _reason(exc)
                continue
            journal.write(COMPENSATED, name)
            ctx.audit(action=f"{name}.compensate", target=self.key, result="ok")
            records[name].status = "compensated"
            compensated.append(name)
            ctx.progress(f"{name}: compensated")
        return compensated, not_undone


class _RunState:
    """What the engine's threads share while one run executes."""

    def __init__(self, journal: Journal, records: dict[str, StepRecord], applied: list[str], ctx: RunContext,
                 on_event: Callable[[str, str], None], key: str, total: int, lock: RunLock):
        self.journal, self.records, self.applied, self.ctx, self.lock = journal, records, applied, ctx, lock
        self.on_event, self.key, self.total = on_event, key, total
        self.failed_block: str | None = None
        self._index = {name: i for i, name in enumerate(records, start=1)}

    def label(self, block: Block) -> str:
        return f"[{self._index[block.name]}/{self.total}] {block.name}"


def _flush_anchor(audit: AuditLog, ctx: RunContext) -> None:
    """The run's last audit head anchored outside the log before the run returns; an anchor that
    cannot be written is said, not a failed run (the log itself is intact)."""
    from mlfleet.dr.audit import AnchorUnavailable

    try:
        with ctx.clock.waiting():  # S3 writes: the world's time, not mlfleet's
            audit.flush_anchor()
    except AnchorUnavailable as exc:
        ctx.progress(f"note: the audit head is not anchored: {exc}")


def _resolve_dependencies(blocks: list[Block]) -> list[Block]:
    """A block that names no dependencies follows the one written before it."""
    for previous, block in zip([None, *blocks], blocks, strict=False):
        if block.after is None:
            block.after = (previous.name,) if previous is not None else ()
    return blocks


def _ordered(blocks: list[Block]) -> list[Block]:
    """Topological order that keeps the written order where dependencies allow."""
    names = [b.name for b in blocks]
    if len(set(names)) != len(names):
        raise ValueError(f"duplicate step names in {names}")
    remaining = list(blocks)
    placed: list[Block] = []
    while remaining:
        for block in remaining:
            missing = [d for d in block.after or () if d not in names]
            if missing:
                raise ValueError(f"step {block.name} runs after unknown step(s) {missing}")
            if all(d in {p.name for p in placed} for d in block.after or ()):
                placed.append(block)
                remaining.remove(block)
                break
        else:
            raise ValueError(f"steps {[b.name for b in remaining]} depend on each other in a cycle")
    return placed


def _new_run_id(runbook: str) -> str:
    return f"{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}-{runbook}-{uuid.uuid4().hex[:6]}"


def _reason(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
