"""The sandbox's model registry: one MLflow tracking server per region, on that region's registry
PostgreSQL, its artifact root in the region's bucket (clients upload there themselves).

Measured with MLflow 3.17.2 on PostgreSQL 15 (see dr/SANDBOX.md, "The model registry"):
- against a hot standby whose database already carries MLflow's schema, the server starts and
  serves reads; every write answers HTTP 400 `BAD_REQUEST` (`ReadOnlySqlTransaction`), at once;
- against a standby without the schema, start-up fails (its CREATE TABLE is refused): the
  writer's server must migrate first and the standby must have replayed it;
- once the standby is promoted, the same server writes: its pooled connections were opened
  in recovery, but PostgreSQL decides read-only per transaction. No restart is needed.
So every region runs one, read-only on a standby, and a promotion makes it the writer's.
"""
from __future__ import annotations

import os
import signal
import subprocess
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import IO, Callable, Mapping, Protocol

from mlfleet.dr.errors import EXIT_FAILED, DrUsageError
from mlfleet.runtime.process import free_port
from mlfleet.stacks.environment import Environment, naming
from mlfleet.stacks.environment.errors import MlfleetError

REPOSITORY_ROOT = Path(__file__).resolve().parents[2]
MLFLOW_VENV = REPOSITORY_ROOT / ".venv-mlflow"
HOST = "127.0.0.1"
# The job runner (huey, 8 worker processes) serves GenAI scorers the sandbox never runs.
SERVER_SETTINGS = {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}


class MlflowServerError(MlfleetError):
    """One line: an MLflow server that did not start, with where its log is (the CLI prints it)."""
    exit_code = EXIT_FAILED


def mlflow_executable(venv: Path = MLFLOW_VENV) -> Path:
    executable = venv / "bin" / "mlflow"
    if not executable.exists():
        raise DrUsageError(f"the sandbox's model registry needs MLflow's server in {venv.name}/ "
                           f"({executable} is missing): run `make setup`")
    return executable


def sqlalchemy_uri(dsn: str) -> str:
    """SQLAlchemy 2.1 reads a bare `postgresql://` as psycopg 3; MLflow's virtualenv has psycopg2."""
    for scheme in ("postgresql://", "postgres://"):
        if dsn.startswith(scheme):
            return "postgresql+psycopg2://" + dsn[len(scheme):]
    return dsn


def artifact_root(bucket: str, models_prefix: str) -> str:
    """`bucket`: an S3 bucket's name, or a store's URL (gs://bucket for a Google Cloud region)."""
    store = bucket if "://" in bucket else f"s3://{bucket}"
    return f"{store}/{naming.mlflow_artifact_prefix(models_prefix)}"


