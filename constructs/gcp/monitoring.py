"""What a Google Cloud failover depends on, in one region: health checks on the runtime's
failover health, and alerts on registry replica lag and on the serving endpoint's health.

- The region's load-balancer health check asks the runtime's failover-health path. A load
  balancer health check matches its expected `response` against the BEGINNING of the body
  (not anywhere in it, as Route 53 does), so it expects the exact start of the runtime's
  healthy body, `{"status":"MLFLEET_FAILOVER_OK"`; the runtime answers 503 otherwise. A backend
  service (the routing's) takes `health_check_id`; the runbooks read it from the region's
  `failover_health_check` output.
- An uptime check from Google's probes (when the region's serving hostname is public) checks
  the same path over HTTPS and requires `$.status == MLFLEET_FAILOVER_OK` in the JSON body;
  an alert fires when it fails from more than one location.
- Registry replication: the DR replica's `replica_lag` above a share of the RPO. Silence is a
  breach there: a replica that stops reporting lag has stopped replicating or is gone.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from cdktn import TerraformOutput
from cdktn_provider_google.compute_region_health_check import (
    ComputeRegionHealthCheck,
    ComputeRegionHealthCheckHttpHealthCheck,
    ComputeRegionHealthCheckLogConfig,
)
from cdktn_provider_google.monitoring_alert_policy import (
    MonitoringAlertPolicy,
    MonitoringAlertPolicyAlertStrategy,
    MonitoringAlertPolicyConditions,
    MonitoringAlertPolicyConditionsConditionThreshold,
    MonitoringAlertPolicyConditionsConditionThresholdAggregations,
    MonitoringAlertPolicyDocumentation,
)
from cdktn_provider_google.monitoring_notification_channel import MonitoringNotificationChannel
from cdktn_provider_google.monitoring_uptime_check_config import (
    MonitoringUptimeCheckConfig,
    MonitoringUptimeCheckConfigContentMatchers,
    MonitoringUptimeCheckConfigContentMatchersJsonPathMatcher,
    MonitoringUptimeCheckConfigHttpCheck,
    MonitoringUptimeCheckConfigMonitoredResource,
)
from constructs import Construct

from mlfleet.constructs.validation import (
    DNS_NAME,
    EMAIL,
    GOOGLE_NOTIFICATION_CHANNEL,
    GOOGLE_PROJECT_ID,
    GOOGLE_REGION,
    GOOGLE_RESOURCE_NAME,
    HTTP_PATH,
    require,
)

FAILOVER_OK_TOKEN = "MLFLEET_FAILOVER_OK"
HEALTHY_BODY_START = '{"status":"%s"' % FAILOVER_OK_TOKEN
"""How the runtime's healthy failover-health body begins (compact JSON, `status` first)."""
REPLICA_LAG_METRIC = "cloudsql.googleapis.com/database/replication/replica_lag"
UPTIME_METRIC = "monitoring.googleapis.com/uptime_check/check_passed"


@dataclass(frozen=True, kw_only=True)
class FailoverHealthCheck:
    """The runtime's failover health, as the region's load balancer and uptime checks ask it."""
    port: int = 8000
    """The runtime's HTTP port on its pods (the load balancer reaches pods through NEGs). Default: `8000`."""
    path: str = "/v2/health/failover"
    """The runtime's failover health endpoint; default `/v2/health/failover`."""
    check_interval_sec: int = 5
    """Seconds between checks; default `5`."""
    timeout_sec: int = 5
    """Seconds a check may take (at most the interval); default `5`."""
    unhealthy_threshold: int = 3
    """Consecutive failures before a backend is unhealthy (5 s x 3 = 15 s to detect). Default: `3`."""
    healthy_threshold: int = 2
    """Consecutive successes before a backend is healthy again; default `2`."""
    public_hostname: str | None = None
    """The region's public serving hostname: adds an HTTPS uptime check and its alert. Default: none."""


@dataclass(frozen=True, kw_only=True)
class ReplicaLagWatch:
    """A Cloud SQL DR replica in this region, and the RPO its lag is measured against."""
    instance_name: str
    rpo_seconds: int
    budget_fraction: float = 0.5
    """Alert at this share of the RPO, while there is time to act. Default: `0.5`."""


