"""The engine's graph of typed blocks: branches side by side, a block that waits only for what it
depends on, waiting counted once across threads, typed facts through the journal, a resume that
re-checks the live world, and a plan that evaluates every stop condition."""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

import pytest

from mlfleet.dr.audit import AuditLog
from mlfleet.dr.engine import Block, Check, Clock, Facts, Runbook, RunContext, StepFailed
from mlfleet.dr.errors import Refused, RunbookAborted
from mlfleet.dr.locks import FileLock
from mlfleet.dr.retry import RetryPolicy

from helpers.runbooks import Crash, crash_at


def _run(runbook, tmp_path, *, lock=None, **kw):
    ctx = RunContext(retry=RetryPolicy(attempts=2, base_s=0.001), poll_interval_s=0.01)
    return runbook.execute(ctx, state_dir=tmp_path, lock=lock or FileLock(tmp_path / "lock"),
                           audit=AuditLog(tmp_path / "audit.jsonl"), **kw)


@dataclass(frozen=True)
class Set(Facts):
    key: str = ""
    value: int = 0
    seen: dict = field(default_factory=dict)


class SetKey(Block):
    """Sets world[key] = value; its effect holds while the world still says so."""

    facts_type = Set

    def __init__(self, world: dict, key: str, value: int = 1, *, after=None, on_action=None, verify_until=None):
        super().__init__(f"set-{key}", f"set {key}", after=after)
        self.world, self.key, self.value = world, key, value
        self.on_action, self.verify_until = on_action, verify_until

    def action(self, ctx):
        if self.on_action:
            self.on_action()
        self.world.setdefault("log", []).append(("start", self.key, time.monotonic()))
        self.world[self.key] = self.value
        return Set(summary=f"{self.key}={self.value}", key=self.key, value=self.value, seen={"n": self.value})

    def verify(self, ctx, facts):
        if self.verify_until is not None and not self.verify_until.is_set():
            return f"{self.key} not there yet"
        self.world.setdefault("log", []).append(("done", self.key, time.monotonic()))
        return True

    def still_holds(self, ctx, facts):
        return Check.passed() if self.world.get(facts.key) == facts.value else Check.failed(
            f"{facts.key} is {self.world.get(facts.key)}, not {facts.value}")

    def compensate(self, ctx, facts):
        self.world.pop(facts.key, None)
        self.world.setdefault("undone", []).append(facts.key)


def test_branches_after_one_gate_run_side_by_side(tmp_path):
    world: dict = {}
    both = threading.Barrier(2, timeout=5)  # each branch's action waits for the other: serial would fail
    runbook = Runbook("par", [SetKey(world, "gate"),
                              SetKey(world, "left", after=("set-gate",), on_action=both.wait),
                              SetKey(world, "right", after=("set-gate",), on_action=both.wait)], key="par")
    result = _run(runbook, tmp_path)
    assert result.status == "completed" and world["left"] == world["right"] == 1


def test_a_block_waits_only_for_its_own_dependencies_while_a_slow_verification_goes_on(tmp_path):
    """Routing moves once the pin is verified, while the nodes are still joining."""
    world: dict = {}
    nodes_joined = threading.Event()
    runbook = Runbook("route", [
        SetKey(world, "gate"),
        SetKey(world, "nodes", after=("set-gate",), verify_until=nodes_joined),
        SetKey(world, "pin", after=("set-gate",)),
        SetKey(world, "route", after=("set-pin",), on_action=lambda: None),
        SetKey(world, "joined", after=("set-route",), on_action=nodes_joined.set),
    ], key="route")
    result = _run(runbook, tmp_path)
    assert result.status == "completed"
    done = {key: at for event, key, at in world["log"] if event == "done"}
    started = {key: at for event, key, at in world["log"] if event == "start"}
    assert started["route"] < done["nodes"], "routing waited for the nodes it does not depend on"


