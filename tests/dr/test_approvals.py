"""Four eyes on a runbook (dr/approvals.py, `mlfleet approve`): another identity than the one that
started the run approves it; the approval is beside the run's journal and in the audit log."""
from __future__ import annotations

import json
import shutil
import threading
import time
import uuid

import pytest

from mlfleet.dr import approvals
from mlfleet.dr.audit import verify
from mlfleet.dr.engine import RunContext
from mlfleet.dr.errors import EXIT_REFUSED, EXIT_USAGE, DrUsageError, Refused
from mlfleet.dr.journal import FINISHED, Journal
from mlfleet.dr.target import Target
from mlfleet.stacks.environment import load_environment

ALICE = "arn:aws:sts::333333333333:assumed-role/ml-platform-oncall/alice"
ALICE_AGAIN = "arn:aws:sts::333333333333:assumed-role/ml-platform-oncall/alice-2nd-session"
BOB = "arn:aws:iam::333333333333:user/bob"


@pytest.fixture
def prod(tmp_path) -> Target:
    # Only paths are used: no cloud is called.
    return Target.aws(load_environment("prod"), tmp_path)


def a_run(target: Target, run_id: str = "20261201T000000Z-failover-abc123") -> str:
    Journal(approvals.run_folder(target, run_id) / "journal.jsonl").write("begin", key="failover:prod:us-west-2")
    return run_id


def test_only_listed_modes_outside_practice_drills_need_an_approval():
    env = load_environment("prod")
    assert env.dr.approvals == ["unplanned-failover"]
    assert approvals.approval_required(env, "unplanned-failover", drill=False)
    assert not approvals.approval_required(env, "unplanned-failover", drill=True)
    assert not approvals.approval_required(env, "planned-failover", drill=False)
    assert not approvals.approval_required(load_environment("staging"), "unplanned-failover", drill=False)
    assert approvals.gate_line(env, "unplanned-failover").startswith(approvals.GATE_LINE)


def test_the_identity_that_started_the_run_cannot_approve_it(prod):
    run = a_run(prod)
    approvals.request(prod, run, "unplanned-failover", ALICE)
    # Another session of the same role is the same identity.
    for who in (ALICE, ALICE_AGAIN):
        with pytest.raises(Refused, match="another identity must approve it") as refused:
            approvals.approve(prod, run, who)
        assert refused.value.exit_code == EXIT_REFUSED
    assert approvals.status(prod, run) is None
    assert [r.run_id for r in approvals.waiting(prod)] == [run]


def test_another_identity_approves_beside_the_journal_and_in_the_audit_log(prod):
    run = a_run(prod)
    approvals.request(prod, run, "unplanned-failover", ALICE)
    approvals.request(prod, run, "unplanned-failover", BOB)  # a resumed run keeps its first request
    approval = approvals.approve(prod, run, BOB)
    assert (approval.approver, approval.requested_by, approval.mode) == (BOB, ALICE, "unplanned-failover")
    assert abs(approval.at - time.time()) < 60
    stored = json.loads((approvals.run_folder(prod, run) / approvals.APPROVALS_FILE).read_text())
    assert stored["approved_by"] == BOB and stored["requested_by"] == ALICE
    assert approvals.status(prod, run) == approval and approvals.waiting(prod) == []
    assert approvals.approve(prod, run, "arn:aws:iam::333333333333:user/carol") == approval  # already approved
    records = [json.loads(line) for line in prod.audit_path.read_text().splitlines()]
    assert [r["action"] for r in records] == ["approval.request", "approve"]
    assert records[1]["actor"] == BOB and records[1]["run_id"] == run and records[1]["result"] == "ok"
    assert records[1]["detail"] == {"approver": BOB, "requested_by": ALICE, "mode": "unplanned-failover"}
    assert verify(prod.audit_path).records == 2
    assert approval.as_facts()["approval"]["approver"] == BOB


def test_a_missing_run_a_finished_one_and_one_that_waits_for_nothing(prod):
    with pytest.raises(DrUsageError, match="no run 20261201T000000Z-nope") as missing:
        approvals.approve(prod, "20261201T000000Z-nope", BOB)
    assert missing.value.exit_code == EXIT_USAGE
    with pytest.raises(DrUsageError, match="not a run id"):
        approvals.approve(prod, "../../etc", BOB)
    run = a_run(prod)
    with pytest.raises(DrUsageError, match="does not wait for an approval"):
        approvals.approve(prod, run, BOB)
    approvals.request(prod, run, "unplanned-failover", ALICE)
    Journal(approvals.run_folder(prod, run) / "journal.jsonl").write(FINISHED, status="refused")
    with pytest.raises(Refused, match="already finished"):
        approvals.approve(prod, run, BOB)
    assert approvals.waiting(prod) == []


def test_wait_returns_the_approval_or_refuses_with_what_to_run(prod):
    run = a_run(prod)
    approvals.request(prod, run, "unplanned-failover", ALICE)
    lines: list[str] = []
    ctx = RunContext(progress=lines.append, poll_interval_s=0.01)
    with pytest.raises(Refused) as refused:
        approvals.wait(prod, ctx, run, timeout_s=0.05)
    assert str(refused.value).startswith(f"run {run} waits for approval: run `mlfleet approve {run} --env prod` "
                                         "as another identity")
    assert ctx.clock.waiting_s >= 0.04  # a person's time is waiting, not orchestration
    threading.Timer(0.05, lambda: approvals.approve(prod, run, BOB)).start()
    approval = approvals.wait(prod, RunContext(progress=lines.append, poll_interval_s=0.01), run, timeout_s=5)
    assert approval.approver == BOB and any("approved by" in line for line in lines)


@pytest.mark.sandbox
def test_mlfleet_approve_names_the_caller_through_the_sandboxs_sts(sandbox, monkeypatch, capsys):
    from mlfleet.stacks.cli import main

    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    target = Target.sandbox(sandbox.env, sandbox.state_dir)
    starter = approvals.caller_identity(target)
    iam = sandbox.client("iam", sandbox.env.primary.name, direct=True)
    user = f"approver-{uuid.uuid4().hex[:6]}"
    arn = iam.create_user(UserName=user)["User"]["Arn"]
    key = iam.create_access_key(UserName=user)["AccessKey"]
    run = f"20261201T000000Z-failover-{uuid.uuid4().hex[:6]}"
    Journal(approvals.run_folder(target, run) / "journal.jsonl").write("begin", key="failover:staging:us-west-2")
    try:
        approvals.request(target, run, "unplanned-failover", starter)
        common = ["--env", "staging", "--state-dir", str(sandbox.state_dir)]
        assert main(["approve", "--list", *common]) == 0 and run in capsys.readouterr().out
        assert main(["approve", run, *common]) == EXIT_REFUSED  # the sandbox's own identity started it
        assert "another identity must approve it" in capsys.readouterr().err
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", key["AccessKeyId"])
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", key["SecretAccessKey"])
        assert approvals.caller_identity(target) == arn != starter
        assert main(["approve", run, *common]) == 0
        assert f"approved by {arn}" in capsys.readouterr().out
        assert approvals.status(target, run).approver == arn
        assert main(["approve", "20261201T000000Z-failover-none", *common]) == EXIT_USAGE
        assert main(["approve", *common]) == EXIT_USAGE
    finally:
        shutil.rmtree(approvals.run_folder(target, run), ignore_errors=True)