@dataclass(frozen=True, kw_only=True)
class GcpMonitoringProps:
    project_id: str
    region: str
    name_prefix: str
    """Start of resource names, e.g. `mlfleet-prod-us-central1`."""
    health_check: FailoverHealthCheck = field(default_factory=FailoverHealthCheck)
    """The failover health check; default `FailoverHealthCheck()`."""
    replica_lag: tuple[ReplicaLagWatch, ...] = ()
    """Registry replicas whose lag to alert on; default none."""
    alert_emails: tuple[str, ...] = ()
    """Email addresses alerted (a channel each); default none."""
    notification_channels: tuple[str, ...] = ()
    """Existing channels (`projects/P/notificationChannels/ID`), e.g. PagerDuty or Slack. Default: none."""
    labels: dict[str, str] = field(default_factory=dict)
    """Google Cloud labels on the construct's resources; default none."""


class GcpMonitoring(Construct):
    """Failover health checks and replication alerts of one region (see module docstring)."""

    def __init__(self, scope: Construct, id_: str, props: GcpMonitoringProps):
        super().__init__(scope, id_)
        _validate(self, props)
        project, check = props.project_id, props.health_check
        labels = dict(props.labels) or None

        channels = list(props.notification_channels)
        for i, email in enumerate(props.alert_emails):
            channel = MonitoringNotificationChannel(
                self, f"email-{i}", project=project, type="email", display_name=f"{props.name_prefix} {email}",
                labels={"email_address": email}, user_labels=labels)
            channels.append(channel.id)
        self.notification_channels = channels

        self.health_check = ComputeRegionHealthCheck(
            self, "failover-health", project=project, region=props.region, name=f"{props.name_prefix}-failover",
            description="mlfleet runtime failover health", check_interval_sec=check.check_interval_sec,
            timeout_sec=check.timeout_sec, healthy_threshold=check.healthy_threshold,
            unhealthy_threshold=check.unhealthy_threshold,
            http_health_check=ComputeRegionHealthCheckHttpHealthCheck(
                port=check.port, request_path=check.path, response=HEALTHY_BODY_START),
            log_config=ComputeRegionHealthCheckLogConfig(enable=True))
        self.health_check_id: str = self.health_check.id
        TerraformOutput(self, "failover_health_check", value=self.health_check.id,
                        description="Load-balancer health check on the runtime's failover health"
                        ).override_logical_id("failover_health_check")

        self.uptime_check = None
        if check.public_hostname:
            self.uptime_check = MonitoringUptimeCheckConfig(
                self, "failover-uptime", project=project, display_name=f"{props.name_prefix} failover health",
                timeout="10s", period="60s",
                monitored_resource=MonitoringUptimeCheckConfigMonitoredResource(
                    type="uptime_url", labels={"project_id": project, "host": check.public_hostname}),
                http_check=MonitoringUptimeCheckConfigHttpCheck(
                    path=check.path, port=443, use_ssl=True, validate_ssl=True, request_method="GET"),
                content_matchers=[MonitoringUptimeCheckConfigContentMatchers(
                    matcher="MATCHES_JSON_PATH", content=FAILOVER_OK_TOKEN,
                    json_path_matcher=MonitoringUptimeCheckConfigContentMatchersJsonPathMatcher(
                        json_path="$.status", json_matcher="EXACT_MATCH"))],
                user_labels=labels)
            self._alert(props, "uptime", f"{props.name_prefix} failover health failing", (
                f'metric.type = "{UPTIME_METRIC}" AND resource.type = "uptime_url" AND '
                f'metric.labels.check_id = "{self.uptime_check.uptime_check_id}"'),
                threshold=1, aligner="ALIGN_NEXT_OLDER", reducer="REDUCE_COUNT_FALSE", group_by=["resource.label.*"],
                missing_is_breach=False,
                runbook=f"https://{check.public_hostname}{check.path} does not answer {FAILOVER_OK_TOKEN} from more "
                        "than one probe location: the region may not take traffic.")

        self.replica_lag_alerts = [self._alert(
            props, f"replica-lag-{watch.instance_name}",
            f"{props.name_prefix} registry replica lag {watch.instance_name}",
            (f'metric.type = "{REPLICA_LAG_METRIC}" AND resource.type = "cloudsql_database" AND '
             f'resource.labels.database_id = "{project}:{watch.instance_name}"'),
            threshold=watch.rpo_seconds * watch.budget_fraction, aligner="ALIGN_MAX", reducer=None, group_by=None,
            missing_is_breach=True,
            runbook=(f"Cloud SQL replica {watch.instance_name} lags more than {watch.budget_fraction:.0%} of the "
                     f"registry RPO ({watch.rpo_seconds} s), or stopped reporting: a failover now would lose "
                     "registry writes."))
            for watch in props.replica_lag]

    def _alert(self, props: GcpMonitoringProps, id_: str, name: str, filter_: str, *, threshold: float,
               aligner: str, reducer: str | None, group_by: list[str] | None, missing_is_breach: bool,
               runbook: str) -> MonitoringAlertPolicy:
        return MonitoringAlertPolicy(
            self, id_, project=props.project_id, display_name=name, combiner="OR", severity="CRITICAL",
            conditions=[MonitoringAlertPolicyConditions(
                display_name=name, condition_threshold=MonitoringAlertPolicyConditionsConditionThreshold(
                    filter=filter_, comparison="COMPARISON_GT", threshold_value=threshold, duration="60s",
                    aggregations=[MonitoringAlertPolicyConditionsConditionThresholdAggregations(
                        alignment_period="60s", per_series_aligner=aligner, cross_series_reducer=reducer,
                        group_by_fields=group_by)],
                    evaluation_missing_data="EVALUATION_MISSING_DATA_ACTIVE" if missing_is_breach
                    else "EVALUATION_MISSING_DATA_INACTIVE"))],
            documentation=MonitoringAlertPolicyDocumentation(content=runbook, mime_type="text/markdown"),
            alert_strategy=MonitoringAlertPolicyAlertStrategy(auto_close="1800s"),
            notification_channels=self.notification_channels or None, user_labels=dict(props.labels) or None)


