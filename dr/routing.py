"""Moving traffic on Route 53's data plane: Route 53 ARC routing controls, the answer resolvers
get, and the records reconciled afterwards (the runbook-facing functions).

Route 53's control plane (record changes, `GetHealthCheckStatus`) is served from us-east-1; a
failover away from us-east-1 must not depend on it. Where the environment uses routing controls
(`routing_control.enabled`), each region's records are guarded by a calculated health check that
needs the region's endpoint check and its routing control: `route_to` turns the controls on the
ARC cluster's regional endpoints (any one of five answers), and resolvers follow within the
record's TTL. The records keep naming the old PRIMARY until `reconcile_records` makes them agree,
once the control plane answers; then every control can be ON again.

Without routing controls (`serving.routing_control: false`, or a single region) `route_to` falls
back to the record flip (`aws.flip_routing`), which needs Route 53's control plane.

Discovery: the cluster's endpoints come from ARC's configuration API in us-west-2 (`describe
cluster` by its name, control plane), the controls' ARNs from the cluster itself; both are read
once per target (`prepare`, before a fault) and kept.
"""
from __future__ import annotations

from functools import partial
from typing import Iterable

from mlfleet.dr.engine import RunContext, StepFailed
from mlfleet.dr.retry import TRANSIENT, GaveUp, RetryPolicy, call_with_retry
from mlfleet.dr.target import SANDBOX, Target
from mlfleet.stacks.environment import routing_control

CONTROL_CONFIG = "route53-recovery-control-config"
CLUSTER = "route53-recovery-cluster"
ROUNDS = 3
"""Rounds over the cluster's endpoints before giving up (AWS: retry on another endpoint)."""
PENDING = "pending: Route 53's API does not answer; rerun `mlfleet reconcile`"


def uses_routing_controls(target: Target) -> bool:
    return routing_control.enabled(target.env)


# -- discovery (control plane, before a fault) ---------------------------------------------
def cluster_endpoints(target: Target, ctx: RunContext) -> list[tuple[str, str]]:
    """(region, endpoint URL) of the environment's ARC cluster, read once per target."""
    def discover() -> list[tuple[str, str]]:
        config = target.client(CONTROL_CONFIG, routing_control.ARC_CONTROL_PLANE_REGION)
        name = routing_control.cluster_name(target.env.name)
        clusters = ctx.call("list ARC clusters", config.list_clusters)["Clusters"]
        found = next((c for c in clusters if c.get("Name") == name), None)
        if found is None:
            raise StepFailed(f"no Route 53 ARC cluster named {name}: deploy the {target.env.name}-global stack")
        cluster = ctx.call(f"describe ARC cluster {name}", config.describe_cluster,
                           ClusterArn=found["ClusterArn"])["Cluster"]
        endpoints = [(e["Region"], e["Endpoint"]) for e in cluster.get("ClusterEndpoints", [])]
        if not endpoints:
            raise StepFailed(f"ARC cluster {name} has no endpoints yet (status {cluster.get('Status')})")
        return endpoints

    return target.cached(("arc", "endpoints"), discover)


def routing_controls(target: Target, ctx: RunContext, *, avoid: Iterable[str] = ()) -> dict[str, str]:
    """Region -> routing control ARN, listed on the cluster (data plane), read once per target."""
    def discover() -> dict[str, str]:
        panel = routing_control.control_panel_name(target.env.name)
        names = {routing_control.routing_control_name(target.env.name, r.name): r.name for r in target.env.regions}
        listed = _on_cluster(target, ctx, "list routing controls", lambda c: c.list_routing_controls(), avoid)
        found = {names[c["RoutingControlName"]]: c["RoutingControlArn"] for c in listed["RoutingControls"]
                 if c.get("ControlPanelName") == panel and c.get("RoutingControlName") in names}
        missing = sorted(set(names.values()) - set(found))
        if missing:
            raise StepFailed(f"control panel {panel} has no routing control for {', '.join(missing)}")
        return found

    return target.cached(("arc", "controls"), discover)


