"""Append-only, hash-chained audit log, anchored outside itself.

One JSON object per line, each carrying the SHA-256 of its own canonical form and of the previous
record. Editing, removing or reordering a record breaks the chain at that line; `mlfleet audit
verify FILE` finds it.

The chain alone cannot show a truncated tail, nor records edited with their hashes recomputed. So
the log's head is published outside it: an `Anchor` keeps (count, head) pairs, one series per
chain (a chain is named by its first record's hash, so the logs of two operators' machines do not
mix). `S3Anchor` writes each pair as an object in the artifact bucket of every AWS region it can
reach, under S3 Object Lock retention where the bucket has Object Lock. `verify(..., anchor=)` then
fails when the log holds fewer records than the newest anchor counted, or when the record at that
count does not hash to the anchored head.

Anchoring costs a cloud request per region, and a run appends about thirty records, so appends
only hand the newest head to a background publisher, which writes at most one anchor per
`anchor_interval_s` (the newest head then: the others are covered by the chain). `flush_anchor()`
publishes the last head before the process ends. The window this leaves: records appended after
the last anchor that was written (a process killed before its flush, or an anchor store that was
unreachable) can be truncated or rewritten undetected; the chain still covers everything up to the
anchored count.
"""
from __future__ import annotations

import fcntl
import getpass
import hashlib
import json
import os
import re
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from mlfleet.dr.aws_credentials import FIX, credentials_problem
from mlfleet.dr.errors import EXIT_FAILED, AuditTampered, DrUsageError
from mlfleet.stacks.environment.errors import MlfleetError

if TYPE_CHECKING:
    from mlfleet.dr.target import Target

GENESIS = "0" * 64
ANCHOR_ROOT = "audit-anchor"
RETENTION_MODE = "GOVERNANCE"
RETENTION_DAYS = 365
_CHAIN_ID_LENGTH = 16


class AnchorUnavailable(MlfleetError):
    """The anchor could be neither written nor read in any region."""
    exit_code = EXIT_FAILED


def _digest(record: dict) -> str:
    body = {k: v for k, v in record.items() if k != "hash"}
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


def chain_id(first_record_hash: str) -> str:
    """A chain's name: the start of its first record's hash (which covers when, who, what)."""
    return first_record_hash[:_CHAIN_ID_LENGTH]


def default_actor() -> str:
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = f"uid{os.getuid()}"
    return f"{user}@{socket.gethostname()}"


class Anchor(Protocol):
    """Where a log's head is kept outside the log."""

    name: str

    def publish(self, chain: str, count: int, head: str) -> None:
        """Record that `chain` had `count` records ending at `head`; raise if nothing kept it."""

    def latest(self, chain: str) -> tuple[int, str] | None:
        """The highest anchored (count, head) of `chain`, or None if none was anchored."""

    def chains(self) -> set[str]:
        """Every chain with an anchor."""


class AuditLog:
    """Appends records under an exclusive file lock, so concurrent writers keep one chain; with an
    `anchor`, hands each new head to a background publisher (see the module's docstring)."""

    def __init__(self, path: Path, *, actor: str | None = None, anchor: Anchor | None = None,
                 anchor_interval_s: float = 1.0):
        self.path = Path(path)
        self.actor = actor or default_actor()
        self.anchor = anchor
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._publisher = _Publisher(anchor, anchor_interval_s) if anchor is not None else None

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
                head = record["hash"] = _digest(record)
                handle.seek(0, os.SEEK_END)
                handle.write(json.dumps(record, sort_keys=True, ensure_ascii=False) + "\n")
                handle.flush()
                os.fsync(handle.fileno())
                first = head if seq == 0 else _first_hash(handle)
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)
        if self._publisher is not None and first:
            self._publisher.offer(chain_id(first), seq + 1, head)
        return record

    def head(self) -> str:
        if not self.path.exists():
            return GENESIS
        with open(self.path, encoding="utf-8") as handle:
            last = _last_line(handle)
        return json.loads(last)["hash"] if last else GENESIS

    def flush_anchor(self, timeout_s: float = 10.0) -> tuple[int, str] | None:
        """Wait until the newest head appended through this object is anchored; return its
        (count, head), or None without an anchor or appends. AnchorUnavailable if it could not be
        written by `timeout_s` (the publisher keeps trying meanwhile)."""
        return self._publisher.flush(timeout_s) if self._publisher is not None else None

    @property
    def anchor_error(self) -> str | None:
        """Why the newest anchor attempt failed, or None."""
        return self._publisher.error if self._publisher is not None else None