def _validate(scope: Construct, p: GcpMonitoringProps) -> None:
    require(bool(GOOGLE_PROJECT_ID.fullmatch(p.project_id)), scope, "project_id",
            f"{p.project_id!r} is not a Google Cloud project id")
    require(bool(GOOGLE_REGION.fullmatch(p.region)), scope, "region", f"{p.region!r} is not a Google Cloud region")
    require(bool(GOOGLE_RESOURCE_NAME.fullmatch(p.name_prefix)) and len(p.name_prefix) <= 50, scope, "name_prefix",
            f"{p.name_prefix!r}: lowercase letters, digits and '-', starting with a letter, at most 50 characters")
    check = p.health_check
    require(1 <= check.port <= 65535, scope, "health_check.port", f"{check.port} is not a TCP port")
    require(bool(HTTP_PATH.fullmatch(check.path)), scope, "health_check.path", f"{check.path!r} is not an HTTP path")
    require(1 <= check.timeout_sec <= check.check_interval_sec <= 300, scope, "health_check.timeout_sec",
            f"must be at least 1 s and at most check_interval_sec ({check.check_interval_sec} s, at most 300)")
    for prop in ("unhealthy_threshold", "healthy_threshold"):
        require(1 <= getattr(check, prop) <= 10, scope, f"health_check.{prop}", "must be 1 to 10")
    if check.public_hostname is not None:
        require(bool(DNS_NAME.fullmatch(check.public_hostname)), scope, "health_check.public_hostname",
                f"{check.public_hostname!r} is not a DNS name")
    for i, watch in enumerate(p.replica_lag):
        require(bool(GOOGLE_RESOURCE_NAME.fullmatch(watch.instance_name)), scope, f"replica_lag[{i}].instance_name",
                f"{watch.instance_name!r} is not a Cloud SQL instance name")
        require(watch.rpo_seconds >= 1, scope, f"replica_lag[{i}].rpo_seconds", "must be at least 1 second")
        require(0 < watch.budget_fraction <= 1, scope, f"replica_lag[{i}].budget_fraction", "must be in (0, 1]")
    require(len({w.instance_name for w in p.replica_lag}) == len(p.replica_lag), scope, "replica_lag",
            "watches an instance twice")
    for i, email in enumerate(p.alert_emails):
        require(bool(EMAIL.fullmatch(email)), scope, f"alert_emails[{i}]", f"{email!r} is not an email address")
    for i, channel in enumerate(p.notification_channels):
        require(bool(GOOGLE_NOTIFICATION_CHANNEL.fullmatch(channel)), scope, f"notification_channels[{i}]",
                f"{channel!r} is not a notification channel (projects/P/notificationChannels/ID)")
    require(bool(p.alert_emails or p.notification_channels), scope, "alert_emails",
            "give alert_emails or notification_channels: an alert nobody receives protects nothing")
