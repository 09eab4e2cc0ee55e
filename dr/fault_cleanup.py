"""Fault cleanups that outlive the process which owed them.

A drill records every fault before it injects it (`state_dir/faults/<env>.json`: region, mode,
the drill's run id, its process and host, when) and removes the entry once it has cleared the
fault. A drill killed with SIGKILL never reaches its `finally`, so the fault would stay injected
and nothing but the control API would clear it. Every later `drill`, `failover`, `failback` and
`sandbox status` for the environment therefore first calls `finish_abandoned_cleanups`: an entry
whose process is gone has its fault cleared through the control API, said in one line and audited.

An entry from another host, or from a process still alive, is left alone: that drill may still be
running and will clear its own fault. An entry made against another sandbox (the sandbox was
restarted since) is dropped: its fault went away with that sandbox.
"""
from __future__ import annotations

import fcntl
import json
import os
import socket
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterator

from mlfleet.dr.audit import record

if TYPE_CHECKING:
    from mlfleet.dr.target import Target


@dataclass(frozen=True)
class FaultCleanup:
    """A fault a process injected and still owes clearing."""

    region: str
    mode: str
    run_id: str
    pid: int
    host: str
    at: float
    sandbox: str
    """The control API the fault was injected through: which sandbox it lives in."""
    service: str = "*"
    process_start: str | None = None
    """The owner's start time as the kernel reports it, so a reused pid is not taken for it."""

    def describe(self) -> str:
        since = datetime.fromtimestamp(self.at, timezone.utc).isoformat(timespec="seconds")
        return (f"{self.region} {self.mode} (service {self.service}) by drill {self.run_id}, "
                f"process {self.pid} on {self.host}, since {since}")


def process_start(pid: int) -> str | None:
    """The kernel's start time of `pid` (field 22 of its stat), or None where there is no procfs."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[-1].split()[19]


def owner_alive(entry: FaultCleanup) -> bool:
    """Whether the process that recorded `entry` still runs (on another host: assumed so)."""
    if entry.host != socket.gethostname():
        return True
    try:
        os.kill(entry.pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive, but is it the owner?
        pass
    if entry.process_start is not None:
        started = process_start(entry.pid)
        if started is not None and started != entry.process_start:
            return False  # the pid was reused by a later process
    return True


class FaultRecords:
    """The environment's recorded cleanups: one JSON file, changed under an exclusive lock."""

    def __init__(self, state_dir: Path, env: str):
        self.path = Path(state_dir) / "faults" / f"{env}.json"

    @contextmanager
    def _locked(self) -> Iterator[list[FaultCleanup]]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path.with_suffix(".lock"), "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            entries = self._read()
            before = list(entries)
            yield entries
            if entries != before:
                self._write(entries)

    def _read(self) -> list[FaultCleanup]:
        try:
            document = json.loads(self.path.read_text())
        except FileNotFoundError:
            return []
        except ValueError:
            return []  # a torn file from a crash mid-write cannot happen (atomic replace); a hand edit can
        return [FaultCleanup(**entry) for entry in document.get("faults", [])]

    def _write(self, entries: list[FaultCleanup]) -> None:
        temporary = self.path.with_suffix(".tmp")
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            json.dump({"faults": [asdict(e) for e in entries]}, handle, indent=2)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, self.path)

    def entries(self) -> list[FaultCleanup]:
        with self._locked() as entries:
            return list(entries)

    def record(self, *, region: str, mode: str, run_id: str, sandbox: str, service: str = "*") -> FaultCleanup:
        """Called before the fault is injected: a crash between the two leaves an entry whose
        clearing is harmless, never a fault without an entry."""
        entry = FaultCleanup(region=region, mode=mode, run_id=run_id, pid=os.getpid(), host=socket.gethostname(),
                             at=time.time(), sandbox=sandbox, service=service,
                             process_start=process_start(os.getpid()))
        with self._locked() as entries:
            entries.append(entry)
        return entry

    def remove(self, entry: FaultCleanup) -> None:
        with self._locked() as entries:
            entries[:] = [e for e in entries if e != entry]

    def remove_region(self, region: str | None) -> list[FaultCleanup]:
        """Forget the entries of one region (all without one): its faults were cleared by hand."""
        with self._locked() as entries:
            gone = [e for e in entries if region is None or e.region == region]
            entries[:] = [e for e in entries if e not in gone]
        return gone


def finish_abandoned_cleanups(target: Target, progress: Callable[[str], None] = lambda line: None
                              ) -> list[FaultCleanup]:
    """Clear the faults of drills whose process is gone; return the entries finished. Nothing to do
    against a deployed environment (drills only run in the sandbox)."""
    control = target.control
    if control is None:
        return []
    records = FaultRecords(target.state_dir, target.env.name)
    finished = []
    for entry in records.entries():
        if entry.sandbox != control.url:
            records.remove(entry)  # injected into a sandbox that has stopped since; its faults went with it
            continue
        if owner_alive(entry):
            continue
        control.clear(entry.region)
        records.remove(entry)
        progress(f"cleared the {entry.mode} fault in {entry.region} left by drill {entry.run_id} "
                 f"(process {entry.pid} is gone)")
        record(target, run_id=entry.run_id, action="drill.fault-cleanup", target=f"{target.env.name}:{entry.region}",
               result="ok", detail={"reason": "owner process gone", **asdict(entry)})
        finished.append(entry)
    return finished
