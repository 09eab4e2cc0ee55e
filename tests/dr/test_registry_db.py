"""The sandbox's registry databases: real PostgreSQL servers, one per region, the writer's
standbys streaming from it; switchover, failover, rejoin, measured replay lag, and what RDS and
the runbooks see of them."""
from __future__ import annotations

import os
import time
import uuid
from pathlib import Path

import psycopg
import pytest

from mlfleet.dr import aws
from mlfleet.dr.engine import RunContext
from mlfleet.dr.sandbox import registry_db
from mlfleet.dr.sandbox.faults import Fault
from mlfleet.dr.sandbox.registry_db import RegistryDatabaseError, RegistryDatabases, _alive

from helpers.polling import eventually

EAST, WEST, EUROPE = "us-east-1", "us-west-2", "eu-west-1"


@pytest.fixture(scope="module")
def shared_registry(tmp_path_factory):
    with RegistryDatabases([EAST, WEST, EUROPE], tmp_path_factory.mktemp("registry")) as databases:
        yield databases


@pytest.fixture
def registry(shared_registry):
    shared_registry.reset()
    return shared_registry


@pytest.fixture
def table(registry) -> str:
    name = f"events_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(registry.dsn(registry.writer()), autocommit=True) as connection:
        connection.execute(f"CREATE TABLE {name} (id int)")
    return name


def write(registry, region: str, table: str, ids) -> None:
    with psycopg.connect(registry.dsn(region), autocommit=True) as connection:
        for i in ids:
            connection.execute(f"INSERT INTO {table} VALUES (%s)", (i,))


def count(registry, region: str, table: str) -> int:
    with psycopg.connect(registry.dsn(region), autocommit=True) as connection:
        return connection.execute(f"SELECT count(*) FROM {table}").fetchone()[0]


def in_recovery(registry, region: str) -> bool:
    with psycopg.connect(registry.dsn(region), autocommit=True) as connection:
        return connection.execute("SELECT pg_is_in_recovery()").fetchone()[0]


@pytest.mark.sandbox
def test_rows_written_on_the_writer_reach_every_standby_which_refuse_writes(registry, table):
    write(registry, EAST, table, range(5))
    for standby in (WEST, EUROPE):
        assert eventually(lambda s=standby: count(registry, s, table) == 5), standby
        with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
            write(registry, standby, table, [99])
    assert not in_recovery(registry, EAST) and registry.writer() == EAST


@pytest.mark.sandbox
def test_planned_switchover_loses_nothing_and_the_old_writer_follows_the_new_one(registry, table):
    write(registry, EAST, table, range(40))  # and switch over at once: nothing waits for replication
    registry.switchover(WEST)
    assert registry.writer() == WEST and not in_recovery(registry, WEST)
    assert count(registry, WEST, table) == 40
    assert in_recovery(registry, EAST), "the old writer is a standby now"
    write(registry, WEST, table, range(40, 45))
    for standby in (EAST, EUROPE):
        assert eventually(lambda s=standby: count(registry, s, table) == 45), standby


@pytest.mark.sandbox
def test_unplanned_failover_with_replay_paused_loses_exactly_the_writes_after_the_pause(registry, table):
    write(registry, EAST, table, range(10))
    registry.pause_replay(WEST)
    write(registry, EAST, table, range(10, 17))  # 7 rows the paused standby never receives
    assert eventually(lambda: (registry.replay_lag_s(WEST) or 0) > 0.2)
    lag_at_failover = registry.replay_lag_s(WEST)
    registry.failover(WEST)
    assert lag_at_failover is not None and lag_at_failover > 0
    assert registry.writer() == WEST and count(registry, WEST, table) == 10, "the 7 rows after the pause are lost"
    assert count(registry, EUROPE, table) == 10, "the other standby, which had all 17, was rewound onto the new writer"
    assert not registry.is_running(EAST), "the old writer stays out until it rejoins"
    registry.rejoin(EAST)
    assert in_recovery(registry, EAST) and count(registry, EAST, table) == 10
    write(registry, WEST, table, [100])
    assert eventually(lambda: count(registry, EAST, table) == 11)


@pytest.mark.sandbox
def test_lag_reads_zero_when_caught_up_grows_while_paused_and_returns_after_resume(registry, table):
    assert registry.replay_lag_s(EAST) is None, "the writer has no lag"
    readings = []
    for _ in range(10):
        readings.append(registry.replay_lag_s(WEST))
        time.sleep(0.03)
    assert None not in readings and min(readings) == 0.0 and max(readings) < 0.1, readings
    registry.pause_replay(WEST)
    time.sleep(0.4)
    first = registry.replay_lag_s(WEST)
    time.sleep(0.6)
    second = registry.replay_lag_s(WEST)
    assert first is not None and second is not None and 0 < first < second
    assert second - first == pytest.approx(0.6, abs=0.3), "it grows with the writer's clock"
    registry.resume_replay(WEST)
    assert eventually(lambda: registry.replay_lag_s(WEST) == 0.0, timeout_s=5)


