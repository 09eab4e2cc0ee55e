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

If R was not routed to (a standby's outage), nothing must fail over: the drill keeps inferring
through the routed region all through the outage's detection and checks that every inference
succeeded, that routing did not move and that the routed region stays failover-healthy.

A drill is safe to kill: the fault is recorded before it is injected (fault_cleanup.py), so the
next drill, failover, failback or `sandbox status` clears a fault whose drill died with it.
"""
from __future__ import annotations

import statistics
import threading
import time
import uuid
from datetime import datetime, timezone

from mlfleet.dr import aws, gcp, routing, serving
from mlfleet.dr.audit import target_log, verify
from mlfleet.dr.blocks.checks import choose_versions
from mlfleet.dr.blocks.registry import registry_writer as find_writer
from mlfleet.dr.engine import RunContext, RunResult, StepFailed
from mlfleet.dr.errors import EXIT_FAILED, AuditTampered, DrUsageError, Refused, RunbookAborted
from mlfleet.dr.fault_cleanup import FaultRecords, finish_abandoned_cleanups
from mlfleet.dr.retry import GaveUp
from mlfleet.dr.runbooks import failback, failover
from mlfleet.dr.sandbox.routing import ROUTE53_CONTROL_PLANE
from mlfleet.dr.target import SANDBOX, Target
from mlfleet.stacks.environment.errors import MlfleetError

REGION_OUTAGE, WITH_ROUTE53 = "region-outage", "region-outage-with-route53"
SCENARIOS = (REGION_OUTAGE, WITH_ROUTE53)
"""`region-outage-with-route53`: the region, and Route 53's API with it (record changes and
health-check reads are served from us-east-1): the failover must move traffic on the data plane."""
WRITE_INTERVAL_S = 0.05
STANDBY_PROBES = 20
"""Inferences through the routed region during a standby's outage, at least (more if detection
takes longer than they do)."""
STANDBY_PROBE_INTERVAL_S = 0.1


class DrillFailed(MlfleetError):
    """The world stopped the drill (a call that kept failing, a detection that never came): one
    line for the operator, the fault already cleared."""
    exit_code = EXIT_FAILED


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
                write_marker(self.target, self.region, key, {"seq": seq, "at": at})
                self.writes.append((key, at))
            except Exception:  # noqa: BLE001 - a refused write was never acknowledged: not data
                pass
            seq += 1
            self.halt.wait(WRITE_INTERVAL_S)


class _ServingProbe(threading.Thread):
    """Infers through one region's serving endpoint, model after model, until halted: what a
    client of the routed name sees while another region is down."""

    def __init__(self, url: str, models: list[str]):
        super().__init__(name="drill-serving-probe", daemon=True)
        self.url, self.models = url, models
        self.results: list[tuple[bool, float, str]] = []  # (ok, seconds, error)
        self.halt = threading.Event()

    def run(self) -> None:
        index = 0
        while not self.halt.is_set():
            model = self.models[index % len(self.models)]
            started = time.monotonic()
            try:
                serving.infer(self.url, model, timeout=2.0)
                self.results.append((True, time.monotonic() - started, ""))
            except Exception as exc:  # noqa: BLE001 - every failure is a measured outcome
                self.results.append((False, time.monotonic() - started, _first_line(exc)))
            index += 1
            self.halt.wait(STANDBY_PROBE_INTERVAL_S)


def run_drill(target: Target, region: str, *, scenario: str = "region-outage", fault_mode: str = "503",
              do_failback: bool = True, progress=lambda line: None) -> dict:
    """The drill's outcome (what `report.drill_report` reads). Refused (exit 3) when a region is
    already faulted; a condition of the world that stops it (the sandbox gone, calls that keep
    failing) is a one-line error, never a traceback, and the fault is cleared either way."""
    if scenario not in SCENARIOS:
        raise DrUsageError(f"unknown drill scenario {scenario!r}; known: {', '.join(SCENARIOS)}")
    if target.kind != SANDBOX:
        raise DrUsageError("drills inject faults through the sandbox's control API; against a deployed "
                           "environment use `mlfleet failover --planned` as a game-day exercise instead")
    if target.control is None:
        raise DrUsageError("this sandbox target has no control API to inject faults through")
    target.region(region)
    try:
        return _run(target, region, fault_mode=fault_mode, do_failback=do_failback, progress=progress,
                    route53=scenario == WITH_ROUTE53)
    except MlfleetError:
        raise
    except Exception as exc:
        if not _world_condition(exc):
            raise
        target.control.state()  # a sandbox that died meanwhile says so (exit 2) before anything else
        raise DrillFailed(f"drill of a {region} outage stopped: {_first_line(exc)}") from exc


def _run(target: Target, region: str, *, fault_mode: str, do_failback: bool, progress, route53: bool) -> dict:
    control = target.control
    assert control is not None
    env = target.env
    finish_abandoned_cleanups(target, progress)
    _refuse_if_faulted(target)
    target.warm()
    ctx = RunContext(retry=target.retry, progress=progress, poll_interval_s=target.poll_interval_s)
    routing.prepare(target, ctx)  # the routing controls' endpoints, read while every region answers
    routed = routing.served_region(target, ctx)
    if routed is None:
        raise DrUsageError(f"{env.serving.dns_name} resolves to no region: nothing serves to drill against")
    writer_region = find_writer(target, ctx, via=routed)
    if env.serving.routing == "weighted":  # every region answers in turn: the writer's is the one to lose
        routed = writer_region
    standby_outage = routed != region
    models = _models(target, ctx, routed) if standby_outage else []
    ctx.clock.waiting_s = 0.0  # preparation is not part of the measured recovery

    drill_id = f"{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}-drill-{uuid.uuid4().hex[:6]}"
    audit = target_log(target)
    records = FaultRecords(target.state_dir, env.name)
    writer = _Writer(target, writer_region, drill_id)
    writer.start()
    registry_writer = _registry_writer(target, writer_region)
    time.sleep(1.0)
    probe = _ServingProbe(target.serving_urls[routed], models) if standby_outage else None
    progress(f"injecting a region outage ({fault_mode}) in {region}"
             + (" and Route 53's API with it" if route53 else ""))
    entry = records.record(region=region, mode=fault_mode, run_id=drill_id, sandbox=control.url)
    dns = (records.record(region=ROUTE53_CONTROL_PLANE["region"], service=ROUTE53_CONTROL_PLANE["service"],
                          mode=fault_mode, run_id=drill_id, sandbox=control.url) if route53 else None)
    audit.append(run_id=drill_id, action="drill.inject", target=f"{env.name}:{region}", result="ok",
                 detail={"mode": fault_mode, "service": "*", "route53_api": route53})
    result: RunResult | None = None
    notes: list[str] = []
    rpo_s: float | None = None
    before_fault: list[tuple[str, float]] = []
    missing: list[tuple[str, float]] = []
    registry: dict | None = None
    standby: dict | None = None
    new_region = routed
    fault_at = time.time()
    try:
        control.inject(region, mode=fault_mode, hang_s=2.0)
        if route53:
            control.inject(**ROUTE53_CONTROL_PLANE, mode=fault_mode, hang_s=2.0)
        fault_at = time.time()
        ctx.timeline.mark("fault_injected", fault_at)
        if probe is not None:
            probe.start()
        writer.halt.set()  # joined after recovery: a write in flight may hang in the faulted region
        if registry_writer is not None:
            registry_writer.halt.set()
        # Detected on the data plane, as resolvers see it: Route 53's API may be down too.
        ctx.wait_until(f"detect the outage of {region}",
                       lambda: (not routing.region_healthy(target, ctx, region)[0]) or "health check still healthy",
                       timeout_s=max(60, env.serving.health_check_interval * 6),
                       interval_s=target.poll_interval_s)
        ctx.timeline.mark("fault_detected")
        progress(f"outage of {region} detected by its Route 53 health check")
        aborted = False
        if probe is not None:
            standby = _serving_unaffected(target, probe, routed)
            notes.append(f"{region} was not serving ({routed} was): no failover needed")
        else:
            new_region = _healthy_standby(target, ctx, exclude=region)
            try:
                result = failover(target, new_region, planned=False, drill=True).execute(
                    ctx, state_dir=target.runs_dir, lock=target.lock(new_region), audit=audit)
                notes += result.facts.get("notes", [])
            except RunbookAborted as exc:  # the report says how far it got; the verdict is fail
                result, aborted = exc.report, True
                notes.append(f"the failover aborted: {exc}")
        writer.join()
        before_fault = [(k, t) for k, t in writer.writes if t < fault_at]
        if aborted:
            notes.append("RPO not measured: the failover did not complete")
            if registry_writer is not None:
                registry = {"writer": None, "model": registry_writer.model, "lag_at_gate_s": None, "written": None,
                            "present": None, "missing": None, "rpo_s": None,
                            "error": "the failover did not complete"}
        else:
            missing = [(k, t) for k, t in before_fault if not marker_present(target, new_region, k)]
            rpo_s = (fault_at - min(t for _, t in missing)) if missing else 0.0
            registry = _registry_rpo(target, registry_writer, fault_at, new_region, result)
    finally:
        if probe is not None:
            probe.halt.set()
        control.clear(region)
        records.remove(entry)
        if dns is not None:
            control.clear(ROUTE53_CONTROL_PLANE["region"])
            records.remove(dns)
        audit.append(run_id=drill_id, action="drill.clear", target=f"{env.name}:{region}", result="ok")
    recovered: dict = {"drill_id": drill_id, "fault_at": fault_at, "rpo_s": rpo_s,
                       "writes_before_fault": len(before_fault), "writes_missing": len(missing), "notes": notes,
                       "result": result, "ctx": ctx, "new_region": new_region, "registry": registry,
                       "standby_outage": standby, "audit_log": str(target.audit_path)}
    if result is not None:
        # The head a reader can hold the failover's records to: taken before the failback appends.
        recovered["audit_before_failback"] = _audit_position(target)
    cross_cloud = env.region(new_region).cloud == "gcp" and env.primary.cloud == "aws"
    if do_failback and result is not None and result.status == "completed" and cross_cloud:
        # Aurora stopped following when Cloud SQL was promoted: a failback is a migration of its own.
        notes.append(f"no failback: the registry's writer is now {new_region}'s Cloud SQL, which Aurora no longer "
                     "follows; bring Aurora back in step from it, then run `mlfleet failback`")
    elif do_failback and result is not None and result.status == "completed":
        _fail_back(target, region, writer_region, registry, recovered, progress)
    recovered["audit_final"] = _audit_position(target)
    return recovered


def _fail_back(target: Target, region: str, writer_region: str, registry: dict | None, recovered: dict,
               progress) -> None:
    """The failback after the fault is cleared; what stops it is reported, not raised: the drill's
    failover already happened and its report must come out."""
    env = target.env
    progress(f"{region} restored; failing back")
    # Waited on a context of their own: the failback's figures start when the failback does.
    prepare = RunContext(retry=target.retry, progress=progress, poll_interval_s=target.poll_interval_s)
    during = None
    try:
        prepare.wait_until(f"{region} healthy again",
                           lambda: routing.region_healthy(target, prepare, region)[0] or "unhealthy", timeout_s=60)
        _wait_replicated(target, prepare, writer_region)
        # The failback is a planned switchover: registry writes go on through it and none may be lost.
        during = _registry_writer(target, registry["writer"]) if registry and registry.get("writer") else None
        back = RunContext(retry=target.retry, progress=progress, poll_interval_s=target.poll_interval_s)
        recovered["failback"] = failback(target, drill=True).execute(
            back, state_dir=target.runs_dir, lock=target.lock(env.primary.name), audit=target_log(target))
    except (RunbookAborted, Refused) as exc:
        recovered["failback"] = getattr(exc, "report", None) or getattr(exc, "result", None)
        recovered["failback_error"] = str(exc)
    except (StepFailed, GaveUp) as exc:
        recovered["failback_error"] = f"before the failback started: {_first_line(exc)}"
    finally:
        if during is not None:
            during.halt.set()
            during.join(timeout=15)
    if during is not None and recovered.get("failback") is not None:
        recovered["failback_registry"] = _kept_through(target, during, env.primary.name)


def _refuse_if_faulted(target: Target) -> None:
    """One outage at a time: a drill on top of a fault measures neither."""
    assert target.control is not None
    for fault in target.control.faults():
        since = datetime.fromtimestamp(float(fault.get("since") or time.time()), timezone.utc)
        what = fault["mode"] if fault.get("service", "*") == "*" else f"{fault['mode']} on {fault['service']}"
        raise Refused(f"{fault['region']} is already faulted ({what} since {since.isoformat(timespec='seconds')}); "
                      f"clear it with `mlfleet faults clear --env {target.env.name} --region {fault['region']}` "
                      "or wait")


def _models(target: Target, ctx: RunContext, region: str) -> list[str]:
    """The models the region's approved manifest serves (what its clients infer on)."""
    models = sorted(choose_versions(target, ctx, region).pins)
    if not models:
        raise DrUsageError(f"the manifest in {region} lists no model to infer on")
    return models


