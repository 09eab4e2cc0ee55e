"""Drills and faults an on-call engineer can trust: a drill killed with SIGKILL has its fault cleared
by the next command, `mlfleet faults list|clear`, a drill on a faulted region is refused in one
line, a standby's outage is measured as serving unaffected, the verdict and the exit code agree,
and the report's audit heads say what they let a reader check.

Unit tests first (no servers), then the shared staging sandbox (tests/dr/conftest.py)."""
from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from mlfleet.dr import drill as drills
from mlfleet.dr.audit import AuditLog, verify
from mlfleet.dr.engine import RunResult
from mlfleet.dr.errors import DrUsageError
from mlfleet.dr.fault_cleanup import FaultCleanup, FaultRecords, finish_abandoned_cleanups, owner_alive
from mlfleet.dr.report import drill_report
from mlfleet.dr.retry import PERMANENT, GaveUp
from mlfleet.dr.sandbox import SandboxState
from mlfleet.stacks.environment import load_environment

from helpers.cli import dr_command as mlfleet

PRIMARY, STANDBY = "us-east-1", "us-west-2"
ENV = load_environment("staging")


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


class _Control:
    """Stands in for the control API: the URL a fault was injected through, and what was cleared."""

    def __init__(self, url: str = "http://127.0.0.1:1"):
        self.url, self.cleared = url, []

    def clear(self, region=None):
        self.cleared.append(region)
        return []


# -- the recorded cleanups (no servers) ----------------------------------------------------------
def test_a_dead_owner_is_told_from_a_live_one_and_from_a_reused_pid(tmp_path):
    records = FaultRecords(tmp_path, "staging")
    mine = records.record(region=PRIMARY, mode="503", run_id="d1", sandbox="http://c")
    assert owner_alive(mine) and records.entries() == [mine]
    assert not owner_alive(FaultCleanup(**{**mine.__dict__, "pid": _dead_pid()}))
    reused = FaultCleanup(**{**mine.__dict__, "process_start": "1"})  # our pid, another start time
    assert not owner_alive(reused)
    elsewhere = FaultCleanup(**{**mine.__dict__, "pid": _dead_pid(), "host": "another-host"})
    assert owner_alive(elsewhere), "a process on another host cannot be checked: left alone"
    records.remove(mine)
    assert records.entries() == []
    assert oct(records.path.stat().st_mode & 0o777) == "0o600"


def test_finish_abandoned_cleanups_clears_only_the_dead_and_audits_it(tmp_path, monkeypatch):
    monkeypatch.setattr("mlfleet.dr.audit.anchor_for", lambda target: None)  # no artifact store here
    control = _Control()
    target = SimpleNamespace(control=control, state_dir=tmp_path, env=ENV,
                             audit_path=tmp_path / "audit" / "staging.jsonl")
    records = FaultRecords(tmp_path, "staging")
    live = records.record(region=STANDBY, mode="drop", run_id="live", sandbox=control.url)
    dead = FaultCleanup(**{**live.__dict__, "region": PRIMARY, "mode": "503", "run_id": "dead", "pid": _dead_pid()})
    stale = FaultCleanup(**{**dead.__dict__, "run_id": "old-sandbox", "sandbox": "http://127.0.0.1:2"})
    with records._locked() as entries:
        entries += [dead, stale]
    lines: list[str] = []
    finished = finish_abandoned_cleanups(target, lines.append)  # type: ignore[arg-type]
    assert finished == [dead] and control.cleared == [PRIMARY]
    assert records.entries() == [live], "the live drill's entry stays; the other sandbox's is dropped"
    assert lines == [f"cleared the 503 fault in {PRIMARY} left by drill dead (process {dead.pid} is gone)"]
    record = json.loads(target.audit_path.read_text().splitlines()[-1])
    assert (record["action"], record["run_id"], record["target"]) == ("drill.fault-cleanup", "dead",
                                                                      f"staging:{PRIMARY}")
    assert finish_abandoned_cleanups(SimpleNamespace(control=None)) == []  # type: ignore[arg-type]


# -- verdicts and exit codes (no servers) --------------------------------------------------------
def _result(marks: dict, status: str = "completed") -> RunResult:
    return RunResult(runbook="failover", run_id="run-1", status=status, steps=[], timeline=marks, started=100.0,
                     ended=103.0, waiting_s=2.0, facts={})


