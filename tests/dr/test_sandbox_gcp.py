"""The sandbox's Google Cloud regions through the real Google clients (GKE over REST, Cloud SQL
Admin and Database Migration over authenticated REST, Cloud Storage, Cloud Monitoring over gRPC),
and every action of dr/gcp.py against them: the research (all Google Cloud) and hybrid (AWS
primary, Google Cloud standby) sandboxes, one of each for the session. The tests of one sandbox run
in file order: the promotion (it moves the writer) comes last."""
from __future__ import annotations

import time
import urllib.error
import urllib.request

import pytest

from mlfleet.dr import gcp
from mlfleet.dr.engine import RunContext, StepFailed
from mlfleet.dr.retry import RetryPolicy
from mlfleet.dr.target import Target
from mlfleet.stacks.clients.google_cloud import HttpError, node_pool_path, rest
from mlfleet.stacks.environment import naming

pytestmark = pytest.mark.sandbox


@pytest.fixture(scope="module", autouse=True)
def _research_down_after_this_module(research_sandbox):
    """The last module that uses the session's research sandbox stops it: its servers would load
    the machine for the rest of the run."""
    yield
    research_sandbox.down()


def _ctx() -> RunContext:
    return RunContext(retry=RetryPolicy(attempts=1), poll_interval_s=0.05)


def _target(box) -> Target:
    """A target on the sandbox as `up` left it (other modules' runbooks may have moved it)."""
    box.reset()
    return Target.sandbox(box.env, box.state_dir)


def _until(probe, timeout_s: float = 10.0):
    deadline = time.monotonic() + timeout_s
    while True:
        outcome = probe()
        if outcome:
            return outcome
        assert time.monotonic() < deadline, f"not within {timeout_s}s"
        time.sleep(0.05)


def _status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


# -- research: all on Google Cloud ------------------------------------------------------------
def test_research_is_seeded_from_the_environment(research_sandbox):
    target, ctx, env = _target(research_sandbox), _ctx(), research_sandbox.env
    # GKE pools: the primary at min_size, the standby at warm_standby, max from the environment
    assert gcp.pool_sizes(target, ctx, "us-central1") == {
        "inference": {"minSize": 3, "maxSize": 10, "status": "RUNNING"},
        "batch": {"minSize": 0, "maxSize": 4, "status": "RUNNING"}}
    assert gcp.pool_sizes(target, ctx, "us-east4")["inference"]["minSize"] == 1
    # Cloud SQL: the primary and its cross-region replica, named as the stacks name them
    replica = gcp.sql_instance(target, ctx, "us-east4")
    assert replica["instanceType"] == "READ_REPLICA_INSTANCE"
    assert replica["masterInstanceName"] == naming.cloud_sql_instance("research", "us-central1")
    assert gcp.sql_writer_region(target, ctx) == "us-central1"
    # the dual-region bucket holds the signed champion in both copies; each region's runtime serves it
    prefix = naming.approved_prefix(env.artifact_store.models_prefix)
    for region in ("us-central1", "us-east4"):
        names = {b.name for b in target.gcs(region).list_blobs(target.gcs_bucket(), prefix=prefix)}
        assert {prefix + naming.MANIFEST_FILE, prefix + naming.MANIFEST_SIGNATURE_FILE} <= names
        choice = gcp.choose_versions(target, ctx, region)
        assert choice.ready and choice.pins == {"mlp": research_sandbox.champion}
        assert _status(research_sandbox.state.serving[region] + env.serving.failover_health_path) == 200
    bucket = target.gcs("us-east4").get_bucket(target.gcs_bucket())
    assert bucket.rpo == "ASYNC_TURBO" and bucket.data_locations == ["US-CENTRAL1", "US-EAST4"]
    # Cloud Monitoring: fresh replica_lag datapoints of the replica, measured on its PostgreSQL server
    lag = _until(lambda: (found := gcp.sql_replica_lag(target, ctx, "us-east4")).seconds is not None and found)
    assert lag.seconds < 5 and lag.age_s is not None and lag.age_s < 5
    assert gcp.sql_replica_lag(target, ctx, "us-central1").seconds is None  # a primary has no lag


