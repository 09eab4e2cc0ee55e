"""Readiness per region, fresh replica lag, and one answer about the champion (issue 15, section 3).

Unit tests drive the real functions through fake boto3 clients (a target's client cache holds
them); the sandbox tests hold replication in the staging sandbox and read it through real clients."""
from __future__ import annotations

import dataclasses
import json
import time
from datetime import datetime, timedelta, timezone

import pytest
from botocore.exceptions import ClientError

from mlfleet.dr import aws, kube, serving
from mlfleet.dr.engine import RunContext, StepFailed
from mlfleet.dr.readiness import ReadinessCheck, blocking, readiness, summary
from mlfleet.dr.retry import RetryPolicy
from mlfleet.dr.target import Target
from mlfleet.stacks.environment import load_environment, naming

PRIMARY, STANDBY = "us-east-1", "us-west-2"


def _ctx() -> RunContext:
    return RunContext(retry=RetryPolicy(attempts=1), poll_interval_s=0.01)


def _target(env_name: str = "staging", tmp_path=None) -> Target:
    return Target(env=load_environment(env_name), kind="aws", state_dir=tmp_path or "/nonexistent",
                  hosted_zone_id="Z1", serving_urls={}, admin_token=None)


def _client_error(code: str, status: int = 400) -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": code}, "ResponseMetadata": {"HTTPStatusCode": status}},
                       "Call")


# -- fresh lag ------------------------------------------------------------------------------
class FakeCloudWatch:
    """Answers GetMetricStatistics with datapoints `ages_values` (seconds ago, value in ms)."""

    def __init__(self, ages_values: list[tuple[float, float]], refuse_periods: tuple[int, ...] = ()):
        self.ages_values = ages_values
        self.refuse_periods = refuse_periods
        self.periods: list[int] = []

    def get_metric_statistics(self, **kw):
        self.periods.append(kw["Period"])
        if kw["Period"] in self.refuse_periods:
            raise _client_error("InvalidParameterCombination")
        now = datetime.now(timezone.utc)
        points = [{"Timestamp": now - timedelta(seconds=age), "Maximum": value, "Unit": "Milliseconds"}
                  for age, value in self.ages_values if now - timedelta(seconds=age) >= kw["StartTime"]]
        return {"Datapoints": points}


def _lag(ages_values, **kw) -> tuple[aws.Lag, FakeCloudWatch]:
    target = _target()
    cloudwatch = FakeCloudWatch(ages_values, **kw)
    target._clients[("cloudwatch", STANDBY)] = cloudwatch
    return aws.replication_lag(target, _ctx(), STANDBY), cloudwatch


def test_a_fresh_datapoint_gives_the_lag_and_its_age():
    lag, cloudwatch = _lag([(2, 350.0)])
    assert lag.known and lag.seconds == pytest.approx(0.35) and 1.5 <= lag.age_s < 3
    assert cloudwatch.periods == [1], "the finest period first"
    assert "0.3 s" in lag.detail or "0.4 s" in lag.detail


def test_a_datapoint_older_than_lag_max_age_is_unknown():
    lag, _ = _lag([(412, 200.0)])
    assert not lag.known and lag.seconds is None and lag.age_s == pytest.approx(412, abs=2)
    assert lag.detail.startswith("unknown: the newest datapoint is 41") and "s old" in lag.detail


def test_no_datapoint_is_unknown():
    lag, _ = _lag([])
    assert not lag.known and lag.age_s is None and lag.detail.startswith("unknown: no AuroraGlobalDBRPOLag")


def test_a_recovered_replica_reads_its_fresh_low_value_not_the_minutes_peak():
    # 1000 s of lag until four seconds ago, then caught up: the newest 1-second bucket is low.
    lag, _ = _lag([(40, 1_000_000.0), (20, 1_000_000.0), (4, 1_000_000.0), (1, 120.0)])
    assert lag.seconds == pytest.approx(0.12)