class _Publisher:
    """One daemon thread that publishes the newest offered head, at most once per interval, and
    retries a failed publish until a newer head or success."""

    def __init__(self, anchor: Anchor, interval_s: float):
        self.anchor = anchor
        self.interval_s = interval_s
        self.error: str | None = None
        self.permanent = False
        """The last failure will not pass by retrying (no or refused credentials): flush says so at once."""
        self.publishes = 0
        self._wanted: tuple[str, int, str] | None = None
        self._done: tuple[str, int, str] | None = None
        self._flushing = False
        self._changed = threading.Condition()
        self._thread: threading.Thread | None = None

    def offer(self, chain: str, count: int, head: str) -> None:
        with self._changed:
            if self._wanted is None or count > self._wanted[1]:
                self._wanted = (chain, count, head)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="audit anchor", daemon=True)
                self._thread.start()
            self._changed.notify_all()

    def flush(self, timeout_s: float) -> tuple[int, str] | None:
        deadline = time.monotonic() + timeout_s
        with self._changed:
            if self._wanted is None:
                return None
            self._flushing = True  # no interval wait: publish now
            self._changed.notify_all()
            try:
                while self._done != self._wanted:
                    left = deadline - time.monotonic()
                    if left <= 0 or self.permanent:
                        chain, count, head = self._wanted
                        raise AnchorUnavailable(
                            f"the audit log's head (record {count}, {head[:12]}…) was not anchored within "
                            f"{timeout_s:g}s in {self.anchor.name}: {self.error or 'still writing'}")
                    self._changed.wait(left)
            finally:
                self._flushing = False
            return self._wanted[1], self._wanted[2]

    def _run(self) -> None:
        last_attempt = 0.0
        while True:
            with self._changed:
                while self._wanted == self._done:
                    self._changed.wait()
                # A flush skips the wait, unless the last attempt failed: then retry at a measured pace.
                failing = self.error is not None
                pause = last_attempt + (max(self.interval_s, 0.5) if failing else self.interval_s) - time.monotonic()
                if pause > 0 and (failing or not self._flushing):
                    self._changed.wait(pause)  # coalesce: a newer head may arrive meanwhile
                    continue
                wanted = self._wanted
            last_attempt = time.monotonic()
            assert wanted is not None
            try:
                self.anchor.publish(*wanted)
            except Exception as exc:  # noqa: BLE001 - reported by flush and anchor_error
                error: str | None = str(exc) or type(exc).__name__
                done, permanent = None, isinstance(exc, DrUsageError)
            else:
                error, done, permanent = None, wanted, False
                self.publishes += 1
            with self._changed:
                self.error, self.permanent = error, permanent
                if done is not None and (self._done is None or done[1] >= self._done[1]):
                    self._done = done
                self._changed.notify_all()


def _last_line(handle) -> str:
    """The last non-empty line, read backwards from the end in blocks (the log only grows)."""
    handle.flush()
    raw = os.fdopen(os.dup(handle.fileno()), "rb")
    with raw:
        size = raw.seek(0, os.SEEK_END)
        tail = b""
        position = size
        while position > 0:
            step = min(8192, position)
            position -= step
            raw.seek(position)
            tail = raw.read(step) + tail
            lines = [line for line in tail.split(b"\n") if line.strip()]
            if len(lines) > 1 or (lines and position == 0):
                return lines[-1].decode("utf-8")
        return ""


def _first_hash(handle) -> str | None:
    handle.seek(0)
    for line in handle:
        if line.strip():
            try:
                return json.loads(line).get("hash")
            except (ValueError, AttributeError):
                return None
    return None