@pytest.mark.sandbox
def test_a_replay_delay_holds_replay_back_and_shows_as_lag(registry, table):
    registry.set_replay_delay(0.8)
    time.sleep(1.2)
    lag = registry.replay_lag_s(WEST)
    assert lag is not None and 0.7 <= lag <= 1.4, lag
    written = time.monotonic()
    write(registry, EAST, table, [1])
    assert eventually(lambda: count(registry, WEST, table) == 1, timeout_s=5)
    assert time.monotonic() - written >= 0.7


@pytest.mark.sandbox
def test_a_switchover_that_cannot_catch_up_times_out_clearly_and_unfences_the_writer(registry, table):
    registry.pause_replay(EUROPE)
    with pytest.raises(RegistryDatabaseError, match="its replay is paused; resume it first"):
        registry.switchover(EUROPE)
    registry.set_replay_delay(3)
    write(registry, EAST, table, [1])
    with pytest.raises(RegistryDatabaseError, match=f"switchover to {WEST}: {WEST} replayed up to .* within 0.5s"):
        registry.switchover(WEST, timeout_s=0.5)
    assert registry.writer() == EAST
    write(registry, EAST, table, [2])  # writable again


@pytest.mark.sandbox
def test_a_region_taken_down_is_unreachable_and_comes_back_as_a_standby(registry, table):
    registry.take_down(EUROPE)
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(registry.dsn(EUROPE), connect_timeout=2).close()
    write(registry, EAST, table, range(3))
    registry.switchover(WEST)  # while it was down
    registry.bring_up(EUROPE)
    assert in_recovery(registry, EUROPE)
    write(registry, WEST, table, [3])
    assert eventually(lambda: count(registry, EUROPE, table) == 4)


def _postmaster_pids(root: Path) -> list[int]:
    return [int(p.read_text().split()[0]) for p in root.glob("*/postmaster.pid")]


@pytest.mark.sandbox
def test_stop_leaves_no_server_running_even_after_a_start_that_failed_half_way(monkeypatch, tmp_path):
    databases = RegistryDatabases([EAST, WEST], tmp_path / "first")
    databases.start()
    pids = _postmaster_pids(databases._root)
    assert len(pids) == 2 and all(_alive(p) for p in pids)
    databases.stop()
    assert not any(_alive(p) for p in pids)

    seen: list[int] = []

    def fail(self) -> None:
        seen.extend(_postmaster_pids(self._root))
        raise RegistryDatabaseError("refused on purpose")

    monkeypatch.setattr(RegistryDatabases, "_create_registry", fail)
    broken = RegistryDatabases([EAST, WEST], tmp_path / "second")
    with pytest.raises(RegistryDatabaseError, match="refused on purpose"):
        broken.start()
    assert len(seen) == 2 and not any(_alive(p) for p in seen)


@pytest.mark.sandbox
def test_a_server_that_does_not_stop_in_time_is_stopped_at_once_and_frees_its_port(registry, table, monkeypatch):
    # a postmaster left running after a timed-out stop had held its port against the restart that
    # followed a switchover ("could not create any TCP/IP sockets")
    import signal
    import socket

    old = registry.writer()
    server = registry._server(old)
    pid = int((server.data_dir / "postmaster.pid").read_text().split()[0])
    monkeypatch.setattr(registry, "stop_timeout_s", 1)
    os.kill(pid, signal.SIGSTOP)  # deaf to every stop pg_ctl can ask for
    try:
        registry._pg_ctl_stop(server, "fast")
    finally:
        if _alive(pid):
            os.kill(pid, signal.SIGCONT)
    assert not _alive(pid)
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as PostgreSQL binds
        sock.bind(("127.0.0.1", server.port))
    registry.bring_up(old)  # starts again on its port, as the writer it still is
    write(registry, old, table, [1])
    assert count(registry, old, table) == 1


@pytest.mark.sandbox
def test_a_port_held_a_moment_longer_is_waited_for_and_one_held_on_is_named(registry, table, monkeypatch):
    import socket
    import threading

    writer = registry.writer()
    server = registry._server(writer)
    said: list[str] = []
    monkeypatch.setattr(registry, "log", said.append)
    registry.take_down(writer)
    holder = socket.socket()
    holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    holder.bind(("127.0.0.1", server.port))
    holder.listen()
    try:
        with pytest.raises(RegistryDatabaseError, match=f"did not start on port {server.port}: could not bind"):
            registry._pg_start(server, bind_attempts=1)
        threading.Timer(0.3, holder.close).start()
        registry.bring_up(writer)
    finally:
        holder.close()
    assert any(f"port {server.port} not free yet" in line for line in said)
    write(registry, writer, table, [1])
    assert count(registry, writer, table) == 1