def _serving_unaffected(target: Target, probe: _ServingProbe, routed: str) -> dict:
    """What the routed region's clients saw during a standby's outage, through its detection and
    on to the last probe. Read on a clock of its own: nothing here is recovery time."""
    ctx = RunContext(retry=target.retry, poll_interval_s=target.poll_interval_s)
    deadline = time.monotonic() + STANDBY_PROBES * (STANDBY_PROBE_INTERVAL_S + 2.0)
    while len(probe.results) < STANDBY_PROBES and probe.is_alive() and time.monotonic() < deadline:
        time.sleep(STANDBY_PROBE_INTERVAL_S / 2)
    probe.halt.set()
    probe.join(timeout=5)
    results = list(probe.results)
    routed_after = routing.served_region(target, ctx)
    healthy, health = serving.failover_health(target.serving_urls[routed], target.env.serving.failover_health_path)
    latencies = sorted(seconds * 1000 for ok, seconds, _ in results if ok)
    ok = sum(1 for passed, _, _ in results if passed)
    return {"serving_region": routed, "probes": len(results), "ok": ok, "failed": len(results) - ok,
            "errors": sorted({error for passed, _, error in results if not passed})[:3],
            "latency_ms": {"p50": round(statistics.median(latencies), 2) if latencies else None,
                           "max": round(latencies[-1], 2) if latencies else None},
            "routed_after": routed_after, "failover_health": {"ok": healthy, "detail": health}}