def _outcome(marks: dict, **values) -> dict:
    ctx = SimpleNamespace(timeline=SimpleNamespace(marks=marks), clock=SimpleNamespace(waiting_s=2.0))
    return {"result": None, "ctx": ctx, "rpo_s": 0.0, "notes": [], "new_region": STANDBY,
            "writes_before_fault": 20, "writes_missing": 0, "registry": None, **values}


def test_a_missing_timeline_mark_is_a_fail_that_says_why():
    marks = {"fault_injected": 100.0, "fault_detected": 100.8, "declared": 101.0}  # a resume lost the rest
    report = drill_report(SimpleNamespace(env=ENV), PRIMARY, _outcome(marks, result=_result(marks)))
    assert report["verdict"] == "fail"
    assert report["verdict_reasons"] == ["RTO not measured: the timeline has no first_inference mark"]
    assert report["notes"][0] == "fail: RTO not measured: the timeline has no first_inference mark"


def test_a_failback_that_did_not_complete_fails_the_drill():
    marks = {"fault_injected": 100.0, "first_inference": 102.0}
    back = _result({}, status="aborted")
    report = drill_report(SimpleNamespace(env=ENV), PRIMARY, _outcome(
        marks, result=_result(marks), failback=back, failback_error="failback aborted at flip-routing: boom"))
    assert report["verdict"] == "fail" and "the failback aborted" in report["verdict_reasons"]
    assert report["failback"]["error"] == "failback aborted at flip-routing: boom"


def _standby(**values) -> dict:
    return {"serving_region": PRIMARY, "probes": 20, "ok": 20, "failed": 0, "errors": [],
            "latency_ms": {"p50": 4.0, "max": 9.0}, "routed_after": PRIMARY,
            "failover_health": {"ok": True, "detail": "failover-healthy"}, **values}


@pytest.mark.parametrize("standby, verdict, summary", [
    (_standby(), "pass", f"standby outage: serving unaffected (20/20 inferences ok in {PRIMARY})"),
    (_standby(ok=19, failed=1, errors=["HTTP 503"]), "fail",
     f"standby outage: serving AFFECTED (19/20 inferences ok in {PRIMARY})"),
    (_standby(routed_after=STANDBY), "fail", f"standby outage: serving AFFECTED (20/20 inferences ok in {PRIMARY})"),
])
def test_a_standby_outage_is_judged_on_serving_not_on_an_rto(standby, verdict, summary):
    marks = {"fault_injected": 100.0, "fault_detected": 100.8}
    report = drill_report(SimpleNamespace(env=ENV), STANDBY,
                          _outcome(marks, new_region=PRIMARY, standby_outage=standby))
    assert report["verdict"] == verdict, report["verdict_reasons"]
    assert summary in report["notes"]
    assert report["measured"]["rto_s"] is None
    assert not any("RTO" in reason for reason in report["verdict_reasons"])


@pytest.mark.parametrize("verdict, code", [("pass", 0), ("fail", 1)])
def test_the_drill_exit_code_is_the_reports_verdict(monkeypatch, capsys, tmp_path, verdict, code):
    from mlfleet.dr import cli, report

    monkeypatch.setattr(cli, "_target", lambda args: SimpleNamespace(env=ENV))
    monkeypatch.setattr(drills, "run_drill", lambda *a, **k: {})
    monkeypatch.setattr(report, "drill_report", lambda *a: {"verdict": verdict})
    monkeypatch.setattr(cli, "_emit", lambda *a: None)
    assert mlfleet(["drill", "--env", "staging", "--region", PRIMARY, "--state-dir", str(tmp_path)], capsys)[0] == code


@pytest.mark.parametrize("sandbox_answers, code, message", [
    (True, 1, "drill of a us-east-1 outage stopped: read health check: rejected (not retried): boom"),
    (False, 2, "is `mlfleet sandbox up` running?"),
])
def test_a_world_condition_in_a_drill_is_one_line(monkeypatch, capsys, tmp_path, sandbox_answers, code, message):
    from mlfleet.dr import cli

    class Control:
        def state(self):
            if not sandbox_answers:
                raise DrUsageError("the sandbox at http://127.0.0.1:1 does not answer (refused); "
                                   "is `mlfleet sandbox up` running?")
            return {}

    def gave_up(*args, **kwargs):
        raise GaveUp("read health check", PERMANENT, RuntimeError("boom"), 1)

    target = SimpleNamespace(env=ENV, kind="sandbox", control=Control(), region=ENV.region)
    monkeypatch.setattr(cli, "_target", lambda args: target)
    monkeypatch.setattr(drills, "_run", gave_up)
    got, out, err = mlfleet(["drill", "--env", "staging", "--region", PRIMARY, "--state-dir", str(tmp_path)], capsys)
    assert got == code and message in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err + out


