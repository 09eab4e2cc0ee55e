"""The audit log's head anchored outside it: truncation and records edited with recomputed hashes
are found without `--expect-head`, a log rewritten from its first record is not taken for an
unanchored one, the publisher coalesces appends and `flush_anchor` anchors the last head, and
Object Lock retention is set where the bucket has it. S3 is moto in process; the last test runs the
command line against the sandbox's buckets."""
from __future__ import annotations

import json
import threading
import time
import uuid

import boto3
import pytest

from mlfleet.dr.audit import AnchorUnavailable, AuditLog, S3Anchor, _digest, anchor_for, chain_id, verify
from mlfleet.dr.errors import AuditTampered, DrUsageError

from helpers.cli import dr_command as mlfleet

REGIONS = ("us-east-1", "us-west-2", "eu-west-1")


@pytest.fixture(scope="module")
def s3():
    """Buckets in three regions; only us-east-1's has Object Lock. Shared by the module's tests,
    each under its own anchor prefix."""
    from moto import mock_aws

    with mock_aws():
        clients, buckets = {}, {}
        for region in REGIONS:
            clients[region] = boto3.client("s3", region_name=region)
            buckets[region] = f"mlfleet-prod-123456789012-{region}"
            where = {} if region == "us-east-1" else {"CreateBucketConfiguration": {"LocationConstraint": region}}
            clients[region].create_bucket(Bucket=buckets[region], ObjectLockEnabledForBucket=region == "us-east-1",
                                          **where)
        yield clients, buckets


@pytest.fixture
def prefix() -> str:
    return f"audit-anchor/prod-{uuid.uuid4().hex[:8]}/"


@pytest.fixture
def anchor(s3, prefix):
    clients, buckets = s3
    return S3Anchor(clients, buckets, prefix)


def _log(tmp_path, anchor, records=12, name="prod.jsonl", **kw) -> AuditLog:
    log = AuditLog(tmp_path / name, actor="oncall@test", anchor=anchor, **kw)
    for i in range(records):
        log.append(run_id="run-1", action=f"step{i}", target="failover:prod:us-west-2:planned", result="ok")
    log.flush_anchor(5)
    return log


def _rehash_from(path, index: int, **changes) -> None:
    """Edit record `index` and recompute it and every later hash: a chain intact on its own."""
    records = [json.loads(line) for line in path.read_text().splitlines()]
    records[index].update(changes)
    prev = records[index - 1]["hash"] if index else "0" * 64
    for record in records[index:]:
        record["prev"] = prev
        record["hash"] = prev = _digest(record)
    path.write_text("".join(json.dumps(r, sort_keys=True) + "\n" for r in records))


def test_an_intact_log_matches_its_anchor(tmp_path, anchor):
    log = _log(tmp_path, anchor)
    verified = verify(log.path, anchor=anchor)
    assert verified.records == 12 and verified.anchored == (12, log.head()) and verified.unanchored == 0


def test_truncation_is_found_without_an_expected_head(tmp_path, anchor):
    log = _log(tmp_path, anchor)
    lines = log.path.read_text().splitlines()
    log.path.write_text("\n".join(lines[:9]) + "\n")
    assert verify(log.path).records == 9, "the chain alone cannot see it"
    with pytest.raises(AuditTampered, match="has 9 records but .* anchored 12 .*removed from the end"):
        verify(log.path, anchor=anchor)


def test_records_edited_and_rehashed_are_found(tmp_path, anchor):
    log = _log(tmp_path, anchor)
    _rehash_from(log.path, 5, result="failed")
    assert verify(log.path).records == 12, "the chain alone cannot see it"
    with pytest.raises(AuditTampered, match=r":12: record 12 hashes to .*edited and re-hashed"):
        verify(log.path, anchor=anchor)


def test_a_log_rewritten_from_its_first_record_is_not_taken_for_an_unanchored_one(tmp_path, anchor):
    log = _log(tmp_path, anchor)
    _rehash_from(log.path, 0, actor="someone-else")
    with pytest.raises(AuditTampered, match="no anchor names this log's chain .* first record was rewritten"):
        verify(log.path, anchor=anchor)
    log.path.write_text("")
    with pytest.raises(AuditTampered, match="has no records, but .* the log was emptied"):
        verify(log.path, anchor=anchor)


def test_logs_of_two_machines_keep_their_own_anchors(tmp_path, anchor):
    ours = _log(tmp_path, anchor, records=5, name="a.jsonl")
    theirs = _log(tmp_path, anchor, records=9, name="b.jsonl")
    assert verify(ours.path, anchor=anchor).anchored == (5, ours.head())
    assert verify(theirs.path, anchor=anchor).anchored == (9, theirs.head())


def test_records_after_the_last_anchor_are_the_window(tmp_path, anchor):
    log = _log(tmp_path, anchor, records=4)
    plain = AuditLog(log.path)  # a writer without an anchor (or one killed before its flush)
    plain.append(run_id="r", action="late", target="prod", result="ok")
    verified = verify(log.path, anchor=anchor)
    assert verified.anchored[0] == 4 and verified.unanchored == 1


def test_a_missing_log_is_tampering_exit_1(tmp_path, anchor, capsys):
    with pytest.raises(AuditTampered, match="does not exist") as caught:
        verify(tmp_path / "gone.jsonl", anchor=anchor)
    assert caught.value.exit_code == 1
    code, _, err = mlfleet(["audit", "verify", str(tmp_path / "gone.jsonl")], capsys)
    assert code == 1 and "the audit log" in err and "does not exist" in err


