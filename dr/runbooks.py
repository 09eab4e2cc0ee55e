"""The runbooks: failover (planned switchover or unplanned failover), failback, readiness.

Failover to region T from the current writer S, in order:
  declare → replication gate (RPO budget) → champion in T's replica (signed manifest verified
  against T's replica of the signing key) → [planned: drain artifact replication] → scale T's GPU
  node groups → scale T's runtime Deployments → promote T's registry (verified by a write through
  T's writer endpoint) → pin the chosen versions in T's runtime → flip routing → first inference through
  the routed name → SLO check.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

from mlfleet.dr import aws, kube, kube_portforward, serving
from mlfleet.dr.engine import Check, Gate, Runbook, RunContext, Step, StepFailed
from mlfleet.dr.target import Target

SLO_PROBES = 10


@dataclass
class _Found:
    """What a failover's checks find, for the steps and conditions after them."""
    source: str | None = None                 # the registry's writer when the run began
    lag: float | None = None                  # its replication lag to the target, in seconds
    choice: aws.ChampionChoice | None = None  # the versions to pin in the target
    check: str | None = None                  # the target's Route 53 health check


def failover(target: Target, to_region: str, *, planned: bool, allow_data_loss: bool = False,
             restore_previous: bool = False, name: str | None = None) -> Runbook:
    env = target.env
    target.region(to_region)
    rpo = env.targets.rpo
    health_path = env.serving.failover_health_path
    mode = "planned" if planned else "unplanned"
    found = _Found()  # the source comes from the first step (and from the journal on resume)

    def source(ctx: RunContext) -> str:
        return ctx.facts.get("source") or found.source or ""

    # 1. declare
    def declare_check(ctx):
        cluster = aws.describe_global_cluster(target, ctx, to_region)
        found.source = aws.writer_region(cluster)
        if found.source == to_region and not ctx.facts.get("source"):
            return Check.failed(f"{to_region} is already the writer of the registry; nothing to fail over")
        return Check.passed(f"registry writer is {found.source}")

    def declare(ctx):
        ctx.timeline.mark("declared")
        return {"source": found.source, "target": to_region, "mode": mode,
                "summary": f"{mode} failover {found.source} -> {to_region}"}

    # 2. replication gate
    def gate_check(ctx):
        if planned:
            try:
                aws.describe_global_cluster(target, ctx, source(ctx))
            except Exception as exc:  # noqa: BLE001 - any failure means the source cannot take part
                return Check.failed(f"a planned switchover needs {source(ctx)}, which does not answer ({exc}); "
                                    "use --unplanned")
            return Check.passed(f"{source(ctx)} reachable; switchover replicates everything first (RPO 0)")
        lag = aws.replication_lag_s(target, ctx, to_region)
        found.lag = lag
        if lag is None:
            detail = f"no replication-lag data for {to_region}: data loss cannot be bounded"
        elif lag <= rpo:
            return Check.passed(f"replication lag {lag:.1f}s within the RPO budget {rpo}s")
        else:
            detail = f"replication lag {lag:.1f}s exceeds the RPO budget {rpo}s"
        if allow_data_loss:
            return Check.passed(detail + "; accepted with --allow-data-loss")
        return Gate(False, detail + "; refused (pass --allow-data-loss to accept the loss)")

    def gate(ctx):
        return {"replication_lag_s": found.lag, "summary": "gate passed"}

    # 3. champion present in the target's replica
    def champion_check(ctx):
        choice = aws.choose_versions(target, ctx, to_region)
        found.choice = choice
        return Check.passed(", ".join(f"{m} v{v}" for m, v in choice.pins.items()) +
                            ("; " + "; ".join(choice.notes) if choice.notes else ""))

    def champion(ctx):
        choice = found.choice or aws.choose_versions(target, ctx, to_region)
        for note in choice.notes:
            ctx.progress(f"  note: {note}")
        return {"pins": choice.pins, "notes": choice.notes,
                "summary": ", ".join(f"{m} v{v}" for m, v in choice.pins.items())}

    # 4. drain artifact replication (planned)
    def drain_verify(ctx):
        pending = aws.pending_replication(target, ctx, source(ctx))
        return True if not pending else f"{len(pending)} object(s) still replicating"

    # 5. scale the target's GPU node groups
    failover_sizes = {p.name: p.min_size for p in env.gpu_pools}
    standby_sizes = {p.name: p.warm_standby for p in env.gpu_pools}

    def scale(ctx):
        changed = aws.scale_node_groups(target, ctx, to_region, failover_sizes)
        return {"scaled": changed, "summary": ", ".join(changed) or "already at failover size"}

    def scale_back(ctx):
        aws.scale_node_groups(target, ctx, to_region, standby_sizes)

    # 5b. scale the target's runtime: a standby to on_failover pods, the primary (failback) to its own
    serve_replicas = _replicas(env, to_region, serving=True)
    rest_replicas = _replicas(env, to_region, serving=False)

    def scale_runtime(ctx):
        changed = kube.scale_runtime(target, ctx, to_region, serve_replicas)
        return {"runtime_scaled": changed, "summary": ", ".join(changed) or f"already at {serve_replicas} replicas"}

    def scale_runtime_back(ctx):
        kube.scale_runtime(target, ctx, to_region, rest_replicas)

    # 6. promote the registry
    def promote(ctx):
        return {"summary": aws.request_promotion(target, ctx, to_region, planned=planned)}

    def promote_verify(ctx):
        # Writable is proven by a write through the new writer, not read from a status string.
        done = aws.promotion_done(target, ctx, to_region)
        if done is not True:
            return done
        writable, detail = aws.registry_writable(target, ctx, to_region)
        return True if writable else f"promoted, but no write went through: {detail}"

    def unpromote(ctx):
        if planned:
            aws.request_promotion(target, ctx, source(ctx), planned=True)
            ctx.wait_until("registry back to the source", lambda: aws.promotion_done(target, ctx, source(ctx)), 120)

    # 7. pin the versions in the target's runtime
    def pin(ctx):
        if target.pin_through_port_forward:  # a cluster: management only on each pod's loopback
            pinned = {model: kube_portforward.pin_region(target, ctx, to_region, model, version)
                      for model, version in ctx.facts["pins"].items()}
            skipped = sorted({pod for result in pinned.values() for pod in result.skipped})
            return {"pinned_pods": {m: r.pinned + r.unchanged for m, r in pinned.items()}, "skipped_pods": skipped,
                    "summary": "pinned " + ", ".join(r.summary(m, ctx.facts["pins"][m]) for m, r in pinned.items())}
        done = []
        for model, version in ctx.facts["pins"].items():
            url = target.serving_urls[to_region]
            if ctx.call(f"read pin of {model}", serving.current_pin, url, model) != version:
                ctx.call(f"pin {model} v{version}", serving.pin, url, model, version, target.admin_token)
            done.append(f"{model} v{version}")
        return {"summary": "pinned " + ", ".join(done)}

    def pin_verify(ctx):
        ok, detail = serving.failover_health(target.serving_urls[to_region], health_path)
        return True if ok else detail

    # 8. routing
    def flip(ctx):
        return {"summary": aws.flip_routing(target, ctx, source(ctx), to_region)}

    def unflip(ctx):
        aws.flip_routing(target, ctx, to_region, source(ctx))

    def flip_verify(ctx):
        region = aws.routed_region(target, ctx)
        return True if region == to_region else f"PRIMARY routes to {region}"

    # 9. first inference through the routed name
    def first_inference(ctx):
        region, url = aws.resolve(target, ctx)
        if region != to_region:
            raise StepFailed(f"{env.serving.dns_name} routes to {region}, not {to_region}")
        results = {}
        deadline = time.monotonic() + 60
        for model in ctx.facts["pins"]:
            while True:
                try:
                    results[model] = ctx.call(f"infer {model} in {region}", serving.infer, url, model)
                    break
                except Exception:
                    if time.monotonic() > deadline:
                        raise
                    ctx.clock.sleep(ctx.poll_interval_s)
        ctx.timeline.mark("first_inference")
        return {"inference": results, "summary": f"{', '.join(results)} answered in {region}"}

    # 10. SLO: consecutive successful inferences and failover health
    def slo(ctx):
        url = target.serving_urls[to_region]
        for _ in range(SLO_PROBES):
            for model in ctx.facts["pins"]:
                ctx.call(f"infer {model}", serving.infer, url, model)
        ok, detail = serving.failover_health(url, health_path)
        if not ok:
            raise StepFailed(f"{to_region} not failover-healthy after the flip: {detail}")
        return {"summary": f"{SLO_PROBES} consecutive inferences per model succeeded"}

    # 11. (failback) the previous writer returns to standby size
    def restore(ctx):
        changed = aws.scale_node_groups(target, ctx, source(ctx), standby_sizes)
        return {"summary": ", ".join(changed) or "already at standby size"}

    def restore_runtime(ctx):
        changed = kube.scale_runtime(target, ctx, source(ctx), _replicas(env, source(ctx), serving=False))
        return {"summary": ", ".join(changed) or "already at its standby replicas"}

    none = lambda ctx: "none (read only)"  # noqa: E731
    steps = [
        Step("declare", "declare the failover and find the registry writer", declare, none, declare_check),
        Step("replication-gate", "check replication lag against the RPO budget", gate, none, gate_check),
        Step("champion-in-replica", f"check the champion's artifacts in {to_region}'s replica", champion, none,
             champion_check),
    ]
    if planned:
        steps.append(Step("drain-replication", "wait until artifact replication has caught up",
                          lambda ctx: {"summary": "replication drained"}, none, verify=drain_verify,
                          verify_timeout_s=300))
    steps += [
        Step("scale-standby", f"scale {to_region}'s GPU node groups to failover size", scale,
             lambda ctx: f"node groups in {to_region} -> {failover_sizes}", verify=lambda ctx: aws.node_groups_at(
                 target, ctx, to_region, failover_sizes), verify_timeout_s=900, compensate=scale_back),
        Step("scale-runtime", f"scale {to_region}'s runtime to {serve_replicas} pods per serving pool", scale_runtime,
             lambda ctx: f"runtime Deployments in {to_region} -> {serve_replicas} replicas",
             verify=lambda ctx: kube.runtime_at(target, ctx, to_region, serve_replicas), verify_timeout_s=600,
             compensate=scale_runtime_back),
        Step("promote-registry", f"make {to_region}'s registry the writer", promote,
             lambda ctx: (f"{'switchover' if planned else 'failover (AllowDataLoss)'} "
                          f"of the global cluster to {to_region}"),
             verify=promote_verify, verify_timeout_s=600, compensate=unpromote, phase="registry_writable"),
        Step("pin-champion", f"pin the chosen versions in {to_region}'s runtime", pin,
             lambda ctx: (f"pin {ctx.facts.get('pins') or found.choice.pins if found.choice else {}} in {to_region}"
                          + (" on every ready runtime pod (port-forward)" if target.pin_through_port_forward
                             else "")),
             verify=pin_verify, verify_timeout_s=120),
        Step("flip-routing", f"route {env.serving.dns_name} to {to_region}", flip,
             lambda ctx: f"PRIMARY record {source(ctx)} -> {to_region}", verify=flip_verify, verify_timeout_s=120,
             compensate=unflip, phase="routing_flipped"),
        Step("first-inference", f"infer through {env.serving.dns_name}", first_inference,
             lambda ctx: "one inference per model (read only)"),
        Step("slo-check", "check serving holds", slo, lambda ctx: "inferences (read only)", phase="slo_recovered"),
    ]
    if restore_previous:
        # The runtime first: its pods leave before the node groups under them shrink.
        steps.append(Step("restore-standby-runtime", "return the previous writer's runtime to its standby replicas",
                          restore_runtime, lambda ctx: f"runtime Deployments in {source(ctx)} -> "
                                                       f"{_replicas(env, source(ctx), serving=False)} replicas",
                          verify=lambda ctx: kube.runtime_at(target, ctx, source(ctx),
                                                             _replicas(env, source(ctx), serving=False)),
                          verify_timeout_s=600))
        steps.append(Step("restore-standby-size", "return the previous writer's node groups to standby size",
                          restore, lambda ctx: f"node groups in {source(ctx)} -> {standby_sizes}"))

    def target_alarm(ctx):
        check_id = found.check or aws.health_check_id(target, ctx, to_region)
        found.check = check_id
        if not check_id:
            return None
        healthy, status = aws.region_healthy(target, ctx, check_id)
        return None if healthy else f"{to_region}'s health check reports {status}"

    key = f"{name or 'failover'}:{env.name}:{to_region}:{mode}"
    return Runbook(name or "failover", steps, key=key, stop_conditions=[("target-health-check", target_alarm)])


