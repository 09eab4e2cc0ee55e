"""DNS failover between regions: Route 53 health checks on each region's failover health, and
failover or weighted records over the regional endpoints. Lives in the `<env>-global` stack.

A region is healthy only when its runtime answers the failover-health path over HTTPS with a
body carrying the runtime's token: a load balancer that answers 200 for a runtime that lost
its champion model does not count.

Failover policy: the PRIMARY record points at the primary endpoint. With one standby, the
SECONDARY record points at it. With several, SECONDARY is an alias to `standby.<record_name>`,
a set of weighted records across the standbys, each with its own health check, so that
failover spreads over the healthy standbys and skips the unhealthy ones.

The DR runbooks read each region's health check id from the `health_check_<region>` outputs.

Routing controls (`routing_controls`, Route 53 Application Recovery Controller): an ARC cluster,
a control panel, one routing control per region, a safety rule that keeps at least one region
ON, and per region a health check of type RECOVERY_CONTROL that follows its control. Each
record is then guarded by a CALCULATED check needing both the region's endpoint check and its
routing control: a runbook moves traffic by turning controls on the cluster's regional
endpoints (ARC's data plane), without a record change (Route 53's control plane, served from
us-east-1). The provider sends the ARC configuration resources to ARC's configuration API in
us-west-2 whatever its region. Outputs: `routing_control_<region>` (each control's ARN),
`routing_control_cluster_arn` and `routing_control_cluster_endpoints` (known only after apply).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from cdktn import TerraformOutput
from cdktn_provider_aws.route53_health_check import Route53HealthCheck
from cdktn_provider_aws.route53_record import (
    Route53Record,
    Route53RecordAlias,
    Route53RecordFailoverRoutingPolicy,
    Route53RecordWeightedRoutingPolicy,
)
from cdktn_provider_aws.route53_recoverycontrolconfig_cluster import Route53RecoverycontrolconfigCluster
from cdktn_provider_aws.route53_recoverycontrolconfig_control_panel import (
    Route53RecoverycontrolconfigControlPanel,
)
from cdktn_provider_aws.route53_recoverycontrolconfig_routing_control import (
    Route53RecoverycontrolconfigRoutingControl,
)
from cdktn_provider_aws.route53_recoverycontrolconfig_safety_rule import (
    Route53RecoverycontrolconfigSafetyRule,
    Route53RecoverycontrolconfigSafetyRuleRuleConfig,
)
from constructs import Construct

from mlfleet.constructs.validation import DNS_NAME, GOOGLE_REGION, HOSTED_ZONE_ID, REGION, require

FAILOVER_OK_TOKEN = "MLFLEET_FAILOVER_OK"
"""What the runtime's failover-health body contains when the region may take traffic."""


@dataclass(frozen=True, kw_only=True)
class RegionalEndpoint:
    region: str
    """The region's name, on AWS or Google Cloud."""
    hostname: str
    """The region's serving hostname (its load balancer's name or a record pointing at it)."""
    role: Literal["primary", "standby"]
    weight: int = 100
    """Relative share of traffic among weighted records, 0 to 255 (a 0 record gets traffic only
    when every non-zero record is unhealthy). Default: `100`."""


@dataclass(frozen=True, kw_only=True)
class RoutingControlNames:
    """The names of the ARC resources (the runbooks find them by these names)."""
    cluster: str
    control_panel: str
    safety_rule: str
    controls: dict[str, str]
    """Region -> its routing control's name; one for every endpoint."""


