"""The sandbox's routing world: Route 53 ARC routing controls and calculated health checks seeded
from the environment as the global stack creates them, and a resolver that answers from the
records and the health checks' verdicts, as Route 53's data plane does.

Seeding (`SandboxRouting.seed`, after the world's records and endpoint checks exist): an ARC
cluster, a control panel, a routing control per region (turned ON, as a deployment leaves them
after its first apply), the safety rule "at least one region ON", per region a RECOVERY_CONTROL
check on its control and a CALCULATED check needing both that and the region's endpoint check;
every record then carries its region's calculated check. Nothing is seeded when the environment
does not use routing controls (`routing_control.enabled`).

The resolver answers on the sandbox's control API, which is not behind the AWS fault proxy: a
Route 53 fault (`service: route53`, signed us-east-1) fails every Route 53 API call (record
changes, `GetHealthCheckStatus`) while resolution goes on, as on AWS:

    GET /resolve?name=N   {"name", "answer" (the regional hostname), "region", "ttl", "chain"}
    GET /routing          {"controls": {region: ON|OFF}, "health": {region: {endpoint, routing_control, record}}}

Simplifications: no resolver cache (the record's TTL is returned, not waited out); weighted
records are drawn by weight on every answer; an unhealthy-everywhere name answers as Route 53
does (a failover name its PRIMARY, a weighted name any record).
"""
from __future__ import annotations

import random
from typing import TYPE_CHECKING, Callable

from mlfleet.stacks.environment import Environment, routing_control

if TYPE_CHECKING:
    from mlfleet.dr.sandbox.control import ControlClient, ControlServer
    from mlfleet.dr.sandbox.moto_extensions import Extensions

ROUTE53_CONTROL_PLANE = {"region": "us-east-1", "service": "route53"}
"""The fault that takes Route 53's API down (it signs as us-east-1): `ControlClient.inject(**...)`.
A whole-region fault on us-east-1 leaves Route 53 up (a global service); inject both for a
us-east-1 outage that includes Route 53's control plane."""


