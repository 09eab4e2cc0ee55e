"""Run and drill reports, in JSON (for machines) and Markdown (for people): the timeline, the
measured RTO and RPO against the environment's targets, waiting versus orchestration time and
a verdict."""
from __future__ import annotations

import json
from datetime import datetime, timezone

from mlfleet.dr.engine import PHASES, RunResult, StepRecord
from mlfleet.stacks.environment import Environment
from mlfleet.stacks.environment.recovery_time import critical_path_s, projected_phases

SANDBOX_NOTE = ("Measured in the local sandbox: loopback networking and simulated control planes with "
                "sandbox timings, not a cloud's. The projected column gives what each phase takes in the cloud "
                "(health-check detection, record TTL, registry promotion, node scale-up), from the environment.")

# Step names of today's runbooks whose phase in the projected plan has another name.
_PHASE_OF_STEP = {"scale-standby": "scale-nodes", "flip-routing": "route", "route-traffic": "route"}


def _iso(at: float) -> str:
    return datetime.fromtimestamp(at, timezone.utc).isoformat(timespec="milliseconds")


def build(env: Environment, *, kind: str, result: RunResult | None, timeline: dict[str, float],
          waiting_s: float, rpo_s: float | None, notes: list[str], sandbox: bool, extra: dict | None = None,
          registry_rpo_s: float | None = None, to_region: str | None = None, planned: bool | None = None) -> dict:
    """`rpo_s`: the artifact store's; `registry_rpo_s`: the registry's where a drill measured it
    (both must be within the target for a pass). `to_region` and `planned` choose the projected
    plan; by default from the run's facts (`target`, `mode`; a failback goes to the primary)."""
    notes = list(notes)
    start = timeline.get("fault_injected") or timeline.get("declared")
    if start is None and result is not None:
        # A resumed run whose journal lost the declaration's mark: the run began with it.
        start = result.started
        notes.append("the timeline has no declaration mark: offsets count from the run's start")
    end_inference = timeline.get("first_inference")
    rto_s = (end_inference - start) if start and end_inference else None
    ends = [*timeline.values(), *([result.ended] if result is not None else [])]
    total_s = (max(ends) - start) if start and ends else None
    ok_rto = rto_s is not None and rto_s <= env.targets.rto
    ok_rpo = rpo_s is not None and rpo_s <= env.targets.rpo and (registry_rpo_s is None
                                                                   or registry_rpo_s <= env.targets.rpo)
    completed = result is None or result.status == "completed"
    verdict = "pass" if completed and ok_rto and ok_rpo else "fail"
    facts = result.facts if result is not None else {}
    orchestration_s = _orchestration(total_s, waiting_s)
    if result is not None and result.resumed:
        # The time between attempts is nobody's work: mlfleet's own is the last attempt's.
        orchestration_s = result.orchestration_s
        notes.append("a resumed run: waiting and orchestration are its last attempt's; the timeline spans all")
    return {
        "environment": env.name, "kind": kind, "verdict": verdict,
        "run": {"runbook": result.runbook, "run_id": result.run_id, "status": result.status,
                "resumed": result.resumed, "error": result.error, "audit_head": result.audit_head,
                "steps": [s.as_dict() for s in result.steps]} if result else None,
        "timeline": [{"phase": p, "at": _iso(timeline[p]), "offset_s": round(timeline[p] - start, 3)}
                     for p in PHASES if p in timeline and start],
        "measured": {"rto_s": _round(rto_s), "rpo_s": _round(rpo_s), "registry_rpo_s": _round(registry_rpo_s),
                     "total_s": _round(total_s),
                     "waiting_s": _round(waiting_s),
                     "orchestration_s": _round(orchestration_s)},
        "targets": {"rto_s": env.targets.rto, "rpo_s": env.targets.rpo},
        "projection": _projection(env, result, timeline, to_region, planned, sandbox),
        "data_loss": _data_loss(env, facts),
        "approval": _approval(facts),
        "notes": notes + ([SANDBOX_NOTE] if sandbox else []),
        **(extra or {}),
    }


def _orchestration(total_s: float | None, waiting_s: float) -> float | None:
    """mlfleet's own time: never negative, never more than the total (waiting may have been
    counted outside the span the total covers)."""
    return None if total_s is None else min(total_s, max(0.0, total_s - waiting_s))


def _approval(facts: dict) -> dict | None:
    """Who approved the run and when: the approval block's facts (`approver`, `requested_by`,
    `at`), or an `approval` record (approvals.Approval.as_facts)."""
    if isinstance(facts.get("approval"), dict):
        return facts["approval"]
    if not facts.get("approver"):
        return None
    at = facts.get("at")
    return {"approver": facts["approver"], "requested_by": facts.get("requested_by") or "?",
            "approved_at": _iso(at) if isinstance(at, (int, float)) and at else str(at or "?")}


