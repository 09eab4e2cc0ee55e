"""The engine on its own: journal resume, compensation order, the lock, the audit chain and
which failures are retried."""
from __future__ import annotations

import json
import threading

import pytest
from botocore.exceptions import ClientError

from mlfleet.dr.audit import AuditLog, verify
from mlfleet.dr.engine import Check, Gate, Runbook, RunContext
from mlfleet.dr.errors import AuditTampered, LockAbandoned, LockHeld, Refused, RunbookAborted
from mlfleet.dr.locks import FileLock
from mlfleet.dr.retry import NOT_IMPLEMENTED, PERMANENT, TRANSIENT, GaveUp, RetryPolicy, call_with_retry, classify

from helpers.blocks import Step
from helpers.runbooks import Crash, crash_at


def _world_runbook(world: dict, *, fail_at: str | None = None) -> Runbook:
    def step(name: str) -> Step:
        def action(ctx):
            if world["state"].get(name):
                return {name: "already"}
            if name == fail_at:
                raise RuntimeError(f"{name} broke")
            world["state"][name] = True
            world["effects"].append(name)
            return {name: "done"}

        def compensate(ctx):
            world["state"].pop(name, None)
            world["undone"].append(name)

        return Step(name, f"do {name}", action, lambda ctx: f"would do {name}", compensate=compensate)

    return Runbook("test", [step("a"), step("b"), step("c")], key="test:key")


def _run(runbook, tmp_path, *, lock=None, **kw):
    return runbook.execute(RunContext(retry=RetryPolicy(attempts=2, base_s=0.001)), state_dir=tmp_path,
                           lock=lock or FileLock(tmp_path / "lock"), audit=AuditLog(tmp_path / "audit.jsonl"), **kw)


@pytest.mark.parametrize("crash_step", ["a", "b", "c"])
@pytest.mark.parametrize("crash_event", ["started", "applied", "done"])
def test_resume_after_a_crash_repeats_no_side_effect(tmp_path, crash_step, crash_event):
    world = {"state": {}, "effects": [], "undone": []}

    crashed = FileLock(tmp_path / "lock")
    with pytest.raises(Crash):
        _run(_world_runbook(world), tmp_path, lock=crashed, on_event=crash_at(crash_step, crash_event))
    crashed.abandon()  # the process died: its lock's heartbeat stopped
    with pytest.raises(LockAbandoned):
        _run(_world_runbook(world), tmp_path)  # a dead run's lock is taken over only when asked
    result = _run(_world_runbook(world), tmp_path, take_over_lock=True)
    assert result.status == "completed" and result.resumed
    assert world["effects"] == ["a", "b", "c"]
    verify(tmp_path / "audit.jsonl")


def test_failure_compensates_applied_steps_newest_first(tmp_path):
    world = {"state": {}, "effects": [], "undone": []}
    with pytest.raises(RunbookAborted) as caught:
        _run(_world_runbook(world, fail_at="c"), tmp_path)
    assert world["undone"] == ["b", "a"]
    assert caught.value.step == "c" and caught.value.exit_code == 1
    assert not (tmp_path / "lock").exists(), "an aborted run releases its lock"


def test_an_undo_that_fails_is_named_in_the_abort_and_the_others_still_run(tmp_path):
    undone = []

    def stuck(ctx):
        raise RuntimeError("the region to switch back from does not answer")

    runbook = Runbook("test", [
        Step("a", "a", lambda ctx: None, lambda ctx: "", compensate=lambda ctx: undone.append("a")),
        Step("b", "b", lambda ctx: None, lambda ctx: "", compensate=stuck),
        Step("c", "c", lambda ctx: (_ for _ in ()).throw(RuntimeError("c broke")), lambda ctx: "")], key="test:undo")
    with pytest.raises(RunbookAborted) as caught:
        _run(runbook, tmp_path)
    assert undone == ["a"] and caught.value.compensated == ["a"]
    assert caught.value.not_undone == {"b": "the region to switch back from does not answer"}
    assert "NOT undone: b (the region to switch back from does not answer)" in str(caught.value)
    records = [json.loads(line) for line in (tmp_path / "audit.jsonl").read_text().splitlines()]
    assert any(r["action"] == "b.compensate" and r["result"] == "failed" for r in records)


def test_a_gate_refuses_with_exit_code_3_and_changes_nothing(tmp_path):
    effects = []
    runbook = Runbook("gated", [
        Step("gate", "gate", lambda ctx: None, lambda ctx: "", precondition=lambda ctx: Gate(False, "lag 20m > 15m")),
        Step("act", "act", lambda ctx: effects.append(1), lambda ctx: "")], key="gated")
    with pytest.raises(Refused) as caught:
        _run(runbook, tmp_path)
    assert caught.value.exit_code == 3 and "lag 20m" in str(caught.value)
    assert effects == []


def test_plan_changes_nothing_and_reports_each_step(tmp_path):
    world = {"state": {}, "effects": [], "undone": []}
    lines = _world_runbook(world).plan(RunContext())
    assert [(line.step, line.ok, line.change) for line in lines] == [
        ("a", True, "would do a"), ("b", True, "would do b"), ("c", True, "would do c")]
    assert world["effects"] == []


