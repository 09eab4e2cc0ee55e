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

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

from cdktn import TerraformOutput, Token
from cdktn_provider_aws.cloudwatch_metric_alarm import CloudwatchMetricAlarm
from cdktn_provider_aws.sns_topic import SnsTopic
from cdktn_provider_aws.sns_topic_subscription import SnsTopicSubscription
from constructs import Construct

from mlfleet.constructs.aws.kms_key import KmsKey, KmsKeyProps

if TYPE_CHECKING:
    from mlfleet.constructs.aws.eks_gpu_node_pool import EksGpuNodePool
    from mlfleet.constructs.aws.s3_artifact_store import S3ArtifactStore
from mlfleet.constructs.validation import (
    ACCOUNT_ID,
    CLOUDWATCH_NAME,
    EMAIL,
    HTTPS_URL,
    LAMBDA_FUNCTION_ARN,
    RDS_IDENTIFIER,
    S3_BUCKET_NAME,
    S3_REPLICATION_RULE_ID,
    SQS_QUEUE_ARN,
    require,
)

_ENDPOINTS = {
    "email": EMAIL,
    "https": HTTPS_URL,
    "sqs": SQS_QUEUE_ARN,
    "lambda": LAMBDA_FUNCTION_ARN,
}


@dataclass(frozen=True, kw_only=True)
class ReplicationWatch:
    """One S3 replication rule, as the artifact store creates it on the primary."""
    source_bucket: str
    destination_bucket: str
    rule_id: str

    @classmethod
    def of_store(cls, store: S3ArtifactStore) -> tuple[ReplicationWatch, ...]:
        """One watch per replication rule of the store (none on a standby, which only receives)."""
        return tuple(cls(source_bucket=store.bucket_name, destination_bucket=target.bucket_name,
                         rule_id=store.replication_rule_ids[target.region]) for target in store.replicate_to)


@dataclass(frozen=True, kw_only=True)
class DatabaseLagWatch:
    """A secondary registry cluster in this region, and the RPO its lag is measured against."""
    cluster_identifier: str
    rpo_seconds: int
    budget_fraction: float = 0.5
    """Alarm at this share of the RPO: at the full RPO, rds.global_db_rpo already blocks commits. Default: `0.5`."""


@dataclass(frozen=True, kw_only=True)
class GpuCapacityWatch:
    pool: str
    autoscaling_group_name: str
    """The node group's Auto Scaling group: a name, or a token from the node group in this stack."""
    minimum_in_service: int
    """Alarm below this many in-service instances (the pool's size in this region's role)."""

    @classmethod
    def of_pool(cls, pool: EksGpuNodePool) -> GpuCapacityWatch:
        """The pool's Auto Scaling group, alarmed below the size the pool keeps in this region's role."""
        return cls(pool=pool.node_group_name, autoscaling_group_name=pool.autoscaling_group_name,
                   minimum_in_service=pool.scaling_minimum)


@dataclass(frozen=True, kw_only=True)
class AlarmSubscription:
    protocol: Literal["email", "https", "sqs", "lambda"]
    endpoint: str


@dataclass(frozen=True, kw_only=True)
class CloudWatchMonitoringProps:
    name_prefix: str
    """Start of the topic's and every alarm's name, e.g. `mlfleet-prod-us-east-1`."""
    account_id: str
    key_alias: str | None = None
    """Alias of the topic's key; default `<name_prefix>-alarms`."""
    replications: tuple[ReplicationWatch, ...] = ()
    """Replication rules to alarm on (latency, failed operations); default none."""
    replication_latency_threshold_seconds: int = 900
    """Default: Replication Time Control's 15-minute commitment."""
    database_lag: DatabaseLagWatch | None = None
    """The registry replica's lag to alarm on (a standby region); default none."""
    gpu_pools: tuple[GpuCapacityWatch, ...] = ()
    """GPU pools whose in-service nodes to alarm on; default none."""
    subscriptions: tuple[AlarmSubscription, ...] = ()
    """Where the alarm topic notifies; default none."""
    tags: dict[str, str] = field(default_factory=dict)
    """AWS tags on the topic, its key and the alarms; default none."""