@dataclass(frozen=True, kw_only=True)
class Route53FailoverRoutingProps:
    hosted_zone_id: str
    record_name: str
    """The name clients resolve, e.g. `models.example.com` (not the zone apex: it is a CNAME)."""
    endpoints: tuple[RegionalEndpoint, ...]
    policy: Literal["failover", "weighted"] = "failover"
    """`failover` (primary, then standbys) or `weighted` (every healthy region); default `failover`."""
    ttl: int = 60
    """Seconds resolvers cache an answer: bounds how long clients keep a failed region. Default: `60`."""
    health_path: str = "/v2/health/failover"
    """The runtime's failover health endpoint each region is probed at; default `/v2/health/failover`."""
    search_string: str = FAILOVER_OK_TOKEN
    """What a healthy failover response body must contain; default `FAILOVER_OK_TOKEN`."""
    request_interval: Literal[10, 30] = 10
    """Seconds between health checks (10 or 30); default `10`."""
    failure_threshold: int = 3
    """Consecutive failed checks before a region is unhealthy (10 s x 3 = 30 s to detect). Default: `3`."""
    tags: dict[str, str] = field(default_factory=dict)
    """AWS tags on the health checks; default none."""
    routing_controls: RoutingControlNames | None = None
    """Guard every record with an ARC routing control of its region (see the module's doc), under
    these names; needs at least two endpoints. Billed per cluster-hour. Default: none (a failover
    changes the records)."""
    safety_wait_ms: int = 5000
    """How long ARC waits after a control change before it evaluates the safety rule again (its
    `WaitPeriodMs`); default `5000`."""


