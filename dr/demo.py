"""`mlfleet demo`'s drill part, per environment: bring the sandbox up, promote a new champion
behind the gates and pin it everywhere (on an AWS-only environment: across clouds the champion
reaches Google Cloud on the transfer job's schedule, which a demo does not wait for), run a
region-outage drill on the environment's primary, print the report, tear down."""
from __future__ import annotations

import sys
import tempfile
from pathlib import Path


def run_demo(env_names: list[str] | None = None, out=sys.stdout) -> int:
    """Drill each environment in turn (default prod, then hybrid: AWS to AWS, then AWS to Google
    Cloud); 0 when every drill passes."""
    verdicts = [_drill_one(name, out) for name in env_names or ["prod", "hybrid"]]
    return 0 if all(verdicts) else 1


def _drill_one(env_name: str, out) -> bool:
    from mlfleet.dr import report as reports
    from mlfleet.dr.demo_promotion import promote_a_candidate
    from mlfleet.dr.drill import run_drill
    from mlfleet.dr.sandbox import Sandbox
    from mlfleet.dr.target import Target
    from mlfleet.stacks.environment import load_environment

    def say(line: str) -> None:
        print(line, file=out, flush=True)

    env = load_environment(env_name)
    with tempfile.TemporaryDirectory(prefix="mlfleet-demo-") as state_dir:
        say(f"bringing up the {env.name} sandbox ({len(env.regions)} regions, one runtime each)…")
        with Sandbox(env, state_dir=Path(state_dir), log=say) as box:
            target = Target.sandbox(env, Path(state_dir))
            if not env.regions_on("gcp"):
                promote_a_candidate(box, target, say)
            outcome = run_drill(target, env.primary.name, progress=say)
            report = reports.drill_report(target, env.primary.name, outcome)
            say("")
            say(reports.to_markdown(report))
        say("sandbox torn down")
    return report["verdict"] == "pass"