def _replicas(env, region: str, *, serving: bool) -> int:
    """Runtime pods per serving pool in `region`: what its role says, or, for a standby that
    takes the traffic, `on_failover`. The primary serves with (and returns to) `primary`."""
    replicas = env.serving.replicas
    if serving and region != env.primary.name:
        return replicas.on_failover
    return replicas.deployed(env.region(region).role)


def failback(target: Target) -> Runbook:
    """Back to the environment's configured primary: a planned switchover, then the region that
    served meanwhile returns to standby size."""
    return failover(target, target.env.primary.name, planned=True, restore_previous=True, name="failback")


def readiness(target: Target, ctx: RunContext) -> list[tuple[str, str, bool, str]]:
    """(region, check, ok, detail) for every check that would block a failover to each standby."""
    env = target.env
    results = []
    try:
        writer = aws.writer_region(aws.describe_global_cluster(target, ctx, env.standbys[0].name if env.standbys
                                                                else env.primary.name))
    except Exception as exc:  # noqa: BLE001 - reported as a failed check
        return [("*", "registry", False, str(exc))]
    for region in env.regions:
        if region.name != writer:
            results += _standby_checks(target, ctx, region.name)
        if region.cloud == "aws":
            results.append(_guarded(region.name, "serving replicas ready",
                                    lambda name=region.name: _replicas_ready(target, ctx, name)))
    return results


