"""One DR run at a time per environment, held by a live process.

The holder is a process instance, not a run: the run id, a holder id drawn for each acquire, the
host and the pid, with a short lease (30 s) that a heartbeat thread renews every lease/3 while the
lock is held. So the same command started twice (same run key, same unfinished journal, same run
id) is refused while the first is alive, instead of "resuming" it and running beside it.

A holder is live while its lease has not expired and, on this host, its process exists. A dead
holder (lease expired, or its process gone) leaves an abandoned lock: `acquire` refuses it with
`LockAbandoned` unless called with `take_over=True`, and then returns the previous holder so the
engine can audit the takeover. Nothing is ever taken over silently.

In a cloud the lock is a DynamoDB item in the target region (the one region that must be up for
the run to matter), changed only by conditional writes; in the sandbox it is a file, rewritten
atomically (temporary file + rename) under an flock on a guard file beside it. Lease expiry is
judged by the reader's clock against the writer's: hosts sharing a DynamoDB lock need clocks that
agree to well within a lease.
"""
from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Protocol

from mlfleet.dr.aws_credentials import FIX, credentials_problem
from mlfleet.dr.errors import DrUsageError, LockAbandoned, LockHeld
from mlfleet.stacks.environment.naming import DR_LOCK_KEY

DEFAULT_LEASE_S = 30.0

_live_holders: set[str] = set()
"""Holder ids whose heartbeat runs in this process: a holder with this pid is live only if listed,
so a run that 'died' inside this process (a test's simulated crash) is seen as dead."""
_live_guard = threading.Lock()


class RunLock(Protocol):
    name: str

    def acquire(self, run_id: str, *, take_over: bool = False) -> dict | None: ...

    def release(self, run_id: str | None = None) -> None: ...

    @property
    def lost(self) -> str | None: ...


def new_holder(run_id: str, lease_s: float) -> dict:
    now = time.time()
    return {"run_id": run_id, "holder_id": uuid.uuid4().hex, "host": socket.gethostname(), "pid": os.getpid(),
            "acquired_at": round(now, 3), "expires_at": round(now + lease_s, 3)}


def holder_alive(holder: dict, *, now: float | None = None) -> bool:
    """Lease not expired and, on this host, the process still there (in this process: its heartbeat)."""
    now = time.time() if now is None else now
    try:
        if float(holder.get("expires_at", 0)) <= now:
            return False
        pid = int(holder.get("pid", 0))
    except (TypeError, ValueError):
        return False
    if holder.get("host") != socket.gethostname():
        return True  # another host: only the lease can tell
    if pid == os.getpid():
        with _live_guard:
            return holder.get("holder_id") in _live_holders
    return _process_exists(pid)


def _process_exists(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process, alive
    return True


class _Heartbeat:
    """Renews the lease every `interval_s` on a daemon thread until stopped or refused.

    `renew()` returns False when the lock is no longer ours (taken over after our lease expired):
    the heartbeat stops and `lost` says so. A renewal that raises (the lock store unreachable) is
    retried at the next beat; the lease then runs out on its own if the outage outlasts it."""

    def __init__(self, name: str, renew: Callable[[], bool], interval_s: float):
        self.lost: str | None = None
        self.last_error: str | None = None
        self._renew = renew
        self._interval_s = interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"lease {name}", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self._interval_s):
            try:
                if not self._renew():
                    self.lost = "another holder took the lock over after this one's lease expired"
                    return
                self.last_error = None
            except Exception as exc:  # noqa: BLE001 - keep beating; the lease bounds the damage
                self.last_error = str(exc) or type(exc).__name__

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not threading.current_thread():
            self._thread.join(timeout=10)