def test_a_metric_refused_at_one_second_is_read_per_minute():
    lag, cloudwatch = _lag([(50, 800.0)], refuse_periods=(1,))
    assert cloudwatch.periods == [1, 60] and lag.seconds == pytest.approx(0.8)


# -- the champion, one answer -----------------------------------------------------------------
PREFIX = naming.approved_prefix(load_environment("staging").artifact_store.models_prefix)
SHA = "0" * 64


def _manifest(champion: str, versions=("2", "3")) -> bytes:
    entry = {"files": {"model.pt": SHA, "canary.json": SHA}, "approved_by": "arn:aws:iam::1:role/r",
             "approved_at": "2026-01-01T00:00:00Z"}
    return json.dumps({"models": {"mlp": {"champion": champion, "versions": {v: entry for v in versions}}}}).encode()


class FakeS3:
    """A bucket as a dict key -> (body, replication status); `down` raises on every call."""

    def __init__(self, objects: dict[str, tuple[bytes, str | None]], down: bool = False):
        self.objects = objects
        self.down = down

    def _check(self):
        if self.down:
            raise ConnectionError("region down")

    def head_object(self, Bucket, Key):
        self._check()
        if Key not in self.objects:
            raise _client_error("404", 404)
        status = self.objects[Key][1]
        return {"ReplicationStatus": status} if status else {}

    def get_object(self, Bucket, Key):
        self._check()
        if Key not in self.objects:
            raise _client_error("NoSuchKey", 404)
        body = self.objects[Key][0]
        return {"Body": type("Body", (), {"read": lambda self: body})()}

    def list_objects_v2(self, Bucket):
        self._check()
        return {"Contents": [{"Key": k} for k in self.objects]}


def _bucket(manifest: bytes, versions: dict[str, list[str]], status: str | None = None) -> dict:
    objects = {PREFIX + naming.MANIFEST_FILE: (manifest, status),
               PREFIX + naming.MANIFEST_SIGNATURE_FILE: (b"s", status)}
    for version, files in versions.items():
        objects.update({f"{PREFIX}mlp/{version}/{f}": (b"x", status) for f in files})
    return objects


@pytest.fixture
def signed(monkeypatch):
    monkeypatch.setattr(aws, "_verify_signature", lambda *a, **k: None)  # KMS is not what this tests


def _champion_target(source: dict, replica: dict, *, source_down=False) -> Target:
    target = _target()
    target._clients[("s3", PRIMARY)] = FakeS3(source, down=source_down)
    target._clients[("s3", STANDBY)] = FakeS3(replica)
    return target


BOTH = ["model.pt", "canary.json"]


def test_a_champion_whose_files_are_held_names_the_keys_and_the_version_that_would_serve(signed):
    source = _bucket(_manifest("3"), {"2": BOTH, "3": BOTH}, "COMPLETED")
    replica = _bucket(_manifest("3"), {"2": BOTH, "3": ["canary.json"]}, "REPLICA")
    choice = aws.choose_versions(_champion_target(source, replica), _ctx(), STANDBY, source=PRIMARY)
    assert not choice.ready and choice.pins == {"mlp": "2"}
    assert choice.held == {"mlp": [f"{PREFIX}mlp/3/model.pt"]}
    assert choice.models["mlp"].champion == "3" and choice.models["mlp"].pin == "2"
    assert "champion v3 is not fully replicated" in choice.notes[0] and "mlp/3/model.pt" in choice.notes[0]


def test_a_replica_whose_manifest_has_not_caught_up_is_held_for_the_manifest(signed):
    source = _bucket(_manifest("3"), {"2": BOTH, "3": BOTH}, "PENDING")
    replica = _bucket(_manifest("2"), {"2": BOTH, "3": BOTH}, "REPLICA")
    choice = aws.choose_versions(_champion_target(source, replica), _ctx(), STANDBY, source=PRIMARY)
    assert choice.pins == {"mlp": "2"} and not choice.ready
    assert choice.held["mlp"] == [PREFIX + naming.MANIFEST_FILE, PREFIX + naming.MANIFEST_SIGNATURE_FILE]


