from __future__ import annotations

import json

import pytest

from mlfleet.constructs.aws.monitoring import (
    AlarmSubscription,
    CloudWatchMonitoring,
    CloudWatchMonitoringProps,
    DatabaseLagWatch,
    GpuCapacityWatch,
    ReplicationWatch,
)
from mlfleet.constructs.policy import evaluate_terraform
from mlfleet.constructs.validation import PropsError

from helpers.template import only_resource, resources

ACCOUNT = "333333333333"
PREFIX = "mlfleet-prod-us-east-1"
SOURCE = f"mlfleet-prod-{ACCOUNT}-us-east-1"
WEST = f"mlfleet-prod-{ACCOUNT}-us-west-2"


def props(**overrides) -> CloudWatchMonitoringProps:
    base = dict(name_prefix=PREFIX, account_id=ACCOUNT,
                replications=(ReplicationWatch(source_bucket=SOURCE, destination_bucket=WEST,
                                               rule_id="replicate-to-us-west-2"),),
                database_lag=DatabaseLagWatch(cluster_identifier="mlfleet-prod-registry-us-west-2", rpo_seconds=900),
                gpu_pools=(GpuCapacityWatch(pool="inference", autoscaling_group_name="eks-inference-gpu-1a2b",
                                            minimum_in_service=4),),
                subscriptions=(AlarmSubscription(protocol="email", endpoint="oncall@example.com"),))
    return CloudWatchMonitoringProps(**{**base, **overrides})


def alarms(tf: dict) -> dict[str, dict]:
    return {a["alarm_name"]: a for a in resources(tf, "aws_cloudwatch_metric_alarm").values()}


def test_alarms_notify_an_encrypted_topic_that_cloudwatch_can_publish_to(synth):
    tf = synth(lambda stack: CloudWatchMonitoring(stack, "monitoring", props()))
    assert [f for f in evaluate_terraform("test", tf) if f.rule != "MLF006"] == []
    topic = only_resource(tf, "aws_sns_topic")
    assert topic["name"] == f"{PREFIX}-alarms" and topic["kms_master_key_id"].startswith("${aws_kms_key.")
    key_policy = json.loads(only_resource(tf, "aws_kms_key")["policy"])
    services = next(s for s in key_policy["Statement"] if s["Sid"] == "ServicesUseKey")
    assert services["Principal"] == {"Service": ["cloudwatch.amazonaws.com"]}
    assert {"kms:Decrypt", "kms:GenerateDataKey*"} <= set(services["Action"])
    topic_ref = tf["output"]["alarm_topic_arn"]["value"]
    assert topic_ref.startswith("${aws_sns_topic.")
    subscription = only_resource(tf, "aws_sns_topic_subscription")
    assert (subscription["protocol"], subscription["endpoint"], subscription["topic_arn"]) == (
        "email", "oncall@example.com", topic_ref)
    found = alarms(tf)
    assert len(found) == 4
    for alarm in found.values():
        assert alarm["alarm_actions"] == [topic_ref] and alarm["ok_actions"] == [topic_ref]


def test_artifact_replication_alarms_watch_the_rule_and_ignore_idle_silence(synth):
    found = alarms(synth(lambda stack: CloudWatchMonitoring(stack, "monitoring", props(
        replication_latency_threshold_seconds=600))))
    dims = {"SourceBucket": SOURCE, "DestinationBucket": WEST, "RuleId": "replicate-to-us-west-2"}
    latency = found[f"{PREFIX}-artifact-replication-latency-replicate-to-us-west-2"]
    assert (latency["namespace"], latency["metric_name"], latency["statistic"]) == (
        "AWS/S3", "ReplicationLatency", "Maximum")
    assert latency["dimensions"] == dims
    assert (latency["comparison_operator"], latency["threshold"]) == ("GreaterThanThreshold", 600)
    assert latency["treat_missing_data"] == "notBreaching"
    failed = found[f"{PREFIX}-artifact-replication-failed-replicate-to-us-west-2"]
    assert (failed["metric_name"], failed["statistic"], failed["threshold"]) == (
        "OperationsFailedReplication", "Sum", 0)
    assert failed["dimensions"] == dims and failed["treat_missing_data"] == "notBreaching"