class Route53FailoverRouting(Construct):
    """Health-checked DNS records that route clients to the healthy region(s)."""

    def __init__(self, scope: Construct, id_: str, props: Route53FailoverRoutingProps):
        super().__init__(scope, id_)
        _validate(self, props)
        self.record_name = props.record_name
        self.standby_record_name = f"standby.{props.record_name}"

        self.health_checks: dict[str, Route53HealthCheck] = {}
        for endpoint in props.endpoints:
            check = Route53HealthCheck(
                self, f"health-{endpoint.region}", type="HTTPS_STR_MATCH", fqdn=endpoint.hostname, port=443,
                enable_sni=True, resource_path=props.health_path, search_string=props.search_string,
                request_interval=props.request_interval, failure_threshold=props.failure_threshold,
                measure_latency=True,
                tags={**props.tags, "Name": f"{props.record_name} {endpoint.region}"})
            self.health_checks[endpoint.region] = check
            TerraformOutput(self, f"health-check-{endpoint.region}", value=check.id,
                            description=f"Route 53 health check of {endpoint.region}").override_logical_id(
                health_check_output_name(endpoint.region))
        self.health_check_ids: dict[str, str] = {r: c.id for r, c in self.health_checks.items()}
        self.record_checks: dict[str, str] = dict(self.health_check_ids)
        """Region -> the health check its records carry: its endpoint check, or the calculated one."""
        self.routing_control_arns: dict[str, str] = {}
        """Region -> its ARC routing control (none without routing controls)."""
        self.recovery_cluster_arn: str | None = None
        if props.routing_controls is not None:
            self._routing_controls(props, props.routing_controls)

        if props.policy == "weighted":
            self._weighted(props, "weighted", props.record_name, props.endpoints)
        else:
            self._failover(props)

    def _routing_controls(self, props: Route53FailoverRoutingProps, names: RoutingControlNames) -> None:
        cluster = Route53RecoverycontrolconfigCluster(self, "recovery-cluster", name=names.cluster)
        panel = Route53RecoverycontrolconfigControlPanel(self, "control-panel", cluster_arn=cluster.arn,
                                                         name=names.control_panel)
        self.recovery_cluster_arn = cluster.arn
        for endpoint in props.endpoints:
            control = Route53RecoverycontrolconfigRoutingControl(
                self, f"control-{endpoint.region}", cluster_arn=cluster.arn, control_panel_arn=panel.arn,
                name=names.controls[endpoint.region])
            self.routing_control_arns[endpoint.region] = control.arn
            control_check = Route53HealthCheck(
                self, f"control-health-{endpoint.region}", type="RECOVERY_CONTROL", routing_control_arn=control.arn,
                tags={**props.tags, "Name": f"{props.record_name} {endpoint.region} routing control"})
            # Healthy only when the region answers AND its routing control is ON.
            calculated = Route53HealthCheck(
                self, f"record-health-{endpoint.region}", type="CALCULATED",
                child_healthchecks=[self.health_checks[endpoint.region].id, control_check.id],
                child_health_threshold=2,
                tags={**props.tags, "Name": f"{props.record_name} {endpoint.region} endpoint and routing control"})
            self.record_checks[endpoint.region] = calculated.id
            TerraformOutput(self, f"routing-control-{endpoint.region}", value=control.arn,
                            description=f"ARC routing control of {endpoint.region}").override_logical_id(
                routing_control_output_name(endpoint.region))
        # ARC refuses a change that would leave every region OFF (no answer for the name at all).
        Route53RecoverycontrolconfigSafetyRule(
            self, "at-least-one-region", control_panel_arn=panel.arn, name=names.safety_rule,
            asserted_controls=list(self.routing_control_arns.values()), wait_period_ms=props.safety_wait_ms,
            rule_config=Route53RecoverycontrolconfigSafetyRuleRuleConfig(type="ATLEAST", threshold=1, inverted=False))
        TerraformOutput(self, "recovery-cluster-arn", value=cluster.arn,
                        description="ARC cluster holding the routing controls").override_logical_id(
            "routing_control_cluster_arn")
        TerraformOutput(self, "recovery-cluster-endpoints", value=cluster.cluster_endpoints,
                        description="The ARC cluster's five regional endpoints (data plane)").override_logical_id(
            "routing_control_cluster_endpoints")

    def _failover(self, props: Route53FailoverRoutingProps) -> None:
        primary = next(e for e in props.endpoints if e.role == "primary")
        standbys = [e for e in props.endpoints if e.role == "standby"]
        self._cname(props, "primary", props.record_name, primary, set_identifier=primary.region,
                    failover_routing_policy=Route53RecordFailoverRoutingPolicy(type="PRIMARY"))
        if len(standbys) == 1:
            self._cname(props, "secondary", props.record_name, standbys[0], set_identifier=standbys[0].region,
                        failover_routing_policy=Route53RecordFailoverRoutingPolicy(type="SECONDARY"))
        elif standbys:
            self._weighted(props, "standby", self.standby_record_name, standbys)
            # The alias is healthy while any weighted standby record is: no health check of its own.
            Route53Record(
                self, "secondary", zone_id=props.hosted_zone_id, name=props.record_name, type="CNAME",
                set_identifier="standbys",
                failover_routing_policy=Route53RecordFailoverRoutingPolicy(type="SECONDARY"),
                alias=Route53RecordAlias(name=self.standby_record_name, zone_id=props.hosted_zone_id,
                                         evaluate_target_health=True))

    def _weighted(self, props: Route53FailoverRoutingProps, id_prefix: str, name: str,
                  endpoints: list[RegionalEndpoint] | tuple[RegionalEndpoint, ...]) -> None:
        for endpoint in endpoints:
            self._cname(props, f"{id_prefix}-{endpoint.region}", name, endpoint, set_identifier=endpoint.region,
                        weighted_routing_policy=Route53RecordWeightedRoutingPolicy(weight=endpoint.weight))

    def _cname(self, props: Route53FailoverRoutingProps, id_: str, name: str, endpoint: RegionalEndpoint,
               **routing) -> Route53Record:
        return Route53Record(
            self, id_, zone_id=props.hosted_zone_id, name=name, type="CNAME", ttl=props.ttl,
            records=[endpoint.hostname], health_check_id=self.record_checks[endpoint.region], **routing)


def health_check_output_name(region: str) -> str:
    """Stable output name of a region's health check id, e.g. `health_check_us_east_1`."""
    return f"health_check_{region.replace('-', '_')}"


def routing_control_output_name(region: str) -> str:
    """Stable output name of a region's routing control ARN, e.g. `routing_control_us_east_1`."""
    return f"routing_control_{region.replace('-', '_')}"