def test_with_the_writer_unreachable_the_replicas_manifest_decides(signed):
    replica = _bucket(_manifest("2"), {"2": BOTH}, "REPLICA")
    choice = aws.choose_versions(_champion_target({}, replica, source_down=True), _ctx(), STANDBY, source=PRIMARY)
    assert choice.ready and choice.pins == {"mlp": "2"} and "could not be read" in choice.notes[0]


def test_the_drain_waits_for_the_named_keys_and_names_those_still_pending(signed):
    key = f"{PREFIX}mlp/3/model.pt"
    source = _bucket(_manifest("3"), {"3": BOTH}, "PENDING")
    target = _champion_target(source, {})
    with pytest.raises(StepFailed) as caught:
        aws.drain_until_replicated(target, _ctx(), PRIMARY, STANDBY, [key], timeout_s=0.05)
    assert key in str(caught.value) and "0.05 s (dr.drain_timeout)" in str(caught.value)
    source[key] = (b"x", "COMPLETED")
    target._clients[("s3", STANDBY)].objects[key] = (b"x", "REPLICA")
    assert aws.drain_until_replicated(target, _ctx(), PRIMARY, STANDBY, [key], timeout_s=0.05) == \
        f"1 object(s) replicated to {STANDBY}"


def test_the_drains_default_bound_is_the_environments(signed, monkeypatch):
    target = _champion_target(_bucket(_manifest("3"), {"3": BOTH}, "PENDING"), {})
    target.env = target.env.model_copy(update={"dr": target.env.dr.model_copy(update={"drain_timeout": 0.05})})
    started = time.monotonic()
    with pytest.raises(StepFailed, match=r"did not deliver 4 object\(s\) within 0.05 s"):
        aws.drain_until_replicated(target, _ctx(), PRIMARY, STANDBY)  # every PENDING object of the source
    assert time.monotonic() - started < 2


# -- readiness per region ---------------------------------------------------------------------
class FakeRegion:
    """One region's AWS as readiness reads it; every call raises while `down`."""

    def __init__(self, env, region: str, writer: str, down: set[str]):
        self.env, self.region, self.writer, self.down = env, region, writer, down

    def __getattr__(self, name):
        if self.region in self.down:
            def refuse(**kw):
                raise ConnectionError(f"connection refused by {self.region}")
            return refuse
        return getattr(self, "_" + name)

    def _describe_global_clusters(self, **kw):
        members = [{"DBClusterArn": f"arn:aws:rds:{r.name}:1:cluster:{naming.db_cluster_id(self.env.name, r.name)}",
                    "IsWriter": r.name == self.writer} for r in self.env.regions]
        return {"GlobalClusters": [{"GlobalClusterIdentifier": "g", "Status": "available",
                                    "GlobalClusterMembers": members}]}

    def _get_metric_statistics(self, **kw):
        return {"Datapoints": [{"Timestamp": datetime.now(timezone.utc), "Maximum": 300.0, "Unit": "Milliseconds"}]}

    def _describe_nodegroup(self, **kw):
        pool = next(p for p in self.env.gpu_pools if naming.node_group_name(p.name) == kw["nodegroupName"])
        return {"nodegroup": {"scalingConfig": {"minSize": pool.warm_standby, "maxSize": pool.max_size,
                                                "desiredSize": pool.warm_standby}, "status": "ACTIVE"}}

    def _describe_images(self, **kw):
        return {"imageDetails": [{}]}


