from __future__ import annotations

from types import SimpleNamespace

import cdktn
import pytest

from mlfleet.constructs.gcp.monitoring import (
    HEALTHY_BODY_START,
    FailoverHealthCheck,
    GcpMonitoring,
    GcpMonitoringProps,
    ReplicaLagWatch,
)
from mlfleet.constructs.validation import PropsError

from helpers.template import only_resource, resources

PROJECT = "mlfleet-prod"


def google(build):
    from cdktn_provider_google.provider import GoogleProvider

    def _build(stack):
        GoogleProvider(stack, "google", project="p", region="us-east1")
        return build(stack)
    return _build


def props(**overrides) -> GcpMonitoringProps:
    return GcpMonitoringProps(**{**dict(
        project_id=PROJECT, region="us-east1", name_prefix="mlfleet-prod-us-east1",
        alert_emails=("oncall@example.com",)), **overrides})


def test_health_checks_ask_failover_health_and_replica_lag_alerts_at_half_the_rpo(synth):
    tf = synth(google(lambda s: GcpMonitoring(s, "monitoring", props(
        health_check=FailoverHealthCheck(public_hostname="us-east1.models.example.com"),
        replica_lag=(ReplicaLagWatch(instance_name="mlfleet-prod-registry-dr", rpo_seconds=120),),
        notification_channels=(f"projects/{PROJECT}/notificationChannels/42",)))), with_provider=False)
    check = only_resource(tf, "google_compute_region_health_check")
    assert check["region"] == "us-east1" and check["name"] == "mlfleet-prod-us-east1-failover"
    assert check["http_health_check"] == {"port": 8000, "request_path": "/v2/health/failover",
                                          "response": '{"status":"MLFLEET_FAILOVER_OK"'}
    assert (check["check_interval_sec"], check["timeout_sec"], check["unhealthy_threshold"]) == (5, 5, 3)
    assert tf["output"]["failover_health_check"]["value"].endswith(".id}")

    uptime = only_resource(tf, "google_monitoring_uptime_check_config")
    assert uptime["monitored_resource"]["labels"]["host"] == "us-east1.models.example.com"
    assert uptime["http_check"]["use_ssl"] is True and uptime["http_check"]["validate_ssl"] is True
    assert uptime["content_matchers"] == [{"content": "MLFLEET_FAILOVER_OK", "matcher": "MATCHES_JSON_PATH",
                                           "json_path_matcher": {"json_path": "$.status",
                                                                 "json_matcher": "EXACT_MATCH"}}]

    email = only_resource(tf, "google_monitoring_notification_channel")
    assert email["type"] == "email" and email["labels"] == {"email_address": "oncall@example.com"}
    policies = {p["display_name"]: p for p in resources(tf, "google_monitoring_alert_policy").values()}
    lag = policies["mlfleet-prod-us-east1 registry replica lag mlfleet-prod-registry-dr"]
    condition = lag["conditions"][0]["condition_threshold"]
    assert 'metric.type = "cloudsql.googleapis.com/database/replication/replica_lag"' in condition["filter"]
    assert f'resource.labels.database_id = "{PROJECT}:mlfleet-prod-registry-dr"' in condition["filter"]
    assert condition["threshold_value"] == 60 and condition["comparison"] == "COMPARISON_GT"
    assert condition["evaluation_missing_data"] == "EVALUATION_MISSING_DATA_ACTIVE"  # silence is a breach
    uptime_alert = policies["mlfleet-prod-us-east1 failover health failing"]["conditions"][0]["condition_threshold"]
    assert "uptime_check_id" in uptime_alert["filter"]
    assert uptime_alert["aggregations"][0]["cross_series_reducer"] == "REDUCE_COUNT_FALSE"
    assert uptime_alert["threshold_value"] == 1  # more than one probe location failing
    for policy in policies.values():
        channels = policy["notification_channels"]
        assert f"projects/{PROJECT}/notificationChannels/42" in channels and len(channels) == 2


def test_the_health_check_expects_how_the_runtime_healthy_body_begins():
    # A load-balancer health check matches the beginning of the body: pin it to the runtime's real answer.
    from mlfleet.runtime.health import HealthBounds, failover_health
    from mlfleet.runtime.rest_codec import json_bytes

    manager = SimpleNamespace(manifest=SimpleNamespace(models={}), active={}, champion=lambda model: None,
                              signature=None)
    healthy, document = failover_health(manager, HealthBounds(), region="us-east1", draining=False, gpu={})
    assert healthy and json_bytes(document).startswith(HEALTHY_BODY_START.encode())
    failing, document = failover_health(manager, HealthBounds(), region="us-east1", draining=True, gpu={})
    assert not failing and not json_bytes(document).startswith(HEALTHY_BODY_START.encode())


@pytest.fixture
def stack():
    return cdktn.TerraformStack(cdktn.Testing.app(), "test")


@pytest.mark.parametrize("overrides, message", [
    (dict(alert_emails=()), "alert_emails: give alert_emails or notification_channels"),
    (dict(alert_emails=("oncall",)), r"alert_emails\[0\]: 'oncall' is not an email address"),
    (dict(notification_channels=("42",)), r"notification_channels\[0\]: '42' is not a notification channel"),
    (dict(replica_lag=(ReplicaLagWatch(instance_name="db", rpo_seconds=0),)),
     r"replica_lag\[0\].rpo_seconds: must be at least 1 second"),
    (dict(replica_lag=(ReplicaLagWatch(instance_name="db", rpo_seconds=60, budget_fraction=1.5),)),
     r"replica_lag\[0\].budget_fraction: must be in \(0, 1\]"),
    (dict(replica_lag=(ReplicaLagWatch(instance_name="db", rpo_seconds=60),) * 2),
     "replica_lag: watches an instance twice"),
    (dict(health_check=FailoverHealthCheck(timeout_sec=10)),
     "health_check.timeout_sec: must be at least 1 s and at most"),
    (dict(health_check=FailoverHealthCheck(port=0)), "health_check.port: 0 is not a TCP port"),
    (dict(health_check=FailoverHealthCheck(path="health")), "health_check.path: 'health' is not an HTTP path"),
    (dict(health_check=FailoverHealthCheck(public_hostname="https://x")), "health_check.public_hostname: 'https://x'"),
    (dict(region="east"), "region: 'east' is not a Google Cloud region"),
])
def test_invalid_props_name_the_prop(stack, overrides, message):
    with pytest.raises(PropsError, match=message):
        GcpMonitoring(stack, "monitoring", props(**overrides))