def test_a_failing_branch_stops_a_waiting_sibling_and_compensates_both(tmp_path):
    world: dict = {}
    never = threading.Event()

    class Broken(SetKey):
        def verify(self, ctx, facts):
            raise StepFailed("promotion broke")

    slow = SetKey(world, "nodes", after=("set-gate",), verify_until=never)
    slow.verify_timeout_s = 30
    runbook = Runbook("fail", [SetKey(world, "gate"), slow, Broken(world, "registry", after=("set-gate",))],
                      key="fail")
    began = time.monotonic()
    with pytest.raises(RunbookAborted, match="promotion broke") as caught:
        _run(runbook, tmp_path)
    assert time.monotonic() - began < 5, "the waiting sibling was not stopped"
    assert caught.value.step == "set-registry"
    assert set(world["undone"]) == {"gate", "nodes", "registry"}


def test_waiting_in_several_threads_counts_once():
    clock = Clock()
    began = time.monotonic()
    threads = [threading.Thread(target=clock.sleep, args=(0.2,)) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.monotonic() - began
    assert 0.19 <= clock.waiting_s <= elapsed + 0.01


def test_typed_facts_come_back_typed_after_a_crash(tmp_path):
    world: dict = {}
    seen = []

    class Reader(Block):
        def action(self, ctx):
            seen.append(ctx.need(Set))
            return Facts(summary="read")

    lock = FileLock(tmp_path / "lock")
    with pytest.raises(Crash):
        _run(Runbook("typed", [SetKey(world, "a", 7), Reader("read", "read")], key="typed"), tmp_path, lock=lock,
             on_event=crash_at("read", "started"))
    lock.abandon()
    _run(Runbook("typed", [SetKey(world, "a", 7), Reader("read", "read")], key="typed"), tmp_path,
         take_over_lock=True)
    assert isinstance(seen[-1], Set) and seen[-1].value == 7 and seen[-1].seen == {"n": 7}


def test_a_resume_refuses_when_the_world_moved_and_closes_the_interrupted_run(tmp_path):
    """The on-call defect: an interrupted failover, a failback meanwhile, then the first command again."""
    world: dict = {}

    def runbook():
        return Runbook("moved", [SetKey(world, "a"), SetKey(world, "b")], key="moved")

    lock = FileLock(tmp_path / "lock")
    with pytest.raises(Crash):
        _run(runbook(), tmp_path, lock=lock, on_event=crash_at("set-b", "started"))
    lock.abandon()
    world["a"] = 0  # someone else moved it back
    with pytest.raises(Refused, match="set-a: a is 0, not 1") as caught:
        _run(runbook(), tmp_path, take_over_lock=True)
    assert caught.value.exit_code == 3 and "world has moved" in str(caught.value)
    assert "b" not in world, "nothing after the moved block may run"
    result = _run(runbook(), tmp_path)  # a fresh run plans from the world as it is
    assert result.status == "completed" and not result.resumed and world == {**world, "a": 1, "b": 1}


def test_a_plan_evaluates_every_stop_condition(tmp_path):
    runbook = Runbook("stops", [SetKey({}, "a")], key="stops",
                      stop_conditions=[("target-health", lambda ctx: "us-west-2 answers 503")])
    lines = runbook.plan(RunContext())
    stop = [line for line in lines if line.step == "stop condition target-health"]
    assert stop and not stop[0].ok and "503" in stop[0].precondition


def test_orchestration_never_exceeds_the_total(tmp_path):
    world: dict = {}

    class Waits(SetKey):
        def action(self, ctx):
            ctx.clock.sleep(0.05)
            return super().action(ctx)

    ctx = RunContext(poll_interval_s=0.01)
    ctx.clock.sleep(0.2)  # waiting before the run (a drill's preparation) is not the run's
    result = Runbook("o", [Waits(world, "a")], key="o").execute(
        ctx, state_dir=tmp_path, lock=FileLock(tmp_path / "lock"), audit=AuditLog(tmp_path / "audit.jsonl"))
    assert 0.04 <= result.waiting_s <= result.total_s
    assert 0 < result.orchestration_s <= result.total_s
