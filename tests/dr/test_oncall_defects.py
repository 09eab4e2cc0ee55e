"""The defects an on-call engineer hit, each tried again the way they found it, through the
command line against the staging sandbox (us-east-1 primary, us-west-2 standby)."""
from __future__ import annotations

import json

import pytest

from mlfleet.dr.audit import AuditLog
from mlfleet.dr.blocks.registry import registry_writer
from mlfleet.dr.engine import RunContext
from mlfleet.dr.errors import LockAbandoned
from mlfleet.dr.journal import Journal
from mlfleet.dr.runbooks import failback, failover
from mlfleet.dr.sandbox.faults import Fault
from mlfleet.dr.target import Target

from helpers.cli import dr_command as mlfleet
from helpers.runbooks import Crash, crash_at

pytestmark = pytest.mark.sandbox

PRIMARY, STANDBY = "us-east-1", "us-west-2"


@pytest.fixture
def box(sandbox, tmp_path):
    """The shared sandbox, reset, with journals, locks and the audit log of this test only."""
    from mlfleet.dr.sandbox import SandboxState

    sandbox.reset()
    state = tmp_path / "state"
    copy = SandboxState.path(state, sandbox.env.name)  # where the command line finds the sandbox
    copy.parent.mkdir(parents=True)
    copy.write_bytes(SandboxState.path(sandbox.state_dir, sandbox.env.name).read_bytes())
    sandbox.cli_state_dir = state
    return sandbox


def _cli(box, capsys, *argv):
    return mlfleet([*argv, "--env", "staging", "--state-dir", str(box.cli_state_dir)], capsys)


def _target(box) -> Target:
    return Target.sandbox(box.env, box.cli_state_dir)


def _ctx(target):
    return RunContext(retry=target.retry, poll_interval_s=target.poll_interval_s)


def test_to_the_current_writer_is_one_refusal_line_with_exit_3_dry_or_real(box, capsys):
    for dry in (["--dry-run"], []):
        code, out, err = _cli(box, capsys, "failover", "--to", PRIMARY, *dry)
        assert code == 3, (dry, out, err)
        last = err.strip().splitlines()[-1]  # (a server thread of the sandbox may have printed before it)
        assert last.startswith("mlfleet: error: ") and "already the writer" in last
        assert "RTO" not in out, "a refusal prints no report"


def test_a_planned_failover_with_the_source_down_is_the_same_refusal_dry_or_real(box, capsys):
    box.faults.add(Fault(region=PRIMARY, service="*", mode="503"))
    try:
        for dry in (["--dry-run"], []):
            code, _, err = _cli(box, capsys, "failover", "--to", STANDBY, *dry)
            assert code == 3 and "use --unplanned" in err, (dry, err)
    finally:
        box.faults.clear()


def test_a_dry_run_evaluates_the_stop_condition_the_real_run_would_meet(box, capsys):
    box.faults.add(Fault(region=STANDBY, service="serving", mode="503"))
    try:
        code, out, err = _cli(box, capsys, "failover", "--to", STANDBY, "--dry-run")
    finally:
        box.faults.clear()
    assert code == 3
    assert "[REFUSED] stop condition target-failover-health" in out and "[BLOCKED] pin-champion" in out
    assert "fails failover health" in err


def test_a_report_into_a_missing_folder_is_a_usage_error_before_anything_runs(box, capsys, tmp_path):
    code, _, err = _cli(box, capsys, "failover", "--to", STANDBY, "--report", str(tmp_path / "nope" / "r"))
    assert code == 2 and "does not exist" in err
    assert registry_writer(_target(box), _ctx(_target(box)), via=STANDBY) == PRIMARY, "nothing ran"


def test_a_completed_run_exits_by_its_verdict_and_its_report_keeps_the_timeline_after_a_resume(box, capsys, tmp_path):
    target = _target(box)
    target.warm()
    crashed = target.lock(STANDBY)

    with pytest.raises(Crash):
        failover(target, STANDBY, planned=True).execute(_ctx(target), state_dir=target.runs_dir, lock=crashed,
                                                       audit=AuditLog(target.audit_path),
                                                       on_event=crash_at("route", "applied"))
    crashed.abandon()
    code, out, err = _cli(box, capsys, "failover", "--to", STANDBY, "--report", str(tmp_path / "r"))
    assert code == 3 and "--take-over-lock" in err, "a dead run's lock is not taken over silently"
    code, out, err = _cli(box, capsys, "failover", "--to", STANDBY, "--take-over-lock", "--report",
                          str(tmp_path / "r"))
    report = json.loads((tmp_path / "r.json").read_text())
    assert code == 0 and report["verdict"] == "pass" and report["run"]["resumed"], (out, err)
    assert report["measured"]["rto_s"] is not None, "the resumed run's report kept its timeline"
    records = [json.loads(line) for line in target.audit_path.read_text().splitlines()]
    assert any(r["action"] == "lock.take-over" for r in records), "the takeover is audited"


def test_a_resume_after_a_failback_refuses_and_says_what_moved(box, capsys):
    """Kill an unplanned failover once its registry promotion is done (the pin runs beside it), fail
    back, rerun the first command: it must not route to a region whose registry no longer writes."""
    target = _target(box)
    target.warm()
    crashed = target.lock(STANDBY)

    with pytest.raises(Crash):
        failover(target, STANDBY, planned=False).execute(_ctx(target), state_dir=target.runs_dir, lock=crashed,
                                                        audit=AuditLog(target.audit_path),
                                                        on_event=crash_at("promote-registry", "done"))
    crashed.abandon()
    ctx = _ctx(target)
    with pytest.raises(LockAbandoned):
        failback(target).execute(ctx, state_dir=target.runs_dir, lock=target.lock(PRIMARY),
                                 audit=AuditLog(target.audit_path))
    failback(target).execute(ctx, state_dir=target.runs_dir, lock=target.lock(PRIMARY),
                             audit=AuditLog(target.audit_path), take_over_lock=True)
    assert registry_writer(target, ctx, via=STANDBY) == PRIMARY
    code, out, err = _cli(box, capsys, "failover", "--to", STANDBY, "--unplanned")
    assert code == 3 and "world has moved" in err and "registry's writer is us-east-1" in err, err
    assert registry_writer(target, ctx, via=STANDBY) == PRIMARY, "nothing was changed"
    journals = [Journal(p) for p in target.runs_dir.glob("runs/*failover*/journal.jsonl")]
    assert [j.records()[-1].get("status") for j in journals] == ["abandoned"], \
        "the interrupted run is closed: the next command plans from the world as it is"