def test_research_pools_scale_through_the_autoscaler_minimum(research_sandbox):
    target, ctx = _target(research_sandbox), _ctx()
    assert gcp.pools_at(target, ctx, "us-east4", {"inference": 3}) == \
        "inference min 1 (RUNNING), wanted 3"
    changed = gcp.raise_pool_minimums(target, ctx, "us-east4", {"inference": 3})
    assert "minimum 1 -> 3" in changed[0]
    assert gcp.pools_at(target, ctx, "us-east4", {"inference": 3}) is True
    gcp.raise_pool_minimum(target, ctx, node_pool_path("mlfleet-research", "us-east4",
                                                       naming.gke_cluster_name("research", "us-east4"),
                                                       "inference-gpu"), 3)  # already: no change
    with pytest.raises(StepFailed, match="at most 10"):
        gcp.raise_pool_minimums(target, ctx, "us-east4", {"inference": 11})


def test_an_upload_in_one_copy_reaches_the_pair(research_sandbox):
    target = _target(research_sandbox)
    gcp.write_marker(target, "us-central1", "drill/marker-1.json", {"n": 1})
    assert gcp.marker_present(target, "us-central1", "drill/marker-1.json")
    _until(lambda: gcp.marker_present(target, "us-east4", "drill/marker-1.json"), 5)
    blob = target.gcs("us-east4").bucket(target.gcs_bucket()).blob("drill/marker-1.json")
    assert blob.download_as_bytes() == b'{"n": 1}'  # the client checks the hashes the fake sends


def test_a_region_fault_fails_that_regions_google_calls_and_runtime_only(research_sandbox):
    from google.api_core.exceptions import GoogleAPICallError

    target, ctx, box = _target(research_sandbox), _ctx(), research_sandbox
    box.control.faults.clear()
    gcp.write_marker(target, "us-central1", "drill/marker-1.json", {"seq": 1})  # an object in both copies
    _until(lambda: gcp.marker_present(target, "us-east4", "drill/marker-1.json"))
    target.control.inject("us-east4")
    try:
        with pytest.raises(Exception) as sql:
            gcp.sql_instance(target, ctx, "us-east4")
        assert "503" in str(sql.value) or isinstance(getattr(sql.value, "cause", None), HttpError)
        with pytest.raises(Exception, match="503|Unavailable|unavailable"):
            gcp.pool_sizes(target, ctx, "us-east4")
        with pytest.raises(Exception, match="503|Unavailable|unavailable|UNAVAILABLE"):
            gcp.sql_replica_lag(target, ctx, "us-east4")
        with pytest.raises(GoogleAPICallError):
            target.gcs("us-east4").bucket(target.gcs_bucket()).blob("drill/marker-1.json").download_as_bytes(
                retry=None)
        assert not gcp.marker_present(target, "us-east4", "drill/marker-1.json")
        assert _status(box.state.serving["us-east4"] + "/v2/health/live") == 503
        # the other region, and the other copy of the bucket, answer
        assert gcp.pool_sizes(target, ctx, "us-central1")["inference"]["minSize"] == 3
        assert gcp.sql_instance(target, ctx, "us-central1")["instanceType"] == "CLOUD_SQL_INSTANCE"
        assert gcp.marker_present(target, "us-central1", "drill/marker-1.json")
        assert _status(box.state.serving["us-central1"] + "/v2/health/live") == 200
        assert not box.registry.is_running("us-east4")  # its PostgreSQL server is down with it
    finally:
        target.control.clear()
    _until(lambda: box.registry.is_running("us-east4"), 30)


