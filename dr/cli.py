"""`mlfleet failover | failback | readiness | drill | faults | promote | audit verify | sandbox up/down/status`.

Exit codes: 0 success or verdict pass; 1 runbook aborted (compensated), verdict fail or audit
log tampered; 2 usage or configuration error; 3 refused by a gate (RPO budget, lock held,
readiness check failed)."""
from __future__ import annotations

import json
from pathlib import Path

from mlfleet.dr.errors import EXIT_FAILED, EXIT_OK, EXIT_REFUSED, DrUsageError


def register(subparsers) -> None:
    def common(parser, target=True):
        parser.add_argument("--env", required=True, help="a shipped environment")
        parser.add_argument("--state-dir", default=".mlfleet",
                            help="sandbox state, journals, audit log (default .mlfleet)")
        if target:
            parser.add_argument("--target", choices=("sandbox", "aws"), default="sandbox",
                                help="the running sandbox (default) or the deployed AWS environment")

    p = subparsers.add_parser("failover", help="fail serving over to another region")
    common(p)
    p.add_argument("--to", required=True, metavar="REGION")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--planned", action="store_true", default=True, help="switchover, no data loss (default)")
    mode.add_argument("--unplanned", action="store_true", help="failover while the writer region is lost")
    p.add_argument("--dry-run", action="store_true", help="plan only: evaluate preconditions, change nothing")
    p.add_argument("--allow-data-loss", action="store_true", help="accept replication lag beyond the RPO budget")
    p.add_argument("--report", metavar="FILE", help="write the report (FILE.md and FILE.json)")
    p.add_argument("--take-over-lock", action="store_true",
                   help="take over the lock of a DR run whose process died (audited)")
    p.set_defaults(handler=_failover)

    p = subparsers.add_parser("failback", help="switch back to the environment's configured primary")
    common(p)
    p.add_argument("--dry-run", action="store_true")
    p.add_argument("--report", metavar="FILE")
    p.add_argument("--take-over-lock", action="store_true",
                   help="take over the lock of a DR run whose process died (audited)")
    p.set_defaults(handler=_failback)

    p = subparsers.add_parser("reconcile", help="make the DNS records agree with where the routing controls send "
                                                "traffic (after a failover while Route 53's API was down)")
    common(p)
    p.set_defaults(handler=_reconcile)

    p = subparsers.add_parser("readiness", help="per region, the checks that would block a failover to it, now")
    common(p)
    p.set_defaults(handler=_readiness)

    p = subparsers.add_parser("drill", help="inject a fault in the sandbox and measure RTO and RPO")
    common(p)
    p.add_argument("--scenario", default="region-outage", choices=("region-outage", "region-outage-with-route53"),
                   help="region-outage-with-route53: Route 53's API (served from us-east-1) fails too")
    p.add_argument("--region", required=True)
    p.add_argument("--fault", choices=("503", "timeout", "drop"), default="503")
    p.add_argument("--no-failback", action="store_true", help="leave the standby serving afterwards")
    p.add_argument("--report", metavar="FILE")
    p.set_defaults(handler=_drill)

    p = subparsers.add_parser("faults", help="the sandbox's active faults and the drills' recorded cleanups")
    faults_sub = p.add_subparsers(dest="faults_command", required=True, metavar="ACTION")
    for action, text in (("list", "active faults (control API) and recorded cleanups"),
                         ("clear", "clear the faults of one region (all without --region)")):
        fp = faults_sub.add_parser(action, help=text)
        common(fp, target=False)
        fp.add_argument("--region", help="only this region")
        fp.set_defaults(handler=_faults)

    p = subparsers.add_parser("promote", help="make a model version the champion behind gates, signed with KMS")
    common(p)
    p.add_argument("--model", required=True, help="the registered model's name in MLflow")
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--version", help="the candidate version to promote")
    which.add_argument("--rollback", action="store_true", help="re-pin the previous champion")
    p.add_argument("--dry-run", action="store_true", help="evaluate every gate and print the plan, change nothing")
    p.set_defaults(handler=_promote)

    p = subparsers.add_parser("approve", help="approve a run that waits for another identity (dr.approvals)")
    common(p)
    p.add_argument("run", nargs="?", metavar="RUN", help="the run id the waiting run printed")
    p.add_argument("--list", action="store_true", help="list the runs that wait for an approval")
    p.set_defaults(handler=_approve)

    p = subparsers.add_parser("audit", help="the DR audit log")
    audit_sub = p.add_subparsers(dest="audit_command", required=True, metavar="ACTION")
    v = audit_sub.add_parser("verify", help="check the hash chain of an audit log and the head anchored outside it")
    v.add_argument("file")
    v.add_argument("--env", help="the environment whose artifact store holds the anchor (default: the one the "
                                 "log's records name)")
    v.add_argument("--state-dir", default=".mlfleet", help="sandbox state (default .mlfleet)")
    v.add_argument("--target", choices=("sandbox", "aws"), default="sandbox",
                   help="read the anchor from the running sandbox (default) or the deployed AWS environment")
    v.add_argument("--expect-head", help="the head hash a run report recorded")
    v.add_argument("--no-anchor", action="store_true", help="check the chain only, not the anchored head")
    v.set_defaults(handler=_audit_verify)

    p = subparsers.add_parser("sandbox", help="the local multi-region sandbox")
    sandbox_sub = p.add_subparsers(dest="sandbox_command", required=True, metavar="ACTION")
    for action, handler, text in (("up", _sandbox_up, "start it in the foreground until Ctrl-C"),
                                  ("down", _sandbox_down, "stop the one running for --env"),
                                  ("status", _sandbox_status, "show its endpoints and faults")):
        sp = sandbox_sub.add_parser(action, help=text)
        common(sp, target=False)
        sp.set_defaults(handler=handler)