class CountingAnchor:
    name = "a counting anchor"

    def __init__(self, delay_s: float = 0.0):
        self.published: list[tuple[str, int, str]] = []
        self.delay_s = delay_s

    def publish(self, chain, count, head):
        time.sleep(self.delay_s)
        self.published.append((chain, count, head))

    def latest(self, chain):
        counts = [(c, h) for ch, c, h in self.published if ch == chain]
        return max(counts) if counts else None

    def chains(self):
        return {ch for ch, _, _ in self.published}


def test_the_publisher_coalesces_appends_and_flush_anchors_the_last_head(tmp_path):
    anchor = CountingAnchor(delay_s=0.01)
    log = AuditLog(tmp_path / "prod.jsonl", anchor=anchor, anchor_interval_s=0.5)
    started = time.perf_counter()
    for i in range(40):
        log.append(run_id="r", action=f"s{i}", target="prod", result="ok")
    appending_s = time.perf_counter() - started
    assert log.flush_anchor(5) == (40, log.head())
    assert 1 <= len(anchor.published) <= 3, anchor.published
    assert anchor.published[-1][1:] == (40, log.head())
    assert appending_s < 1.0, "appends do not wait for the anchor"


def test_flush_says_when_no_region_took_the_anchor(tmp_path, s3, prefix):
    clients, buckets = s3
    broken = S3Anchor(clients, {r: "no-such-bucket" for r in buckets}, prefix)
    log = AuditLog(tmp_path / "prod.jsonl", anchor=broken, anchor_interval_s=0.05)
    log.append(run_id="r", action="a", target="prod", result="ok")
    with pytest.raises(AnchorUnavailable, match="not anchored within .*NoSuchBucket") as caught:
        log.flush_anchor(0.3)
    assert caught.value.exit_code == 1 and "NoSuchBucket" in (log.anchor_error or "")


def test_one_region_down_is_tolerated_and_retention_follows_object_lock(tmp_path, s3, prefix):
    clients, buckets = s3
    anchor = S3Anchor(clients, {**buckets, "eu-west-1": "no-such-bucket"}, prefix)
    log = _log(tmp_path, anchor, records=3)
    assert "eu-west-1" in anchor.problems
    key = f"{prefix}{chain_id(_first_hash(log))}/{3:012d}-{log.head()}.json"
    locked = clients["us-east-1"].head_object(Bucket=buckets["us-east-1"], Key=key)
    assert locked["ObjectLockMode"] == "GOVERNANCE"
    assert locked["ObjectLockRetainUntilDate"].timestamp() > time.time() + 364 * 86400
    plain = clients["us-west-2"].head_object(Bucket=buckets["us-west-2"], Key=key)
    assert "ObjectLockMode" not in plain
    assert verify(log.path, anchor=anchor).anchored == (3, log.head())


def _first_hash(log: AuditLog) -> str:
    return json.loads(log.path.read_text().splitlines()[0])["hash"]


def test_refused_credentials_are_a_usage_error(tmp_path, monkeypatch):
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    client = boto3.session.Session().client("s3", region_name="us-west-2")
    anchor = S3Anchor({"us-west-2": client}, {"us-west-2": "b"}, "audit-anchor/prod/")
    with pytest.raises(DrUsageError, match="no AWS credentials") as caught:
        anchor.latest("abc")
    assert caught.value.exit_code == 2


def test_cli_without_anchor_says_so_and_needs_an_environment_otherwise(tmp_path, capsys):
    log = AuditLog(tmp_path / "audit.jsonl", actor="oncall@test")
    log.append(run_id="r1", action="scale", target="somewhere", result="ok")
    code, out, _ = mlfleet(["audit", "verify", str(log.path), "--no-anchor"], capsys)
    assert code == 0 and "1 records, chain intact" in out and "anchor not checked (--no-anchor)" in out
    code, _, err = mlfleet(["audit", "verify", str(log.path)], capsys)
    assert code == 2 and "cannot tell which environment" in err and "--env" in err
    code, _, err = mlfleet(["audit", "verify", str(log.path), "--env", "staging",
                            "--state-dir", str(tmp_path)], capsys)
    assert code == 2 and "mlfleet sandbox up --env staging" in err and "--no-anchor" in err


@pytest.mark.sandbox
def test_cli_checks_the_anchor_in_the_sandboxs_buckets(sandbox, target, capsys):
    """The engine's way: `AuditLog(path, anchor=anchor_for(target))`, `flush_anchor()` at the end;
    `audit verify` reads the environment from the records and the anchor from the sandbox."""
    anchor = anchor_for(target)
    log = AuditLog(target.audit_path, anchor=anchor)
    threads = [threading.Thread(target=lambda i=i: log.append(run_id="r", action=f"s{i}",
                                                                 target="failover:staging:us-west-2:planned",
                                                                 result="ok")) for i in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert log.flush_anchor(10) == (6, log.head())
    argv = ["audit", "verify", str(log.path), "--state-dir", str(sandbox.state_dir)]
    code, out, err = mlfleet(argv, capsys)
    assert code == 0 and "anchored: record 6 matches" in out, err
    lines = log.path.read_text().splitlines()
    log.path.write_text("\n".join(lines[:4]) + "\n")
    code, _, err = mlfleet(argv, capsys)
    assert code == 1 and "has 4 records but" in err and "anchored 6" in err