def test_a_second_concurrent_run_is_refused(tmp_path):
    inside, release = threading.Event(), threading.Event()

    def hold(step, event):
        if event == "started":
            inside.set()
            release.wait(10)

    world = {"state": {}, "effects": [], "undone": []}
    first = threading.Thread(target=lambda: _run(_world_runbook(world), tmp_path, on_event=hold))
    first.start()
    assert inside.wait(10)
    other = Runbook("other", [Step("x", "x", lambda ctx: None, lambda ctx: "")], key="other")
    with pytest.raises(LockHeld) as caught:
        _run(other, tmp_path)
    release.set()
    first.join()
    assert caught.value.exit_code == 3 and caught.value.holder["run_id"]
    assert world["effects"] == ["a", "b", "c"]


def test_audit_log_detects_edit_removal_and_truncation(tmp_path):
    log = AuditLog(tmp_path / "audit.jsonl", actor="oncall@test")
    for i in range(4):
        log.append(run_id="r", action=f"step{i}", target="prod", result="ok")
    head = verify(log.path).head
    lines = log.path.read_text().splitlines()

    edited = json.loads(lines[1])
    edited["result"] = "failed"
    log.path.write_text("\n".join([lines[0], json.dumps(edited)] + lines[2:]) + "\n")
    with pytest.raises(AuditTampered, match=":2: content does not match"):
        verify(log.path)

    log.path.write_text("\n".join([lines[0]] + lines[2:]) + "\n")
    with pytest.raises(AuditTampered, match="sequence"):
        verify(log.path)

    log.path.write_text("\n".join(lines[:3]) + "\n")
    assert verify(log.path).records == 3
    with pytest.raises(AuditTampered, match="removed from the end"):
        verify(log.path, expect_head=head)


def _client_error(code: str, status: int) -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": "m"}, "ResponseMetadata": {"HTTPStatusCode": status}}, "Op")


def test_retry_classification():
    assert classify(_client_error("ThrottlingException", 400)) == TRANSIENT
    assert classify(_client_error("InternalFailure", 500)) == TRANSIENT
    assert classify(_client_error("ServiceUnavailable", 503)) == TRANSIENT
    assert classify(_client_error("InvalidParameterValue", 400)) == PERMANENT
    assert classify(_client_error("AccessDenied", 403)) == PERMANENT
    assert classify(_client_error("NotImplemented", 501)) == NOT_IMPLEMENTED
    assert classify(ConnectionResetError()) == TRANSIENT


def test_a_signing_key_kms_did_not_answer_for_is_retried_one_it_refused_is_not():
    from botocore.exceptions import ReadTimeoutError

    from mlfleet.dr.kms_signer import KmsManifestSigner

    class Kms:
        def __init__(self, error):
            self.error, self.calls = error, 0

        def get_public_key(self, **_):
            self.calls += 1
            raise self.error

    timing_out = Kms(ReadTimeoutError(endpoint_url="http://kms"))
    with pytest.raises(GaveUp) as caught:
        call_with_retry("read the key", KmsManifestSigner(timing_out, "k", "us-east-1").public_key,
                        RetryPolicy(attempts=3, base_s=0.001))
    assert caught.value.kind == TRANSIENT and timing_out.calls == 3
    refusing = Kms(_client_error("NotFoundException", 400))
    with pytest.raises(GaveUp) as caught:
        call_with_retry("read the key", KmsManifestSigner(refusing, "k", "us-east-1").public_key,
                        RetryPolicy(attempts=3, base_s=0.001))
    assert caught.value.kind == PERMANENT and refusing.calls == 1 and "does not exist" in str(caught.value)


def test_retries_only_transient_failures():
    calls = []

    def flaky():
        calls.append(1)
        if len(calls) < 3:
            raise _client_error("Throttling", 400)
        return "ok"

    assert call_with_retry("flaky", flaky, RetryPolicy(attempts=5, base_s=0.001)) == "ok" and len(calls) == 3
    calls.clear()

    def rejected():
        calls.append(1)
        raise _client_error("ValidationError", 400)

    with pytest.raises(GaveUp, match="rejected"):
        call_with_retry("rejected", rejected, RetryPolicy(attempts=5, base_s=0.001))
    assert len(calls) == 1


def test_a_precondition_failing_before_any_change_refuses_and_after_one_aborts(tmp_path):
    """One condition, one exit code: nothing changed yet is a refusal (3); a change made is an abort (1)."""
    ran = []
    runbook = Runbook("blocked", [Step("x", "x", lambda ctx: ran.append(1), lambda ctx: "",
                                       precondition=lambda ctx: Check.failed("not now"))], key="blocked")
    with pytest.raises(Refused, match="not now") as refused:
        _run(runbook, tmp_path)
    assert ran == [] and refused.value.exit_code == 3
    runbook = Runbook("late", [Step("a", "a", lambda ctx: ran.append("a"), lambda ctx: ""),
                               Step("x", "x", lambda ctx: ran.append(1), lambda ctx: "",
                                    precondition=lambda ctx: Check.failed("not now"))], key="late")
    with pytest.raises(RunbookAborted, match="not now") as aborted:
        _run(runbook, tmp_path)
    assert ran == ["a"] and aborted.value.exit_code == 1
