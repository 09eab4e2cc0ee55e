"""The run lock belongs to a live process: the same run id is refused while its holder lives, a
dead holder's lock is taken over only when asked (and the caller learns whom it took it from), the
heartbeat keeps a lock past its lease, and racers get exactly one winner. Both stores: the
sandbox's file and DynamoDB (moto in process; botocore's Stubber for refused credentials)."""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time

import boto3
import pytest
from botocore.stub import Stubber

from mlfleet.dr.errors import DrUsageError, LockAbandoned, LockHeld
from mlfleet.dr.locks import DynamoDbLock, FileLock, holder_alive

HOLD = """
import sys, time
from mlfleet.dr.locks import FileLock
lock = FileLock(sys.argv[1], lease_s=float(sys.argv[2]))
try:
    lock.acquire("run-1")
except Exception as exc:
    print(type(exc).__name__, flush=True)
    sys.exit(getattr(exc, "exit_code", 99))
print("held", flush=True)
time.sleep(float(sys.argv[3]))
lock.release()
"""


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def _write_holder(path, **holder):
    path.write_text(json.dumps({"run_id": "run-1", "holder_id": "h-old", "host": socket.gethostname(),
                                "pid": os.getpid(), "expires_at": time.time() + 30, **holder}))


def test_a_live_holder_refuses_even_its_own_run_id(tmp_path):
    first = FileLock(tmp_path / "lock")
    assert first.acquire("run-1") is None
    try:
        with pytest.raises(LockHeld) as caught:
            FileLock(tmp_path / "lock").acquire("run-1")  # the same command started again
        assert caught.value.exit_code == 3
        assert caught.value.holder["run_id"] == "run-1"
        assert caught.value.holder["holder_id"] == first.holder["holder_id"]
        assert caught.value.holder["pid"] == os.getpid()
    finally:
        first.release()


def test_a_dead_process_on_this_host_leaves_an_abandoned_lock(tmp_path):
    _write_holder(tmp_path / "lock", pid=_dead_pid())
    with pytest.raises(LockAbandoned) as caught:
        FileLock(tmp_path / "lock").acquire("run-1")
    assert caught.value.exit_code == 3 and "--take-over-lock" in str(caught.value)
    assert json.loads((tmp_path / "lock").read_text())["holder_id"] == "h-old", "refusing changed nothing"


def test_an_expired_lease_on_another_host_is_abandoned_not_taken(tmp_path):
    _write_holder(tmp_path / "lock", host="elsewhere", pid=1, expires_at=time.time() - 1)
    with pytest.raises(LockAbandoned):
        FileLock(tmp_path / "lock").acquire("run-2")
    _write_holder(tmp_path / "lock", host="elsewhere", pid=1)  # lease still running: live
    with pytest.raises(LockHeld):
        FileLock(tmp_path / "lock").acquire("run-2")


def test_take_over_returns_the_previous_holder_and_then_holds(tmp_path):
    dead = _dead_pid()
    _write_holder(tmp_path / "lock", pid=dead)
    lock = FileLock(tmp_path / "lock")
    previous = lock.acquire("run-1", take_over=True)
    try:
        assert previous["holder_id"] == "h-old" and previous["pid"] == dead
        assert lock.holder["holder_id"] != "h-old"
        with pytest.raises(LockHeld):
            FileLock(tmp_path / "lock").acquire("run-1", take_over=True)  # a live holder is never taken over
    finally:
        lock.release()


def test_a_run_that_died_in_this_process_is_abandoned(tmp_path):
    crashed = FileLock(tmp_path / "lock")
    crashed.acquire("run-1")
    crashed.abandon()  # stops renewing without releasing, as a crash would
    assert not holder_alive(json.loads((tmp_path / "lock").read_text()))
    with pytest.raises(LockAbandoned):
        FileLock(tmp_path / "lock").acquire("run-1")


def test_the_heartbeat_keeps_the_lock_past_its_lease(tmp_path):
    lock = FileLock(tmp_path / "lock", lease_s=0.3)
    lock.acquire("run-1")
    first_expiry = json.loads((tmp_path / "lock").read_text())["expires_at"]
    time.sleep(0.8)
    try:
        renewed = json.loads((tmp_path / "lock").read_text())
        assert renewed["expires_at"] > first_expiry and renewed["expires_at"] > time.time()
        with pytest.raises(LockHeld):
            FileLock(tmp_path / "lock").acquire("run-2")
        assert lock.lost is None
    finally:
        lock.release()


def test_a_released_lock_is_free(tmp_path):
    lock = FileLock(tmp_path / "lock")
    lock.acquire("run-1")
    lock.release()
    assert not (tmp_path / "lock").exists()
    again = FileLock(tmp_path / "lock")
    assert again.acquire("run-1") is None
    again.release()