def test_without_postgresql_server_binaries_start_says_so(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(registry_db, "_DEBIAN_ROOT", tmp_path / "none")
    with pytest.raises(RegistryDatabaseError, match="no PostgreSQL server binaries .* found"):
        RegistryDatabases([EAST], tmp_path).start()


# -- through the sandbox: RDS, the control API, faults and the runbooks' probe ------------------
def _ctx(target) -> RunContext:
    return RunContext(retry=target.retry, poll_interval_s=target.poll_interval_s)


def _moto_writer(target) -> str | None:
    return aws.writer_region(aws.describe_global_cluster(target, _ctx(target), "us-west-2"))


@pytest.mark.sandbox
def test_rds_endpoints_writer_lag_and_the_writable_probe_follow_the_real_servers(sandbox, target):
    primary, standby = sandbox.env.primary.name, sandbox.env.standbys[0].name
    for region in (primary, standby):
        cluster = target.client("rds", region).describe_db_clusters(
            DBClusterIdentifier=f"mlfleet-{sandbox.env.name}-registry-{region}")["DBClusters"][0]
        assert (cluster["Endpoint"], cluster["ReaderEndpoint"], cluster["Port"]) == \
            ("127.0.0.1", "127.0.0.1", sandbox.registry.port(region))
    assert aws.registry_writable(target, _ctx(target), primary)[0] is True
    writable, why = aws.registry_writable(target, _ctx(target), standby)
    assert writable is False and "read-only" in why
    assert eventually(lambda: aws.replication_lag_s(target, _ctx(target), standby) is not None)

    target.control.pause_replay(standby)
    assert eventually(lambda: (target.control.registry()["regions"][standby]["lag_s"] or 0) > 0.2)
    target.control.resume_replay(standby)
    assert target.control.registry()["regions"][standby]["paused"] is False

    gc_id = f"mlfleet-{sandbox.env.name}-registry"
    arn = target.client("rds", standby).describe_db_clusters(
        DBClusterIdentifier=f"mlfleet-{sandbox.env.name}-registry-{standby}")["DBClusters"][0]["DBClusterArn"]
    target.client("rds", standby).switchover_global_cluster(GlobalClusterIdentifier=gc_id,
                                                            TargetDbClusterIdentifier=arn)
    assert eventually(lambda: _moto_writer(target) == standby)
    assert sandbox.registry.writer() == standby, "RDS shows the new writer once the real promotion is done"
    assert aws.registry_writable(target, _ctx(target), standby)[0] is True
    assert aws.registry_writable(target, _ctx(target), primary)[0] is False


@pytest.mark.sandbox
def test_a_region_fault_takes_its_database_down_until_cleared(sandbox, target):
    standby = sandbox.env.standbys[0].name
    sandbox.faults.add(Fault(region=standby))
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(target.registry_dsns[standby], connect_timeout=2).close()
    assert target.control.registry()["regions"][standby]["stopped"] == "down"
    sandbox.faults.clear(standby)
    with psycopg.connect(target.registry_dsns[standby], connect_timeout=2) as connection:
        assert connection.execute("SELECT pg_is_in_recovery()").fetchone()[0] is True


@pytest.mark.sandbox
@pytest.mark.skipif(os.geteuid() != 0, reason="only a root process runs the servers under an account of their own")
def test_commands_under_the_server_account_survive_grpc_threads(tmp_path):
    # a child forked (not vforked) to drop privileges ran gRPC's fork handlers while the Google
    # clients' threads were busy and crashed before exec: a switchover's restart then failed
    import threading
    from concurrent import futures

    import grpc

    server = grpc.server(futures.ThreadPoolExecutor(4))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    done = threading.Event()

    call = channel.unary_unary("/mlfleet.Test/Nothing")

    def busy() -> None:
        while not done.is_set():
            try:
                call(b"", timeout=0.1)
            except grpc.RpcError:
                pass  # UNIMPLEMENTED: the point is the traffic

    threads = [threading.Thread(target=busy) for _ in range(4)]
    for thread in threads:
        thread.start()
    registry = RegistryDatabases(["us-east-1"], tmp_path)
    registry._as_user = registry._unprivileged_user()
    try:
        results = [registry._run(["/bin/true"], check=False) for _ in range(100)]
    finally:
        done.set()
        for thread in threads:
            thread.join()
        channel.close()
        server.stop(0)
    assert [r.returncode for r in results] == [0] * 100