class CloudWatchMonitoring(Construct):
    """CloudWatch alarms on replication and GPU capacity, notifying an encrypted SNS topic."""

    def __init__(self, scope: Construct, id_: str, props: CloudWatchMonitoringProps):
        super().__init__(scope, id_)
        _validate(self, props)
        self._name_prefix = props.name_prefix
        self._tags = dict(props.tags) or None
        tags = self._tags
        # CloudWatch must be able to use the key to publish to the encrypted topic.
        self.key = KmsKey(self, "key", KmsKeyProps(
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

        for pool in props.gpu_pools:
            # No data means group metrics are off or the group is gone: either way nobody can
            # see the capacity failover relies on. Ten minutes rides out a node replacement.
            self._alarm(
                f"gpu-capacity-{pool.pool}",
                f"GPU pool {pool.pool} has fewer than {pool.minimum_in_service} nodes in service",
                namespace="AWS/AutoScaling", metric_name="GroupInServiceInstances",
                dimensions={"AutoScalingGroupName": pool.autoscaling_group_name}, statistic="Minimum",
                period=60, evaluation_periods=10, datapoints_to_alarm=10, comparison_operator="LessThanThreshold",
                threshold=pool.minimum_in_service, treat_missing_data="breaching")

    @property
    def topic_arn(self) -> str:
        return self.topic.arn

    def _alarm(self, suffix: str, description: str, **metric) -> None:
        name = f"{self._name_prefix}-{suffix}"
        self.alarms[name] = CloudwatchMetricAlarm(
            self, suffix, alarm_name=name, alarm_description=description,
            alarm_actions=[self.topic.arn], ok_actions=[self.topic.arn], tags=self._tags,
            **metric)


def _validate(scope: Construct, props: CloudWatchMonitoringProps) -> None:
    require(bool(CLOUDWATCH_NAME.fullmatch(props.name_prefix)), scope, "name_prefix",
            f"{props.name_prefix!r} must be letters, digits, '-' or '_' (at most 100 characters)")
    require(bool(ACCOUNT_ID.fullmatch(props.account_id)), scope, "account_id",
            f"{props.account_id!r} is not a 12-digit AWS account id")
    require(props.replication_latency_threshold_seconds >= 60, scope, "replication_latency_threshold_seconds",
            "must be at least 60 s (replication metrics are per minute)")
    rule_ids: set[str] = set()
    for i, watch in enumerate(props.replications):
        where = f"replications[{i}]"
        for prop in ("source_bucket", "destination_bucket"):
            value = getattr(watch, prop)
            require(Token.is_unresolved(value) or bool(S3_BUCKET_NAME.fullmatch(value)), scope, f"{where}.{prop}",
                    f"{value!r} is not a valid S3 bucket name")
        require(bool(S3_REPLICATION_RULE_ID.fullmatch(watch.rule_id)), scope, f"{where}.rule_id",
                f"{watch.rule_id!r} is not a replication rule id")
        require(watch.rule_id not in rule_ids, scope, f"{where}.rule_id",
                f"{watch.rule_id} is watched twice (alarm names derive from it)")
        rule_ids.add(watch.rule_id)
    if props.database_lag:
        lag = props.database_lag
        require(bool(RDS_IDENTIFIER.fullmatch(lag.cluster_identifier)), scope, "database_lag.cluster_identifier",
                f"{lag.cluster_identifier!r} is not an RDS cluster identifier")
        require(lag.rpo_seconds >= 1, scope, "database_lag.rpo_seconds", "must be at least 1 second")
        require(0 < lag.budget_fraction <= 1, scope, "database_lag.budget_fraction",
                f"{lag.budget_fraction} is not in (0, 1]")
    pools: set[str] = set()
    for i, pool in enumerate(props.gpu_pools):
        where = f"gpu_pools[{i}]"
        require(bool(CLOUDWATCH_NAME.fullmatch(pool.pool)), scope, f"{where}.pool", f"{pool.pool!r} is not a pool name")
        require(pool.pool not in pools, scope, f"{where}.pool", f"{pool.pool} is watched twice")
        require(Token.is_unresolved(pool.autoscaling_group_name) or bool(pool.autoscaling_group_name.strip()),
                scope, f"{where}.autoscaling_group_name", "is empty")
        require(pool.minimum_in_service >= 1, scope, f"{where}.minimum_in_service",
                "must be at least 1; a pool allowed to be empty has no capacity to alarm on")
        pools.add(pool.pool)
    for i, subscription in enumerate(props.subscriptions):
        pattern = _ENDPOINTS.get(subscription.protocol)
        require(pattern is not None, scope, f"subscriptions[{i}].protocol",
                f"{subscription.protocol!r} is not one of {', '.join(sorted(_ENDPOINTS))}")
        assert pattern is not None  # for the type checker: require raised otherwise
        require(bool(pattern.match(subscription.endpoint)), scope, f"subscriptions[{i}].endpoint",
                f"{subscription.endpoint!r} is not a valid {subscription.protocol} endpoint")