def _data_loss(env: Environment, facts: dict) -> dict | None:
    """The data-loss bound `--allow-data-loss` accepted: the lag the gate measured, against the RPO."""
    if not facts.get("allow_data_loss"):
        return None
    lag = facts.get("replication_lag_s")
    bound = (f"accepted a data-loss bound of {_number(lag)} s (RPO budget {env.targets.rpo} s)" if lag is not None
             else f"accepted an unknown data-loss bound: no replication lag was measured at the gate "
                  f"(RPO budget {env.targets.rpo} s)")
    return {"allow_data_loss": True, "lag_at_gate_s": _round(lag), "rpo_budget_s": env.targets.rpo,
            "statement": bound}


def _projection(env: Environment, result: RunResult | None, timeline: dict[str, float], to_region: str | None,
                planned: bool | None, sandbox: bool) -> dict | None:
    """Each phase of the run's plan: measured (by its step, or detection by the timeline) beside
    its projected cloud time (recovery_time, the review's model)."""
    if result is None:
        return None
    facts = result.facts
    failback = result.runbook == "failback"
    to_region = to_region or (env.primary.name if failback else facts.get("target"))
    if planned is None:
        planned = failback or facts.get("mode") == "planned"
    if not to_region or to_region not in {r.name for r in env.regions}:
        return None
    steps = {_PHASE_OF_STEP.get(s.name, s.name): s for s in result.steps}
    approval = "approval" in steps or bool(facts.get("approval"))
    phases = projected_phases(env, to_region, planned=planned, approval=approval)
    rto_s, path = critical_path_s(phases)
    rows = []
    for phase in phases:
        measured, note = _measured(phase.phase, steps.get(phase.phase), timeline)
        rows.append({"phase": phase.phase, "measured_s": measured, "measured_note": note,
                     "projected_s": phase.seconds, "basis": phase.basis, "on_critical_path": phase.on_critical_path,
                     "counted": phase.counted, "after": list(phase.after)})
    planned_names = {p.phase for p in phases}
    for name, step in steps.items():
        if name not in planned_names:
            measured, note = _measured(name, step, timeline)
            rows.append({"phase": name, "measured_s": measured, "measured_note": note, "projected_s": None,
                         "basis": "not in the projected plan: off the recovery path", "on_critical_path": False,
                         "counted": False, "after": []})
    return {"to_region": to_region, "planned": planned, "rto_s": rto_s, "critical_path": path,
            "measured_in": "sandbox" if sandbox else "cloud", "phases": rows}


def _measured(phase: str, step: StepRecord | None, timeline: dict[str, float]) -> tuple[float | None, str]:
    if phase == "detection":
        if "fault_injected" in timeline and "fault_detected" in timeline:
            return _round(timeline["fault_detected"] - timeline["fault_injected"]), ""
        return None, "no fault was injected" if "fault_injected" not in timeline else "not detected"
    if step is None:
        return None, "no such step in this run"
    if step.started and step.ended:
        return _round(step.ended - step.started), ""
    if step.status == "done":
        return None, "done in an earlier attempt"
    return None, step.status


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


def _number(value: float) -> str:
    return f"{round(value, 3):g}"


def to_json(report: dict) -> str:
    return json.dumps(report, indent=2, default=str)