class _LeasedLock:
    """What both stores share: the holder of this object, its heartbeat, its liveness mark."""

    name: str

    def __init__(self, *, lease_s: float):
        if lease_s <= 0:
            raise ValueError("lease_s must be positive")
        self.lease_s = lease_s
        self.holder: dict | None = None
        self._heartbeat: _Heartbeat | None = None

    @property
    def lost(self) -> str | None:
        """Why this object no longer holds the lock it acquired, or None while it does."""
        return self._heartbeat.lost if self._heartbeat else None

    @contextlib.contextmanager
    def _taking(self, run_id: str) -> Iterator[dict]:
        """A new holder, counted live in this process before it is written (a thread racing us
        must see it live, not dead), and forgotten again unless `_held` was reached."""
        if self.holder is not None:
            raise RuntimeError(f"{self.name} is already held by this object (run {self.holder['run_id']})")
        mine = new_holder(run_id, self.lease_s)
        with _live_guard:
            _live_holders.add(mine["holder_id"])
        try:
            yield mine
        finally:
            if self.holder is not mine:
                with _live_guard:
                    _live_holders.discard(mine["holder_id"])

    def _held(self, holder: dict) -> None:
        self.holder = holder
        self._heartbeat = _Heartbeat(self.name, self._renew, self.lease_s / 3)

    def _let_go(self) -> dict | None:
        """Stop the heartbeat and forget the holder; the store is cleared by the caller."""
        if self._heartbeat is not None:
            self._heartbeat.stop()
            self._heartbeat = None
        holder, self.holder = self.holder, None
        if holder is not None:
            with _live_guard:
                _live_holders.discard(holder["holder_id"])
        return holder

    def abandon(self) -> None:
        """Stop renewing without releasing, as a process that died would (tests, crash drills)."""
        self._let_go()

    def _renew(self) -> bool:
        raise NotImplementedError

    @staticmethod
    def _refuse(name: str, current: dict, take_over: bool) -> None:
        """Raise unless `current` is a dead holder and the caller asked to take it over."""
        if holder_alive(current):
            raise LockHeld(name, current)
        if not take_over:
            raise LockAbandoned(name, current)