def _guarded(region: str, check: str, measure) -> tuple[str, str, bool, str]:
    try:
        ok, detail = measure()
    except Exception as exc:  # noqa: BLE001 - each check reports its own failure
        ok, detail = False, str(exc).splitlines()[0]
    return region, check, ok, detail


def _replicas_ready(target: Target, ctx: RunContext, region: str) -> tuple[bool, str]:
    found = kube.runtime_replicas(target, ctx, region)
    ok = all(r.desired >= 1 and r.ready >= r.desired for r in found.values())
    return ok, ", ".join(f"{pool} {r.ready}/{r.desired}" for pool, r in found.items())


def _standby_checks(target: Target, ctx: RunContext, name: str) -> list[tuple[str, str, bool, str]]:
    """(region, check, ok, detail) of each readiness check of one standby; each reports its own failure."""
    env = target.env

    def lag():
        value = aws.replication_lag_s(target, ctx, name)
        if value is None:
            return False, "no replication-lag data"
        return value <= env.targets.rpo, f"{value:.1f}s (budget {env.targets.rpo}s)"

    def champion():
        choice = aws.choose_versions(target, ctx, name)
        return not choice.notes, "; ".join(choice.notes) or ", ".join(f"{m} v{v}" for m, v in choice.pins.items())

    def capacity():
        sizes = aws.node_group_sizes(target, ctx, name)
        short = [f"{p.name}: max {sizes[p.name]['maxSize']} < {p.min_size}" for p in env.gpu_pools
                 if sizes[p.name]["maxSize"] < p.min_size or sizes[p.name]["status"] != "ACTIVE"]
        return not short, "; ".join(short) or ", ".join(f"{k} {v['desiredSize']} warm" for k, v in sizes.items())

    def health():
        return serving.failover_health(target.serving_urls[name], env.serving.failover_health_path)

    def image():
        return aws.image_present(target, ctx, name)

    checks = [("replica lag", lag), ("champion in replica", champion), ("standby capacity", capacity),
              ("runtime failover health", health)]
    if env.region(name).cloud == "aws":
        checks.append(("runtime image", image))
    return [_guarded(name, check, measure) for check, measure in checks]
