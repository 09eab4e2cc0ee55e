"""Four eyes on a runbook: a run whose mode the environment lists in `dr.approvals` waits until
another identity runs `mlfleet approve RUN`. Drills in practice mode run without.

A run records its request beside its journal (`<runs>/runs/RUN/approvals.json`, written
atomically under a file lock); the approval is written there and to the audit log. Identities
are STS caller ARNs compared as principals (two sessions of one role are one identity): against
AWS the default credential chain's, in the sandbox its moto's STS with the caller's credentials
(AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY naming an IAM user of the sandbox, else the sandbox's
own)."""
from __future__ import annotations

import fcntl
import json
import os
import re
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING

from mlfleet.dr import audit
from mlfleet.dr.errors import DrUsageError, Refused
from mlfleet.dr.journal import Journal
from mlfleet.dr.promotion import principal

if TYPE_CHECKING:
    from mlfleet.dr.engine import RunContext
    from mlfleet.dr.target import Target
    from mlfleet.stacks.environment import Environment

APPROVALS_FILE = "approvals.json"
GATE_LINE = "approval required from another identity"
_RUN_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
NO_CREDENTIALS = ("no AWS credentials: an approval names the caller's identity; configure credentials (the default "
                  "chain, or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY)")


@dataclass(frozen=True)
class Approval:
    run_id: str
    mode: str
    requested_by: str
    requested_at: str
    approver: str
    approved_at: str

    @property
    def at(self) -> float:
        """When it was approved, in seconds since the epoch."""
        return datetime.fromisoformat(self.approved_at).timestamp()

    def as_facts(self) -> dict:
        """What a run's facts carry, and its report shows (`report.build` reads `approval`)."""
        return {"approval": {"approver": self.approver, "approved_at": self.approved_at,
                             "requested_by": self.requested_by, "mode": self.mode}}


@dataclass(frozen=True)
class Request:
    run_id: str
    mode: str
    requested_by: str
    requested_at: str
    approval: Approval | None


def approval_required(env: Environment, mode: str, *, drill: bool) -> bool:
    """`mode`: planned-failover, unplanned-failover or failback. A drill in practice mode runs without."""
    return not drill and mode in env.dr.approvals


def gate_line(env: Environment, mode: str) -> str:
    """The dry run's line for the approval gate."""
    return (f"{GATE_LINE} (dr.approvals lists {mode}): the run waits for `mlfleet approve RUN --env {env.name}`")


def run_folder(target: Target, run_id: str) -> Path:
    """The run's folder, where its journal is (the engine's layout: `<runs_dir>/runs/RUN`)."""
    if not _RUN_ID.fullmatch(run_id):
        raise DrUsageError(f"{run_id!r} is not a run id (letters, digits, '.', '_' and '-', as a run prints it)")
    return target.runs_dir / "runs" / run_id


def request(target: Target, run_id: str, mode: str, requested_by: str) -> None:
    """Record that `run_id` waits for an approval. A resumed run keeps its first request (and an
    approval already given)."""
    folder = run_folder(target, run_id)
    folder.mkdir(parents=True, exist_ok=True)
    with _locked(folder):
        if _read(folder) is not None:
            return
        _write(folder, {"run_id": run_id, "mode": mode, "requested_by": requested_by, "requested_at": _now(),
                        "approved_by": None, "approved_at": None})
    audit.record(target, actor=requested_by,
        run_id=run_id, action="approval.request", target=_what(target, mode), result="ok",
        detail={"requested_by": requested_by, "mode": mode})


def request_of(target: Target, run_id: str) -> Request | None:
    """The run's request and its approval, if it asked for one."""
    record = _read(run_folder(target, run_id))
    return _request(record) if record is not None else None


def status(target: Target, run_id: str) -> Approval | None:
    """The approval of a run (who, when), or None while nobody approved it (or it asked for none)."""
    found = request_of(target, run_id)
    return found.approval if found is not None else None


def approve(target: Target, run_id: str, approver: str) -> Approval:
    """Approve `run_id` as `approver`. DrUsageError (exit 2) for a run that does not exist or asks
    for no approval; Refused (exit 3) for a finished run or the identity that started it."""
    folder = run_folder(target, run_id)
    journal = Journal(folder / "journal.jsonl")
    if not journal.path.exists():
        raise DrUsageError(f"no run {run_id} in {target.runs_dir / 'runs'} (environment {target.env.name}); "
                           f"`mlfleet approve --list --env {target.env.name}` lists the runs waiting")
    if journal.finished():
        raise Refused(f"run {run_id} has already finished: there is nothing to approve")
    with _locked(folder):
        record = _read(folder)
        if record is None:
            raise DrUsageError(f"run {run_id} does not wait for an approval (yet): its mode is not in dr.approvals "
                               "of the environment, or it has not reached its approval step")
        found = _request(record)
        if found.approval is not None:
            return found.approval
        if principal(approver) == principal(found.requested_by):
            raise Refused(f"{approver} started run {run_id}: another identity must approve it")
        record.update(approved_by=approver, approved_at=_now())
        _write(folder, record)
    approval = _request(record).approval
    assert approval is not None
    audit.record(target, actor=approver,
        run_id=run_id, action="approve", target=_what(target, found.mode), result="ok",
        detail={"approver": approver, "requested_by": found.requested_by, "mode": found.mode})
    return approval


