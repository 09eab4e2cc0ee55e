"""The sandbox's model registry: MLflow servers on the replicated registry PostgreSQL, and the
drill's registry writer and RPO. Real servers (PostgreSQL, `mlflow server`), the real client."""
from __future__ import annotations

import socket
import tempfile
import time
from pathlib import Path

import pytest
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from mlfleet.dr.errors import DrUsageError
from mlfleet.dr.registry_writes import RegistryWriter, present, registry_rpo
from mlfleet.dr.sandbox import mlflow_server
from mlfleet.dr.sandbox.mlflow_server import MlflowServer, start_registry_servers
from mlfleet.dr.sandbox.registry_db import RegistryDatabases
from mlfleet.stacks.environment import load_environment, naming

from helpers.polling import eventually

SANDBOX_AWS = {"AWS_ENDPOINT_URL": "http://127.0.0.1:9", "AWS_ACCESS_KEY_ID": "testing",
               "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}


@pytest.fixture(scope="module")
def env():
    return load_environment("staging")


@pytest.fixture(scope="module")
def regions(env) -> tuple[str, str]:
    return env.primary.name, env.standbys[0].name


@pytest.fixture(scope="module")
def databases(regions):
    with RegistryDatabases(list(regions), Path(tempfile.mkdtemp(prefix="mlflow-registry-test-"))) as started:
        yield started


@pytest.fixture(scope="module")
def servers(env, databases, tmp_path_factory):
    account = env.aws.account_id
    started = start_registry_servers(env, databases, lambda region: naming.artifact_bucket(env.name, account, region),
                                     SANDBOX_AWS, tmp_path_factory.mktemp("mlflow-logs"))
    yield started
    started.stop()
    assert not any(server.running() for server in started.values()), "no MLflow process outlives stop()"


def client(server: MlflowServer) -> MlflowClient:
    return MlflowClient(tracking_uri=server.url)


def refusal(server: MlflowServer) -> str:
    """What a write to the server answers ("" when it is accepted)."""
    try:
        client(server).create_registered_model(f"probe-{time.time_ns()}")
    except MlflowException as error:
        return str(error)
    return ""


def write_for(writer: RegistryWriter, at_least: int, timeout_s: float = 20.0) -> None:
    writer.start()
    assert eventually(lambda: len(writer.writes) >= at_least, timeout_s), (writer.last_error, len(writer.writes))
    writer.stop()
    assert not writer.is_alive()


@pytest.mark.sandbox
def test_every_region_runs_mlflow_on_its_database_and_the_standby_serves_what_the_writer_wrote(
        servers, databases, regions, env):
    writer, standby = regions
    assert set(servers) == set(regions) and not servers[writer].read_only and servers[standby].read_only
    model = f"served-{time.time_ns()}"
    client(servers[writer]).create_registered_model(model)
    version = client(servers[writer]).create_model_version(model, source="s3://b/m/1/", await_creation_for=0)
    experiment = client(servers[writer]).get_experiment("0")
    prefix = naming.mlflow_artifact_prefix(env.artifact_store.models_prefix)
    assert experiment.artifact_location.startswith("s3://") and prefix in experiment.artifact_location
    assert eventually(lambda: [v.version for v in client(servers[standby]).search_model_versions(
        f"name = '{model}'")] == [version.version]), "the standby's MLflow reads the replicated registry"


@pytest.mark.sandbox
def test_a_write_to_the_standbys_read_only_mlflow_is_refused_at_once_with_400(servers, regions):
    started = time.monotonic()
    with pytest.raises(MlflowException) as refused:
        client(servers[regions[1]]).create_registered_model(f"refused-{time.time_ns()}")
    assert refused.value.get_http_status_code() == 400 and refused.value.error_code == "BAD_REQUEST"
    assert "read-only transaction" in str(refused.value)
    assert time.monotonic() - started < 5, "a 400 is not retried"


@pytest.mark.sandbox
def test_the_writer_records_acknowledged_writes_and_all_of_them_are_present(servers, regions):
    writer_url = servers[regions[0]].url
    writer = RegistryWriter(writer_url)
    write_for(writer, at_least=30)
    kinds = {write.kind for write, _ in writer.writes}
    assert kinds == {"version", "tag", "alias"}
    result = registry_rpo(writer.writes, time.time(), writer_url, writer.model)
    assert result.written == len(writer.writes) >= 30 and result.missing == () and result.rpo_s == 0
    assert result.present == result.written
    # the standby's MLflow shows them too once replayed
    standby_url = servers[regions[1]].url
    assert eventually(lambda: not registry_rpo(writer.writes, time.time(), standby_url, writer.model).missing)


@pytest.mark.sandbox
def test_writes_the_reader_does_not_see_count_as_missing_and_set_the_rpo(servers, databases, regions):
    writer_region, standby = regions
    writer = RegistryWriter(servers[writer_region].url)
    write_for(writer, at_least=9)
    before_pause = len(writer.writes)
    databases.pause_replay(standby)
    try:
        paused_at = time.time()
        more = RegistryWriter(servers[writer_region].url, model=writer.model)
        write_for(more, at_least=9)
        fault_at = time.time()
        writes = writer.writes + more.writes
        result = registry_rpo(writes, fault_at, servers[standby].url, writer.model)
    finally:
        databases.resume_replay(standby)
    assert result.written == len(writes) and result.present == before_pause
    assert set(result.missing) == {write for write, _ in more.writes}
    assert paused_at < fault_at - result.rpo_s < fault_at, "RPO reaches back to the first lost write"
    first_version = next(write for write, _ in writer.writes if write.kind == "version")
    assert first_version in present(servers[standby].url, writer.model)


@pytest.mark.sandbox
def test_after_a_switchover_the_new_writers_mlflow_writes_without_a_restart(servers, databases, regions):
    old, new = regions
    pid = servers[new].process.pid
    databases.switchover(new)
    try:
        servers.on_new_writer(new)
        assert servers[new].process.pid == pid and servers[new].read_only is False and servers[old].read_only
        writer = RegistryWriter(servers[new].url)
        write_for(writer, at_least=6)
        assert not registry_rpo(writer.writes, time.time(), servers[new].url, writer.model).missing
        assert eventually(lambda: "read-only transaction" in refusal(servers[old])), "the old writer's MLflow refuses"
    finally:
        databases.switchover(old)
        servers.on_new_writer(old)


@pytest.mark.sandbox
def test_a_write_against_a_region_that_never_answers_is_bounded_and_not_acknowledged():
    with socket.socket() as silent:  # accepts connections (the backlog), never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)
        writer = RegistryWriter(f"http://127.0.0.1:{silent.getsockname()[1]}")
        started = time.monotonic()
        writer.start()
        time.sleep(0.5)
        writer.stop(timeout_s=10)
        assert not writer.is_alive() and time.monotonic() - started < 8
    assert writer.writes == [] and writer.refused >= 1


def test_without_the_mlflow_virtualenv_start_says_make_setup(tmp_path):
    server = MlflowServer("us-east-1", "postgresql://u:p@127.0.0.1:1/registry", "s3://b/models/candidates/mlflow/",
                          {}, tmp_path / "mlflow.log", venv=tmp_path / ".venv-mlflow")
    with pytest.raises(DrUsageError, match=r"make setup"):
        server.start()
    assert server.process is None


def test_the_backend_uri_names_the_driver_mlflows_virtualenv_has():
    assert mlflow_server.sqlalchemy_uri("postgresql://u:p@h:5/registry") == "postgresql+psycopg2://u:p@h:5/registry"
    assert mlflow_server.sqlalchemy_uri("sqlite:///x.db") == "sqlite:///x.db"
    assert mlflow_server.artifact_root("b", "models/") == "s3://b/models/candidates/mlflow/"