def _fake_world(monkeypatch, env_name: str, down: set[str]) -> Target:
    target = _target(env_name)
    target.serving_urls = {r.name: f"http://{r.name}.invalid" for r in target.env.regions}
    for region in target.env.regions:
        for service in ("rds", "cloudwatch", "eks", "ecr"):
            target._clients[(service, region.name)] = FakeRegion(target.env, region.name, PRIMARY, down)

    def champion(target, ctx, region, *, source=None):
        if region in down:
            raise ConnectionError(f"read manifest in {region}: connection refused")
        return aws.ChampionChoice(region=region, models={"mlp": aws.ModelChampion("mlp", "2", "2")}, pins={"mlp": "2"})

    def health(url, path):
        if any(region in url for region in down):
            raise ConnectionError(f"{url}: connection refused")
        return True, "MLFLEET_FAILOVER_OK"

    def replicas(target, ctx, region):
        if region in down:
            raise ConnectionError(f"kubernetes API of {region}: connection refused")
        return {p.name: kube.Replicas(desired=1, ready=1) for p in target.env.serving_pools}

    monkeypatch.setattr(aws, "choose_versions", champion)
    monkeypatch.setattr(serving, "failover_health", health)
    monkeypatch.setattr(kube, "runtime_replicas", replicas)
    return target


STANDBY_CHECKS = ["registry", "replica lag", "champion in replica", "standby capacity", "runtime failover health",
                  "runtime image", "serving replicas ready"]


def test_every_region_reports_its_own_checks_when_all_answer(monkeypatch):
    results = readiness(_fake_world(monkeypatch, "prod", down=set()), _ctx())
    by_region: dict[str, list[ReadinessCheck]] = {}
    for result in results:
        by_region.setdefault(result.region, []).append(result)
    assert [c.check for c in by_region["us-west-2"]] == STANDBY_CHECKS
    assert [c.check for c in by_region["us-east-2"]] == STANDBY_CHECKS
    assert [(c.check, c.role) for c in by_region["us-east-1"]] == [("registry", "writer"),
                                                                     ("serving replicas ready", "writer")]
    assert all(r.ok for r in results), [r for r in results if not r.ok]
    assert blocking(results) == {} and summary(results) == ["ready: every standby can take a failover"]
    lag = next(r for r in results if r.region == "us-west-2" and r.check == "replica lag")
    assert "0.3 s, measured 0 s ago" in lag.detail


def test_one_standby_down_fails_its_lines_only(monkeypatch):
    results = readiness(_fake_world(monkeypatch, "prod", down={"us-west-2"}), _ctx())
    west = [r for r in results if r.region == "us-west-2"]
    assert [r.check for r in west] == STANDBY_CHECKS and not any(r.ok for r in west)
    assert "connection refused" in west[0].detail
    assert all(r.ok for r in results if r.region != "us-west-2")
    assert blocking(results) == {"us-west-2": 7}
    assert summary(results) == ["us-west-2: 7 check(s) would block a failover to it"]


def test_the_writer_down_blocks_no_failover_away_from_it(monkeypatch):
    results = readiness(_fake_world(monkeypatch, "prod", down={PRIMARY}), _ctx())
    assert [r.ok for r in results if r.region == PRIMARY] == [False, False]
    assert blocking(results) == {}
    assert summary(results)[0] == f"{PRIMARY} (writer): 2 check(s) failed; they do not block a failover away from it"


# -- against the sandbox ----------------------------------------------------------------------
def _sandbox_ctx(target):
    return RunContext(retry=target.retry, poll_interval_s=target.poll_interval_s)


def _publish_champion_3(sandbox) -> None:
    """v3 (v2's files) as mlp's champion, its manifest and signature published in the primary."""
    s3 = sandbox.client("s3", PRIMARY, direct=True)
    bucket = sandbox.bucket(PRIMARY)
    manifest = json.loads(s3.get_object(Bucket=bucket, Key=f"{PREFIX}manifest.json")["Body"].read())
    for name in manifest["models"]["mlp"]["versions"]["2"]["files"]:
        body = s3.get_object(Bucket=bucket, Key=f"{PREFIX}mlp/2/{name}")["Body"].read()
        s3.put_object(Bucket=bucket, Key=f"{PREFIX}mlp/3/{name}", Body=body)
    manifest["models"]["mlp"]["versions"]["3"] = manifest["models"]["mlp"]["versions"]["2"]
    manifest["models"]["mlp"]["champion"] = "3"
    sandbox.publish_manifest(json.dumps(manifest).encode())


