"""Drills: inject a real fault into the sandbox, let detection and the failover runbook run,
and measure what happened.

region-outage on region R: artifact writes run against the writer region until the fault;
the fault fails every regional AWS service and the runtime in R (503); detection is the
Route 53 health check of R turning unhealthy; if R was routed to, the unplanned failover
runbook moves to the first standby whose health check is healthy. Two RPOs are measured from
the writes acknowledged before the fault that are missing afterwards: the artifact store's
(markers in the writer region's bucket, looked for in the new region's) and the registry's
(model versions, tags and aliases written through the writer's MLflow, looked for in the new
writer's MLflow). The fault is then cleared and, unless told otherwise, a failback restores the
original primary.
"""
from __future__ import annotations

import threading
import time

from mlfleet.dr import aws
from mlfleet.dr.audit import AuditLog
from mlfleet.dr.engine import RunContext, RunResult
from mlfleet.dr.errors import DrUsageError
from mlfleet.dr.runbooks import failback, failover
from mlfleet.dr.target import SANDBOX, Target

SCENARIOS = ("region-outage",)
WRITE_INTERVAL_S = 0.05


class _Writer(threading.Thread):
    """Writes timestamped markers to the writer region's artifact store until stopped."""

    def __init__(self, target: Target, region: str, run: str):
        super().__init__(name="drill-writer", daemon=True)
        self.target, self.region, self.run_prefix = target, region, f"drill/{run}/"
        self.writes: list[tuple[str, float]] = []
        self.halt = threading.Event()

    def run(self) -> None:
        seq = 0
        while not self.halt.is_set():
            key = f"{self.run_prefix}{seq:06d}"
            at = time.time()
            try:
                aws.write_marker(self.target, self.region, key, {"seq": seq, "at": at})
                self.writes.append((key, at))
            except Exception:  # noqa: BLE001 - a refused write was never acknowledged: not data
                pass
            seq += 1
            self.halt.wait(WRITE_INTERVAL_S)


def run_drill(target: Target, region: str, *, scenario: str = "region-outage", fault_mode: str = "503",
              do_failback: bool = True, progress=lambda line: None) -> dict:
    if scenario not in SCENARIOS:
        raise DrUsageError(f"unknown drill scenario {scenario!r}; known: {', '.join(SCENARIOS)}")
    if target.kind != SANDBOX:
        raise DrUsageError("drills inject faults through the sandbox's control API; against a deployed "
                           "environment use `mlfleet failover --planned` as a game-day exercise instead")
    control = target.control
    if control is None:
        raise DrUsageError("this sandbox target has no control API to inject faults through")
    target.region(region)
    env = target.env
    target.warm()
    ctx = RunContext(retry=target.retry, progress=progress, poll_interval_s=target.poll_interval_s)
    routed = aws.routed_region(target, ctx)
    if routed is None:
        raise DrUsageError(f"no region is routed to: {env.serving.dns_name} has no PRIMARY failover record")
    writer_region = aws.writer_region(aws.describe_global_cluster(target, ctx, region)) or env.primary.name
    check_id = aws.health_check_id(target, ctx, region)
    if check_id is None:
        raise DrUsageError(f"{region} has no Route 53 health check to detect its outage by")
    ctx.clock.waiting_s = 0.0  # preparation is not part of the measured recovery

    writer = _Writer(target, writer_region, str(int(time.time())))
    writer.start()
    registry_writer = _registry_writer(target, writer_region)
    time.sleep(1.0)
    progress(f"injecting a region outage ({fault_mode}) in {region}")
    control.inject(region, mode=fault_mode, hang_s=2.0)
    fault_at = time.time()
    ctx.timeline.mark("fault_injected", fault_at)
    writer.halt.set()  # joined after recovery: a write in flight may hang in the faulted region
    if registry_writer is not None:
        registry_writer.halt.set()

    result: RunResult | None = None
    notes: list[str] = []
    try:
        ctx.wait_until(f"detect the outage of {region}",
                       lambda: (not aws.region_healthy(target, ctx, check_id)[0]) or "health check still healthy",
                       timeout_s=max(60, env.serving.health_check_interval * 6),
                       interval_s=target.poll_interval_s)
        ctx.timeline.mark("fault_detected")
        progress(f"outage of {region} detected by its Route 53 health check")
        new_region = routed
        if routed == region:
            new_region = _healthy_standby(target, ctx, exclude=region)
            runbook = failover(target, new_region, planned=False)
            result = runbook.execute(ctx, state_dir=target.runs_dir, lock=target.lock(new_region),
                                     audit=AuditLog(target.audit_path))
            notes += result.facts.get("notes", [])
        else:
            notes.append(f"{region} was not serving ({routed} was); no failover needed")
        writer.join()
        before_fault = [(k, t) for k, t in writer.writes if t < fault_at]
        missing = [(k, t) for k, t in before_fault if not aws.marker_present(target, new_region, k)]
        rpo_s = (fault_at - min(t for _, t in missing)) if missing else 0.0
        registry = _registry_rpo(target, registry_writer, fault_at, new_region, result)
    finally:
        control.clear(region)
    recovered = {"fault_at": fault_at, "rpo_s": rpo_s, "writes_before_fault": len(before_fault),
                 "writes_missing": len(missing), "notes": notes, "result": result, "ctx": ctx,
                 "new_region": new_region, "registry": registry}
    if do_failback and result is not None:
        progress(f"{region} restored; failing back")
        back = RunContext(retry=target.retry, progress=progress, poll_interval_s=target.poll_interval_s)
        back.wait_until(f"{region} healthy again", lambda: aws.region_healthy(target, back, check_id)[0] or "unhealthy",
                        timeout_s=60)
        _wait_replicated(target, back, writer_region)
        # The failback is a planned switchover: registry writes go on through it and none may be lost.
        during = _registry_writer(target, registry["writer"]) if registry is not None else None
        recovered["failback"] = failback(target).execute(
            back, state_dir=target.runs_dir, lock=target.lock(env.primary.name), audit=AuditLog(target.audit_path))
        if during is not None:
            during.halt.set()
            during.join(timeout=15)
            recovered["failback_registry"] = _kept_through(target, during, env.primary.name)
    return recovered


