"""The run journal: each step's start and result, appended and fsynced before the run moves
on. A run that crashed is resumed from its journal: finished steps are skipped with the facts
they recorded, so no side effect is repeated; a step that started but did not finish runs its
idempotent action again, which first looks at the world and changes only what is not done."""
from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path

STARTED, APPLIED, DONE, FAILED, COMPENSATED, FINISHED = (
    "started", "applied", "done", "failed", "compensated", "finished")


class Journal:
    def __init__(self, path: Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()  # blocks running side by side write whole lines, one at a time

    def write(self, event: str, step: str | None = None, **data) -> None:
        record = {"at": time.time(), "event": event, "step": step, **data}
        line = json.dumps(record, sort_keys=True, default=str) + "\n"
        with self._lock:
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            with os.fdopen(fd, "a", encoding="utf-8") as handle:
                handle.write(line)
                handle.flush()
                os.fsync(handle.fileno())

    def records(self) -> list[dict]:
        if not self.path.exists():
            return []
        out = []
        for line in self.path.read_text(encoding="utf-8").splitlines():
            if not line.strip():
                continue
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                break  # a torn last line from a crash mid-write: everything before it stands
        return out

    def finished(self) -> bool:
        return any(r["event"] == FINISHED for r in self.records())

    def done_steps(self) -> dict[str, dict]:
        """Facts recorded by each step that finished (verified), by step name."""
        return {r["step"]: r.get("facts", {}) for r in self.records() if r["event"] == DONE}

    def applied_steps(self) -> list[str]:
        return [r["step"] for r in self.records() if r["event"] == APPLIED]

    def latest_timeline(self) -> dict[str, float]:
        """The phases reached by every earlier attempt (each DONE record carries the marks so far)."""
        marks: dict[str, float] = {}
        for record in self.records():
            for phase, at in (record.get("timeline") or {}).items():
                marks.setdefault(phase, at)
        return marks

    def header(self) -> dict:
        for record in self.records():
            if record["event"] == "begin":
                return record
        return {}


def find_unfinished(runs_dir: Path, key: str) -> Path | None:
    """The newest unfinished journal of a run with the same key (runbook and arguments)."""
    if not runs_dir.is_dir():
        return None
    candidates = sorted(runs_dir.glob("*/journal.jsonl"), key=lambda p: p.stat().st_mtime, reverse=True)
    for path in candidates:
        journal = Journal(path)
        if journal.header().get("key") == key and not journal.finished():
            return path
    return None