def _target(args):
    from mlfleet.dr.target import Target
    from mlfleet.stacks.environment import load_environment

    env = load_environment(args.env)
    if len(env.regions) < 2:
        raise DrUsageError(f"environment {env.name} has one region: there is nothing to fail over to")
    state_dir = Path(args.state_dir)
    return Target.sandbox(env, state_dir) if args.target == "sandbox" else Target.aws(env, state_dir)


def _progress(line: str) -> None:
    print(line, flush=True)


def _run(target, runbook, args, kind: str) -> int:
    """Plan (--dry-run) or execute a runbook. One condition, one exit code: a refusal (nothing
    changed) is one line and exit 3 in a dry run and a real run alike; an abort prints its report
    and exits 1; a completed run exits 0 only when its report's verdict is pass."""
    from mlfleet.dr import report as reports
    from mlfleet.dr.audit import target_log
    from mlfleet.dr.engine import RunContext
    from mlfleet.dr.errors import Refused, RunbookAborted

    _check_report_path(args)
    audit = target_log(target)
    ctx = RunContext(retry=target.retry, progress=_progress, poll_interval_s=target.poll_interval_s)
    if args.dry_run:
        print(f"plan: {runbook.name} ({runbook.key}); nothing will be changed")
        blocked = []
        for line in runbook.plan(ctx):
            mark = "ok " if line.ok else ("REFUSED" if line.gate else "BLOCKED")
            if not line.ok:
                blocked.append(f"{line.step}: {line.precondition}")
            print(f"  [{mark}] {line.step}: {line.summary}\n        precondition: {line.precondition}\n"
                  f"        change: {line.change}")
        audit.append(run_id="dry-run", action=f"{runbook.name}.plan", target=runbook.key,
                     result="refused" if blocked else "ok", detail={"blocked": blocked} if blocked else None)
        if blocked:
            raise Refused(f"{runbook.name} would be refused: {blocked[0]}"
                          + (f" (and {len(blocked) - 1} more)" if len(blocked) > 1 else ""))
        return EXIT_OK
    target.warm()  # clients built before the run, not on its clock
    try:
        result = runbook.execute(ctx, state_dir=target.runs_dir, lock=target.lock(runbook.lock_region),
                                 audit=audit, take_over_lock=getattr(args, "take_over_lock", False))
    except RunbookAborted as exc:
        if exc.report is not None:
            _emit(reports.build(target.env, kind=kind, result=exc.report, timeline=exc.report.timeline,
                                waiting_s=exc.report.waiting_s, rpo_s=None, notes=[],
                                sandbox=target.kind == "sandbox"), args)
        raise
    except Refused:
        raise  # one line: the refusal says what to do
    planned = "drain-replication" in [s.name for s in result.steps]
    notes = list(result.facts.get("notes", []))
    if not planned:
        notes.append("RPO is bounded by the replication lag measured at the gate (no writes were traced)")
    report = reports.build(target.env, kind=kind, result=result, timeline=result.timeline, waiting_s=result.waiting_s,
                           rpo_s=0.0 if planned else result.facts.get("replication_lag_s"),
                           notes=notes, sandbox=target.kind == "sandbox")
    _emit(report, args)
    return EXIT_OK if report["verdict"] == "pass" else EXIT_FAILED