def waiting(target: Target) -> list[Request]:
    """The unfinished runs that wait for an approval, oldest request first."""
    runs = target.runs_dir / "runs"
    found = []
    for path in sorted(runs.glob(f"*/{APPROVALS_FILE}")) if runs.is_dir() else []:
        record = _read(path.parent)
        if record is None or Journal(path.parent / "journal.jsonl").finished():
            continue
        if record.get("approved_by") is None:
            found.append(_request(record))
    return sorted(found, key=lambda r: r.requested_at)


def wait(target: Target, ctx: RunContext, run_id: str, timeout_s: float,
         interval_s: float | None = None) -> Approval:
    """Poll until another identity approves `run_id` (the time counts as waiting, not
    orchestration); Refused with what to do when `timeout_s` passes first."""
    line = (f"run {run_id} waits for approval: run `mlfleet approve {run_id} --env {target.env.name}` "
            "as another identity")
    ctx.progress(line)
    deadline = time.monotonic() + timeout_s
    interval = max(ctx.poll_interval_s if interval_s is None else interval_s, 0.01)
    while True:
        found = status(target, run_id)
        if found is not None:
            ctx.progress(f"run {run_id} approved by {found.approver} at {found.approved_at}")
            return found
        if time.monotonic() >= deadline:
            raise Refused(f"{line} (no approval within {timeout_s:g} s)")
        ctx.clock.sleep(min(interval, max(deadline - time.monotonic(), 0.0)))


def caller_identity(target: Target, region: str | None = None) -> str:
    """The caller's ARN from STS: the identity that starts a run, or approves one."""
    import boto3
    from botocore.config import Config
    from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

    config = Config(retries={"total_max_attempts": 2}, connect_timeout=target.connect_timeout_s,
                    read_timeout=target.read_timeout_s)
    if target.kind == "sandbox":
        from mlfleet.dr.sandbox import SANDBOX_CREDENTIALS

        key, secret = os.environ.get("AWS_ACCESS_KEY_ID"), os.environ.get("AWS_SECRET_ACCESS_KEY")
        given = bool(key and secret)
        clients = [boto3.client(
            "sts", region_name=region or "us-east-1", endpoint_url=target.aws_endpoint, config=config,
            aws_access_key_id=key if given else SANDBOX_CREDENTIALS["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=secret if given else SANDBOX_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
            aws_session_token=os.environ.get("AWS_SESSION_TOKEN") if given else None)]
    else:
        # STS answers in every region: standbys first, so a lost primary does not hide the caller.
        regions = [region] if region else [r.name for r in (*target.env.standbys, target.env.primary)
                                           if r.cloud == "aws"] or ["us-east-1"]
        clients = [boto3.client("sts", region_name=name, config=config) for name in regions]
    failure = ""
    for client in clients:
        try:
            return str(client.get_caller_identity()["Arn"])
        except NoCredentialsError:
            raise DrUsageError(NO_CREDENTIALS) from None
        except ClientError as exc:
            error = exc.response.get("Error", {})
            raise DrUsageError(f"STS refused the caller's credentials ({error.get('Code')}: "
                               f"{error.get('Message', '')})") from None
        except BotoCoreError as exc:
            failure = str(exc)
    raise DrUsageError(f"STS GetCallerIdentity did not answer: {failure}")


# -- the file ------------------------------------------------------------------------------------
def _what(target: Target, mode: str) -> str:
    return f"{mode}:{target.env.name}"


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def _request(record: dict) -> Request:
    approval = None
    if record.get("approved_by"):
        approval = Approval(record["run_id"], record["mode"], record["requested_by"], record["requested_at"],
                            record["approved_by"], record["approved_at"])
    return Request(record["run_id"], record["mode"], record["requested_by"], record["requested_at"], approval)


def _read(folder: Path) -> dict | None:
    path = folder / APPROVALS_FILE
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, json.JSONDecodeError) as exc:
        raise DrUsageError(f"{path}: not an approvals record ({exc})") from None
    if not isinstance(record, dict) or not {"run_id", "mode", "requested_by", "requested_at"} <= set(record):
        raise DrUsageError(f"{path}: not an approvals record")
    return record


def _write(folder: Path, record: dict) -> None:
    """Atomically: a reader sees the old record or the new one, never half of one."""
    path = folder / APPROVALS_FILE
    partial = path.with_suffix(f".{os.getpid()}.tmp")
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(json.dumps(record, indent=2, sort_keys=True) + "\n")
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(partial, path)
    directory = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


class _locked:
    """An exclusive lock on the run's approvals (two approvers at once: one wins)."""

    def __init__(self, folder: Path):
        self.path = folder / f"{APPROVALS_FILE}.lock"
        self.fd = -1

    def __enter__(self) -> None:
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        fcntl.flock(self.fd, fcntl.LOCK_EX)

    def __exit__(self, *exc: object) -> None:
        fcntl.flock(self.fd, fcntl.LOCK_UN)
        os.close(self.fd)
