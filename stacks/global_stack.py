"""`<env>-global`: what has no region of its own on AWS — Route 53 routing and health checks over
every region's endpoint (on either cloud), and the Aurora global cluster the AWS regions'
registry databases join. (Google Cloud's global resources are in `<env>-gcp-global`.)"""
from __future__ import annotations

from cdktn import TerraformOutput, TerraformStack
from constructs import Construct

from mlfleet.constructs.aws.aurora_registry import AuroraGlobalCluster, AuroraGlobalClusterProps
from mlfleet.constructs.aws.dr_runbook_policy import DrRunbookPolicy, DrRunbookPolicyProps, RunbookRegion
from mlfleet.constructs.aws.failover_routing import (
    RegionalEndpoint,
    Route53FailoverRouting,
    Route53FailoverRoutingProps,
    RoutingControlNames,
)
from mlfleet.stacks.environment import Environment, naming, routing_control
from mlfleet.stacks.stack_base import configure_aws_stack

# Route 53's control plane region: the provider's region when no AWS region hosts the platform.
ROUTE53_HOME = "us-east-1"


def global_state_region(env: Environment) -> str:
    """The global stack's state lives in the first standby: routing is what must still be
    plannable when the primary region is down. A single-region environment has only one place."""
    return env.standbys[0].name if env.standbys else env.primary.name


class GlobalStack(TerraformStack):
    def __init__(self, scope: Construct, env: Environment):
        super().__init__(scope, naming.global_stack_name(env.name))
        # The global cluster is created through the primary region's RDS endpoint; Route 53 is
        # global whatever the provider's region.
        aws_regions = env.regions_on("aws")
        configure_aws_stack(self, env, env.primary.name if env.primary.cloud == "aws" else ROUTE53_HOME,
                            state_region=global_state_region(env), state_name="global")
        self.global_cluster = AuroraGlobalCluster(self, "registry", AuroraGlobalClusterProps(
            global_cluster_identifier=naming.global_cluster_id(env.name),
            engine_version=env.registry_database.engine_version)) if aws_regions else None
        serving = env.serving
        self.routing = Route53FailoverRouting(self, "routing", Route53FailoverRoutingProps(
            hosted_zone_id=serving.hosted_zone_id, record_name=serving.dns_name,
            endpoints=tuple(RegionalEndpoint(region=r.name, hostname=env.endpoint(r), role=r.role,
                                             weight=routing_control.WEIGHT) for r in env.regions),
            policy=serving.routing, ttl=serving.record_ttl, health_path=serving.failover_health_path,
            request_interval=serving.health_check_interval,
            failure_threshold=serving.health_check_failure_threshold,
            routing_controls=_routing_control_names(env) if routing_control.enabled(env) else None))
        # What the DR runbooks may do, for the operators (a single-region environment has no runbook).
        self.dr_runbooks = _dr_runbook_policy(self, env, self.routing) if aws_regions and len(env.regions) > 1 \
            else None


def _dr_runbook_policy(stack: TerraformStack, env: Environment, routing: Route53FailoverRouting) -> DrRunbookPolicy:
    account = env.aws.account_id
    policy = DrRunbookPolicy(stack, "dr-runbooks", DrRunbookPolicyProps(
        policy_name=naming.dr_runbook_policy(env.name), account_id=account,
        global_cluster_identifier=naming.global_cluster_id(env.name),
        regions=tuple(RunbookRegion(
            region=r.name, db_cluster_identifier=naming.db_cluster_id(env.name, r.name),
            eks_cluster_name=naming.cluster_name(env.name, r.name),
            node_group_names=tuple(naming.node_group_name(p.name) for p in env.gpu_pools),
            artifact_bucket=naming.artifact_bucket(env.name, account, r.name),
            lock_table_name=naming.dr_lock_table(env.name)) for r in env.regions_on("aws")),
        models_prefix=env.artifact_store.models_prefix, artifact_key_alias=naming.artifact_key_alias(env.name),
        lock_key_alias=naming.dr_lock_key_alias(env.name),
        signing_key_alias=naming.manifest_signing_key_alias(env.name),
        hosted_zone_id=env.serving.hosted_zone_id,
        routing_control_arns=tuple(routing.routing_control_arns.values()),
        recovery_cluster_arn=routing.recovery_cluster_arn,
        attach_to_role_arns=tuple(a for a in env.identities.operator_principals if f"::{account}:" in a)))
    TerraformOutput(stack, "dr-runbook-policy-arn", value=policy.policy_arn,
                    description="The DR runbooks' IAM policy, attached to this account's operator roles"
                    ).override_logical_id("dr_runbook_policy_arn")
    return policy


def _routing_control_names(env: Environment) -> RoutingControlNames:
    return RoutingControlNames(
        cluster=routing_control.cluster_name(env.name), control_panel=routing_control.control_panel_name(env.name),
        safety_rule=routing_control.safety_rule_name(env.name),
        controls={r.name: routing_control.routing_control_name(env.name, r.name) for r in env.regions})