def test_registry_lag_alarms_before_the_rpo_blocks_commits_and_on_silence(synth):
    found = alarms(synth(lambda stack: CloudWatchMonitoring(stack, "monitoring", props())))
    lag = found[f"{PREFIX}-registry-replication-lag-mlfleet-prod-registry-us-west-2"]
    assert (lag["namespace"], lag["metric_name"]) == ("AWS/RDS", "AuroraGlobalDBReplicationLag")
    assert lag["dimensions"] == {"DBClusterIdentifier": "mlfleet-prod-registry-us-west-2"}
    assert lag["threshold"] == 450_000  # half of a 900 s RPO, in milliseconds
    assert lag["treat_missing_data"] == "breaching"


def test_gpu_capacity_alarm_takes_the_group_name_as_a_token(synth):
    from cdktn import TerraformVariable

    def build(stack):
        group = TerraformVariable(stack, "asg", type="string").string_value
        CloudWatchMonitoring(stack, "monitoring", props(
            replications=(), database_lag=None, subscriptions=(),
            gpu_pools=(GpuCapacityWatch(pool="inference", autoscaling_group_name=group, minimum_in_service=2),)))

    found = alarms(synth(build))
    assert set(found) == {f"{PREFIX}-gpu-capacity-inference"}
    gpu = found[f"{PREFIX}-gpu-capacity-inference"]
    assert (gpu["namespace"], gpu["metric_name"], gpu["statistic"]) == (
        "AWS/AutoScaling", "GroupInServiceInstances", "Minimum")
    assert gpu["dimensions"] == {"AutoScalingGroupName": "${var.asg}"}
    assert (gpu["comparison_operator"], gpu["threshold"]) == ("LessThanThreshold", 2)
    assert gpu["treat_missing_data"] == "breaching"


@pytest.mark.parametrize(("overrides", "prop", "reason"), [
    (dict(name_prefix="bad prefix"), "name_prefix", "letters, digits"),
    (dict(replications=(ReplicationWatch(source_bucket="Bad", destination_bucket=WEST, rule_id="r"),)),
     r"replications\[0\].source_bucket", "not a valid S3 bucket name"),
    (dict(replications=(ReplicationWatch(source_bucket=SOURCE, destination_bucket=WEST, rule_id="r"),) * 2),
     r"replications\[1\].rule_id", "watched twice"),
    (dict(database_lag=DatabaseLagWatch(cluster_identifier="c", rpo_seconds=900, budget_fraction=1.5)),
     "database_lag.budget_fraction", r"not in \(0, 1\]"),
    (dict(gpu_pools=(GpuCapacityWatch(pool="batch", autoscaling_group_name="g", minimum_in_service=0),)),
     r"gpu_pools\[0\].minimum_in_service", "at least 1"),
    (dict(subscriptions=(AlarmSubscription(protocol="https", endpoint="http://hooks.example.com/x"),)),
     r"subscriptions\[0\].endpoint", "not a valid https endpoint"),
    (dict(subscriptions=(AlarmSubscription(protocol="sms", endpoint="+15550100"),)),
     r"subscriptions\[0\].protocol", "not one of"),
    (dict(replication_latency_threshold_seconds=30), "replication_latency_threshold_seconds", "at least 60"),
])
def test_invalid_props_are_rejected_with_the_prop_and_the_reason(synth, overrides, prop, reason):
    with pytest.raises(PropsError, match=f"monitoring: {prop}: .*{reason}"):
        synth(lambda stack: CloudWatchMonitoring(stack, "monitoring", props(**overrides)))