class MlflowServer:
    """`mlflow server` on loopback, one worker, as a process group of its own (the CLI starts
    uvicorn as a child): `.start()` waits for `/health`, `.stop()` leaves nothing running."""

    def __init__(self, region: str, backend_uri: str, artifact_root: str, env: Mapping[str, str],
                 log_path: str | Path, *, read_only: bool = False, startup_timeout_s: float = 120.0,
                 stop_timeout_s: float = 10.0, venv: Path = MLFLOW_VENV):
        self.region = region
        self.backend_uri = sqlalchemy_uri(backend_uri)
        self.artifact_root = artifact_root
        self.read_only = read_only  # on a standby: reads served, writes refused by the database
        self.log_path = Path(log_path)
        self.port = free_port()
        self.url = f"http://{HOST}:{self.port}"
        self._env = {**os.environ, **env, **SERVER_SETTINGS}
        self._venv = venv
        self._startup_timeout_s = startup_timeout_s
        self._stop_timeout_s = stop_timeout_s
        self._log: IO[bytes] | None = None
        self.process: subprocess.Popen | None = None
        self.started_s: float | None = None  # launch to the first healthy answer

    def _args(self) -> list[str]:
        return [str(mlflow_executable(self._venv)), "server",
                "--backend-store-uri", self.backend_uri,
                "--default-artifact-root", self.artifact_root, "--no-serve-artifacts",
                "--host", HOST, "--port", str(self.port), "--workers", "1"]

    def start(self) -> "MlflowServer":
        args = self._args()
        started = time.monotonic()
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = open(self.log_path, "ab")
        self.process = subprocess.Popen(args, env=self._env, stdout=self._log, stderr=subprocess.STDOUT,
                                        stdin=subprocess.DEVNULL, start_new_session=True)
        deadline = started + self._startup_timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                code = self.process.returncode
                self.stop()
                raise MlflowServerError(f"MLflow server of {self.region} exited with {code} before it "
                                        f"answered /health: {_last_error(self.log_path)} (log: {self.log_path})")
            if self.healthy():
                self.started_s = time.monotonic() - started
                return self
            time.sleep(0.2)
        self.stop()
        raise MlflowServerError(f"MLflow server of {self.region} did not answer /health within "
                                f"{self._startup_timeout_s:.0f} s (log: {self.log_path})")

    def healthy(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/health", timeout=1) as response:
                return response.status == 200
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            return False

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self) -> int | None:
        """SIGTERM to the group (the CLI forwards it to uvicorn), SIGKILL if it outlives
        stop_timeout_s; idempotent."""
        if self.process is None:
            return None
        self._signal_group(signal.SIGTERM)
        try:
            self.process.wait(timeout=self._stop_timeout_s)
        except subprocess.TimeoutExpired:
            self._signal_group(signal.SIGKILL)
            self.process.wait()
        self._signal_group(signal.SIGKILL)  # a worker that outlived its parent
        if self._log is not None:
            self._log.close()
            self._log = None
        return self.process.returncode

    def restart(self) -> "MlflowServer":
        """The same region, database and port: the sandbox's state file keeps naming its `.url`."""
        self.stop()
        return self.start()

    def _signal_group(self, signum: int) -> None:
        assert self.process is not None
        try:
            os.killpg(self.process.pid, signum)
        except (ProcessLookupError, PermissionError):
            pass

    def __enter__(self) -> "MlflowServer":
        return self if self.process is not None else self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def _last_error(log_path: Path) -> str:
    """The line that says why, not the traceback around it."""
    try:
        lines = [line.strip() for line in log_path.read_text(errors="replace").splitlines() if line.strip()]
    except OSError:
        return "no log"
    for line in reversed(lines):
        if "Error" in line and not line.startswith(("File ", "Traceback", "(Background")):
            return line[:300]
    return lines[-1][:300] if lines else "no output"


class RegistryDatabasesView(Protocol):
    """What the registry servers need of the sandbox's `RegistryDatabases`."""
    regions: list[str]

    def dsn(self, region: str) -> str: ...

    def writer(self) -> str: ...

    def replay_lag_s(self, region: str) -> float | None: ...

    def wait_caught_up(self, timeout_s: float = 30) -> None: ...


class RegistryServers(dict[str, MlflowServer]):
    """The region → MLflow server map of the sandbox, with what a promotion must do to it."""

    def __init__(self, databases: RegistryDatabasesView, servers: Mapping[str, MlflowServer]):
        super().__init__(servers)
        self.databases = databases

    def writer_url(self) -> str:
        return self[self.databases.writer()].url

    def on_new_writer(self, region: str) -> MlflowServer:
        """Call after a switchover or failover has promoted `region`'s database. Its server,
        already running read-only, writes from now on without a restart (measured); it is
        started again only if it is not running or not healthy (a region taken down)."""
        server = self[region]
        if not server.running() or not server.healthy():
            server.restart()
        for name, other in self.items():
            other.read_only = name != region
        return server

    def stop(self) -> None:
        with ThreadPoolExecutor(max_workers=max(1, len(self))) as pool:
            list(pool.map(MlflowServer.stop, self.values()))


def start_registry_servers(env: Environment, databases: RegistryDatabasesView, bucket_of: Callable[[str], str],
                           env_vars: Mapping[str, str], workdir: str | Path, *,
                           schema_replay_timeout_s: float = 30.0) -> RegistryServers:
    """One MLflow server per region: the writer's first (its start-up creates or migrates the
    schema), then every standby's, read-only, once its database has replayed that schema."""
    workdir = Path(workdir)
    prefix = env.artifact_store.models_prefix
    writer = databases.writer()

    def server(region: str) -> MlflowServer:
        return MlflowServer(region, databases.dsn(region), artifact_root(bucket_of(region), prefix), env_vars,
                            workdir / f"mlflow-{region}.log", read_only=region != writer)

    servers = {region: server(region) for region in databases.regions}
    started = RegistryServers(databases, {})
    try:
        started[writer] = servers[writer].start()
        standbys = [region for region in databases.regions if region != writer]
        databases.wait_caught_up(schema_replay_timeout_s)  # the standbys hold the writer's schema
        with ThreadPoolExecutor(max_workers=max(1, len(standbys))) as pool:
            for region, running in zip(standbys, pool.map(lambda r: servers[r].start(), standbys), strict=True):
                started[region] = running
    except BaseException:
        for each in servers.values():
            each.stop()
        raise
    return started