def _check_report_path(args) -> None:
    """A report that cannot be written is found out before the run, not after it."""
    if getattr(args, "report", None):
        folder = Path(args.report).parent
        if not folder.is_dir():
            raise DrUsageError(f"--report {args.report}: the folder {folder} does not exist; create it first")


def _emit(report: dict, args) -> None:
    from mlfleet.dr import report as reports

    print()
    print(reports.to_markdown(report))
    if getattr(args, "report", None):
        base = Path(args.report)
        base.with_suffix(".md").write_text(reports.to_markdown(report))
        base.with_suffix(".json").write_text(reports.to_json(report))
        print(f"report written to {base.with_suffix('.md')} and {base.with_suffix('.json')}")


def _failover(args) -> int:
    from mlfleet.dr.runbooks import failover

    target = _target(args)
    target.region(args.to)
    _finish_cleanups(target)
    planned = not args.unplanned
    runbook = failover(target, args.to, planned=planned, allow_data_loss=args.allow_data_loss)
    return _run(target, runbook, args, f"{'planned' if planned else 'unplanned'} failover to {args.to}")


def _failback(args) -> int:
    from mlfleet.dr.runbooks import failback

    target = _target(args)
    _finish_cleanups(target)
    return _run(target, failback(target), args, f"failback to {target.env.primary.name}")


def _finish_cleanups(target) -> None:
    """A drill killed before it cleared its fault left it for the next command to clear."""
    if target.kind == "sandbox":
        from mlfleet.dr.fault_cleanup import finish_abandoned_cleanups

        finish_abandoned_cleanups(target, _progress)


def _reconcile(args) -> int:
    from mlfleet.dr import routing
    from mlfleet.dr.audit import record
    from mlfleet.dr.engine import RunContext

    target = _target(args)
    ctx = RunContext(retry=target.retry, poll_interval_s=target.poll_interval_s)
    served = routing.served_region(target, ctx)
    if served is None:
        raise DrUsageError(f"{target.env.serving.dns_name} resolves to no region: nothing to reconcile the records to")
    outcome = routing.reconcile_records(target, ctx, served)
    pending = outcome == routing.PENDING
    record(target, run_id="reconcile", action="routing.reconcile", target=f"{target.env.name}:{served}",
           result="pending" if pending else "ok", detail={"outcome": outcome})
    print(f"{target.env.serving.dns_name} resolves to {served}; {outcome}")
    return EXIT_REFUSED if pending else EXIT_OK