@pytest.mark.sandbox
def test_a_champion_held_from_replication_fails_readiness_with_its_keys_and_the_runbook_agrees(sandbox, target):
    s3 = sandbox.client("s3", PRIMARY, direct=True)
    sandbox.settings.update({"held_prefixes": [f"{PREFIX}mlp/3/"]})
    _publish_champion_3(sandbox)
    manifest = json.loads(s3.get_object(Bucket=sandbox.bucket(PRIMARY), Key=f"{PREFIX}manifest.json")["Body"].read())
    held = sorted(f"{PREFIX}mlp/3/{name}" for name in manifest["models"]["mlp"]["versions"]["3"]["files"])
    ctx = _sandbox_ctx(target)

    # While the manifest is on its way the replica is held for it; then for the champion's files.
    deadline = time.monotonic() + 10
    while PREFIX + naming.MANIFEST_FILE in aws.choose_versions(target, ctx, STANDBY, source=PRIMARY).held_keys:
        assert time.monotonic() < deadline, "the new manifest did not replicate"
        time.sleep(0.05)
    choice = aws.choose_versions(target, ctx, STANDBY, source=PRIMARY)
    assert not choice.ready and choice.pins == {"mlp": "2"} and sorted(choice.held["mlp"]) == held

    checks = {(r.region, r.check): r for r in readiness(target, ctx)}
    champion = checks[(STANDBY, "champion in replica")]
    assert not champion.ok and all(key in champion.detail for key in held) and "would pin v2" in champion.detail
    assert all(r.ok for (region, check), r in checks.items() if check != "champion in replica"), checks

    with pytest.raises(StepFailed) as caught:
        aws.drain_until_replicated(target, ctx, PRIMARY, STANDBY, choice.held_keys, timeout_s=0.5)
    assert all(key in str(caught.value) for key in held) and "0.5 s" in str(caught.value)

    sandbox.settings.update({"held_prefixes": []})  # released: the held copies go out
    aws.drain_until_replicated(target, ctx, PRIMARY, STANDBY, choice.held_keys, timeout_s=10)
    after = aws.choose_versions(target, ctx, STANDBY, source=PRIMARY)
    assert after.ready and after.pins == {"mlp": "3"}
    assert next(r for r in readiness(target, ctx) if r.check == "champion in replica").ok


@pytest.mark.sandbox
def test_a_manifest_whose_signature_is_still_replicating_is_waited_for_not_refused(sandbox, target):
    # replication carries manifest.json and manifest.json.sig one at a time: a standby read between
    # them saw the new manifest beside the old signature and failed "does not verify"
    import threading

    signature = PREFIX + naming.MANIFEST_SIGNATURE_FILE
    sandbox.settings.update({"held_prefixes": [signature]})
    _publish_champion_3(sandbox)
    ctx = _sandbox_ctx(target)
    s3 = sandbox.client("s3", STANDBY, direct=True)
    deadline = time.monotonic() + 10
    while b'"3"' not in s3.get_object(Bucket=sandbox.bucket(STANDBY), Key=f"{PREFIX}manifest.json")["Body"].read():
        assert time.monotonic() < deadline, "the new manifest did not replicate"
        time.sleep(0.05)

    short = target.env.model_copy(update={"dr": target.env.dr.model_copy(update={"drain_timeout": 0.3})})
    with pytest.raises(StepFailed) as caught:  # held on: the bound is named, and why it waited
        aws.choose_versions(dataclasses.replace(target, env=short), ctx, STANDBY, source=PRIMARY)
    message = str(caught.value)
    assert "verify together (dr.drain_timeout): not reached within 0.3s" in message, message
    assert "does not verify" in message and f"{PRIMARY}'s manifest and signature are still replicating" in message

    threading.Timer(0.5, lambda: sandbox.settings.update({"held_prefixes": []})).start()
    choice = aws.choose_versions(target, ctx, STANDBY, source=PRIMARY)  # waits for the signature
    assert choice.ready and choice.pins == {"mlp": "3"}, choice