class SandboxRouting:
    def __init__(self, env: Environment, extensions: Extensions):
        self.env = env
        self.ext = extensions
        self.endpoint_checks: dict[str, str] = {}
        self.record_checks: dict[str, str] = {}
        self.controls: dict[str, str] = {}

    # -- seeding ---------------------------------------------------------------------------
    def seed(self, client: Callable, outputs: dict, endpoint_url: str) -> dict:
        """ARC's world and the calculated checks; returns what the global stack would output
        (`routing_controls`: region -> ARN, `record_checks`: region -> calculated check id)."""
        self.endpoint_checks = dict(outputs["health_checks"])
        self.record_checks, self.controls = dict(self.endpoint_checks), {}
        if not routing_control.enabled(self.env):
            return {}
        env = self.env.name
        self.ext.arc.endpoint_url = endpoint_url
        config = client("route53-recovery-control-config", routing_control.ARC_CONTROL_PLANE_REGION)
        cluster = config.create_cluster(ClusterName=routing_control.cluster_name(env))["Cluster"]["ClusterArn"]
        panel = config.create_control_panel(ClusterArn=cluster, ControlPanelName=routing_control.control_panel_name(
            env))["ControlPanel"]["ControlPanelArn"]
        for name in (r.name for r in self.env.regions):
            self.controls[name] = config.create_routing_control(
                ClusterArn=cluster, ControlPanelArn=panel,
                RoutingControlName=routing_control.routing_control_name(env, name))["RoutingControl"][
                "RoutingControlArn"]
        config.create_safety_rule(AssertionRule={
            "ControlPanelArn": panel, "Name": routing_control.safety_rule_name(env),
            "AssertedControls": list(self.controls.values()), "WaitPeriodMs": 5000,
            "RuleConfig": {"Type": "ATLEAST", "Threshold": 1, "Inverted": False}})
        # Through the cluster API, as an operator turns them on after the first apply.
        client("route53-recovery-cluster", routing_control.ARC_CONTROL_PLANE_REGION).update_routing_control_states(
            UpdateRoutingControlStateEntries=[{"RoutingControlArn": arn, "RoutingControlState": "On"}
                                              for arn in self.controls.values()])
        route53 = client("route53", "us-east-1")
        for region, control in self.controls.items():
            control_check = route53.create_health_check(
                CallerReference=f"mlfleet-{env}-{region}-control",
                HealthCheckConfig={"Type": "RECOVERY_CONTROL", "RoutingControlArn": control})["HealthCheck"]["Id"]
            self.record_checks[region] = route53.create_health_check(
                CallerReference=f"mlfleet-{env}-{region}-record",
                HealthCheckConfig={"Type": "CALCULATED", "HealthThreshold": routing_control.CALCULATED_CHILDREN,
                                   "ChildHealthChecks": [self.endpoint_checks[region], control_check]})[
                "HealthCheck"]["Id"]
        self._guard_records(route53, outputs["hosted_zone_id"])
        return {"routing_controls": dict(self.controls), "record_checks": dict(self.record_checks),
                "routing_control_cluster_arn": cluster}

    def _guard_records(self, route53, zone_id: str) -> None:
        """Every record of a region carries its calculated check instead of its endpoint check."""
        by_check = {check: self.record_checks[region] for region, check in self.endpoint_checks.items()}
        records = route53.list_resource_record_sets(HostedZoneId=zone_id)["ResourceRecordSets"]
        changes = [{"Action": "UPSERT", "ResourceRecordSet": {**r, "HealthCheckId": by_check[r["HealthCheckId"]]}}
                   for r in records if r.get("HealthCheckId") in by_check]
        if changes:
            route53.change_resource_record_sets(HostedZoneId=zone_id, ChangeBatch={"Changes": changes})

    # -- the control API -------------------------------------------------------------------
    def attach(self, control: ControlServer) -> "SandboxRouting":
        """Serve `GET /resolve` and `GET /routing` on the control API, before its other routes."""
        handle = control.handle

        def routed(method: str, path: str, query: dict, body: dict) -> tuple[int, object]:
            if (method, path) == ("GET", "/resolve"):
                return self._resolve_route(query)
            if (method, path) == ("GET", "/routing"):
                return 200, self.view()
            return handle(method, path, query, body)

        control.handle = routed  # type: ignore[method-assign]  # the server calls handle per request
        return self

    def _resolve_route(self, query: dict) -> tuple[int, object]:
        name = str(query.get("name") or self.env.serving.dns_name).rstrip(".").lower()
        found = self.resolve(name)
        if found is None:
            return 404, {"error": f"NXDOMAIN: no record for {name} in the sandbox's hosted zones"}
        return 200, found

    def view(self) -> dict:
        arc = self.ext.arc
        return {"controls": {r: arc.state(arn) for r, arn in self.controls.items()},
                "health": {r: {"endpoint": self.ext.check_healthy(self.endpoint_checks[r]),
                               "routing_control": arc.state(self.controls[r]) == "ON" if r in self.controls else None,
                               "record": self.ext.check_healthy(self.record_checks.get(r, self.endpoint_checks[r]))}
                           for r in self.endpoint_checks}}

    # -- the resolver ----------------------------------------------------------------------
    def resolve(self, name: str) -> dict | None:
        """The answer Route 53 gives now for `name`: follows aliases within the zone, picks among
        failover and weighted records by their health checks' verdicts."""
        chain: list[str] = []
        ttl = None
        for _ in range(8):  # alias hops
            record = self._choose(name)
            if record is None:
                return None
            chain.append(f"{name} {record.set_identifier or ''}".strip())
            alias = record.alias_target or {}
            if alias.get("DNSName"):
                name = str(alias["DNSName"]).rstrip(".").lower()
                continue
            ttl = int(record.ttl) if record.ttl is not None else None
            answer = _values(record.records)[0].rstrip(".").lower()
            regions = {self.env.endpoint(r).lower(): r.name for r in self.env.regions}
            return {"name": chain[0].split()[0], "answer": answer, "region": regions.get(answer), "ttl": ttl,
                    "chain": chain}
        return None

    def _records(self, name: str) -> list:
        from moto.route53.models import route53_backends

        backend = route53_backends[self.ext.account_id]["global"]
        return [r for zone in list(backend.zones.values()) for r in list(zone.rrsets)
                if str(r.name).rstrip(".").lower() == name and r.type in ("CNAME", "A", "AAAA")]

    def _healthy(self, record, depth: int = 0) -> bool:
        ok = record.health_check_id is None or self.ext.check_healthy(record.health_check_id) is not False
        alias = record.alias_target or {}
        if ok and str(alias.get("EvaluateTargetHealth", "false")).lower() == "true" and depth < 4:
            target = str(alias.get("DNSName", "")).rstrip(".").lower()
            ok = any(self._healthy(r, depth + 1) for r in self._records(target))
        return ok

    def _choose(self, name: str):
        records = self._records(name)
        if not records:
            return None
        plain = [r for r in records if not r.set_identifier]
        if plain:
            return plain[0]
        failover = {str(r.failover).upper(): r for r in records if r.failover}
        if failover:
            for role in ("PRIMARY", "SECONDARY"):
                if role in failover and self._healthy(failover[role]):
                    return failover[role]
            return failover.get("PRIMARY") or next(iter(failover.values()))
        healthy = [r for r in records if self._healthy(r)] or records  # all unhealthy: all count
        weights = [int(r.weight or 0) for r in healthy]
        if not any(weights):
            return random.choice(healthy)
        return random.choices(healthy, weights=weights)[0]


def _values(records) -> list[str]:
    return [r["Value"] if isinstance(r, dict) else str(r) for r in (records or [])]


def resolve(control: ControlClient, name: str) -> dict:
    """What the sandbox's resolver answers for `name` (a DrUsageError from the control API when
    the name does not resolve or the sandbox does not answer)."""
    return control._call("GET", f"/resolve?name={name}")  # the control API's own client and token


def routing_view(control: ControlClient) -> dict:
    """The sandbox's routing controls and each region's endpoint, control and record verdicts."""
    return control._call("GET", "/routing")