def _readiness(args) -> int:
    """Exit 3 when a check blocks a failover to any standby; the writer's failures are shown only."""
    from mlfleet.dr.engine import RunContext
    from mlfleet.dr.readiness import blocking, readiness, summary

    target = _target(args)
    results = readiness(target, RunContext(retry=target.retry, poll_interval_s=target.poll_interval_s))
    for result in results:
        print(result.line())
    for line in summary(results):
        print(line)
    return EXIT_OK if not blocking(results) else EXIT_REFUSED


def _drill(args) -> int:
    """Exit 0 only on a pass verdict, 1 on a fail: both come from the one verdict in the report.
    A fault a killed drill left behind is cleared first (run_drill does it)."""
    from mlfleet.dr import report as reports
    from mlfleet.dr.drill import run_drill

    target = _target(args)
    outcome = run_drill(target, args.region, scenario=args.scenario, fault_mode=args.fault,
                        do_failback=not args.no_failback, progress=_progress)
    report = reports.drill_report(target, args.region, outcome)
    _emit(report, args)
    return EXIT_OK if report["verdict"] == "pass" else EXIT_FAILED


def _faults(args) -> int:
    """`faults list` reads; `faults clear` clears through the control API, forgets the recorded
    cleanups of what it cleared and audits it."""
    from datetime import datetime, timezone

    from mlfleet.dr.audit import record
    from mlfleet.dr.fault_cleanup import FaultRecords, owner_alive
    from mlfleet.dr.target import Target
    from mlfleet.stacks.environment import load_environment

    env = load_environment(args.env)
    target = Target.sandbox(env, Path(args.state_dir))
    if args.region:
        target.region(args.region)
    control, records = target.control, FaultRecords(target.state_dir, env.name)
    assert control is not None

    def since(fault: dict) -> str:
        return datetime.fromtimestamp(float(fault.get("since") or 0), timezone.utc).isoformat(timespec="seconds")

    def describe(fault: dict) -> str:
        return (f"{fault['region']:<14} service {fault.get('service', '*'):<8} {fault['mode']:<8} "
                f"since {since(fault)}")

    if args.faults_command == "clear":
        cleared = control.clear(args.region)
        forgotten = records.remove_region(args.region)
        where = args.region or "every region"
        for fault in cleared:
            print(f"cleared {describe(fault)}")
        print(f"{len(cleared)} fault(s) cleared in {where}" if cleared else f"no active fault in {where}")
        record(target, run_id="faults-clear", action="faults.clear", target=f"{env.name}:{args.region or '*'}",
               result="ok", detail={"cleared": cleared, "forgotten_cleanups": len(forgotten)})
        return EXIT_OK
    active = [f for f in control.faults() if not args.region or f["region"] == args.region]
    print(f"active faults ({len(active)}):" if active else "active faults: none")
    for fault in active:
        print(f"  {describe(fault)}")
    recorded = [e for e in records.entries() if not args.region or e.region == args.region]
    print(f"recorded cleanups ({len(recorded)}):" if recorded else "recorded cleanups: none")
    for entry in recorded:
        state = "drill running" if owner_alive(entry) else "drill gone: the next drill, failover or failback clears it"
        print(f"  {entry.describe()} [{state}]")
    return EXIT_OK