def test_threads_racing_for_the_lock_have_exactly_one_winner(tmp_path):
    start = threading.Barrier(8)
    won, refused = [], []

    def race():
        lock = FileLock(tmp_path / "lock")
        start.wait()
        try:
            lock.acquire("run-1")
            won.append(lock)
        except LockHeld:
            refused.append(lock)

    threads = [threading.Thread(target=race) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(won) == 1 and len(refused) == 7
    won[0].release()


@pytest.mark.sandbox  # fresh interpreters
def test_processes_race_then_a_killed_holder_is_taken_over_only_explicitly(tmp_path):
    path = str(tmp_path / "lock")
    racers = [subprocess.Popen([sys.executable, "-c", HOLD, path, "30", "30"], stdout=subprocess.PIPE, text=True)
              for _ in range(3)]
    lines = {racer.pid: racer.stdout.readline().strip() for racer in racers}
    try:
        winners = [r for r in racers if lines[r.pid] == "held"]
        assert len(winners) == 1, lines
        assert sorted(lines.values()) == ["LockHeld", "LockHeld", "held"]
        assert all(r.wait(10) == 3 for r in racers if r not in winners)
        holder = winners[0]
        holder.send_signal(signal.SIGKILL)  # a run killed with kill -9: nothing releases its lock
        holder.wait(10)
        late = subprocess.run([sys.executable, "-c", HOLD, path, "30", "0"], capture_output=True, text=True,
                              timeout=30)
        assert (late.returncode, late.stdout.strip()) == (3, "LockAbandoned")
        lock = FileLock(path)
        previous = lock.acquire("run-1", take_over=True)
        assert previous["pid"] == holder.pid
        lock.release()
    finally:
        for racer in racers:
            racer.kill()
            racer.wait()
            racer.stdout.close()


# -- DynamoDB --------------------------------------------------------------------------------
@pytest.fixture
def dynamodb():
    from moto import mock_aws

    with mock_aws():
        client = boto3.client("dynamodb", region_name="us-west-2")
        client.create_table(TableName="locks", BillingMode="PAY_PER_REQUEST",
                            KeySchema=[{"AttributeName": "lock", "KeyType": "HASH"}],
                            AttributeDefinitions=[{"AttributeName": "lock", "AttributeType": "S"}])
        yield client


def _item(client) -> dict:
    return client.get_item(TableName="locks", Key={"lock": {"S": "prod/dr"}}).get("Item", {})


def test_dynamodb_lock_refuses_a_live_holder_and_takes_over_a_dead_one_only_when_asked(dynamodb):
    first = DynamoDbLock(dynamodb, "locks", "prod/dr", lease_s=0.3)
    assert first.acquire("run-1") is None
    time.sleep(0.7)  # beyond the lease: the heartbeat renewed it
    with pytest.raises(LockHeld) as caught:
        DynamoDbLock(dynamodb, "locks", "prod/dr").acquire("run-1")
    assert caught.value.holder["holder_id"] == first.holder["holder_id"]
    assert float(_item(dynamodb)["expires_at"]["N"]) > time.time()

    first_holder = first.holder["holder_id"]
    first.abandon()  # the process died
    with pytest.raises(LockAbandoned):
        DynamoDbLock(dynamodb, "locks", "prod/dr").acquire("run-1")
    second = DynamoDbLock(dynamodb, "locks", "prod/dr")
    previous = second.acquire("run-1", take_over=True)
    assert previous["holder_id"] == first_holder and previous["run_id"] == "run-1"
    assert _item(dynamodb)["holder_id"]["S"] == second.holder["holder_id"]
    first.release()  # no longer the holder: deletes nothing
    assert _item(dynamodb)
    second.release()
    assert not _item(dynamodb)


def test_dynamodb_renewal_stops_once_another_holder_took_over(dynamodb):
    slow = DynamoDbLock(dynamodb, "locks", "prod/dr", lease_s=0.3)
    slow.acquire("run-1")
    dynamodb.update_item(TableName="locks", Key={"lock": {"S": "prod/dr"}},
                         UpdateExpression="SET holder_id = :other", ExpressionAttributeValues={":other": {"S": "x"}})
    time.sleep(0.4)
    assert slow.lost and "took the lock over" in slow.lost
    slow.release()
    assert _item(dynamodb)["holder_id"]["S"] == "x", "release deletes only its own holder's item"


def test_dynamodb_lock_without_credentials_is_a_usage_error(monkeypatch, tmp_path):
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    client = boto3.session.Session().client("dynamodb", region_name="us-west-2")
    with pytest.raises(DrUsageError) as caught:
        DynamoDbLock(client, "mlfleet-prod-dr-locks", "prod/dr").acquire("run-1")
    message = str(caught.value)
    assert caught.value.exit_code == 2 and "\n" not in message
    assert "mlfleet-prod-dr-locks" in message and "us-west-2" in message and "no AWS credentials" in message


@pytest.mark.parametrize("code", ["ExpiredTokenException", "UnrecognizedClientException", "AccessDeniedException"])
def test_dynamodb_lock_with_refused_credentials_is_a_usage_error(code):
    client = boto3.client("dynamodb", region_name="eu-west-1", aws_access_key_id="k", aws_secret_access_key="s")
    with Stubber(client) as stub:
        stub.add_client_error("put_item", service_error_code=code, service_message="refused", http_status_code=400)
        with pytest.raises(DrUsageError) as caught:
            DynamoDbLock(client, "locks", "prod/dr").acquire("run-1")
    assert caught.value.exit_code == 2 and code in str(caught.value) and "eu-west-1" in str(caught.value)
