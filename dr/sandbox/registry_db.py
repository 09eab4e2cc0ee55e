"""The sandbox's registry database made real: one PostgreSQL server per region on loopback, the
writer's standbys streaming from it through a replication slot each, as an Aurora global database
keeps one cluster per region.

- Start-up: one `initdb`; each standby is a cold copy of the new cluster made before the first
  start (the same system identifier, as `pg_basebackup` would give, without a checkpoint to wait
  for), then every server starts at once. A standby lost beyond `pg_rewind` is cloned again with
  `pg_basebackup`.
- Authentication is SCRAM on 127.0.0.1 only, passwords generated per instance; unix sockets lie
  in the servers' own directory.
- Replay lag is measured, never configured: a heartbeat commits on the writer every
  `heartbeat_s` (an xid and no data, as Aurora's own heartbeats), and a standby's lag is the
  writer's clock minus the commit time of the newest transaction the standby replayed, or 0 once
  its replay position has reached the writer's WAL position. It reads 0 when caught up and grows
  while replay is paused or delayed.
- `pause_replay` cuts the standby's stream (and pauses replay): what the writer commits meanwhile
  is not on the standby, so an unplanned failover loses exactly that. A replay delay
  (`recovery_min_apply_delay`) delays replay only: a promotion still applies what was received.

PostgreSQL refuses to run as root: as root the servers run as the `postgres` account, in a
directory of their own when it cannot reach the given work dir.
"""
from __future__ import annotations

import glob
import os
import pwd
import re
import secrets
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterable, Sequence

from mlfleet.dr.errors import EXIT_FAILED
from mlfleet.runtime.process import free_port
from mlfleet.stacks.environment import naming
from mlfleet.stacks.environment.errors import MlfleetError

if TYPE_CHECKING:
    import psycopg

ADMIN_USER = "mlfleet_admin"
"""The superuser the sandbox replicates, rewinds and measures with."""
REGISTRY_USER = "mlfleet_registry"
"""The login role that owns the registry database: what `dsn()` hands to clients."""
HOST = "127.0.0.1"
MIN_SERVER_VERSION = 13  # primary_conninfo reloadable, pg_rewind finishes crash recovery itself
_TOOLS = ("initdb", "pg_ctl", "postgres", "pg_basebackup", "pg_rewind")
_DEBIAN_ROOT = Path("/usr/lib/postgresql")  # Debian's layout: /usr/lib/postgresql/<major>/bin

_SERVER_CONF = """
# mlfleet sandbox: a replicated registry on loopback
listen_addresses = '{host}'
unix_socket_directories = '{sockets}'
wal_level = replica
hot_standby = on
wal_log_hints = on                 # pg_rewind needs it (or data checksums)
max_wal_senders = 10
max_replication_slots = 10
wal_keep_size = '64MB'
wal_retrieve_retry_interval = '100ms'   # a re-pointed standby reconnects at once
wal_receiver_status_interval = '1s'
fsync = off                        # a sandbox: nothing in it outlives the machine
shared_buffers = '16MB'
log_min_messages = warning
log_line_prefix = '%m [%p] '
"""


class RegistryDatabaseError(MlfleetError):
    """One line that says what is wrong with the sandbox's registry databases (the CLI prints it)."""
    exit_code = EXIT_FAILED


@dataclass
class _Server:
    region: str
    port: int
    data_dir: Path
    running: bool = False
    stopped_why: str = ""
    """Why it is not running: "down" (a region fault) or "detached" (an old writer after failover)."""

    @property
    def slot(self) -> str:
        return "standby_" + re.sub(r"[^a-z0-9]", "_", self.region.lower())


def postgres_bindir() -> Path:
    """Where the server binaries are: `pg_config --bindir`, else Debian's newest
    /usr/lib/postgresql/<major>/bin, else the directory of `initdb` on PATH."""
    candidates: list[Path] = []
    pg_config = shutil.which("pg_config")
    if pg_config:
        try:
            out = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True, timeout=10, check=True)
            candidates.append(Path(out.stdout.strip()))
        except (OSError, subprocess.SubprocessError):
            pass
    majors = sorted(glob.glob(str(_DEBIAN_ROOT / "*" / "bin")),
                    key=lambda p: int(Path(p).parent.name) if Path(p).parent.name.isdigit() else 0, reverse=True)
    candidates += [Path(p) for p in majors]
    initdb = shutil.which("initdb")
    if initdb:
        candidates.append(Path(initdb).parent)
    for directory in candidates:
        if all((directory / tool).is_file() for tool in _TOOLS):
            return directory
    raise RegistryDatabaseError(
        f"no PostgreSQL server binaries ({', '.join(_TOOLS)}) found through pg_config, {_DEBIAN_ROOT}/*/bin "
        "or PATH: the sandbox's registry databases need a PostgreSQL server installed (e.g. the postgresql package)")