class FileLock(_LeasedLock):
    """A JSON file holding the holder and its lease; every change under an flock on a guard file
    beside it (the lock file itself is replaced, so it cannot carry the flock)."""

    def __init__(self, path: Path, *, lease_s: float = DEFAULT_LEASE_S):
        super().__init__(lease_s=lease_s)
        self.path = Path(path)
        self.name = f"lock file {self.path.name}"

    def acquire(self, run_id: str, *, take_over: bool = False) -> dict | None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._taking(run_id) as mine:
            with self._guard():
                current = self._read()
                if current is not None:
                    self._refuse(self.name, current, take_over)
                self._write(mine)
            self._held(mine)
        return current

    def release(self, run_id: str | None = None) -> None:
        holder = self._let_go()
        if holder is None:
            return
        with self._guard():
            current = self._read()
            if current is not None and current.get("holder_id") == holder["holder_id"]:
                self.path.unlink(missing_ok=True)

    def _renew(self) -> bool:
        holder = self.holder
        if holder is None:
            return False
        with self._guard():
            current = self._read()
            if current is None or current.get("holder_id") != holder["holder_id"]:
                return False
            now = time.time()
            self._write({**holder, "expires_at": round(now + self.lease_s, 3), "renewed_at": round(now, 3)})
        return True

    @contextlib.contextmanager
    def _guard(self) -> Iterator[None]:
        fd = os.open(self.path.with_name(self.path.name + ".guard"), os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # closing drops the flock

    def _read(self) -> dict | None:
        try:
            text = self.path.read_text()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise DrUsageError(f"cannot read {self.name} ({self.path}): {exc.strerror or exc}") from None
        try:
            holder = json.loads(text)
        except ValueError:
            holder = None
        # Unreadable content has no live owner to ask: it is abandoned, taken over only explicitly.
        return holder if isinstance(holder, dict) else {"holder": "unreadable lock file", "path": str(self.path)}

    def _write(self, holder: dict) -> None:
        temporary = self.path.with_name(f"{self.path.name}.{holder['holder_id']}.tmp")
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            json.dump(holder, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, self.path)


class DynamoDbLock(_LeasedLock):
    """An item written only by conditional requests: created where none exists, taken over only
    from the very holder that was found dead, renewed and deleted only by its holder id."""

    def __init__(self, dynamodb, table: str, key: str, *, lease_s: float = DEFAULT_LEASE_S):
        super().__init__(lease_s=lease_s)
        self.dynamodb = dynamodb
        self.table = table
        self.key = key
        self.name = f"DynamoDB lock {table}/{key}"

    @property
    def region(self) -> str:
        return str(getattr(getattr(self.dynamodb, "meta", None), "region_name", None) or "its region")

    def acquire(self, run_id: str, *, take_over: bool = False) -> dict | None:
        with self._taking(run_id) as mine, self._aws("take"):
            for _ in range(5):  # each pass loses only to a holder that moved in between
                if self._put(mine, "attribute_not_exists(#k)", {}):
                    self._held(mine)
                    return None
                current = self._get()
                if current is None:
                    continue  # released in between
                self._refuse(self.name, current, take_over)
                if "holder_id" in current:
                    condition, values = "holder_id = :prev", {":prev": {"S": str(current["holder_id"])}}
                else:  # an item written before holders had ids
                    condition = "attribute_not_exists(holder_id) AND expires_at = :prev"
                    values = {":prev": {"N": _number(current.get("expires_at", 0))}}
                if self._put(mine, condition, values):
                    self._held(mine)
                    return current
            raise LockHeld(self.name, self._get() or {"holder": "changing too fast to read"})

    def release(self, run_id: str | None = None) -> None:
        holder = self._let_go()
        if holder is None:
            return
        with self._aws("release"):
            try:
                self.dynamodb.delete_item(TableName=self.table, Key={DR_LOCK_KEY: {"S": self.key}},
                                          ConditionExpression="holder_id = :me",
                                          ExpressionAttributeValues={":me": {"S": holder["holder_id"]}})
            except self.dynamodb.exceptions.ConditionalCheckFailedException:
                pass  # taken over after our lease expired: not ours to delete

    def _renew(self) -> bool:
        holder = self.holder
        if holder is None:
            return False
        now = time.time()
        try:
            self.dynamodb.update_item(
                TableName=self.table, Key={DR_LOCK_KEY: {"S": self.key}},
                UpdateExpression="SET expires_at = :exp, renewed_at = :now",
                ConditionExpression="holder_id = :me",
                ExpressionAttributeValues={":me": {"S": holder["holder_id"]},
                                           ":exp": {"N": _number(now + self.lease_s)}, ":now": {"N": _number(now)}})
        except self.dynamodb.exceptions.ConditionalCheckFailedException:
            return False
        return True

    def _put(self, holder: dict, condition: str, values: dict) -> bool:
        item = {DR_LOCK_KEY: {"S": self.key},
                **{k: ({"N": _number(v)} if isinstance(v, (int, float)) else {"S": str(v)}) for k, v in holder.items()}}
        names = {"#k": DR_LOCK_KEY} if "#k" in condition else {}
        try:
            self.dynamodb.put_item(TableName=self.table, Item=item, ConditionExpression=condition,
                                   **({"ExpressionAttributeNames": names} if names else {}),
                                   **({"ExpressionAttributeValues": values} if values else {}))
        except self.dynamodb.exceptions.ConditionalCheckFailedException:
            return False
        return True

    def _get(self) -> dict | None:
        item = self.dynamodb.get_item(TableName=self.table, Key={DR_LOCK_KEY: {"S": self.key}},
                                      ConsistentRead=True).get("Item")
        if not item:
            return None
        return {k: _decode(v) for k, v in item.items() if k != DR_LOCK_KEY}

    @contextlib.contextmanager
    def _aws(self, what: str) -> Iterator[None]:
        """Credentials that do not work are the operator's to fix: one line, exit 2."""
        try:
            yield
        except Exception as exc:
            problem = credentials_problem(exc)
            if problem is None:
                if _code(exc) == "ResourceNotFoundException":
                    raise DrUsageError(f"cannot {what} the {self.name} in {self.region}: the table does not exist; "
                                       "deploy the environment's regional stack there first") from None
                raise
            raise DrUsageError(f"cannot {what} the {self.name} in {self.region}: {problem}; {FIX}") from None


def _number(value) -> str:
    return repr(round(float(value), 3)) if isinstance(value, float) or "." in str(value) else str(value)


def _decode(value: dict):
    kind, raw = next(iter(value.items()))
    if kind == "N":
        number = float(raw)
        return int(number) if number.is_integer() and "." not in raw else number
    return raw


def _code(exc: BaseException) -> str | None:
    response = getattr(exc, "response", None)
    return response.get("Error", {}).get("Code") if isinstance(response, dict) else None