def to_markdown(report: dict) -> str:
    m, t = report["measured"], report["targets"]
    projection = report.get("projection")
    lines = [f"# {report['kind']} — {report['environment']}: **{report['verdict'].upper()}**", ""]
    lines += ["| measure | value | target |", "|---|---|---|",
              f"| RTO (fault or declaration → first inference in the new region) | {_s(m['rto_s'])} | {t['rto_s']} s |",
              *([f"| projected cloud RTO (longest path of the plan to {projection['to_region']}) | "
                 f"{_whole(projection['rto_s'])} | {t['rto_s']} s |"] if projection else []),
              f"| RPO (writes before the fault missing after it) | {_s(m['rpo_s'])} | {t['rpo_s']} s |",
              *([f"| registry RPO (MLflow writes before the fault missing in the new writer) | "
                 f"{_s(m['registry_rpo_s'])} | {t['rpo_s']} s |"] if m.get("registry_rpo_s") is not None else []),
              f"| total (fault or declaration → the run's end) | {_s(m['total_s'])} | |",
              f"| waiting on cloud APIs and health checks | {_s(m['waiting_s'])} | |",
              f"| mlfleet orchestration | {_s(m['orchestration_s'])} | |", ""]
    loss, approval = report.get("data_loss"), report.get("approval")
    if loss:
        lines += [f"Data loss: {loss['statement']} (`--allow-data-loss`).", ""]
    if approval:
        lines += [f"Approved by {approval['approver']} at {approval['approved_at']} "
                  f"(run started by {approval['requested_by']}).", ""]
    if projection:
        where = "sandbox" if projection["measured_in"] == "sandbox" else "this run"
        path = " → ".join(projection["critical_path"]) or "nothing takes time"
        lines += ["## Phases: measured and projected", "",
                  f"Projected for the cloud from the environment, the review's model; **bold**: on the longest "
                  f"path ({path}).", "",
                  f"| phase | measured ({where}) | projected (cloud) | basis |", "|---|---|---|---|"]
        for row in projection["phases"]:
            name = f"**{row['phase']}**" if row["on_critical_path"] else row["phase"]
            measured = _s(row["measured_s"]) if row["measured_s"] is not None else (row["measured_note"] or "n/a")
            projected = "—" if row["projected_s"] is None and not row["counted"] else _whole(row["projected_s"])
            lines.append(f"| {name} | {measured} | {projected} | {row['basis']} |")
        lines.append("")
    if report["timeline"]:
        lines += ["## Timeline", "", "| phase | at (UTC) | +s |", "|---|---|---|"]
        lines += [f"| {p['phase']} | {p['at']} | {p['offset_s']:.3f} |" for p in report["timeline"]]
        lines.append("")
    run = report.get("run")
    if run:
        lines += [f"## Steps ({run['runbook']} {run['run_id']}, {run['status']})", "",
                  "| step | status | s | detail |", "|---|---|---|---|"]
        lines += [f"| {s['step']} | {s['status']} | {'' if s['seconds'] is None else s['seconds']} | {s['detail']} |"
                  for s in run["steps"]]
        lines.append("")
        if run.get("error"):
            lines += [f"Error: {run['error']}", ""]
        lines += [f"Audit log head: `{run['audit_head']}`", ""]
    if report["notes"]:
        lines += ["## Notes", ""] + [f"- {n}" for n in report["notes"]] + [""]
    return "\n".join(lines)


def _s(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f} s"


def _whole(value: int | None) -> str:
    """A projected figure: whole seconds, or not recoverable."""
    return "not recoverable" if value is None else f"{value} s"


def drill_report(target, region: str, outcome: dict) -> dict:
    """The report of a region-outage drill (`run_drill`'s outcome) on `target`. The verdict is
    decided here, once, with every reason for a fail in `verdict_reasons` and the notes; the CLI's
    exit code follows it."""
    result = outcome["result"]
    standby: dict | None = outcome.get("standby_outage")
    extra: dict[str, dict | None] = {"scenario": {
        "name": "region-outage", "region": region, "new_region": outcome["new_region"],
        "writes_before_fault": outcome["writes_before_fault"], "writes_missing": outcome["writes_missing"]}}
    registry: dict | None = outcome.get("registry")
    notes = list(outcome["notes"])
    reasons: list[str] = []
    if standby is not None:
        extra["standby_outage"] = standby
        notes.insert(0, _standby_summary(standby))
        notes.append("RTO: not applicable, no failover was needed; RPO: what the writer region kept")
        reasons += _standby_failures(standby)
    unmeasured = bool(registry is not None and registry.get("error"))
    if registry is not None and unmeasured:
        extra["registry"] = registry
        notes.append(f"registry RPO not measured: {registry['error']}")
        reasons.append(f"registry RPO not measured: {registry['error']}")
        registry = None
    elif registry is not None:
        extra["registry"] = registry
        lag = registry["lag_at_gate_s"]
        bound = (f"the gate measured {lag:.3f} s of replication lag" if lag is not None
                 else "no replication lag was measured at a gate")
        notes.append(f"registry: {registry['present']} of {registry['written']} writes acknowledged before the "
                     f"fault are in {registry['writer']}'s MLflow ({registry['missing']} missing); {bound}")
    else:
        notes.append("registry RPO not measured: no MLflow server runs for the writer region")
    kept = outcome.get("failback_registry")
    if kept is not None:
        extra["failback_registry"] = kept
        notes.append(f"failback (a planned switchover): {kept['error']}" if kept.get("error") else
                     f"failback (a planned switchover): {kept['present']} of {kept['written']} registry writes "
                     f"acknowledged during it are in {kept['writer']}'s MLflow ({kept['missing']} lost)")
        if kept.get("error"):
            reasons.append(f"failback registry writes not read back: {kept['error']}")
        elif kept["missing"]:  # a planned switchover loses nothing, or it is not one
            reasons.append(f"the failback lost {kept['missing']} registry write(s)")
    back = outcome.get("failback")
    if back is not None:
        # The failback's own figures: its waiting is counted from its own start.
        extra["failback"] = {"status": back.status, "run_id": back.run_id, "total_s": _round(back.total_s),
                             "waiting_s": _round(back.waiting_s), "orchestration_s": _round(back.orchestration_s)}
        if back.status != "completed":
            reasons.append(f"the failback {back.status}")
    if outcome.get("failback_error"):
        extra["failback"] = {**(extra.get("failback") or {}), "error": outcome["failback_error"]}
        notes.append(f"failback did not complete: {outcome['failback_error']}")
        if back is None:
            reasons.append("the failback did not run")
    timeline = outcome["ctx"].timeline.marks
    report = build(target.env, kind=f"region-outage drill in {region}", result=result,
                   timeline=timeline, waiting_s=outcome["ctx"].clock.waiting_s,
                   rpo_s=outcome["rpo_s"], notes=notes, sandbox=True, extra=extra,
                   registry_rpo_s=registry["rpo_s"] if registry is not None else None)
    reasons += _measured_failures(report, result, timeline, rto_applies=standby is None)
    report["verdict"] = "fail" if reasons else "pass"
    report["verdict_reasons"] = reasons
    report["notes"] = [*(f"fail: {r}" for r in reasons), *report["notes"]]
    report.update(_audit_heads(outcome))
    return report