@dataclass(frozen=True)
class Verified:
    records: int
    head: str
    chain: str | None = None
    anchored: tuple[int, str] | None = None
    """The newest anchor the log was checked against: (count, head)."""
    note: str | None = None

    @property
    def unanchored(self) -> int:
        """Records after the newest anchor (the window the anchor does not cover yet)."""
        return self.records - (self.anchored[0] if self.anchored else 0)


def verify(path: Path, *, expect_head: str | None = None, anchor: Anchor | None = None) -> Verified:
    """Check every record's hash and link, then the expected head and the anchor; raise
    AuditTampered naming the first bad line or what the anchor contradicts."""
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise AuditTampered(f"the audit log {path} does not exist") from None
    except OSError as exc:
        raise AuditTampered(f"{path}: cannot read: {exc.strerror or exc}") from None
    prev = GENESIS
    hashes: list[str] = []
    line_of: list[int] = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise AuditTampered(f"{path}:{number}: not a JSON record ({exc.msg})") from None
        if not isinstance(record, dict) or "hash" not in record:
            raise AuditTampered(f"{path}:{number}: not an audit record")
        if record.get("seq") != len(hashes):
            raise AuditTampered(f"{path}:{number}: sequence {record.get('seq')} where {len(hashes)} was expected "
                                "(a record was removed or reordered)")
        if record.get("prev") != prev:
            raise AuditTampered(f"{path}:{number}: does not link to the previous record (chain broken)")
        if _digest(record) != record["hash"]:
            raise AuditTampered(f"{path}:{number}: content does not match its hash (record edited)")
        prev = record["hash"]
        hashes.append(prev)
        line_of.append(number)
    if expect_head is not None and expect_head != prev:
        raise AuditTampered(f"{path}: ends at {prev[:12]}… but {expect_head[:12]}… was recorded "
                            "(records were removed from the end)")
    if anchor is None:
        return Verified(records=len(hashes), head=prev)
    return _check_anchor(path, hashes, line_of, anchor)


def _check_anchor(path: Path, hashes: list[str], line_of: list[int], anchor: Anchor) -> Verified:
    if not hashes:
        others = anchor.chains()
        if others:
            raise AuditTampered(f"{path}: has no records, but {anchor.name} holds anchors of "
                                f"{len(others)} chain(s) ({', '.join(sorted(others))}): the log was emptied")
        return Verified(0, GENESIS, note=f"nothing anchored yet in {anchor.name}")
    chain = chain_id(hashes[0])
    latest = anchor.latest(chain)
    if latest is None:
        others = anchor.chains() - {chain}
        if others:
            raise AuditTampered(
                f"{path}: no anchor names this log's chain {chain}, but {anchor.name} holds anchors of "
                f"{len(others)} other chain(s) ({', '.join(sorted(others))}): its first record was rewritten, "
                "or it is not this environment's log")
        return Verified(len(hashes), hashes[-1], chain=chain, note=f"chain {chain} has no anchor yet in {anchor.name}")
    count, head = latest
    if len(hashes) < count:
        raise AuditTampered(f"{path}: has {len(hashes)} records but {anchor.name} anchored {count} "
                            f"(head {head[:12]}…): records were removed from the end")
    if hashes[count - 1] != head:
        raise AuditTampered(f"{path}:{line_of[count - 1]}: record {count} hashes to {hashes[count - 1][:12]}… but "
                            f"{anchor.name} anchored {head[:12]}… there: records were edited and re-hashed")
    return Verified(len(hashes), hashes[-1], chain=chain, anchored=latest)


# -- the anchor in the artifact store ---------------------------------------------------------
_KEY = re.compile(r"/(?P<count>\d{12})-(?P<head>[0-9a-f]{64})\.json$")