def _promote(args) -> int:
    """Acts, and approves, as the caller: against AWS the default credential chain; in the sandbox
    its own credentials, or those in AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY (an IAM user of the
    sandbox: the review identity)."""
    import os

    from mlfleet.dr.promotion import AwsCredentials, PromotionRefused, promote, rollback
    from mlfleet.dr.target import Target
    from mlfleet.stacks.environment import load_environment

    env = load_environment(args.env)
    state_dir = Path(args.state_dir)
    target = Target.sandbox(env, state_dir) if args.target == "sandbox" else Target.aws(env, state_dir)
    credentials = None
    if args.target == "sandbox" and os.environ.get("AWS_ACCESS_KEY_ID") and os.environ.get("AWS_SECRET_ACCESS_KEY"):
        credentials = AwsCredentials(os.environ["AWS_ACCESS_KEY_ID"], os.environ["AWS_SECRET_ACCESS_KEY"],
                                     os.environ.get("AWS_SESSION_TOKEN"))
    what = f"roll back {args.model}" if args.rollback else f"promote {args.model} v{args.version}"
    try:
        if args.rollback:
            result = rollback(target, args.model, dry_run=args.dry_run, progress=_progress, credentials=credentials)
        else:
            result = promote(target, args.model, args.version, dry_run=args.dry_run, progress=_progress,
                             credentials=credentials)
    except PromotionRefused as exc:
        for gate in exc.result.gates:
            print(f"  {gate.line()}")
        print(f"refused: {what}: {len(exc.result.refusals)} gate(s) failed; nothing was changed")
        return EXIT_REFUSED
    for gate in result.gates:
        print(f"  {gate.line()}")
    print(("plan (dry run, nothing changed):" if result.dry_run else "done:"))
    for step in result.plan:
        print(f"  - {step}")
    for note in result.notes:
        print(f"  note: {note}")
    timings = ", ".join(f"{phase} {seconds:.3f}s" for phase, seconds in result.timings_s.items())
    print(f"{what}: {'would be done' if result.dry_run else 'done'} in {result.writer_region} ({timings})")
    if result.manifest_sha256:
        print(f"manifest sha256 {result.manifest_sha256}, signed by {result.signature_key}")
    if result.audit_head:
        print(f"audit record {result.audit_head[:12]} in {target.audit_path}")
    return EXIT_OK


def _approve(args) -> int:
    """Approves as the caller (see approvals.caller_identity); refused (exit 3) for the identity that
    started the run or a finished run; exit 2 for a run that does not exist or waits for nothing."""
    from mlfleet.dr import approvals

    if args.list == bool(args.run):
        raise DrUsageError("give the RUN to approve, or --list (the runs that wait for an approval)")
    target = _target(args)
    if args.list:
        found = approvals.waiting(target)
        print(f"runs waiting for an approval ({len(found)}):" if found else "no run waits for an approval")
        for request in found:
            print(f"  {request.run_id}  {request.mode:<18} requested by {request.requested_by} "
                  f"at {request.requested_at}")
        return EXIT_OK
    approval = approvals.approve(target, args.run, approvals.caller_identity(target))
    print(f"run {approval.run_id} ({approval.mode}, started by {approval.requested_by}) approved by "
          f"{approval.approver} at {approval.approved_at}")
    return EXIT_OK


def _audit_verify(args) -> int:
    """The chain, then (unless --no-anchor) the newest head anchored in the environment's artifact
    buckets: a truncated log or records edited and re-hashed fail with exit 1."""
    from mlfleet.dr.audit import anchor_for, environment_of, verify
    from mlfleet.dr.target import Target
    from mlfleet.stacks.environment import load_environment

    path = Path(args.file)
    anchor = None
    verified = verify(path, expect_head=args.expect_head)  # a broken chain needs no anchor to be seen
    if not args.no_anchor:
        env_name = args.env or environment_of(path)
        if env_name is None:
            raise DrUsageError(f"cannot tell which environment {args.file} belongs to: pass --env ENV "
                               "(or --no-anchor to check the chain only)")
        env = load_environment(env_name)
        if args.target == "aws":
            target = Target.aws(env, Path(args.state_dir))
        else:
            try:
                target = Target.sandbox(env, Path(args.state_dir))
            except DrUsageError as exc:
                raise DrUsageError(f"{exc}; the anchors of {env.name}'s audit log live in the sandbox's artifact "
                                   "buckets (or pass --no-anchor to check the chain only)") from None
        anchor = anchor_for(target)
        if anchor is not None:
            verified = verify(path, expect_head=args.expect_head, anchor=anchor)
    print(f"{args.file}: {verified.records} records, chain intact, head {verified.head}")
    if args.no_anchor:
        print("anchor not checked (--no-anchor): a truncated log or re-hashed records would pass")
    elif anchor is None:
        print("anchor not checked: the environment has no AWS region to hold one")
    elif verified.anchored is not None:
        count, _ = verified.anchored
        print(f"anchored: record {count} matches {anchor.name}"
              + (f"; {verified.unanchored} later record(s) are not anchored yet" if verified.unanchored else ""))
    else:
        print(f"not anchored: {verified.note}")
    return EXIT_OK