def _registry_writer(target: Target, region: str):
    """The registry's drill writer on the writer region's MLflow; None where none runs (a target
    without MLflow servers), and the report says the registry RPO was not measured."""
    url = target.mlflow_urls.get(region)
    if url is None:
        return None
    from mlfleet.dr.registry_writes import RegistryWriter

    registry_writer = RegistryWriter(url)
    registry_writer.start()
    return registry_writer


def _registry_rpo(target: Target, registry_writer, fault_at: float, serving_region: str, result) -> dict | None:
    """What the registry lost: the writes acknowledged before the fault that the new writer's
    MLflow does not show, beside the replication lag the gate measured (which bounds it)."""
    if registry_writer is None:
        return None
    from mlflow.exceptions import MlflowException

    from mlfleet.dr.registry_writes import registry_rpo

    registry_writer.join(timeout=15)
    # Asked through the region that serves now: the faulted one may not answer.
    new_writer = aws.writer_region(aws.describe_global_cluster(target, RunContext(retry=target.retry),
                                                               serving_region)) or serving_region
    lag = result.facts.get("replication_lag_s") if result is not None else None
    found = {"writer": new_writer, "model": registry_writer.model, "lag_at_gate_s": lag}
    try:
        measured = registry_rpo(registry_writer.writes, fault_at, target.mlflow_urls[new_writer],
                                registry_writer.model)
    except (MlflowException, OSError) as exc:  # the drill's outcome stands; the reading is reported as missing
        return {**found, "written": None, "present": None, "missing": None, "rpo_s": None,
                "error": f"the new writer's MLflow did not answer: {str(exc).splitlines()[0]}"}
    return {**found, "written": measured.written, "present": measured.present, "missing": len(measured.missing),
            "rpo_s": measured.rpo_s}


def _kept_through(target: Target, during, writer: str) -> dict:
    """What a planned switchover kept of the registry writes acknowledged all through it."""
    from mlflow.exceptions import MlflowException

    from mlfleet.dr.registry_writes import registry_rpo

    try:
        kept = registry_rpo(during.writes, time.time() + 1, target.mlflow_urls[writer], during.model)
    except (MlflowException, OSError) as exc:
        return {"writer": writer, "written": len(during.writes), "present": None, "missing": None,
                "error": f"{writer}'s MLflow did not answer: {str(exc).splitlines()[0]}"}
    return {"writer": writer, "written": kept.written, "present": kept.present, "missing": len(kept.missing)}


def _wait_replicated(target: Target, ctx: RunContext, region: str) -> None:
    ctx.wait_until(f"replication from {region} caught up",
                   lambda: not aws.pending_replication(target, ctx, region) or "pending objects", timeout_s=120)


def _healthy_standby(target: Target, ctx: RunContext, exclude: str) -> str:
    for standby in [r for r in target.env.regions if r.name != exclude]:
        check_id = aws.health_check_id(target, ctx, standby.name)
        if check_id and aws.region_healthy(target, ctx, check_id)[0]:
            return standby.name
    raise DrUsageError(f"no healthy region to fail over to from {exclude}")
