"""The checkov gate: every stack of every example environment scanned by the real checkov (one
process for all of them). A failed check that no entry of the acknowledgement file covers fails
CI, and so does an entry's glob that covers no failure in any example (stale). `make checkov`
runs these and prints the counts per example."""
from __future__ import annotations

import fnmatch

import pytest

from mlfleet.stacks.review import checkov
from mlfleet.stacks.review.findings import ReviewFinding

pytestmark = pytest.mark.checkov
ACKNOWLEDGEMENTS = "stacks/review/data/checkov_acknowledgements.yaml"


@pytest.fixture(scope="module")
def scan(examples) -> tuple[checkov.CheckovRun, dict[str, str]]:
    """checkov's run over every example's stacks, and each stack's example."""
    assert checkov.executable() is not None, "checkov is not installed: `make setup` puts it in .venv-checkov"
    example_of = {stack: name for name, (_, stacks, _) in examples.items() for stack in stacks}
    result = checkov.run({stack: tf for _, stacks, _ in examples.values() for stack, tf in stacks.items()})
    assert result.ran, result.note
    return result, example_of


def _counts(run: checkov.CheckovRun, example_of: dict[str, str]) -> str:
    lines = [f"checkov {run.version} over the examples:",
             f"  {'example':<10} {'failed':>7} {'acknowledged':>13} {'unacknowledged':>15}"]
    for name in sorted(set(example_of.values())):
        found = [f for f in run.findings if example_of[f.stack] == name]
        acknowledged = sum(1 for f in found if f.acknowledged)
        lines.append(f"  {name:<10} {len(found):>7} {acknowledged:>13} {len(found) - acknowledged:>15}")
    if run.errored_checks:
        lines.append(f"  not evaluated (the checks raised in checkov): {', '.join(run.errored_checks)}")
    return "\n".join(lines)


def _row(finding: ReviewFinding) -> str:
    return f"  {finding.rule:<12} {finding.stack:<30} {finding.path:<50} {finding.title}"


def test_every_failed_check_is_acknowledged(scan):
    run, example_of = scan
    counts = _counts(run, example_of)
    print("\n" + counts)
    unacknowledged = sorted((f for f in run.findings if not f.acknowledged), key=lambda f: (f.rule, f.stack, f.path))
    if unacknowledged:
        pytest.fail(f"{len(unacknowledged)} failed checkov check(s) that no entry of {ACKNOWLEDGEMENTS} "
                    "acknowledges: fix the resource, or add an entry with the reason\n"
                    f"  {'check':<12} {'stack':<30} {'construct path':<50} check name\n"
                    + "\n".join(_row(f) for f in unacknowledged) + "\n" + counts, pytrace=False)


def test_no_acknowledgement_is_stale(scan):
    run, _ = scan
    failed = {(f.rule, f.path) for f in run.findings}
    stale = [f"{entry.check} {glob}" for entry in checkov.load_acknowledgements() for glob in entry.resources
             if not any(rule == entry.check and fnmatch.fnmatchcase(path, glob) for rule, path in failed)]
    if stale:
        pytest.fail(f"entries of {ACKNOWLEDGEMENTS} that cover no failed check in any example (fixed? remove "
                    "them, or correct the glob):\n" + "\n".join(f"  {s}" for s in stale), pytrace=False)
