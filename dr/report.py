"""Run and drill reports, in JSON (for machines) and Markdown (for people): the timeline, the
measured RTO and RPO against the environment's targets, waiting versus orchestration time and
a verdict."""
from __future__ import annotations

import json
from datetime import datetime, timezone

from mlfleet.dr.engine import PHASES, RunResult
from mlfleet.stacks.environment import Environment

SANDBOX_NOTE = ("Measured in the local sandbox: loopback networking and simulated control planes with "
                "sandbox timings, not a cloud's. Real RTO adds DNS TTLs, health-check intervals, node "
                "provisioning and Aurora promotion times.")


def _iso(at: float) -> str:
    return datetime.fromtimestamp(at, timezone.utc).isoformat(timespec="milliseconds")


def build(env: Environment, *, kind: str, result: RunResult | None, timeline: dict[str, float],
          waiting_s: float, rpo_s: float | None, notes: list[str], sandbox: bool, extra: dict | None = None,
          registry_rpo_s: float | None = None) -> dict:
    """`rpo_s`: the artifact store's; `registry_rpo_s`: the registry's where a drill measured it
    (both must be within the target for a pass)."""
    start = timeline.get("fault_injected") or timeline.get("declared")
    end_inference = timeline.get("first_inference")
    rto_s = (end_inference - start) if start and end_inference else None
    total_s = (max(timeline.values()) - start) if start and timeline else None
    ok_rto = rto_s is not None and rto_s <= env.targets.rto
    ok_rpo = rpo_s is not None and rpo_s <= env.targets.rpo and (registry_rpo_s is None
                                                                   or registry_rpo_s <= env.targets.rpo)
    completed = result is None or result.status == "completed"
    verdict = "pass" if completed and ok_rto and ok_rpo else "fail"
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
                     "orchestration_s": _round(max(0.0, total_s - waiting_s) if total_s is not None else None)},
        "targets": {"rto_s": env.targets.rto, "rpo_s": env.targets.rpo},
        "notes": notes + ([SANDBOX_NOTE] if sandbox else []),
        **(extra or {}),
    }


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


def to_json(report: dict) -> str:
    return json.dumps(report, indent=2, default=str)


def to_markdown(report: dict) -> str:
    m, t = report["measured"], report["targets"]
    lines = [f"# {report['kind']} — {report['environment']}: **{report['verdict'].upper()}**", ""]
    lines += ["| measure | value | target |", "|---|---|---|",
              f"| RTO (fault or declaration → first inference in the new region) | {_s(m['rto_s'])} | {t['rto_s']} s |",
              f"| RPO (writes before the fault missing after it) | {_s(m['rpo_s'])} | {t['rpo_s']} s |",
              *([f"| registry RPO (MLflow writes before the fault missing in the new writer) | "
                 f"{_s(m['registry_rpo_s'])} | {t['rpo_s']} s |"] if m.get("registry_rpo_s") is not None else []),
              f"| total (to SLO recovered) | {_s(m['total_s'])} | |",
              f"| waiting on cloud APIs and health checks | {_s(m['waiting_s'])} | |",
              f"| mlfleet orchestration | {_s(m['orchestration_s'])} | |", ""]
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


def drill_report(target, region: str, outcome: dict) -> dict:
    """The report of a region-outage drill (`run_drill`'s outcome) on `target`."""
    result = outcome["result"]
    extra: dict[str, dict | None] = {"scenario": {
        "name": "region-outage", "region": region, "new_region": outcome["new_region"],
        "writes_before_fault": outcome["writes_before_fault"], "writes_missing": outcome["writes_missing"]}}
    registry: dict | None = outcome.get("registry")
    notes = list(outcome["notes"])
    unmeasured = bool(registry is not None and registry.get("error"))
    if registry is not None and unmeasured:
        extra["registry"] = registry
        notes.append(f"registry RPO not measured: {registry['error']}")
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
        unmeasured = unmeasured or bool(kept.get("error"))
        notes.append(f"failback (a planned switchover): {kept['error']}" if kept.get("error") else
                     f"failback (a planned switchover): {kept['present']} of {kept['written']} registry writes "
                     f"acknowledged during it are in {kept['writer']}'s MLflow ({kept['missing']} lost)")
    if outcome.get("failback") is not None:
        extra["failback"] = {"status": outcome["failback"].status, "run_id": outcome["failback"].run_id}
    report = build(target.env, kind=f"region-outage drill in {region}", result=result,
                   timeline=outcome["ctx"].timeline.marks, waiting_s=outcome["ctx"].clock.waiting_s,
                   rpo_s=outcome["rpo_s"], notes=notes, sandbox=True, extra=extra,
                   registry_rpo_s=registry["rpo_s"] if registry is not None else None)
    if (kept is not None and kept["missing"]) or unmeasured:
        # A planned switchover loses nothing, or it is not one; an RPO nobody read is no pass.
        report["verdict"] = "fail"
    return report
