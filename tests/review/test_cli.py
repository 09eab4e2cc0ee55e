"""`mlfleet review` through its registered subcommand: files written, exit codes."""
from __future__ import annotations

import argparse
import json

import pytest

from mlfleet.stacks.environment.errors import MlfleetError
from mlfleet.stacks.review.cli import register


def _run(*argv: str) -> int:
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers())
    args = parser.parse_args(list(argv))
    return args.handler(args)


def test_review_writes_the_report_and_the_picture_beside_it(tmp_path, capsys):
    out = tmp_path / "review" / "staging.json"
    assert _run("review", "--env", "staging", "--format", "json", "--out", str(out), "--no-checkov") == 0
    data = json.loads(out.read_text())
    assert data["environment"] == "staging" and data["diagram"] == "staging.svg"
    assert (tmp_path / "review" / "staging.svg").read_text().startswith("<svg")


def test_unacknowledged_high_finding_exits_1(tmp_path, capsys):
    import yaml

    from mlfleet.stacks.environment import ENVIRONMENTS_DIR

    # dev is single-region: its global cluster has no secondary (MLF021), which dev.yaml
    # acknowledges. Without the acknowledgement the review fails.
    data = yaml.safe_load((ENVIRONMENTS_DIR / "dev.yaml").read_text())
    reason = data["acknowledgements"][0]["reason"]
    assert _run("review", "--config", str(ENVIRONMENTS_DIR / "dev.yaml"), "--no-checkov") == 0
    assert reason in capsys.readouterr().out
    data.pop("acknowledgements")
    unacknowledged = tmp_path / "dev.yaml"
    unacknowledged.write_text(yaml.safe_dump(data))
    assert _run("review", "--config", str(unacknowledged), "--no-checkov") == 1
    assert "MLF021" in capsys.readouterr().out


def test_bad_base_is_a_usage_error(tmp_path):
    with pytest.raises(MlfleetError, match="neither a directory nor a git ref") as raised:
        _run("review", "--env", "staging", "--base", "no-such-ref-anywhere", "--no-checkov")
    assert raised.value.exit_code == 2


REVIEW_PROBE = """
import sys
from mlfleet.stacks.node_runtime import use_project_node; use_project_node()
from mlfleet.stacks.environment import load_environment
from mlfleet.stacks.review.diagram import render_svg
from mlfleet.stacks.review.report import build_review, render_markdown
env = load_environment(sys.argv[1])
review = build_review(env, run_checkov=False)
render_markdown(review), render_svg(env, review.stacks)
print(sorted({m.split('.')[0] for m in sys.modules if m.startswith('cdktn_provider_')}))
"""


@pytest.mark.sandbox  # a fresh interpreter that synthesizes
def test_an_aws_only_review_loads_only_the_aws_provider(tmp_path):
    # Google's provider bindings cost seconds to load: reviewing an AWS-only environment must not
    # pay for them (as its synth does not). A fresh process, since this one has loaded both.
    import ast
    import subprocess
    import sys

    run = subprocess.run([sys.executable, "-c", REVIEW_PROBE, "staging"], cwd=tmp_path, capture_output=True,
                         text=True, check=True)
    loaded = ast.literal_eval(run.stdout.strip().splitlines()[-1])
    # The serving stacks load Kubernetes' and Helm's bindings on every cloud; never Google's here.
    assert "cdktn_provider_aws" in loaded and "cdktn_provider_google" not in loaded
    assert set(loaded) <= {"cdktn_provider_aws", "cdktn_provider_kubernetes", "cdktn_provider_helm"}