def _audit_position(target: Target) -> dict:
    """How many records the audit log holds and the hash they end at; what `audit verify
    --expect-head` checks on the log (or on its first `records` lines) as it stands."""
    try:
        verified = verify(target.audit_path)
    except AuditTampered as exc:
        return {"records": None, "head": None, "error": str(exc)}
    return {"records": verified.records, "head": verified.head}


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
    new_writer = find_writer(target, RunContext(retry=target.retry), via=serving_region)
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
    pending = gcp.pending_replication if target.env.region(region).cloud == "gcp" else aws.pending_replication
    ctx.wait_until(f"replication from {region} caught up",
                   lambda: not pending(target, ctx, region) or "pending objects", timeout_s=120)


def _healthy_standby(target: Target, ctx: RunContext, exclude: str) -> str:
    for standby in [r for r in target.env.regions if r.name != exclude]:
        if routing.region_healthy(target, ctx, standby.name)[0]:
            return standby.name
    raise DrUsageError(f"no healthy region to fail over to from {exclude}")


def write_marker(target: Target, region: str, key: str, body: dict) -> None:
    """An artifact-store write in the region's own store (S3 or Cloud Storage)."""
    (gcp.write_marker if target.env.region(region).cloud == "gcp" else aws.write_marker)(target, region, key, body)


def marker_present(target: Target, region: str, key: str) -> bool:
    return (gcp.marker_present if target.env.region(region).cloud == "gcp" else aws.marker_present)(
        target, region, key)


def _world_condition(exc: BaseException) -> bool:
    """A failure the world caused (an endpoint that keeps failing or is gone, a wait that timed
    out), as opposed to a defect in mlfleet, which keeps its traceback."""
    from botocore.exceptions import BotoCoreError, ClientError

    return isinstance(exc, (GaveUp, StepFailed, BotoCoreError, ClientError, serving.ServingError, OSError))


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