def test_research_promotion_makes_the_replica_the_writer(research_sandbox):
    target, ctx = _target(research_sandbox), _ctx()
    assert gcp.registry_writable(target, ctx, "us-central1")[0]
    writable, why = gcp.registry_writable(target, ctx, "us-east4")
    assert not writable and "read-only" in why
    assert "promoted" in gcp.promote_registry(target, ctx, "us-east4")
    assert gcp.registry_promotion_done(target, ctx, "us-east4") != True  # noqa: E712 - a reason, not False
    ctx.wait_until("promotion", lambda: gcp.registry_promotion_done(target, ctx, "us-east4"), 20)
    assert gcp.registry_writable(target, ctx, "us-east4") == (True, gcp.registry_writable(target, ctx, "us-east4")[1])
    assert gcp.sql_writer_region(target, ctx) == "us-east4"
    assert research_sandbox.registry.writer() == "us-east4"
    # the former primary follows the new one, and its lag is published now
    assert gcp.sql_instance(target, ctx, "us-central1")["instanceType"] == "READ_REPLICA_INSTANCE"
    _until(lambda: gcp.sql_replica_lag(target, ctx, "us-central1").seconds is not None, 10)
    assert "already a primary" in gcp.promote_registry(target, ctx, "us-east4")


def test_the_cli_lists_the_google_regions(research_sandbox, capsys):
    from helpers.cli import dr_command as mlfleet

    code, out, _ = mlfleet(["sandbox", "status", "--env", "research", "--state-dir",
                            str(research_sandbox.state_dir)], capsys)
    assert code == 0
    assert "Google Cloud region us-central1: Cloud Storage http://" in out
    assert "Google Cloud region us-east4" in out and "Cloud Monitoring (gRPC)" in out


# -- hybrid: an AWS primary, a Google Cloud standby -------------------------------------------
def test_hybrid_transfer_job_and_dms_destination(hybrid_sandbox):
    target, ctx, box = _target(hybrid_sandbox), _ctx(), hybrid_sandbox
    prefix = box.env.artifact_store.models_prefix
    # seeded: the migration job, its zonal unprotected destination, the champion carried over
    job = rest(target.gcp_clients(), "GET", f"{box.gcp.url}/v1/projects/mlfleet-hybrid-prod/locations/"
               f"us-central1/migrationJobs/{naming.cloud_sql_instance('hybrid', 'us-central1')}")
    assert job["state"] == "RUNNING" and job["type"] == "CONTINUOUS"
    assert gcp.sql_writer_region(target, ctx) is None  # the writer is Aurora
    assert gcp.choose_versions(target, ctx, "us-central1").pins == {"mlp": box.champion}
    assert gcp.pool_sizes(target, ctx, "us-central1")["inference"]["minSize"] == 2
    assert _status(box.state.serving["us-central1"] + box.env.serving.failover_health_path) == 200
    lag = _until(lambda: (found := gcp.sql_replica_lag(target, ctx, "us-central1")).seconds is not None and found)
    assert lag.seconds < 5
    # an object put into the primary's S3 bucket reaches the Google bucket on the transfer's schedule
    key = f"{prefix}candidates/transfer-probe.txt"
    box.client("s3", "us-east-1").put_object(Bucket=box.bucket("us-east-1"), Key=key, Body=b"across")
    _until(lambda: gcp.marker_present(target, "us-central1", key), 10)
    blob = target.gcs("us-central1").bucket(target.gcs_bucket()).blob(key)
    assert blob.download_as_bytes() == b"across"


def test_hybrid_dms_promotion_then_hardening(hybrid_sandbox):
    target, ctx = _target(hybrid_sandbox), _ctx()
    assert not gcp.registry_writable(target, ctx, "us-central1")[0]
    assert "promoted" in gcp.promote_registry(target, ctx, "us-central1")
    ctx.wait_until("DMS promotion", lambda: gcp.registry_promotion_done(target, ctx, "us-central1"), 20)
    writable, why = gcp.registry_writable(target, ctx, "us-central1")
    assert writable, why
    assert gcp.sql_writer_region(target, ctx) == "us-central1"
    instance = naming.cloud_sql_instance("hybrid", "us-central1")
    assert "availabilityType, deletionProtectionEnabled set" in gcp.harden_promoted_instance(
        target, ctx, "mlfleet-hybrid-prod", instance)
    settings = gcp.sql_instance(target, ctx, "us-central1")["settings"]
    assert settings["availabilityType"] == "REGIONAL" and settings["deletionProtectionEnabled"] is True
    assert "already" in gcp.harden_promoted_instance(target, ctx, "mlfleet-hybrid-prod", instance)