class S3Anchor:
    """(count, head) objects `<key_prefix><chain>/<count:012d>-<head>.json` in each region's
    artifact bucket, written to every region it reaches (at least one must take it), under Object
    Lock retention (GOVERNANCE, 365 days) where the bucket has Object Lock, else plain objects."""

    def __init__(self, clients_by_region: dict[str, Any], buckets_by_region: dict[str, str], key_prefix: str,
                 *, timeout_s: float = 10.0, grace_s: float = 1.0, retention_days: int = RETENTION_DAYS):
        if not clients_by_region:
            raise ValueError("an S3 anchor needs at least one region")
        self.clients = dict(clients_by_region)
        self.buckets = {region: buckets_by_region[region] for region in self.clients}
        self.key_prefix = key_prefix if key_prefix.endswith("/") else key_prefix + "/"
        self.timeout_s = timeout_s
        self.grace_s = grace_s
        self.retention_days = retention_days
        self.name = f"the audit anchor {self.key_prefix} in the artifact buckets of {', '.join(self.buckets)}"
        self._object_lock: dict[str, bool] = {}
        self.problems: dict[str, str] = {}
        """Region -> why its last request failed (a region down is normal during a failover)."""

    def publish(self, chain: str, count: int, head: str) -> None:
        key = f"{self.key_prefix}{chain}/{count:012d}-{head}.json"
        body = json.dumps({"chain": chain, "count": count, "head": head, "at": time.time()}).encode()

        def put(region: str) -> None:
            s3, bucket = self.clients[region], self.buckets[region]
            extra = {}
            if self._has_object_lock(region):
                extra = {"ObjectLockMode": RETENTION_MODE, "ObjectLockRetainUntilDate":
                         datetime.now(timezone.utc) + timedelta(days=self.retention_days)}
            s3.put_object(Bucket=bucket, Key=key, Body=body, ContentType="application/json", **extra)

        outcomes = self._each_region(put)
        if not any(ok for ok, _ in outcomes.values()):
            self._raise_unreachable(f"write the anchor of record {count}", outcomes)

    def latest(self, chain: str) -> tuple[int, str] | None:
        prefix = f"{self.key_prefix}{chain}/"

        def newest(region: str) -> tuple[int, str] | None:
            found = None
            pages = self.clients[region].get_paginator("list_objects_v2").paginate(
                Bucket=self.buckets[region], Prefix=prefix)
            for page in pages:
                for item in page.get("Contents", []):
                    match = _KEY.search(item["Key"])
                    if match and (found is None or int(match["count"]) > found[0]):
                        found = (int(match["count"]), match["head"])
            return found

        outcomes = self._each_region(newest)
        answers = [value for ok, value in outcomes.values() if ok]
        if not answers:
            self._raise_unreachable("read the anchors", outcomes)
        found = [a for a in answers if a is not None]
        return max(found) if found else None

    def chains(self) -> set[str]:
        def listed(region: str) -> set[str]:
            pages = self.clients[region].get_paginator("list_objects_v2").paginate(
                Bucket=self.buckets[region], Prefix=self.key_prefix, Delimiter="/")
            return {p["Prefix"][len(self.key_prefix):].rstrip("/") for page in pages
                    for p in page.get("CommonPrefixes", [])}

        outcomes = self._each_region(listed)
        answers = [value for ok, value in outcomes.values() if ok]
        if not answers:
            self._raise_unreachable("list the anchored chains", outcomes)
        return set().union(*answers)

    def _has_object_lock(self, region: str) -> bool:
        if region not in self._object_lock:
            from botocore.exceptions import ClientError

            try:
                config = self.clients[region].get_object_lock_configuration(Bucket=self.buckets[region])
                enabled = config.get("ObjectLockConfiguration", {}).get("ObjectLockEnabled") == "Enabled"
            except ClientError as exc:
                if exc.response.get("Error", {}).get("Code") != "ObjectLockConfigurationNotFoundError":
                    raise
                enabled = False
            self._object_lock[region] = enabled
        return self._object_lock[region]

    def _each_region(self, call: Callable[[str], Any]) -> dict[str, tuple[bool, Any]]:
        """`call` in every region at once on daemon threads, waiting at most `timeout_s`, and at
        most `grace_s` more once one region succeeded: a region that hangs (down, or a timeout
        fault) neither delays the others much nor holds the process."""
        outcomes: dict[str, tuple[bool, Any]] = {}
        answered = threading.Condition()

        def run(region: str) -> None:
            try:
                outcome: tuple[bool, Any] = (True, call(region))
            except Exception as exc:  # noqa: BLE001 - one region's failure is reported, not raised
                outcome = (False, exc)
            with answered:
                outcomes[region] = outcome
                answered.notify_all()

        for region in self.clients:
            threading.Thread(target=run, args=(region,), daemon=True, name=f"audit anchor {region}").start()
        deadline = time.monotonic() + self.timeout_s
        with answered:
            while len(outcomes) < len(self.clients):
                if any(ok for ok, _ in outcomes.values()):
                    deadline = min(deadline, time.monotonic() + self.grace_s)
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                answered.wait(left)
            outcomes = dict(outcomes)
        result = {region: outcomes.get(region, (False, TimeoutError(f"no answer within {self.timeout_s:g}s")))
                  for region in self.clients}
        self.problems = {region: _reason(value) for region, (ok, value) in result.items() if not ok}
        return result

    def _raise_unreachable(self, what: str, outcomes: dict[str, tuple[bool, Any]]) -> None:
        errors = [value for _, value in outcomes.values()]
        credentials = [credentials_problem(e) for e in errors]
        where = "; ".join(f"{region}: {_reason(value)}" for region, (_, value) in outcomes.items())
        if all(credentials):
            raise DrUsageError(f"cannot {what} in any region ({credentials[0]}); {FIX}")
        raise AnchorUnavailable(f"cannot {what} in any region of {self.name} ({where})")