def _validate_routing_controls(scope: Construct, props: Route53FailoverRoutingProps) -> None:
    names = props.routing_controls
    if names is None:
        return
    require(len(props.endpoints) >= 2, scope, "routing_controls",
            "routing controls choose between regions: give at least two endpoints")
    require(set(names.controls) == {e.region for e in props.endpoints}, scope, "routing_controls.controls",
            f"name one control per endpoint region ({', '.join(e.region for e in props.endpoints)}), "
            f"not {', '.join(sorted(names.controls)) or 'none'}")
    for what, value in (("cluster", names.cluster), ("control_panel", names.control_panel),
                        ("safety_rule", names.safety_rule), *(
                            (f"controls[{r}]", n) for r, n in sorted(names.controls.items()))):
        # ARC's names: 1 to 64 characters, no whitespace.
        require(0 < len(value) <= 64 and not any(c.isspace() for c in value), scope, f"routing_controls.{what}",
                f"{value!r} is not 1 to 64 characters without whitespace")
    require(0 <= props.safety_wait_ms <= 3_600_000, scope, "safety_wait_ms",
            f"{props.safety_wait_ms} is outside 0 to 3600000 ms")


def _validate(scope: Construct, props: Route53FailoverRoutingProps) -> None:
    require(bool(HOSTED_ZONE_ID.fullmatch(props.hosted_zone_id)), scope, "hosted_zone_id",
            f"{props.hosted_zone_id!r} is not a Route 53 hosted zone id")
    require(bool(DNS_NAME.fullmatch(props.record_name)), scope, "record_name",
            f"{props.record_name!r} is not a lowercase DNS name without a trailing dot")
    require(props.policy in ("failover", "weighted"), scope, "policy",
            f"{props.policy!r} is not 'failover' or 'weighted'")
    require(5 <= props.ttl <= 3600, scope, "ttl", f"{props.ttl} is outside 5 to 3600 seconds")
    require(props.request_interval in (10, 30), scope, "request_interval",
            f"{props.request_interval} is not 10 or 30 seconds (Route 53's two intervals)")
    require(1 <= props.failure_threshold <= 10, scope, "failure_threshold",
            f"{props.failure_threshold} is outside 1 to 10")
    require(props.health_path.startswith("/") and not any(c.isspace() for c in props.health_path), scope,
            "health_path", f"{props.health_path!r} is not an absolute URL path")
    require(0 < len(props.search_string) <= 255, scope, "search_string", "must be 1 to 255 characters")
    require(len(props.endpoints) >= 1, scope, "endpoints", "name at least the primary region's endpoint")

    regions: dict[str, int] = {}
    hostnames: dict[str, int] = {}
    for i, endpoint in enumerate(props.endpoints):
        where = f"endpoints[{i}]"
        # Route 53 routes to any cloud: the region is an AWS or a Google Cloud region.
        require(bool(REGION.fullmatch(endpoint.region) or GOOGLE_REGION.fullmatch(endpoint.region)),
                scope, f"{where}.region",
                f"{endpoint.region!r} is not an AWS or Google Cloud region name")
        require(endpoint.region not in regions, scope, f"{where}.region",
                f"{endpoint.region} is already endpoints[{regions.get(endpoint.region)}]")
        require(bool(DNS_NAME.fullmatch(endpoint.hostname)), scope, f"{where}.hostname",
                f"{endpoint.hostname!r} is not a lowercase DNS name")
        require(endpoint.hostname not in hostnames, scope, f"{where}.hostname",
                f"{endpoint.hostname} is already endpoints[{hostnames.get(endpoint.hostname)}]")
        require(endpoint.hostname not in (props.record_name, f"standby.{props.record_name}"), scope,
                f"{where}.hostname", "points back at the routed name itself")
        require(endpoint.role in ("primary", "standby"), scope, f"{where}.role",
                f"{endpoint.role!r} is not 'primary' or 'standby'")
        require(0 <= endpoint.weight <= 255, scope, f"{where}.weight", f"{endpoint.weight} is outside 0 to 255")
        regions[endpoint.region] = i
        hostnames[endpoint.hostname] = i
    primaries = [e for e in props.endpoints if e.role == "primary"]
    require(len(primaries) == 1, scope, "endpoints", f"exactly one must have role primary, found {len(primaries)}")
    _validate_routing_controls(scope, props)

