"""Alarms on what a failover depends on, in one region, sent to a KMS-encrypted SNS topic.

- Artifact replication (S3 replication metrics, in the source region): latency above the
  Replication Time Control window, or any failed replication operation.
- Registry replication (Aurora, reported by each secondary cluster in its own region): global
  replication lag approaching the RPO budget.
- GPU capacity: a node group's Auto Scaling group with fewer in-service instances than the
  pool's expected minimum. `GroupInServiceInstances` is published only for groups with group
  metrics collection enabled.

Missing data is treated per alarm by what silence means for that metric (see each alarm).
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Literal

from cdktn import TerraformOutput, Token
from cdktn_provider_aws.cloudwatch_metric_alarm import CloudwatchMetricAlarm
from cdktn_provider_aws.sns_topic import SnsTopic
from cdktn_provider_aws.sns_topic_subscription import SnsTopicSubscription
from constructs import Construct

from mlfleet.constructs.encryption_key import EncryptionKey, EncryptionKeyProps
from mlfleet.constructs.validation import require

_NAME_PREFIX = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_-]{0,99}$")
_BUCKET_NAME = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_RULE_ID = re.compile(r"^[\w.-]{1,255}$")
_CLUSTER_ID = re.compile(r"^[a-z][a-z0-9]*(-[a-z0-9]+)*$")
_ENDPOINTS = {
    "email": re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$"),
    "https": re.compile(r"^https://\S+$"),
    "sqs": re.compile(r"^arn:aws[a-z-]*:sqs:[a-z0-9-]+:\d{12}:\S+$"),
    "lambda": re.compile(r"^arn:aws[a-z-]*:lambda:[a-z0-9-]+:\d{12}:function:\S+$"),
}


@dataclass(frozen=True, kw_only=True)
class ReplicationWatch:
    """One S3 replication rule, as the artifact store creates it on the primary."""
    source_bucket: str
    destination_bucket: str
    rule_id: str


@dataclass(frozen=True, kw_only=True)
class DatabaseLagWatch:
    """A secondary registry cluster in this region, and the RPO its lag is measured against."""
    cluster_identifier: str
    rpo_seconds: int
    budget_fraction: float = 0.5
    """Alarm at this share of the RPO: at the full RPO, rds.global_db_rpo already blocks commits."""


@dataclass(frozen=True, kw_only=True)
class GpuCapacityWatch:
    pool: str
    autoscaling_group_name: str
    """The node group's Auto Scaling group: a name, or a token from the node group in this stack."""
    minimum_in_service: int
    """Alarm below this many in-service instances (the pool's size in this region's role)."""


@dataclass(frozen=True, kw_only=True)
class AlarmSubscription:
    protocol: Literal["email", "https", "sqs", "lambda"]
    endpoint: str


@dataclass(frozen=True, kw_only=True)
class MonitoringProps:
    name_prefix: str
    """Start of the topic's and every alarm's name, e.g. `mlfleet-prod-us-east-1`."""
    account_id: str
    key_alias: str | None = None
    """Alias of the topic's key; default `<name_prefix>-alarms`."""
    replications: tuple[ReplicationWatch, ...] = ()
    replication_latency_threshold_seconds: int = 900
    """Default: Replication Time Control's 15-minute commitment."""
    database_lag: DatabaseLagWatch | None = None
    gpu_pools: tuple[GpuCapacityWatch, ...] = ()
    subscriptions: tuple[AlarmSubscription, ...] = ()
    tags: dict[str, str] = field(default_factory=dict)