# -- against the sandbox --------------------------------------------------------------------------
def _own_state_dir(sandbox, tmp_path: Path) -> Path:
    """The test's state dir (the target fixture's) holding the running sandbox's state file, so a
    command in another process finds the sandbox, and journals, records and the audit log stay here."""
    path = SandboxState.path(tmp_path, sandbox.env.name)
    path.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(sandbox.state_path, path)
    return tmp_path


@pytest.mark.sandbox
def test_a_drill_killed_after_injecting_has_its_fault_cleared_by_the_next_command(sandbox, target, tmp_path,
                                                                                  capsys):
    state_dir = _own_state_dir(sandbox, tmp_path)
    drill = subprocess.Popen([sys.executable, "-m", "mlfleet.stacks.cli", "drill", "--env", "staging",
                              "--region", PRIMARY, "--no-failback", "--state-dir", str(state_dir)],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while not sandbox.faults.active() and drill.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        assert sandbox.faults.active(), f"the drill never injected its fault (exit {drill.poll()})"
        os.kill(drill.pid, signal.SIGKILL)
    finally:
        drill.kill()
        drill.wait()
    [entry] = FaultRecords(state_dir, "staging").entries()
    assert (entry.region, entry.mode, entry.pid, entry.host) == (PRIMARY, "503", drill.pid, socket.gethostname())
    assert [f.region for f in sandbox.faults.active()] == [PRIMARY], "SIGKILL left the fault injected"

    code, out, err = mlfleet(["faults", "list", "--env", "staging", "--state-dir", str(state_dir)], capsys)
    assert code == 0 and f"{PRIMARY:<14} service *" in out and f"process {drill.pid}" in out
    assert "drill gone" in out

    code, out, err = mlfleet(["sandbox", "status", "--env", "staging", "--state-dir", str(state_dir)], capsys)
    assert code == 0, err
    assert f"cleared the 503 fault in {PRIMARY} left by drill {entry.run_id} (process {drill.pid} is gone)" in out
    assert "faults: none" in out
    assert sandbox.faults.active() == [] and FaultRecords(state_dir, "staging").entries() == []
    actions = [json.loads(line)["action"] for line in target.audit_path.read_text().splitlines()]
    assert actions[0] == "drill.inject" and actions[-1] == "drill.fault-cleanup"


@pytest.mark.sandbox
def test_faults_list_and_clear(sandbox, target, tmp_path, capsys):
    state_dir = _own_state_dir(sandbox, tmp_path)
    target.control.inject(STANDBY, service="serving", mode="drop")
    code, out, _ = mlfleet(["faults", "list", "--env", "staging", "--state-dir", str(state_dir)], capsys)
    assert code == 0 and "active faults (1):" in out and f"{STANDBY:<14} service serving  drop" in out
    assert "recorded cleanups: none" in out

    code, out, _ = mlfleet(["faults", "clear", "--env", "staging", "--region", PRIMARY, "--state-dir",
                            str(state_dir)], capsys)
    assert code == 0 and f"no active fault in {PRIMARY}" in out and len(sandbox.faults.active()) == 1
    code, out, _ = mlfleet(["faults", "clear", "--env", "staging", "--region", STANDBY, "--state-dir",
                            str(state_dir)], capsys)
    assert code == 0 and f"1 fault(s) cleared in {STANDBY}" in out and sandbox.faults.active() == []
    assert json.loads(target.audit_path.read_text().splitlines()[-1])["action"] == "faults.clear"

    code, _, err = mlfleet(["faults", "list", "--env", "staging", "--region", "eu-west-9", "--state-dir",
                            str(state_dir)], capsys)
    assert code == 2 and "eu-west-9 is not a region of environment staging" in err
    code, _, err = mlfleet(["faults", "list", "--env", "staging", "--state-dir", str(tmp_path / "none")], capsys)
    assert code == 2 and "mlfleet sandbox up --env staging" in err and len(err.strip().splitlines()) == 1


@pytest.mark.sandbox
def test_a_drill_on_a_faulted_region_is_refused_in_one_line(sandbox, target, tmp_path, capsys):
    state_dir = _own_state_dir(sandbox, tmp_path)
    target.control.inject(PRIMARY, service="serving")
    code, out, err = mlfleet(["drill", "--env", "staging", "--region", PRIMARY, "--state-dir", str(state_dir)],
                             capsys)
    assert code == 3, out + err
    assert f"{PRIMARY} is already faulted (503 on serving since " in err
    assert f"clear it with `mlfleet faults clear --env staging --region {PRIMARY}` or wait" in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert len(sandbox.faults.active()) == 1, "a refused drill leaves someone else's fault alone"
    assert FaultRecords(state_dir, "staging").entries() == []


@pytest.mark.sandbox
def test_a_standby_outage_drill_measures_serving_unaffected_and_passes(sandbox, target, tmp_path, capsys):
    state_dir = _own_state_dir(sandbox, tmp_path)
    code, out, err = mlfleet(["drill", "--env", "staging", "--region", STANDBY, "--state-dir", str(state_dir),
                              "--report", str(tmp_path / "standby")], capsys)
    assert (tmp_path / "standby.json").exists(), f"exit {code}: {err[-2000:]}"
    report = json.loads((tmp_path / "standby.json").read_text())
    assert code == 0 and report["verdict"] == "pass", report["verdict_reasons"]
    standby = report["standby_outage"]
    assert standby["probes"] >= drills.STANDBY_PROBES and standby["ok"] == standby["probes"], standby
    assert standby["routed_after"] == PRIMARY and standby["failover_health"]["ok"]
    assert standby["latency_ms"]["p50"] > 0
    assert f"standby outage: serving unaffected ({standby['ok']}/{standby['probes']} inferences ok in {PRIMARY})" \
        in (tmp_path / "standby.md").read_text()
    measured = report["measured"]
    assert report["run"] is None and measured["rpo_s"] == 0.0 and measured["waiting_s"] <= measured["total_s"]
    assert sandbox.faults.active() == [] and FaultRecords(state_dir, "staging").entries() == []


@pytest.mark.sandbox
def test_a_drill_report_holds_the_audit_log_before_the_failback_and_times_the_failback(sandbox, target, tmp_path,
                                                                                       capsys):
    state_dir = _own_state_dir(sandbox, tmp_path)
    code, out, err = mlfleet(["drill", "--env", "staging", "--region", PRIMARY, "--state-dir", str(state_dir),
                              "--report", str(tmp_path / "drill")], capsys)
    report = json.loads((tmp_path / "drill.json").read_text())
    assert code == (0 if report["verdict"] == "pass" else 1) == 0, report["verdict_reasons"]
    before, final = report["audit_head_before_failback"], report["audit_head_final"]
    lines = target.audit_path.read_text().splitlines()
    assert before["records"] < final["records"] == len(lines)
    assert report["run"]["audit_head"] in {json.loads(line)["hash"] for line in lines[:before["records"]]}
    cut = tmp_path / "cut.jsonl"  # what the report tells a reader to do with the earlier head
    cut.write_text("\n".join(lines[:before["records"]]) + "\n")
    assert verify(cut, expect_head=before["head"]).records == before["records"]
    assert f"head -n {before['records']} " in before["checks"]
    assert verify(target.audit_path, expect_head=final["head"]).records == final["records"]
    assert not any(json.loads(line)["run_id"] == report["failback"]["run_id"] for line in lines[:before["records"]])
    back = report["failback"]
    assert back["status"] == "completed"
    assert 0 < back["orchestration_s"] and back["waiting_s"] < back["total_s"], back


def test_audit_log_append_is_what_the_cleanup_audits_through(tmp_path, monkeypatch):
    """The cleanup's audit record is an ordinary chained record: verify holds after it."""
    monkeypatch.setattr("mlfleet.dr.audit.anchor_for", lambda target: None)  # no artifact store here
    log = AuditLog(tmp_path / "audit.jsonl", actor="oncall@test")
    log.append(run_id="d", action="drill.inject", target="staging:us-east-1", result="ok")
    control = _Control()
    target = SimpleNamespace(control=control, state_dir=tmp_path, env=ENV, audit_path=log.path)
    records = FaultRecords(tmp_path, "staging")
    entry = records.record(region=PRIMARY, mode="timeout", run_id="d", sandbox=control.url)
    with records._locked() as entries:
        entries[:] = [FaultCleanup(**{**entry.__dict__, "pid": _dead_pid()})]
    finish_abandoned_cleanups(target)  # type: ignore[arg-type]
    assert verify(log.path).records == 2