def prepare(target: Target, ctx: RunContext) -> None:
    """Read the cluster's endpoints and the controls now (before a fault, or while us-west-2
    answers), so that routing later needs only the cluster's data plane."""
    if uses_routing_controls(target):
        routing_controls(target, ctx)


def _cluster_client(target: Target, region: str, endpoint: str):
    def build():
        import boto3
        from botocore.config import Config

        config = Config(retries={"total_max_attempts": 1}, connect_timeout=target.connect_timeout_s,
                        read_timeout=target.read_timeout_s)
        credentials = {}
        if target.kind == SANDBOX:
            from mlfleet.dr.sandbox import SANDBOX_CREDENTIALS

            credentials = {"aws_access_key_id": SANDBOX_CREDENTIALS["AWS_ACCESS_KEY_ID"],
                           "aws_secret_access_key": SANDBOX_CREDENTIALS["AWS_SECRET_ACCESS_KEY"]}
        return boto3.client(CLUSTER, region_name=region, endpoint_url=endpoint, config=config, **credentials)

    return target.cached((CLUSTER, region, endpoint), build)


def _on_cluster(target: Target, ctx: RunContext, what: str, fn, avoid: Iterable[str] = ()):
    """`fn(client)` on the cluster's regional endpoints in turn until one answers: one attempt per
    endpoint, those in `avoid` (the failed region's) last, a few rounds with backoff. A refusal
    (4xx: a safety rule, a bad ARN) is raised at once; it would be the same everywhere."""
    avoided = set(avoid)
    endpoints = sorted(cluster_endpoints(target, ctx), key=lambda e: e[0] in avoided)
    tried: list[str] = []
    with ctx.clock.waiting():
        for attempt in range(ROUNDS):
            for region, url in endpoints:
                try:
                    client = _cluster_client(target, region, url)
                    return call_with_retry(f"{what} ({region} cluster endpoint)", partial(fn, client),
                                           RetryPolicy(attempts=1))
                except GaveUp as exc:
                    if exc.kind != TRANSIENT:
                        raise
                    tried.append(f"{region}: {exc.cause}")
            ctx.clock.sleep(ctx.retry.delay(attempt))
    raise StepFailed(f"{what}: no ARC cluster endpoint answered ({'; '.join(tried[-len(endpoints):])})")


# -- the runbook-facing functions ----------------------------------------------------------
def routing_state(target: Target, ctx: RunContext, *, avoid: Iterable[str] = ()) -> dict[str, bool]:
    """Region -> whether its routing control is ON (read on the cluster's data plane)."""
    controls = routing_controls(target, ctx, avoid=avoid)
    by_arn = {arn: region for region, arn in controls.items()}
    listed = _on_cluster(target, ctx, "read routing controls", lambda c: c.list_routing_controls(), avoid)
    return {by_arn[c["RoutingControlArn"]]: c["RoutingControlState"].upper() == "ON"
            for c in listed["RoutingControls"] if c["RoutingControlArn"] in by_arn}


def route_to(target: Target, ctx: RunContext, to_region: str, *, avoid: Iterable[str] = ()) -> str:
    """Send traffic to `to_region`: its routing control ON, every other region's OFF, in one
    `update_routing_control_states` call on the first cluster endpoint that answers (`avoid`: the
    failed region, tried last). Idempotent. Without routing controls: the record flip."""
    target.region(to_region)
    if not uses_routing_controls(target):
        from mlfleet.dr import aws

        return aws.route_records_to(target, ctx, to_region)
    avoid = tuple(avoid)
    controls = routing_controls(target, ctx, avoid=avoid)
    want = {region: region == to_region for region in controls}
    if routing_state(target, ctx, avoid=avoid) == want:
        return f"routing controls already send traffic to {to_region} only"
    entries = [{"RoutingControlArn": controls[r], "RoutingControlState": "On" if on else "Off"}
               for r, on in sorted(want.items(), key=lambda kv: not kv[1])]
    _on_cluster(target, ctx, f"route to {to_region}",
                lambda c: c.update_routing_control_states(UpdateRoutingControlStateEntries=entries), avoid)
    others = ", ".join(sorted(r for r in controls if r != to_region))
    return f"routing controls: {to_region} ON, {others} OFF"


