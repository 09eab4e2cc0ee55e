"""`mlfleet demo`'s drill part: bring the sandbox up, promote a new champion behind the gates and
pin it everywhere, run a region-outage drill on the environment's primary, print the report,
tear down."""
from __future__ import annotations

import sys
import tempfile
from pathlib import Path


def run_demo(env_name: str = "prod", out=sys.stdout) -> int:
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
            promote_a_candidate(box, target, say)
            outcome = run_drill(target, env.primary.name, progress=say)
            report = reports.drill_report(target, env.primary.name, outcome)
            say("")
            say(reports.to_markdown(report))
        say("sandbox torn down")
    return 0 if report["verdict"] == "pass" else 1