@pytest.mark.sandbox
def test_a_manifest_that_does_not_verify_though_replicated_fails_at_once(sandbox, target):
    signature = PREFIX + naming.MANIFEST_SIGNATURE_FILE
    s3 = sandbox.client("s3", PRIMARY, direct=True)
    bucket = sandbox.bucket(PRIMARY)
    good = s3.get_object(Bucket=bucket, Key=signature)["Body"].read()
    s3.put_object(Bucket=bucket, Key=f"{PREFIX}manifest.json",
                  Body=s3.get_object(Bucket=bucket, Key=f"{PREFIX}manifest.json")["Body"].read() + b" ")
    ctx = _sandbox_ctx(target)
    aws.drain_until_replicated(target, ctx, PRIMARY, STANDBY, [f"{PREFIX}manifest.json", signature], timeout_s=10)
    started = time.monotonic()
    with pytest.raises(StepFailed, match="does not verify"):
        aws.choose_versions(target, ctx, STANDBY, source=PRIMARY)
    assert time.monotonic() - started < 2, "the writer's pair is the same: nothing is on its way"
    assert good == sandbox.client("s3", STANDBY, direct=True).get_object(
        Bucket=sandbox.bucket(STANDBY), Key=signature)["Body"].read()


def _cli_readiness(state_dir, capsys) -> tuple[int, str]:
    import argparse

    from mlfleet.dr.cli import register

    parser = argparse.ArgumentParser(prog="mlfleet")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["readiness", "--env", "staging", "--state-dir", str(state_dir)])
    code = args.handler(args)
    return code, capsys.readouterr().out


@pytest.mark.sandbox
def test_a_standby_down_in_the_sandbox_fails_its_own_lines_and_readiness_exits_3(sandbox, target, capsys):
    from mlfleet.dr.sandbox.faults import Fault

    code, out = _cli_readiness(sandbox.state_dir, capsys)
    assert code == 0 and out.strip().endswith("ready: every standby can take a failover"), out
    sandbox.faults.add(Fault(region=STANDBY))
    results = readiness(target, _sandbox_ctx(target))
    assert {r.check for r in results if r.region == STANDBY and not r.ok} >= {"registry", "replica lag",
                                                                             "champion in replica", "runtime image"}
    assert all(r.ok for r in results if r.region == PRIMARY), [r for r in results if r.region == PRIMARY]
    assert blocking(results).get(STANDBY, 0) >= 4
    code, out = _cli_readiness(sandbox.state_dir, capsys)
    assert code == 3 and f"{STANDBY}: " in out and "check(s) would block a failover to it" in out, out
    assert f"[ok ] {PRIMARY:<14} registry" in out, out


@pytest.mark.sandbox
def test_a_replica_that_catches_up_reads_low_at_once(sandbox, target):
    ctx = _sandbox_ctx(target)
    target.control.pause_replay(STANDBY)
    deadline = time.monotonic() + 10
    while (aws.replication_lag(target, ctx, STANDBY).seconds or 0) < 1.5:
        assert time.monotonic() < deadline, "the lag did not rise"
        time.sleep(0.1)
    target.control.resume_replay(STANDBY)
    deadline = time.monotonic() + 5  # the minute's peak would read 1.5 s and more for a minute
    while True:
        lag = aws.replication_lag(target, ctx, STANDBY)
        if lag.seconds is not None and lag.seconds < 0.5:
            break
        assert time.monotonic() < deadline, f"a recovered replica still reads {lag}"
        time.sleep(0.1)
    assert lag.age_s is not None and lag.age_s < 3