def expected_answers(target: Target, to_region: str) -> set[str]:
    """The regions a resolver may answer once traffic is routed to `to_region`: that region alone,
    or under weighted routing each region with a weight (`routing_control.routed_weights`)."""
    if target.env.serving.routing == "weighted":
        return {region for region, weight in routing_control.routed_weights(target.env, to_region).items() if weight}
    return {to_region}


def served_region(target: Target, ctx: RunContext) -> str | None:
    """The region the service name resolves to now, asked of resolvers (never of the records):
    the sandbox's resolver, or the system resolver against AWS. None when it does not resolve
    to a regional endpoint."""
    name = target.env.serving.dns_name
    with ctx.clock.waiting():
        if target.kind == SANDBOX and target.control is not None:
            from mlfleet.dr.errors import DrUsageError
            from mlfleet.dr.sandbox.routing import resolve

            try:
                return resolve(target.control, name).get("region")
            except DrUsageError:
                return None
        return _system_resolve(target, name)


def _system_resolve(target: Target, name: str) -> str | None:
    import socket

    def lookup(host: str) -> tuple[str, set[str]]:
        try:
            infos = socket.getaddrinfo(host, 443, proto=socket.IPPROTO_TCP, flags=socket.AI_CANONNAME)
        except socket.gaierror:
            return "", set()
        return (infos[0][3] or "").rstrip(".").lower(), {str(i[4][0]) for i in infos}

    canonical, addresses = lookup(name)
    endpoints = {target.env.endpoint(r).lower(): r.name for r in target.env.regions}
    if canonical in endpoints:
        return endpoints[canonical]
    # An alias or a load balancer's own name hides the CNAME chain: match by address.
    for hostname, region in endpoints.items():
        if addresses and addresses & lookup(hostname)[1]:
            return region
    return None


def region_healthy(target: Target, ctx: RunContext, region: str) -> tuple[bool, str]:
    """Whether `region` may take traffic, read on the data plane: in the sandbox the resolver's
    view of the region's endpoint check (its prober's verdict after FailureThreshold results);
    against AWS the region's failover health over HTTPS, as Route 53's checkers ask it."""
    target.region(region)
    with ctx.clock.waiting():
        if target.kind == SANDBOX and target.control is not None:
            from mlfleet.dr.sandbox.routing import routing_view

            health = routing_view(target.control)["health"].get(region) or {}
            if health.get("endpoint") is not None:
                healthy = bool(health["endpoint"])
                return healthy, f"endpoint check {'healthy' if healthy else 'unhealthy'} (resolver's view)"
        from mlfleet.dr import serving

        return serving.failover_health(target.serving_urls[region], target.env.serving.failover_health_path)


def reconcile_records(target: Target, ctx: RunContext, region: str) -> str:
    """Make the records agree with where traffic goes (PRIMARY = `region`, or under weighted
    routing the weights: `aws.weigh_routing`), then turn every routing control ON again. When
    Route 53's API does not answer: `PENDING`, nothing failed."""
    target.region(region)
    if not uses_routing_controls(target):
        return "no routing controls: the failover changed the records themselves"
    from mlfleet.dr import aws

    try:
        flipped = aws.route_records_to(target, ctx, region)
    except GaveUp as exc:
        if exc.kind != TRANSIENT:
            raise
        return PENDING
    controls = routing_controls(target, ctx)
    if not all(routing_state(target, ctx).values()):
        entries = [{"RoutingControlArn": arn, "RoutingControlState": "On"} for arn in controls.values()]
        _on_cluster(target, ctx, "turn every routing control on",
                    lambda c: c.update_routing_control_states(UpdateRoutingControlStateEntries=entries))
    return f"records: {flipped}; every routing control ON"
