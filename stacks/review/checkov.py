"""checkov's results on the synthesized JSON, merged into the review's findings table.

checkov is optional (the `review` extra): when it is not on PATH the review says it was not
run. Each stack is scanned on its own `cdk.tf.json` with `--framework terraform_json`;
checkov's failed checks become findings (source "checkov"), its skipped checks acknowledged
findings with the suppression comment as the reason. Without a Prisma Cloud key checkov
reports no severity: such rows are "unrated" and never fail the review on their own.
"""
from __future__ import annotations

import json
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from mlfleet.stacks.environment.errors import MlfleetError
from mlfleet.stacks.review.findings import ReviewFinding

_SEVERITY = {"CRITICAL": "high", "HIGH": "high", "MEDIUM": "medium", "LOW": "low", "INFO": "low"}
TIMEOUT_SECONDS = 600


@dataclass(frozen=True)
class CheckovRun:
    ran: bool
    version: str | None
    findings: list[ReviewFinding]
    note: str


def available() -> str | None:
    return shutil.which("checkov")


def run(stack_files: dict[str, Path]) -> CheckovRun:
    """Scan each stack's cdk.tf.json; `stack_files` maps stack name to that file."""
    executable = available()
    if executable is None:
        return CheckovRun(False, None, [], "checkov was not run: it is not installed "
                                            "(pip install 'mlfleet[review]' adds it)")
    findings: list[ReviewFinding] = []
    version = None
    for stack, path in sorted(stack_files.items()):
        try:
            completed = subprocess.run(
                [executable, "-f", str(path), "--framework", "terraform_json", "--skip-download",
                 "-o", "json", "--quiet"],
                capture_output=True, text=True, timeout=TIMEOUT_SECONDS, check=False)
        except subprocess.TimeoutExpired:
            raise MlfleetError(f"checkov did not finish scanning {stack} within {TIMEOUT_SECONDS} s") from None
        # checkov exits 1 when a check fails; anything it could not parse is an error.
        try:
            report = json.loads(completed.stdout or "null")
        except ValueError:
            raise MlfleetError(f"checkov failed on {stack} (exit {completed.returncode}): "
                               f"{(completed.stderr or completed.stdout).strip()[-400:]}") from None
        stack_findings, stack_version = parse_report(stack, report)
        findings += stack_findings
        version = version or stack_version
    return CheckovRun(True, version, findings, f"checkov {version or '(version unknown)'} ran on every stack")


def parse_report(stack: str, report) -> tuple[list[ReviewFinding], str | None]:
    """Findings and checkov version from checkov's `-o json` output for one file.

    checkov prints one object per framework, or a list of them when several ran; a file with
    nothing to check yields a bare summary without `results`.
    """
    reports = report if isinstance(report, list) else [report] if report else []
    findings = []
    version = None
    for part in reports:
        version = version or part.get("summary", {}).get("checkov_version")
        results = part.get("results", {})
        for check in results.get("failed_checks", []):
            findings.append(_finding(stack, check, None))
        for check in results.get("skipped_checks", []):
            reason = (check.get("check_result") or {}).get("suppress_comment") or "skipped in checkov"
            findings.append(_finding(stack, check, reason))
    return findings, version


def _finding(stack: str, check: dict, acknowledged: str | None) -> ReviewFinding:
    address = check.get("resource", "?")
    title = check.get("check_name", "")
    return ReviewFinding(
        source="checkov", rule=check.get("check_id", "?"), title=title,
        severity=_SEVERITY.get(str(check.get("severity") or "").upper(), "unrated"),
        stack=stack, address=address, path=address, message=title,
        fix=check.get("guideline") or "see checkov's documentation of the check", acknowledged=acknowledged)