def _sandbox_up(args) -> int:
    import signal
    import threading

    from mlfleet.dr.sandbox import Sandbox, SandboxState
    from mlfleet.stacks.environment import load_environment

    env = load_environment(args.env)  # AWS, Google Cloud and cross-cloud environments alike
    try:
        running = SandboxState.load(Path(args.state_dir), env.name)
    except DrUsageError:
        running = None  # none, or a stale state file from a sandbox that died: start afresh
    if running is not None:
        raise DrUsageError(f"a sandbox for {env.name} is already running (process {running.pid})")
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with Sandbox(env, state_dir=Path(args.state_dir), log=_progress) as sandbox:
        print(f"AWS endpoint (fault proxy): {sandbox.state.aws_endpoint}")
        for region, url in sandbox.state.serving.items():
            print(f"serving {region}: {url}")
        for region, url in sandbox.state.mlflow.items():
            print(f"MLflow {region}: {url}")
        if sandbox.state.gcp_storage:
            print(f"Google Cloud endpoint: {sandbox.state.gcp_endpoint} (Cloud Monitoring, gRPC: "
                  f"{sandbox.state.gcp_monitoring})")
            for region, url in sandbox.state.gcp_storage.items():
                print(f"Cloud Storage {region}: {url}")
        print(f"state: {sandbox.state_path} (the registry databases' URLs too); Ctrl-C to stop", flush=True)
        try:
            stop.wait()
        except KeyboardInterrupt:
            pass
    print("sandbox stopped")
    return EXIT_OK


def _sandbox_down(args) -> int:
    import os
    import signal

    from mlfleet.dr.sandbox import SandboxState

    state = SandboxState.load(Path(args.state_dir), args.env)
    os.kill(state.pid, signal.SIGTERM)
    print(f"asked the sandbox for {args.env} (process {state.pid}) to stop")
    return EXIT_OK


def _sandbox_status(args) -> int:
    from mlfleet.dr.sandbox import SandboxState
    from mlfleet.dr.sandbox.control import ControlClient

    state = SandboxState.load(Path(args.state_dir), args.env)
    _finish_fault_cleanups(args)
    live = ControlClient(state.control_url, state.control_token).state()
    print(f"sandbox for {state.env} (process {state.pid})")
    print(f"  AWS endpoint: {state.aws_endpoint}\n  GCP endpoint: {state.gcp_endpoint}")
    for region, url in state.serving.items():
        print(f"  serving {region}: {url}")
    for region, url in state.kubernetes.items():
        print(f"  kubernetes {region}: {url}")
    for region, url in state.mlflow.items():
        print(f"  MLflow {region}: {url}")
    if state.gcp_storage:
        print(f"  Cloud Monitoring (gRPC): {state.gcp_monitoring}")
    for region, url in state.gcp_storage.items():
        print(f"  Google Cloud region {region}: Cloud Storage {url}")
    print(f"  registry: {json.dumps(ControlClient(state.control_url, state.control_token).registry())}")
    print(f"  faults: {live['faults'] or 'none'}\n  settings: {live['settings']}")
    return EXIT_OK


def _finish_fault_cleanups(args) -> None:
    """Clear the faults of drills killed before they could (fault_cleanup.py)."""
    from mlfleet.dr.fault_cleanup import finish_abandoned_cleanups
    from mlfleet.dr.target import Target
    from mlfleet.stacks.environment import load_environment

    finish_abandoned_cleanups(Target.sandbox(load_environment(args.env), Path(args.state_dir)), _progress)
