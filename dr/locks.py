"""One DR run at a time per environment. In a cloud the lock is a DynamoDB item written with a
condition in the target region (the one region that must be up for the run to matter); in the
sandbox it is a file created exclusively. Either is owned by a run id, so the same run resumed
after a crash takes it back, while any other run is refused with the holder's details."""
from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path
from typing import Protocol

from mlfleet.dr.errors import LockHeld


class RunLock(Protocol):
    name: str

    def acquire(self, run_id: str) -> None: ...

    def release(self, run_id: str) -> None: ...


def _holder(run_id: str, ttl_s: float) -> dict:
    return {"run_id": run_id, "host": socket.gethostname(), "pid": os.getpid(),
            "acquired_at": round(time.time(), 3), "expires_at": round(time.time() + ttl_s, 3)}


class FileLock:
    """An exclusively created file holding the owner; a dead owner's lock on this host or an
    expired one is taken over."""

    def __init__(self, path: Path, *, ttl_s: float = 3600):
        self.path = Path(path)
        self.name = f"lock file {self.path.name}"
        self.ttl_s = ttl_s

    def acquire(self, run_id: str) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        for _ in range(3):
            try:
                fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            except FileExistsError:
                holder = self._read()
                if holder is None or holder.get("run_id") == run_id or self._stale(holder):
                    self.path.unlink(missing_ok=True)
                    continue
                raise LockHeld(self.name, holder) from None
            with os.fdopen(fd, "w") as handle:
                json.dump(_holder(run_id, self.ttl_s), handle)
            return
        raise LockHeld(self.name, self._read() or {"holder": "unknown"})

    def release(self, run_id: str) -> None:
        holder = self._read()
        if holder is not None and holder.get("run_id") == run_id:
            self.path.unlink(missing_ok=True)

    def _read(self) -> dict | None:
        try:
            return json.loads(self.path.read_text())
        except (OSError, ValueError):
            return None

    @staticmethod
    def _stale(holder: dict) -> bool:
        if holder.get("expires_at", 0) < time.time():
            return True
        if holder.get("host") == socket.gethostname():
            try:
                os.kill(int(holder.get("pid", 0)), 0)
            except ProcessLookupError:
                return True
            except (PermissionError, ValueError):
                return False
        return False


class DynamoDbLock:
    """A conditional PutItem: succeeds only if no item exists, it is ours, or it expired."""

    def __init__(self, dynamodb, table: str, key: str, *, ttl_s: float = 3600):
        self.dynamodb = dynamodb
        self.table = table
        self.key = key
        self.name = f"DynamoDB lock {table}/{key}"
        self.ttl_s = ttl_s

    def acquire(self, run_id: str) -> None:
        holder = _holder(run_id, self.ttl_s)
        item = {"lock": {"S": self.key}, "run_id": {"S": run_id}, "host": {"S": holder["host"]},
                "pid": {"N": str(holder["pid"])}, "expires_at": {"N": str(holder["expires_at"])}}
        try:
            self.dynamodb.put_item(
                TableName=self.table, Item=item,
                ConditionExpression="attribute_not_exists(#k) OR run_id = :me OR expires_at < :now",
                ExpressionAttributeNames={"#k": "lock"},
                ExpressionAttributeValues={":me": {"S": run_id}, ":now": {"N": str(time.time())}})
        except self.dynamodb.exceptions.ConditionalCheckFailedException:
            current = self.dynamodb.get_item(TableName=self.table, Key={"lock": {"S": self.key}},
                                             ConsistentRead=True).get("Item", {})
            raise LockHeld(self.name, {k: next(iter(v.values())) for k, v in current.items() if k != "lock"}) from None

    def release(self, run_id: str) -> None:
        try:
            self.dynamodb.delete_item(TableName=self.table, Key={"lock": {"S": self.key}},
                                      ConditionExpression="run_id = :me",
                                      ExpressionAttributeValues={":me": {"S": run_id}})
        except self.dynamodb.exceptions.ConditionalCheckFailedException:
            pass  # taken over after expiry: not ours to delete