def _reason(exc: BaseException) -> str:
    response = getattr(exc, "response", None)
    if isinstance(response, dict) and response.get("Error"):
        return f"{response['Error'].get('Code')}: {response['Error'].get('Message', '')}".rstrip(": ")
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def anchor_for(target: Target) -> S3Anchor | None:
    """The anchor of the target's environment: its AWS regions' artifact buckets, prefix
    `audit-anchor/<env>/`; None for an environment without AWS regions (no anchor store yet)."""
    regions = [r.name for r in target.env.regions_on("aws")]
    if not regions:
        return None
    return S3Anchor({r: target.client("s3", r) for r in regions}, {r: target.bucket(r) for r in regions},
                    f"{ANCHOR_ROOT}/{target.env.name}/",
                    timeout_s=min(15.0, target.connect_timeout_s + target.read_timeout_s))


def environment_of(path: Path) -> str | None:
    """The environment a log's records name (a runbook key `failover:prod:…`, a drill's `prod:…`,
    a promotion's `detail.env`), or its file name (`<env>.jsonl`); None if unclear."""
    from mlfleet.stacks.environment import environment_names

    known = set(environment_names())
    named: set[str] = set()
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except OSError:
        lines = []
    for line in lines:
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if not isinstance(record, dict):
            continue
        detail = record.get("detail")
        candidates = str(record.get("target", "")).split(":")
        if isinstance(detail, dict) and isinstance(detail.get("env"), str):
            candidates.append(detail["env"])
        named.update(c for c in candidates if c in known)
    if len(named) == 1:
        return named.pop()
    stem = Path(path).stem
    return stem if not named and stem in known else None


def target_log(target: Target, *, actor: str | None = None) -> AuditLog:
    """The target's audit log, anchored in its environment's artifact stores."""
    return AuditLog(target.audit_path, actor=actor, anchor=anchor_for(target))


def record(where: Target, /, *, actor: str | None = None, **entry) -> dict:
    """One audit record outside a runbook run (an approval, a fault cleared), anchored before it
    returns; an anchor that cannot be written leaves the record in the log and says so on stderr."""
    import sys

    log = target_log(where, actor=actor)
    written = log.append(**entry)
    try:
        log.flush_anchor()
    except AnchorUnavailable as exc:
        print(f"note: the audit head is not anchored: {exc}", file=sys.stderr)
    return written