def _standby_summary(standby: dict) -> str:
    where, ok, probes = standby["serving_region"], standby["ok"], standby["probes"]
    if not _standby_failures(standby):
        return f"standby outage: serving unaffected ({ok}/{probes} inferences ok in {where})"
    return f"standby outage: serving AFFECTED ({ok}/{probes} inferences ok in {where})"


def _standby_failures(standby: dict) -> list[str]:
    where = standby["serving_region"]
    failures = []
    if not standby["probes"]:
        failures.append(f"no inference was made through {where} during the outage")
    if standby["failed"]:
        errors = "; ".join(standby.get("errors") or [])
        failures.append(f"{standby['failed']} of {standby['probes']} inferences in {where} failed ({errors})")
    if standby["routed_after"] != where:
        failures.append(f"routing moved from {where} to {standby['routed_after']} during a standby's outage")
    if not standby["failover_health"]["ok"]:
        failures.append(f"{where} is not failover-healthy: {standby['failover_health']['detail']}")
    return failures


def _measured_failures(report: dict, result: RunResult | None, timeline: dict[str, float], *,
                       rto_applies: bool) -> list[str]:
    """Why the measured figures fail the targets, in words (a missing timeline mark included)."""
    m, t = report["measured"], report["targets"]
    failures = []
    if result is not None and result.status != "completed":
        failures.append(f"the {result.runbook} {result.status}" + (f": {result.error}" if result.error else ""))
    if rto_applies:
        if m["rto_s"] is None:
            absent = [p for p in ("fault_injected", "first_inference") if p not in timeline]
            failures.append(f"RTO not measured: the timeline has no {' or '.join(absent) or 'start'} mark")
        elif m["rto_s"] > t["rto_s"]:
            failures.append(f"RTO {m['rto_s']:.3f} s exceeds the target {t['rto_s']} s")
    if m["rpo_s"] is None:
        failures.append("RPO not measured")
    elif m["rpo_s"] > t["rpo_s"]:
        failures.append(f"RPO {m['rpo_s']:.3f} s exceeds the target {t['rpo_s']} s")
    if m.get("registry_rpo_s") is not None and m["registry_rpo_s"] > t["rpo_s"]:
        failures.append(f"registry RPO {m['registry_rpo_s']:.3f} s exceeds the target {t['rpo_s']} s")
    return failures


def _audit_heads(outcome: dict) -> dict:
    """The audit log's head after the failover (before the failback appended) and at the end,
    each with what it lets a reader check: `audit verify --expect-head` compares the LAST record,
    so the earlier head holds for the log cut at that many records."""
    log = outcome.get("audit_log")
    heads: dict[str, dict] = {}
    before = outcome.get("audit_before_failback")
    if before and before.get("head"):
        n, head = before["records"], before["head"]
        heads["audit_head_before_failback"] = {
            **before, "checks": f"records 1-{n} of {log} hash to {head}: `head -n {n} {log} > cut.jsonl && "
                                f"mlfleet audit verify cut.jsonl --expect-head {head}`"}
    final = outcome.get("audit_final")
    if final and final.get("head"):
        heads["audit_head_final"] = {
            **final, "checks": f"the log as the drill left it ({final['records']} records): "
                               f"`mlfleet audit verify {log} --expect-head {final['head']}`"}
    elif final:
        heads["audit_head_final"] = final
    return heads