class Monitoring(Construct):
    """CloudWatch alarms on replication and GPU capacity, notifying an encrypted SNS topic."""

    def __init__(self, scope: Construct, id_: str, props: MonitoringProps):
        super().__init__(scope, id_)
        _validate(self, props)
        self._name_prefix = props.name_prefix
        self._tags = dict(props.tags) or None
        tags = self._tags
        # CloudWatch must be able to use the key to publish to the encrypted topic.
        self.key = EncryptionKey(self, "key", EncryptionKeyProps(
            alias=props.key_alias or f"{props.name_prefix}-alarms", account_id=props.account_id,
            description=f"mlfleet alarm notifications {props.name_prefix}",
            service_principals=("cloudwatch.amazonaws.com",), tags=props.tags))
        self.topic = SnsTopic(self, "topic", name=f"{props.name_prefix}-alarms",
                              kms_master_key_id=self.key.key_arn, tags=tags)
        for i, subscription in enumerate(props.subscriptions):
            SnsTopicSubscription(self, f"subscription-{i}", topic_arn=self.topic.arn,
                                 protocol=subscription.protocol, endpoint=subscription.endpoint)
        TerraformOutput(self, "topic-arn", value=self.topic.arn).override_logical_id("alarm_topic_arn")

        self.alarms: dict[str, CloudwatchMetricAlarm] = {}
        for watch in props.replications:
            dimensions = {"SourceBucket": watch.source_bucket, "DestinationBucket": watch.destination_bucket,
                          "RuleId": watch.rule_id}
            # S3 publishes replication metrics only while objects are pending or failing:
            # silence is an idle bucket, not an outage.
            self._alarm(
                f"artifact-replication-latency-{watch.rule_id}",
                f"Artifacts take longer than {props.replication_latency_threshold_seconds}s to reach "
                f"{watch.destination_bucket}: the standby would serve stale models",
                namespace="AWS/S3", metric_name="ReplicationLatency", dimensions=dimensions,
                statistic="Maximum", period=300, evaluation_periods=1,
                comparison_operator="GreaterThanThreshold",
                threshold=props.replication_latency_threshold_seconds, treat_missing_data="notBreaching")
            self._alarm(
                f"artifact-replication-failed-{watch.rule_id}",
                f"Objects failed to replicate to {watch.destination_bucket}",
                namespace="AWS/S3", metric_name="OperationsFailedReplication", dimensions=dimensions,
                statistic="Sum", period=300, evaluation_periods=1,
                comparison_operator="GreaterThanThreshold", threshold=0, treat_missing_data="notBreaching")

        if props.database_lag:
            lag = props.database_lag
            threshold_ms = round(lag.rpo_seconds * 1000 * lag.budget_fraction)
            # A secondary that stops reporting lag is not replicating (detached, stopped or
            # broken): silence counts against the RPO.
            self._alarm(
                f"registry-replication-lag-{lag.cluster_identifier}",
                f"Registry replica {lag.cluster_identifier} lags more than {threshold_ms} ms "
                f"({lag.budget_fraction:g} of the {lag.rpo_seconds}s RPO)",
                namespace="AWS/RDS", metric_name="AuroraGlobalDBReplicationLag",
                dimensions={"DBClusterIdentifier": lag.cluster_identifier}, statistic="Maximum", period=60,
                evaluation_periods=3, datapoints_to_alarm=3, comparison_operator="GreaterThanThreshold",
                threshold=threshold_ms, treat_missing_data="breaching")

        for watch in props.gpu_pools:
            # No data means group metrics are off or the group is gone: either way nobody can
            # see the capacity failover relies on. Ten minutes rides out a node replacement.
            self._alarm(
                f"gpu-capacity-{watch.pool}",
                f"GPU pool {watch.pool} has fewer than {watch.minimum_in_service} nodes in service",
                namespace="AWS/AutoScaling", metric_name="GroupInServiceInstances",
                dimensions={"AutoScalingGroupName": watch.autoscaling_group_name}, statistic="Minimum",
                period=60, evaluation_periods=10, datapoints_to_alarm=10, comparison_operator="LessThanThreshold",
                threshold=watch.minimum_in_service, treat_missing_data="breaching")

    @property
    def topic_arn(self) -> str:
        return self.topic.arn

    def _alarm(self, suffix: str, description: str, **metric) -> None:
        name = f"{self._name_prefix}-{suffix}"
        self.alarms[name] = CloudwatchMetricAlarm(
            self, suffix, alarm_name=name, alarm_description=description,
            alarm_actions=[self.topic.arn], ok_actions=[self.topic.arn], tags=self._tags,
            **metric)


def _validate(scope: Construct, props: MonitoringProps) -> None:
    require(bool(_NAME_PREFIX.match(props.name_prefix)), scope, "name_prefix",
            f"{props.name_prefix!r} must be letters, digits, '-' or '_' (at most 100 characters)")
    require(re.fullmatch(r"\d{12}", props.account_id) is not None, scope, "account_id",
            f"{props.account_id!r} is not a 12-digit AWS account id")
    require(props.replication_latency_threshold_seconds >= 60, scope, "replication_latency_threshold_seconds",
            "must be at least 60 s (replication metrics are per minute)")
    rule_ids: set[str] = set()
    for i, watch in enumerate(props.replications):
        where = f"replications[{i}]"
        for prop in ("source_bucket", "destination_bucket"):
            value = getattr(watch, prop)
            require(Token.is_unresolved(value) or bool(_BUCKET_NAME.match(value)), scope, f"{where}.{prop}",
                    f"{value!r} is not a valid S3 bucket name")
        require(bool(_RULE_ID.match(watch.rule_id)), scope, f"{where}.rule_id",
                f"{watch.rule_id!r} is not a replication rule id")
        require(watch.rule_id not in rule_ids, scope, f"{where}.rule_id",
                f"{watch.rule_id} is watched twice (alarm names derive from it)")
        rule_ids.add(watch.rule_id)
    if props.database_lag:
        lag = props.database_lag
        require(bool(_CLUSTER_ID.match(lag.cluster_identifier)), scope, "database_lag.cluster_identifier",
                f"{lag.cluster_identifier!r} is not an RDS cluster identifier")
        require(lag.rpo_seconds >= 1, scope, "database_lag.rpo_seconds", "must be at least 1 second")
        require(0 < lag.budget_fraction <= 1, scope, "database_lag.budget_fraction",
                f"{lag.budget_fraction} is not in (0, 1]")
    pools: set[str] = set()
    for i, watch in enumerate(props.gpu_pools):
        where = f"gpu_pools[{i}]"
        require(bool(_NAME_PREFIX.match(watch.pool)), scope, f"{where}.pool", f"{watch.pool!r} is not a pool name")
        require(watch.pool not in pools, scope, f"{where}.pool", f"{watch.pool} is watched twice")
        require(Token.is_unresolved(watch.autoscaling_group_name) or bool(watch.autoscaling_group_name.strip()),
                scope, f"{where}.autoscaling_group_name", "is empty")
        require(watch.minimum_in_service >= 1, scope, f"{where}.minimum_in_service",
                "must be at least 1; a pool allowed to be empty has no capacity to alarm on")
        pools.add(watch.pool)
    for i, subscription in enumerate(props.subscriptions):
        pattern = _ENDPOINTS.get(subscription.protocol)
        require(pattern is not None, scope, f"subscriptions[{i}].protocol",
                f"{subscription.protocol!r} is not one of {', '.join(sorted(_ENDPOINTS))}")
        require(bool(pattern.match(subscription.endpoint)), scope, f"subscriptions[{i}].endpoint",
                f"{subscription.endpoint!r} is not a valid {subscription.protocol} endpoint")