def _quote(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "''") + "'"


class RegistryDatabases:
    stop_timeout_s = 30
    """How long one `pg_ctl stop` may take before the stop is escalated."""

    def __init__(self, regions: Sequence[str], work_dir: Path, *, writer: str | None = None,
                 database: str | None = None, heartbeat_s: float = 0.2, log: Callable[[str], None] = lambda _: None):
        if not regions:
            raise RegistryDatabaseError("the registry needs at least one region")
        self.regions = list(regions)
        self.original_writer = writer or self.regions[0]
        if self.original_writer not in self.regions:
            raise RegistryDatabaseError(f"writer {self.original_writer!r} is not one of the regions {self.regions}")
        self.database = database or naming.registry_database()
        self.heartbeat_s = heartbeat_s
        self.log = log
        self._work_dir = Path(work_dir)
        self._admin_password = secrets.token_urlsafe(18)
        self._password = secrets.token_urlsafe(18)
        self._writer = self.original_writer
        self._servers: dict[str, _Server] = {}
        self._paused: set[str] = set()
        self._delay_s = 0.0
        self._lock = threading.RLock()
        self._probes: dict[int, psycopg.Connection] = {}  # port -> a connection kept for measuring
        self._probe_lock = threading.Lock()
        self._stop = threading.Event()
        self._heartbeat: threading.Thread | None = None
        self._root: Path | None = None
        self._own_root = False
        self._bindir: Path | None = None
        self._as_user: tuple[int, int] | None = None
        self.started_s: float | None = None

    # -- what clients call --------------------------------------------------------------------
    def dsn(self, region: str) -> str:
        """The libpq URL of the region's server (psycopg, SQLAlchemy) as the registry's login role."""
        server = self._server(region)
        return f"postgresql://{REGISTRY_USER}:{self._password}@{HOST}:{server.port}/{self.database}"

    def writer(self) -> str:
        return self._writer

    def port(self, region: str) -> int:
        return self._server(region).port

    def is_running(self, region: str) -> bool:
        return self._server(region).running

    def paused(self, region: str) -> bool:
        return region in self._paused

    @property
    def replay_delay_s(self) -> float:
        return self._delay_s

    # -- lifecycle ----------------------------------------------------------------------------
    def start(self) -> "RegistryDatabases":
        started = time.monotonic()
        self._bindir = postgres_bindir()
        self._check_version()
        self._as_user = self._unprivileged_user()
        try:
            self._root = self._make_root()
            sockets = self._root / "sockets"
            sockets.mkdir()
            self._chown(sockets)
            for region in self.regions:
                self._servers[region] = _Server(region, free_port(), self._root / region)
            writer = self._servers[self._writer]
            self._initdb(writer, sockets)
            # a cold copy of a cleanly shut down cluster: a base backup with nothing to wait for
            self._parallel(lambda s: self._run(["cp", "-a", str(writer.data_dir), str(s.data_dir)]), self._standbys())
            for server in self._standbys():
                (server.data_dir / "standby.signal").touch()
                self._chown(server.data_dir / "standby.signal")
                self._write_conf(server, self._standby_settings(server))
            self._pg_start(writer)
            for server in self._standbys():  # before they connect: each streams through its slot
                self._sql(self._writer, "SELECT pg_create_physical_replication_slot(%s, true)", (server.slot,))
            self._parallel(self._pg_start, self._standbys())
            self._create_registry()
            self._heartbeat = threading.Thread(target=self._heartbeat_loop, name="registry-heartbeat", daemon=True)
            self._heartbeat.start()
            self.wait_caught_up()
        except BaseException:
            self.stop()
            raise
        self.started_s = time.monotonic() - started
        self.log(f"registry databases ({', '.join(self.regions)}) up in {self.started_s:.2f}s")
        return self

    def stop(self) -> None:
        """Every server down (fast, then immediate, then by signal): nothing is left running,
        even after a start that failed half-way."""
        self._stop.set()
        if self._heartbeat is not None:
            self._heartbeat.join(timeout=5)
        self._close_probes()
        with self._lock:
            self._parallel(self._pg_stop_hard, [s for s in self._servers.values()])
            if self._root is not None and self._own_root:
                shutil.rmtree(self._root, ignore_errors=True)

    def __enter__(self) -> "RegistryDatabases":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def reset(self) -> None:
        """Back to the original writer, every server up, nothing paused, no replay delay."""
        with self._lock:
            for region in list(self._paused):
                self.resume_replay(region)
            self.set_replay_delay(0)
            for server in self._servers.values():
                if not server.running:
                    self.bring_up(server.region)
            if self._writer != self.original_writer:
                self.switchover(self.original_writer)
            self.wait_caught_up()

    def wait_caught_up(self, timeout_s: float = 30) -> None:
        """Until every running, unpaused standby has replayed what the writer has written so far
        (RegistryDatabaseError after `timeout_s`)."""
        ((lsn,),) = self._sql(self._writer, "SELECT pg_current_wal_lsn()")
        for server in self._standbys():
            if server.running and server.region not in self._paused:
                self._wait_replayed(server, lsn, timeout_s, why=f"catching up {server.region}")

    # -- replication controls -----------------------------------------------------------------
    def replay_lag_s(self, region: str) -> float | None:
        """Measured on the standby (see the module's docstring); None for the writer, or when the
        writer or the standby does not answer."""
        writer = self._writer
        if region == writer or not self._server(region).running or not self._server(writer).running:
            return None
        try:
            ((writer_lsn, writer_now),) = self._measure(writer, "SELECT pg_current_wal_lsn(), clock_timestamp()")
            ((behind, replayed_at),) = self._measure(
                region, "SELECT pg_last_wal_replay_lsn() < %s::pg_lsn, pg_last_xact_replay_timestamp()",
                (writer_lsn,))
        except RegistryDatabaseError:
            return None
        if not behind:
            return 0.0
        if replayed_at is None:  # nothing replayed since it started: behind by the whole stream
            return None
        return max(0.0, (writer_now - replayed_at).total_seconds())

    def pause_replay(self, region: str, timeout_s: float = 10) -> None:
        """Cut the region's stream once it holds what the writer committed so far, and pause replay:
        what is committed from now on stays off this standby until `resume_replay`."""
        with self._lock:
            server = self._standby(region, "pause replay on")
            if region in self._paused:
                return
            ((lsn,),) = self._sql(self._writer, "SELECT pg_current_wal_lsn()")
            self._wait_replayed(server, lsn, timeout_s, why=f"pausing replay on {region}")
            self._paused.add(region)
            self._alter(region, {"primary_conninfo": ""})
            self._sql(region, "SELECT pg_wal_replay_pause()")

    def resume_replay(self, region: str) -> None:
        with self._lock:
            server = self._server(region)
            self._paused.discard(region)
            if not server.running or region == self._writer:
                return
            self._sql(region, "SELECT pg_wal_replay_resume()")
            self._alter(region, self._standby_settings(server))

    def set_replay_delay(self, seconds: float) -> None:
        """`recovery_min_apply_delay` on every server (it only acts in recovery), at runtime."""
        if seconds < 0:
            raise ValueError(f"a replay delay cannot be negative ({seconds})")
        with self._lock:
            self._delay_s = float(seconds)
            for server in self._servers.values():
                if server.running:
                    self._alter(server.region, {"recovery_min_apply_delay": self._delay_value()})

    # -- promotion ----------------------------------------------------------------------------
    def switchover(self, target: str, timeout_s: float = 30) -> None:
        """Planned: fence the writer (read-only, its sessions ended), wait until the target has
        replayed the writer's current WAL position, stop the writer, promote the target, and make
        every other server its standby (rewound where needed). Nothing committed is lost."""
        with self._lock:
            old = self._server(self._writer)
            new = self._standby(target, "switch over to")
            if not old.running:
                raise RegistryDatabaseError(f"switchover to {target}: the writer {old.region} is not running; "
                                            "use an unplanned failover")
            if target in self._paused:
                raise RegistryDatabaseError(f"switchover to {target}: its replay is paused; resume it first")
            self._alter(old.region, {"default_transaction_read_only": "on"})
            self._sql(old.region, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                                  "WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()")
            ((lsn,),) = self._sql(old.region, "SELECT pg_current_wal_lsn()")
            try:
                self._wait_replayed(new, lsn, timeout_s, why=f"switchover to {target}")
            except RegistryDatabaseError:
                self._alter(old.region, {"default_transaction_read_only": None})
                raise
            self._pg_ctl_stop(old, "fast")
            self._promote(new)
            self._repoint([old, *[s for s in self._standbys() if s is not old]])

    def failover(self, target: str) -> None:
        """Unplanned: promote the target at once with what it holds. The old writer, if still
        running, is stopped (fenced) and stays detached until `rejoin`; other standbys follow."""
        with self._lock:
            old = self._server(self._writer)
            new = self._standby(target, "fail over to")
            if old.running:
                self._pg_ctl_stop(old, "immediate")
                old.stopped_why = "detached"
            elif not old.stopped_why:
                old.stopped_why = "detached"
            self._paused.discard(target)
            self._promote(new)
            self._repoint([s for s in self._standbys() if s.running])

    def rejoin(self, region: str) -> None:
        """A stopped or diverged server back as a standby of the writer (pg_rewind, or a fresh
        base backup when the rewind cannot)."""
        with self._lock:
            if region == self._writer:
                raise RegistryDatabaseError(f"{region} is the writer: it has nothing to rejoin")
            self._repoint([self._server(region)])

    def take_down(self, region: str) -> None:
        """The region's server stops at once (a region fault): clients cannot reach it."""
        with self._lock:
            server = self._server(region)
            if server.running:
                self._pg_ctl_stop(server, "immediate")
            server.stopped_why = "down"

    def bring_up(self, region: str) -> None:
        """Start it again: as the writer if it still is one, else as a standby of the writer."""
        with self._lock:
            server = self._server(region)
            if server.running:
                return
            if region == self._writer:
                self._pg_start(server)
                return
            if not self._server(self._writer).running:
                # no writer to rewind against: start as it was (a standby that waits for its upstream)
                self._pg_start(server)
                return
            self._repoint([server])

    def status(self) -> dict:
        regions = {}
        for region, server in self._servers.items():
            role = "writer" if region == self._writer else "standby"
            regions[region] = {"role": role, "running": server.running, "stopped": server.stopped_why or None,
                               "port": server.port, "paused": region in self._paused,
                               "lag_s": None if role == "writer" else self.replay_lag_s(region)}
        return {"writer": self._writer, "replay_delay_s": self._delay_s, "regions": regions}

    # -- internals: topology ------------------------------------------------------------------
    def _server(self, region: str) -> _Server:
        try:
            return self._servers[region]
        except KeyError:
            raise RegistryDatabaseError(f"{region} has no registry database (regions: {', '.join(self.regions)}"
                                        f"{'' if self._servers else '; not started'})") from None

    def _standby(self, region: str, doing: str) -> _Server:
        server = self._server(region)
        if region == self._writer:
            raise RegistryDatabaseError(f"cannot {doing} {region}: it is the writer")
        if not server.running:
            raise RegistryDatabaseError(f"cannot {doing} {region}: its server is {server.stopped_why or 'stopped'}")
        return server

    def _standbys(self) -> list[_Server]:
        return [s for r, s in self._servers.items() if r != self._writer]

    def _standby_settings(self, server: _Server) -> dict[str, str | None]:
        writer = self._servers[self._writer]
        conninfo = (f"host={HOST} port={writer.port} user={ADMIN_USER} password={self._admin_password} "
                    f"application_name={server.region}")
        return {"primary_conninfo": "" if server.region in self._paused else conninfo,
                "primary_slot_name": server.slot, "recovery_min_apply_delay": self._delay_value(),
                "default_transaction_read_only": None}

    def _delay_value(self) -> str:
        return f"{int(round(self._delay_s * 1000))}ms"

    def _promote(self, server: _Server) -> None:
        ((done,),) = self._sql(server.region, "SELECT pg_promote(true, 60)")
        if not done:
            raise RegistryDatabaseError(f"{server.region} did not finish its promotion within 60s")
        self._writer = server.region
        self._alter(server.region, {"primary_conninfo": None, "primary_slot_name": None})
        # pg_rewind reads the new timeline from the control file, which the checkpoint writes
        self._sql(server.region, "CHECKPOINT")
        existing = {row[0] for row in self._sql(server.region, "SELECT slot_name FROM pg_replication_slots")}
        for other in self._standbys():
            if other.slot not in existing:
                self._sql(server.region, "SELECT pg_create_physical_replication_slot(%s, true)", (other.slot,))

    def _repoint(self, servers: Iterable[_Server]) -> None:
        """Each server made a standby of the writer, on the writer's timeline."""
        self._parallel(self._attach, list(servers))

    def _attach(self, server: _Server) -> None:
        """Stopped cleanly, rewound onto the writer's history (a no-op when it is on it), started
        as the writer's standby."""
        if server.running:
            self._pg_ctl_stop(server, "fast")
        elif (server.data_dir / "standby.signal").exists():
            # stopped at once (a region fault): finish its crash recovery as the standby it was, since
            # pg_rewind's own single-user recovery cannot run a standby
            self._write_conf(server, {**self._standby_settings(server), "primary_conninfo": ""})
            self._pg_start(server)
            self._pg_ctl_stop(server, "fast")
        self._rewind(server)
        self._start_standby(server)
        if server.region not in self._paused:
            self._wait_receiving(server, timeout_s=30)

    def _rewind(self, server: _Server) -> None:
        writer = self._servers[self._writer]
        rewind = self._run([self._tool("pg_rewind"), "--no-sync", "-D", str(server.data_dir), "--source-server",
                            f"host={HOST} port={writer.port} user={ADMIN_USER} dbname=postgres"],
                           check=False, password=True)
        if rewind.returncode != 0:
            self.log(f"pg_rewind of {server.region} failed ({_last_line(rewind)}); cloning it again")
            self._reclone(server)

    def _start_standby(self, server: _Server) -> None:
        (server.data_dir / "standby.signal").touch()
        self._chown(server.data_dir / "standby.signal")
        self._write_conf(server, self._standby_settings(server))
        self._pg_start(server)
        server.stopped_why = ""
        # slots it kept from its days as a writer would hold WAL forever on a standby
        for (slot,) in self._sql(server.region, "SELECT slot_name FROM pg_replication_slots WHERE NOT active"):
            self._sql(server.region, "SELECT pg_drop_replication_slot(%s)", (slot,))
        if server.region in self._paused:
            self._sql(server.region, "SELECT pg_wal_replay_pause()")

    def _wait_receiving(self, server: _Server, timeout_s: float) -> None:
        """Until the standby streams the writer's timeline up to its current WAL position
        (received, not replayed: a replay delay holds replay back)."""
        ((lsn, timeline),) = self._sql(self._writer, "SELECT pg_current_wal_lsn(), timeline_id "
                                                     "FROM pg_control_checkpoint()")
        deadline = time.monotonic() + timeout_s
        while True:
            rows = self._sql(server.region, "SELECT received_tli, flushed_lsn >= %s::pg_lsn FROM pg_stat_wal_receiver "
                                            "WHERE status = 'streaming'", (lsn,))
            if rows and rows[0] == (timeline, True):
                return
            if time.monotonic() > deadline:
                raise RegistryDatabaseError(f"{server.region} does not stream timeline {timeline} from the writer "
                                            f"{self._writer} up to {lsn} within {timeout_s:g}s")
            time.sleep(0.02)

    def _reclone(self, server: _Server) -> None:
        writer = self._servers[self._writer]
        shutil.rmtree(server.data_dir, ignore_errors=True)
        self._run([self._tool("pg_basebackup"), "-D", str(server.data_dir), "-X", "stream", "-c", "fast",
                   "--no-sync", "-d", f"host={HOST} port={writer.port} user={ADMIN_USER}"], password=True)

    def _wait_replayed(self, server: _Server, lsn: str, timeout_s: float, *, why: str) -> None:
        deadline = time.monotonic() + timeout_s
        while True:
            ((reached, replayed),) = self._sql(
                server.region, "SELECT pg_last_wal_replay_lsn() >= %s::pg_lsn, pg_last_wal_replay_lsn()::text", (lsn,))
            if reached:
                return
            if time.monotonic() > deadline:
                raise RegistryDatabaseError(f"{why}: {server.region} replayed up to {replayed}, not the writer's "
                                            f"{lsn}, within {timeout_s:g}s")
            time.sleep(0.01)

    def _create_registry(self) -> None:
        from psycopg import sql

        role, database = sql.Identifier(REGISTRY_USER), sql.Identifier(self.database)
        self._sql(self._writer, sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(
            role, sql.Literal(self._password)).as_string())
        # FILE_COPY: a checkpoint and a few WAL records instead of the whole template in the WAL
        self._sql(self._writer, sql.SQL("CREATE DATABASE {} OWNER {} STRATEGY FILE_COPY").format(
            database, role).as_string())

    def _heartbeat_loop(self) -> None:
        import psycopg

        connection, port = None, None
        while not self._stop.wait(self.heartbeat_s):
            writer = self._servers.get(self._writer)
            if writer is None or not writer.running:
                continue
            try:
                if connection is None or port != writer.port or connection.closed:
                    if connection is not None:
                        connection.close()
                    connection, port = self._connect(writer.port), writer.port
                connection.execute("SELECT pg_current_xact_id()")  # a commit record with no data
            except psycopg.Error:
                if connection is not None:
                    connection.close()
                connection = None
        if connection is not None:
            connection.close()

    # -- internals: processes and SQL ----------------------------------------------------------
    def _tool(self, name: str) -> str:
        assert self._bindir is not None
        return str(self._bindir / name)

    def _check_version(self) -> None:
        out = self._run([self._tool("postgres"), "--version"], as_user=False)
        match = re.search(r"(\d+)(?:\.\d+)?", out.stdout)
        if not match or int(match.group(1)) < MIN_SERVER_VERSION:
            raise RegistryDatabaseError(f"{self._tool('postgres')} is {out.stdout.strip()!r}; the sandbox's registry "
                                        f"needs PostgreSQL {MIN_SERVER_VERSION} or newer")

    def _unprivileged_user(self) -> tuple[int, int] | None:
        if os.geteuid() != 0:
            return None
        try:
            account = pwd.getpwnam("postgres")
        except KeyError:
            raise RegistryDatabaseError("PostgreSQL refuses to run as root and there is no `postgres` account "
                                        "to run the sandbox's registry servers as; run as another user") from None
        return account.pw_uid, account.pw_gid

    def _make_root(self) -> Path:
        self._work_dir.mkdir(parents=True, exist_ok=True)
        if self._as_user is not None and not _reachable(self._work_dir, *self._as_user):
            self._own_root = True
            root = Path(tempfile.mkdtemp(prefix="mlfleet-registry-"))
        else:
            root = self._work_dir / "registry"
            root.mkdir(mode=0o700)
        self._chown(root)
        return root

    def _chown(self, path: Path) -> None:
        if self._as_user is not None:
            os.chown(path, *self._as_user)

    def _run(self, argv: list[str], *, check: bool = True, password: bool = False,
             as_user: bool = True) -> subprocess.CompletedProcess:
        env = {**os.environ, "PGCONNECT_TIMEOUT": "5", "LC_ALL": "C.UTF-8"}
        if password:
            env["PGPASSWORD"] = self._admin_password
        user = self._as_user if as_user else None
        drop: tuple[int, int] | None = None
        if user is not None:
            # setpriv drops to the account after exec. Asking subprocess to (user=, group=) makes it
            # fork() instead of vfork(), and gRPC's fork handlers in the child of a process with gRPC
            # threads (the Google clients) crash about one child in five before it execs.
            setpriv = shutil.which("setpriv")
            if setpriv:
                argv = [setpriv, f"--reuid={user[0]}", f"--regid={user[1]}", "--clear-groups", *argv]
            else:
                drop = user
        result = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=120,
                                cwd=str(self._root or self._work_dir) if as_user and self._root else None,
                                user=drop[0] if drop else None, group=drop[1] if drop else None,
                                extra_groups=[] if drop else None)
        if check and result.returncode != 0:
            raise RegistryDatabaseError(f"{Path(argv[0]).name} failed ({result.returncode}): {_last_line(result)}")
        return result

    def _initdb(self, server: _Server, sockets: Path) -> None:
        assert self._root is not None
        password_file = self._root / ".initdb-password"
        fd = os.open(password_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(self._admin_password)
        self._chown(password_file)
        try:
            self._run([self._tool("initdb"), "-D", str(server.data_dir), "-U", ADMIN_USER, f"--pwfile={password_file}",
                       "--auth=scram-sha-256", "-E", "UTF8", "--locale=C.UTF-8", "--no-sync", "--wal-segsize=1"])
        finally:
            password_file.unlink(missing_ok=True)
        with open(server.data_dir / "postgresql.conf", "a") as conf:
            conf.write(_SERVER_CONF.format(host=HOST, sockets=str(sockets)))

    def _pg_start(self, server: _Server, *, bind_attempts: int = 5) -> None:
        log = server.data_dir.parent / f"{server.region}.log"
        for attempt in range(1, bind_attempts + 1):
            seen = log.stat().st_size if log.exists() else 0
            result = self._run([self._tool("pg_ctl"), "start", "-D", str(server.data_dir), "-w", "-t", "60",
                                "-l", str(log), "-o", f"-p {server.port}"], check=False)
            if result.returncode == 0:
                server.running = True
                return
            lines = (log.read_bytes()[seen:] if log.exists() else b"").decode(errors="replace").splitlines()
            # the fatal line says what failed; a bind failure's cause is on the line before it
            reasons = [re.sub(r"^(LOG|FATAL|PANIC):\s*", "", line.split("] ", 1)[-1].strip()) for line in lines
                       if "FATAL" in line or "PANIC" in line or "could not bind" in line]
            detail = "; ".join(reasons[-2:]) if reasons else _last_line(result)
            if "TCP/IP sockets" not in detail or attempt == bind_attempts:
                raise RegistryDatabaseError(f"the {server.region} registry server did not start on port "
                                            f"{server.port}: {detail}")
            # the port is ours (free_port); whatever held it a moment ago is on its way out
            self.log(f"{server.region}: port {server.port} not free yet ({detail}); starting again")
            time.sleep(attempt * 0.5)

    def _pg_ctl_stop(self, server: _Server, mode: str) -> None:
        """Stopped, whatever it takes: a stop that does not finish in time is made immediate, then
        the postmaster is killed. One left running would hold its port and data directory against
        the rewind, clone or start that follows (a clone replaces the directory, pid file and all)."""
        result = self._run([self._tool("pg_ctl"), "stop", "-D", str(server.data_dir), "-m", mode, "-w",
                            "-t", str(self.stop_timeout_s)], check=False)
        if result.returncode != 0 and self._postmaster_pid(server) is not None:
            self.log(f"{server.region}: pg_ctl stop -m {mode} did not finish ({_last_line(result)}); "
                     "stopping it at once")
            if mode != "immediate":
                self._run([self._tool("pg_ctl"), "stop", "-D", str(server.data_dir), "-m", "immediate", "-w",
                           "-t", str(self.stop_timeout_s)], check=False)
            pid = self._postmaster_pid(server)
            if pid is not None:
                # its backends first (they hold its shared memory), then itself; its lock files go
                # too, since a killed process that nobody reaps still answers to its pid
                _kill_and_wait([*_children(pid), pid])
                sockets = server.data_dir.parent / "sockets"
                for lock in (server.data_dir / "postmaster.pid", sockets / f".s.PGSQL.{server.port}",
                             sockets / f".s.PGSQL.{server.port}.lock"):
                    lock.unlink(missing_ok=True)
        server.running = False

    def _pg_stop_hard(self, server: _Server) -> None:
        if self._postmaster_pid(server) is not None:
            self._pg_ctl_stop(server, "fast")
        server.running = False

    @staticmethod
    def _postmaster_pid(server: _Server) -> int | None:
        """The pid of the server's postmaster while it is alive, else None."""
        try:
            pid = int((server.data_dir / "postmaster.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None
        return pid if _alive(pid) else None

    def _connect(self, port: int, dbname: str = "postgres"):
        import psycopg

        return psycopg.connect(host=HOST, port=port, user=ADMIN_USER, password=self._admin_password, dbname=dbname,
                               connect_timeout=5, autocommit=True)

    def _sql(self, region: str, query: str, params: tuple | None = None) -> list[tuple]:
        import psycopg

        try:
            with self._connect(self._server(region).port) as connection:
                cursor = connection.execute(query, params)  # our own SQL: no user input reaches it
                return cursor.fetchall() if cursor.description else []
        except psycopg.Error as exc:
            raise RegistryDatabaseError(f"registry server of {region}: {_first_line(exc)}") from None

    def _measure(self, region: str, query: str, params: tuple | None = None) -> list[tuple]:
        """As `_sql`, on a connection kept per server: the lag is read several times a second."""
        import psycopg

        port = self._server(region).port
        with self._probe_lock:
            for fresh in (False, True):  # a kept connection may be to a server restarted since
                connection = self._probes.get(port)
                try:
                    if connection is None:
                        connection = self._probes[port] = self._connect(port)
                    return connection.execute(query, params).fetchall()
                except psycopg.OperationalError as exc:
                    self._probes.pop(port, None)
                    if connection is not None:
                        connection.close()
                    if fresh:
                        raise RegistryDatabaseError(f"registry server of {region}: {_first_line(exc)}") from None
                except psycopg.Error as exc:  # the query failed, the connection is fine
                    raise RegistryDatabaseError(f"registry server of {region}: {_first_line(exc)}") from None
        raise RegistryDatabaseError(f"registry server of {region}: no connection")

    def _close_probes(self) -> None:
        with self._probe_lock:
            for connection in self._probes.values():
                connection.close()
            self._probes.clear()

    def _alter(self, region: str, settings: dict[str, str | None]) -> None:
        """ALTER SYSTEM + reload on a running server (None: RESET)."""
        from psycopg import sql

        for name, value in settings.items():
            if value is None:
                statement = sql.SQL("ALTER SYSTEM RESET {}").format(sql.Identifier(name))
            else:
                statement = sql.SQL("ALTER SYSTEM SET {} = {}").format(sql.Identifier(name), sql.Literal(value))
            self._sql(region, statement.as_string())
        self._sql(region, "SELECT pg_reload_conf()")

    def _write_conf(self, server: _Server, settings: dict[str, str | None]) -> None:
        """The same settings into postgresql.auto.conf of a stopped server (None: removed)."""
        path = server.data_dir / "postgresql.auto.conf"
        lines = path.read_text().splitlines() if path.exists() else ["# Do not edit this file manually!"]
        kept = [line for line in lines if line.split("=", 1)[0].strip() not in settings]
        kept += [f"{name} = {_quote(value)}" for name, value in settings.items() if value is not None]
        path.write_text("\n".join(kept) + "\n")
        self._chown(path)

    @staticmethod
    def _parallel(work: Callable[[_Server], object], servers: Iterable[_Server]) -> None:
        servers = list(servers)
        if len(servers) <= 1:
            for server in servers:
                work(server)
            return
        with ThreadPoolExecutor(max_workers=len(servers)) as pool:
            for future in [pool.submit(work, s) for s in servers]:
                future.result()


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


_GRPC_LOG_LINE = re.compile(r"^[IWEF]\d{4} \d\d:\d\d:\d\d\.\d+ +\d+ \S+:\d+\] ")
"""A line gRPC's core logs (glog format) from a forked child: noise, never the tool's own answer."""


def _last_line(result: subprocess.CompletedProcess) -> str:
    text = [line for line in (result.stderr or result.stdout or "").strip().splitlines()
            if not _GRPC_LOG_LINE.match(line)]
    if text:
        return text[-1]
    if result.returncode < 0:
        return f"killed by signal {-result.returncode}"
    return f"exit status {result.returncode}"


def _reachable(path: Path, uid: int, gid: int) -> bool:
    """Whether that account can traverse every directory down to `path`."""
    for directory in [path.resolve(), *path.resolve().parents]:
        info = directory.stat()
        bit = 0o100 if info.st_uid == uid else 0o010 if info.st_gid == gid else 0o001
        if not info.st_mode & bit:
            return False
    return True


def _alive(pid: int) -> bool:
    """Whether the process runs (a zombie, dead but not yet reaped, does not)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True
    return state != "Z"


def _children(pid: int) -> list[int]:
    children = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == pid:
                children.append(int(stat.parent.name))
        except (OSError, ValueError, IndexError):
            continue
    return children


def _kill_and_wait(pids: list[int], timeout_s: float = 10.0) -> None:
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + timeout_s
    while any(_alive(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
