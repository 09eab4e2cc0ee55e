"""The drill's registry writer: continuous, acknowledged MLflow registry writes, and the RPO they
show after a failover (what was acknowledged before the fault and is absent from the new writer).

Each write is one committed MLflow operation on a drill model: a new version, a tag on it, an
alias to it. Every write carries a token the writer chooses, so a version number that the new
writer hands out again after a loss cannot pass for the lost one: a version is named by the token
in its source, a tag by its value, an alias by its name.
"""
from __future__ import annotations

import os
import threading
import time
import uuid
from dataclasses import dataclass
from functools import partial
from typing import Callable, Literal, TypeVar

from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

WRITE_INTERVAL_S = 0.05  # ~20 writes/s: a busy registry, not a load test
TOKEN_TAG = "mlfleet.drill.write"
ALIAS_PREFIX = "drill-"

# mlflow-skinny reads these from os.environ on every request and has no per-client setting
# (3.17.2): by default 7 retries with backoff and a 120 s timeout, minutes against a faulted
# region. Bounded here, for the clients of this process, when a writer starts.
CLIENT_BOUNDS = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "2",  # seconds, an integer
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "0",
}

Kind = Literal["version", "tag", "alias"]
T = TypeVar("T")


@dataclass(frozen=True)
class RegistryWrite:
    kind: Kind
    token: str

    def __str__(self) -> str:
        return f"{self.kind} {self.token}"


@dataclass(frozen=True)
class RegistryRpo:
    written: int          # writes acknowledged before the fault
    present: int          # of those, on the new writer
    missing: tuple[RegistryWrite, ...]
    rpo_s: float          # fault time minus the first missing write's acknowledgement; 0 if none


def bound_client_requests() -> None:
    os.environ.update(CLIENT_BOUNDS)


def drill_model_name(run: str | None = None) -> str:
    return f"mlfleet-drill-{run or uuid.uuid4().hex[:8]}"


class RegistryWriter(threading.Thread):
    """Until `halt` is set, writes to `tracking_uri` and appends (write, acknowledged_at) for each
    acknowledged one to `.writes` (wall clock, as the drill's fault time)."""

    def __init__(self, tracking_uri: str, *, model: str | None = None, interval_s: float = WRITE_INTERVAL_S):
        super().__init__(name="drill-registry-writer", daemon=True)
        self.tracking_uri = tracking_uri
        self.model = model or drill_model_name()
        self.interval_s = interval_s
        self.writer_id = uuid.uuid4().hex[:8]  # tokens stay unique when writers share a model
        self.writes: list[tuple[RegistryWrite, float]] = []
        self.refused = 0      # writes that failed or timed out: never acknowledged, not data
        self.last_error: str | None = None
        self.halt = threading.Event()
        bound_client_requests()
        self.client = MlflowClient(tracking_uri=tracking_uri)

    def stop(self, timeout_s: float = 10.0) -> None:
        self.halt.set()
        self.join(timeout_s)

    def run(self) -> None:
        seq = 0
        while not self.halt.is_set() and not self._attempt(self._create_model)[0]:
            self.halt.wait(self.interval_s)
        while not self.halt.is_set():
            self._write_one(f"{self.writer_id}-{seq:06d}")
            seq += 1
            self.halt.wait(self.interval_s)

    def _write_one(self, token: str) -> None:
        """A version, then a tag on it and an alias to it: three writes, each acknowledged alone."""
        acknowledged, version = self._write(RegistryWrite("version", token), partial(
            self._create_version, token))
        if acknowledged and version is not None:
            self._write(RegistryWrite("tag", token), partial(
                self.client.set_model_version_tag, self.model, version, TOKEN_TAG, token))
            self._write(RegistryWrite("alias", token), partial(
                self.client.set_registered_model_alias, self.model, f"{ALIAS_PREFIX}{token}", version))

    def _create_version(self, token: str) -> str:
        return self.client.create_model_version(self.model, source=f"s3://drill/{self.model}/{token}/",
                                                description=f"drill write {token}", await_creation_for=0).version

    def _create_model(self) -> None:
        try:
            self.client.create_registered_model(self.model, description="written by an mlfleet DR drill")
        except MlflowException as error:
            if error.error_code != "RESOURCE_ALREADY_EXISTS":
                raise

    def _write(self, write: RegistryWrite, call: Callable[[], T]) -> tuple[bool, T | None]:
        """(acknowledged, the call's result); an acknowledged write is recorded."""
        if self.halt.is_set():
            return False, None
        acknowledged, result = self._attempt(call)
        if acknowledged:
            self.writes.append((write, time.time()))
        return acknowledged, result

    def _attempt(self, call: Callable[[], T]) -> tuple[bool, T | None]:
        try:
            return True, call()
        except Exception as error:  # noqa: BLE001 - a refused or timed-out write was never acknowledged
            self.refused += 1
            self.last_error = f"{type(error).__name__}: {(str(error).splitlines() or [''])[0][:200]}"
            return False, None


def present(tracking_uri: str, model: str) -> set[RegistryWrite]:
    """Every drill write `model` shows on `tracking_uri` (bounded requests, no retries)."""
    bound_client_requests()
    client = MlflowClient(tracking_uri=tracking_uri)
    found: set[RegistryWrite] = set()
    try:
        registered = client.get_registered_model(model)
    except MlflowException as error:
        if error.error_code == "RESOURCE_DOES_NOT_EXIST":
            return found
        raise
    token_of_version: dict[str, str] = {}
    page_token = None
    while True:
        page = client.search_model_versions(f"name = '{model}'", max_results=1000, page_token=page_token)
        for version in page:
            token = (version.source or "").rstrip("/").rsplit("/", 1)[-1]
            token_of_version[version.version] = token
            found.add(RegistryWrite("version", token))
            if version.tags.get(TOKEN_TAG) == token:
                found.add(RegistryWrite("tag", token))
        page_token = page.token
        if not page_token:
            break
    for alias, version in registered.aliases.items():
        token = alias.removeprefix(ALIAS_PREFIX)
        if alias.startswith(ALIAS_PREFIX) and token_of_version.get(str(version)) == token:
            found.add(RegistryWrite("alias", token))
    return found


def registry_rpo(writes: list[tuple[RegistryWrite, float]], fault_at: float, tracking_uri: str,
                 model: str) -> RegistryRpo:
    """Writes acknowledged before `fault_at` against what the new writer's MLflow shows."""
    before = [(write, at) for write, at in writes if at < fault_at]
    shown = present(tracking_uri, model)
    missing = [(write, at) for write, at in before if write not in shown]
    rpo_s = fault_at - min(at for _, at in missing) if missing else 0.0
    return RegistryRpo(written=len(before), present=len(before) - len(missing),
                       missing=tuple(write for write, _ in missing), rpo_s=rpo_s)
