"""Append-only, hash-chained audit log: one JSON object per line, each carrying the SHA-256 of
its own canonical form and of the previous record. Editing, removing or reordering a record
breaks the chain at that line; `mlfleet audit verify FILE` finds it.

Truncating the tail cannot be seen from the file alone: every run report carries the head
hash at its end, so a later verify can be anchored to it (`verify(path, expect_head=...)`).
"""
from __future__ import annotations

import fcntl
import getpass
import hashlib
import json
import os
import socket
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from mlfleet.dr.errors import AuditTampered

GENESIS = "0" * 64


def _digest(record: dict) -> str:
    body = {k: v for k, v in record.items() if k != "hash"}
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


def default_actor() -> str:
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = f"uid{os.getuid()}"
    return f"{user}@{socket.gethostname()}"


class AuditLog:
    """Appends records under an exclusive file lock, so concurrent writers keep one chain."""

    def __init__(self, path: Path, *, actor: str | None = None):
        self.path = Path(path)
        self.actor = actor or default_actor()
        self.path.parent.mkdir(parents=True, exist_ok=True)

    def append(self, *, run_id: str, action: str, target: str, result: str, detail: dict | None = None) -> dict:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o600)
        with os.fdopen(fd, "r+", encoding="utf-8") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                prev, seq = GENESIS, 0
                last = _last_line(handle)
                if last:
                    previous = json.loads(last)
                    prev, seq = previous["hash"], previous["seq"] + 1
                record = {
                    "seq": seq,
                    "at": datetime.now(timezone.utc).isoformat(timespec="milliseconds"),
                    "actor": self.actor, "run_id": run_id, "action": action, "target": target,
                    "result": result, "detail": detail or {}, "prev": prev,
                }
                record["hash"] = _digest(record)
                handle.seek(0, os.SEEK_END)
                handle.write(json.dumps(record, sort_keys=True, ensure_ascii=False) + "\n")
                handle.flush()
                os.fsync(handle.fileno())
                return record
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def head(self) -> str:
        if not self.path.exists():
            return GENESIS
        with open(self.path, encoding="utf-8") as handle:
            last = _last_line(handle)
        return json.loads(last)["hash"] if last else GENESIS


def _last_line(handle) -> str:
    handle.seek(0)
    last = ""
    for line in handle:
        if line.strip():
            last = line
    return last


@dataclass(frozen=True)
class Verified:
    records: int
    head: str


def verify(path: Path, *, expect_head: str | None = None) -> Verified:
    """Check every record's hash and link; raise AuditTampered naming the first bad line."""
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise AuditTampered(f"{path}: cannot read: {exc.strerror or exc}") from None
    prev = GENESIS
    count = 0
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise AuditTampered(f"{path}:{number}: not a JSON record ({exc.msg})") from None
        if not isinstance(record, dict) or "hash" not in record:
            raise AuditTampered(f"{path}:{number}: not an audit record")
        if record.get("seq") != count:
            raise AuditTampered(f"{path}:{number}: sequence {record.get('seq')} where {count} was expected "
                                "(a record was removed or reordered)")
        if record.get("prev") != prev:
            raise AuditTampered(f"{path}:{number}: does not link to the previous record (chain broken)")
        if _digest(record) != record["hash"]:
            raise AuditTampered(f"{path}:{number}: content does not match its hash (record edited)")
        prev = record["hash"]
        count += 1
    if expect_head is not None and expect_head != prev:
        raise AuditTampered(f"{path}: ends at {prev[:12]}… but {expect_head[:12]}… was recorded "
                            "(records were removed from the end)")
    return Verified(records=count, head=prev)
