"""`mlfleet failover | failback | readiness | drill | promote | audit verify | sandbox up/down/status`.

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
    p.set_defaults(handler=_failover)

    p = subparsers.add_parser("failback", help="switch back to the environment's configured primary")
    common(p)
    p.add_argument("--dry-run", action="store_true")
    p.add_argument("--report", metavar="FILE")
    p.set_defaults(handler=_failback)

    p = subparsers.add_parser("readiness", help="the checks that would block a failover, now")
    common(p)
    p.set_defaults(handler=_readiness)

    p = subparsers.add_parser("drill", help="inject a fault in the sandbox and measure RTO and RPO")
    common(p)
    p.add_argument("--scenario", default="region-outage", choices=("region-outage",))
    p.add_argument("--region", required=True)
    p.add_argument("--fault", choices=("503", "timeout", "drop"), default="503")
    p.add_argument("--no-failback", action="store_true", help="leave the standby serving afterwards")
    p.add_argument("--report", metavar="FILE")
    p.set_defaults(handler=_drill)

    p = subparsers.add_parser("promote", help="make a model version the champion behind gates, signed with KMS")
    common(p)
    p.add_argument("--model", required=True, help="the registered model's name in MLflow")
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--version", help="the candidate version to promote")
    which.add_argument("--rollback", action="store_true", help="re-pin the previous champion")
    p.add_argument("--dry-run", action="store_true", help="evaluate every gate and print the plan, change nothing")
    p.set_defaults(handler=_promote)

    p = subparsers.add_parser("audit", help="the DR audit log")
    audit_sub = p.add_subparsers(dest="audit_command", required=True, metavar="ACTION")
    v = audit_sub.add_parser("verify", help="check the hash chain of an audit log")
    v.add_argument("file")
    v.add_argument("--expect-head", help="the head hash a run report recorded")
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

    env = _aws_only(load_environment(args.env))
    if len(env.regions) < 2:
        raise DrUsageError(f"environment {env.name} has one region: there is nothing to fail over to")
    state_dir = Path(args.state_dir)
    return Target.sandbox(env, state_dir) if args.target == "sandbox" else Target.aws(env, state_dir)


def _aws_only(env):
    """The runbooks and the sandbox drive AWS regions; a Google Cloud region would be half-done."""
    gcp = [r.name for r in env.regions_on("gcp")]
    if gcp:
        raise DrUsageError(
            f"environment {env.name} has Google Cloud regions ({', '.join(gcp)}): the DR runbooks and the "
            "sandbox drive AWS regions only so far; nothing was changed")
    return env


def _progress(line: str) -> None:
    print(line, flush=True)


def _run(target, runbook, args, kind: str) -> int:
    from mlfleet.dr import report as reports
    from mlfleet.dr.audit import AuditLog
    from mlfleet.dr.engine import RunContext
    from mlfleet.dr.errors import Refused, RunbookAborted

    ctx = RunContext(retry=target.retry, progress=_progress, poll_interval_s=target.poll_interval_s)
    if args.dry_run:
        print(f"plan: {runbook.name} ({runbook.key}); nothing will be changed")
        blocked = 0
        for line in runbook.plan(ctx):
            mark = "ok " if line.ok else ("REFUSED" if line.gate else "BLOCKED")
            blocked += not line.ok
            print(f"  [{mark}] {line.step}: {line.summary}\n        precondition: {line.precondition}\n"
                  f"        change: {line.change}")
        return EXIT_OK if not blocked else EXIT_REFUSED
    lock_region = runbook.key.split(":")[2]
    target.warm()  # clients built before the run, not on its clock
    try:
        result = runbook.execute(ctx, state_dir=target.runs_dir, lock=target.lock(lock_region),
                                 audit=AuditLog(target.audit_path))
    except (Refused, RunbookAborted) as exc:
        result = getattr(exc, "result", None) or getattr(exc, "report", None)
        if result is not None:
            _emit(reports.build(target.env, kind=kind, result=result, timeline=result.timeline,
                                waiting_s=result.waiting_s, rpo_s=None, notes=[],
                                sandbox=target.kind == "sandbox"), args)
        raise
    planned = "drain-replication" in [s.name for s in result.steps]
    notes = list(result.facts.get("notes", []))
    if not planned:
        notes.append("RPO is bounded by the replication lag measured at the gate (no writes were traced)")
    report = reports.build(target.env, kind=kind, result=result, timeline=result.timeline, waiting_s=result.waiting_s,
                           rpo_s=0.0 if planned else result.facts.get("replication_lag_s"),
                           notes=notes, sandbox=target.kind == "sandbox")
    _emit(report, args)
    return EXIT_OK


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
    planned = not args.unplanned
    runbook = failover(target, args.to, planned=planned, allow_data_loss=args.allow_data_loss)
    return _run(target, runbook, args, f"{'planned' if planned else 'unplanned'} failover to {args.to}")


def _failback(args) -> int:
    from mlfleet.dr.runbooks import failback

    target = _target(args)
    return _run(target, failback(target), args, f"failback to {target.env.primary.name}")


def _readiness(args) -> int:
    from mlfleet.dr.engine import RunContext
    from mlfleet.dr.runbooks import readiness

    target = _target(args)
    results = readiness(target, RunContext(retry=target.retry, poll_interval_s=target.poll_interval_s))
    for region, check, ok, detail in results:
        print(f"  [{'ok ' if ok else 'FAIL'}] {region:<14} {check:<24} {detail}")
    failed = sum(not ok for *_, ok, _ in results)
    print(f"{'ready' if not failed else f'{failed} check(s) would block a failover'}")
    return EXIT_OK if not failed else EXIT_REFUSED


def _drill(args) -> int:
    from mlfleet.dr import report as reports
    from mlfleet.dr.drill import run_drill

    target = _target(args)
    outcome = run_drill(target, args.region, scenario=args.scenario, fault_mode=args.fault,
                        do_failback=not args.no_failback, progress=_progress)
    report = reports.drill_report(target, args.region, outcome)
    _emit(report, args)
    return EXIT_OK if report["verdict"] == "pass" else EXIT_FAILED


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


def _audit_verify(args) -> int:
    from mlfleet.dr.audit import verify

    verified = verify(Path(args.file), expect_head=args.expect_head)
    print(f"{args.file}: {verified.records} records, chain intact, head {verified.head}")
    return EXIT_OK


def _sandbox_up(args) -> int:
    import signal
    import threading

    from mlfleet.dr.sandbox import Sandbox, SandboxState
    from mlfleet.stacks.environment import load_environment

    env = _aws_only(load_environment(args.env))
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
    live = ControlClient(state.control_url, state.control_token).state()
    print(f"sandbox for {state.env} (process {state.pid})")
    print(f"  AWS endpoint: {state.aws_endpoint}\n  GCP endpoint: {state.gcp_endpoint}")
    for region, url in state.serving.items():
        print(f"  serving {region}: {url}")
    for region, url in state.kubernetes.items():
        print(f"  kubernetes {region}: {url}")
    for region, url in state.mlflow.items():
        print(f"  MLflow {region}: {url}")
    print(f"  registry: {json.dumps(ControlClient(state.control_url, state.control_token).registry())}")
    print(f"  faults: {live['faults'] or 'none'}\n  settings: {live['settings']}")
    return EXIT_OK


