"""The DR command line's user errors and exit codes, and the GCP actions through the real
Google clients against the sandbox's fake endpoint."""
from __future__ import annotations

import json

import pytest

from mlfleet.dr.audit import AuditLog
from mlfleet.dr.engine import RunContext, StepFailed
from mlfleet.dr.retry import RetryPolicy
from mlfleet.stacks.clients.google_cloud import GcpClients, node_pool_path

from helpers.cli import dr_command as mlfleet

pytestmark = pytest.mark.sandbox  # talks to the fake Google endpoint on loopback


def test_unknown_environment_is_a_usage_error(capsys, tmp_path):
    code, _, err = mlfleet(["readiness", "--env", "nope", "--state-dir", str(tmp_path)], capsys)
    assert code == 2 and "no environment 'nope'" in err


def test_single_region_environment_has_nothing_to_fail_over_to(capsys, tmp_path):
    code, _, err = mlfleet(["failover", "--env", "dev", "--to", "us-west-2", "--state-dir", str(tmp_path)], capsys)
    assert code == 2 and "one region" in err


def test_no_running_sandbox_says_how_to_start_one(capsys, tmp_path):
    code, _, err = mlfleet(["failover", "--env", "prod", "--to", "us-west-2", "--state-dir", str(tmp_path)], capsys)
    assert code == 2 and "mlfleet sandbox up --env prod" in err


def test_audit_verify_exit_codes(capsys, tmp_path):
    log = AuditLog(tmp_path / "audit.jsonl", actor="oncall@test")
    for action in ("scale", "promote", "flip"):
        log.append(run_id="r1", action=action, target="prod", result="ok")
    code, out, _ = mlfleet(["audit", "verify", str(log.path), "--no-anchor"], capsys)  # anchors: test_audit_anchor
    assert code == 0 and "3 records, chain intact" in out
    lines = log.path.read_text().splitlines()
    record = json.loads(lines[2])
    record["actor"] = "someone-else"
    log.path.write_text("\n".join(lines[:2] + [json.dumps(record)]) + "\n")
    code, _, err = mlfleet(["audit", "verify", str(log.path)], capsys)  # the chain first: no anchor needed
    assert code == 1 and ":3: content does not match its hash" in err


@pytest.fixture
def fake_gcp():
    from mlfleet.dr.sandbox.fake_gcp import FakeGcp
    from mlfleet.dr.sandbox.faults import FaultBook, Ledger

    faults = FaultBook()
    fake = FakeGcp(faults, Ledger()).start()
    fake.add_node_pool("ml", "us-central1", "serving", "gpu", total_min=1, total_max=6, location_policy="ANY")
    fake.add_backend_service("ml", "us-central1", "models", ["ig-a", "ig-b"])
    fake.add_sql_instance("ml", "registry-replica", replica_of="registry", region="us-central1")
    yield fake, faults
    fake.stop()


def test_gcp_actions_through_the_real_clients(fake_gcp):
    from mlfleet.dr import gcp

    fake, _ = fake_gcp
    clients = GcpClients(endpoint=fake.url)
    ctx = RunContext(retry=RetryPolicy(attempts=2, base_s=0.01))
    path = node_pool_path("ml", "us-central1", "serving", "gpu")

    assert "minimum 1 -> 4" in gcp.raise_pool_minimum(clients, ctx, path, 4)
    assert fake.node_pools[("ml", "us-central1", "serving", "gpu")]["autoscaling"] == {
        "enabled": True, "totalMinNodeCount": 4, "totalMaxNodeCount": 6, "locationPolicy": "ANY"}
    assert gcp.node_pool_autoscaling(clients, ctx, path).total_min_node_count == 4
    assert "already holds at least 4" in gcp.raise_pool_minimum(clients, ctx, path, 3)
    with pytest.raises(StepFailed, match="at most 6 nodes"):
        gcp.raise_pool_minimum(clients, ctx, path, 7)

    assert "capacity 1.0" in gcp.set_backend_capacity(clients, ctx, "ml", "us-central1", "models", 1.0)
    backends = fake.backend_services[("ml", "us-central1", "models")]["backends"]
    assert [b["capacityScaler"] for b in backends] == [1.0, 1.0]

    assert "promoted" in gcp.promote_sql_replica(clients, ctx, "ml", "registry-replica")
    assert fake.sql_instances[("ml", "registry-replica")]["instanceType"] == "CLOUD_SQL_INSTANCE"
    assert "already a primary" in gcp.promote_sql_replica(clients, ctx, "ml", "registry-replica")


def test_a_dms_replica_is_promoted_then_made_regional_and_protected(fake_gcp):
    from mlfleet.dr import gcp

    fake, _ = fake_gcp
    fake.add_migration_job("ml", "us-central1", "registry-usc1", "registry-usc1")
    clients = GcpClients(endpoint=fake.url)
    ctx = RunContext(retry=RetryPolicy(attempts=2, base_s=0.01))

    assert "promoted" in gcp.promote_migration_job(clients, ctx, "ml", "us-central1", "registry-usc1")
    instance = fake.sql_instances[("ml", "registry-usc1")]
    assert instance["instanceType"] == "CLOUD_SQL_INSTANCE" and "masterInstanceName" not in instance
    assert "already promoted" in gcp.promote_migration_job(clients, ctx, "ml", "us-central1", "registry-usc1")

    assert instance["settings"] == {"availabilityType": "ZONAL", "deletionProtectionEnabled": False}
    assert "availabilityType, deletionProtectionEnabled set" in gcp.harden_promoted_instance(
        clients, ctx, "ml", "registry-usc1")
    assert instance["settings"] == {"availabilityType": "REGIONAL", "deletionProtectionEnabled": True}
    assert "already regional and protected" in gcp.harden_promoted_instance(clients, ctx, "ml", "registry-usc1")
    assert fake.ledger.count(service="datamigration", method="POST") == 1
    assert fake.ledger.count(service="sqladmin", method="PATCH") == 1


def test_a_missing_migration_job_is_not_retried(fake_gcp):
    from mlfleet.dr import gcp
    from mlfleet.dr.retry import GaveUp

    fake, _ = fake_gcp
    ctx = RunContext(retry=RetryPolicy(attempts=3, base_s=0.01))
    with pytest.raises((GaveUp, StepFailed)):
        gcp.promote_migration_job(GcpClients(endpoint=fake.url), ctx, "ml", "us-central1", "nope")
    assert fake.ledger.count(service="datamigration", method="GET") == 1  # a 404 is no transient fault


def test_gcp_region_fault_is_retried_then_reported(fake_gcp):
    from mlfleet.dr import gcp
    from mlfleet.dr.retry import TRANSIENT, GaveUp
    from mlfleet.dr.sandbox.faults import Fault

    fake, faults = fake_gcp
    faults.add(Fault(region="us-central1", service="gke"))
    ctx = RunContext(retry=RetryPolicy(attempts=3, base_s=0.01))
    with pytest.raises(GaveUp) as caught:
        gcp.raise_pool_minimum(GcpClients(endpoint=fake.url), ctx,
                               node_pool_path("ml", "us-central1", "serving", "gpu"), 2)
    assert caught.value.kind == TRANSIENT
    assert fake.ledger.count(service="gke", method="GET") == 3
