"""checkov's results on the synthesized JSON, merged into the review's findings table.

checkov lives in a virtualenv of its own, `.venv-checkov` (made by `make setup`: its boto3 pin
and the main venv's cannot be resolved together). It is looked for in this order: the
`MLFLEET_CHECKOV` environment variable, the checkout's `.venv-checkov/bin/checkov`, PATH; when
none is found the review says checkov was not run.

One checkov process scans every stack (`-d DIR --framework terraform_json --skip-download -o json
--quiet` over a directory of `<stack>/cdk.tf.json`): its start-up, about 5 s, is most of the cost,
and the results are the same as one process per file. A failed check becomes a finding (source
"checkov") at the resource's construct path; an entry of the shipped acknowledgement file
(`data/checkov_acknowledgements.yaml`) that covers the check at that path acknowledges it with the
entry's reason. Terraform JSON has no comments for checkov's in-file suppressions, but a check
checkov reports skipped is shown acknowledged with checkov's reason. Without a Prisma Cloud key
checkov reports no severity: such rows are "unrated" and never fail the review on their own.
"""
from __future__ import annotations

import fnmatch
import json
import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Annotated, Any, Sequence

import yaml
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError

from mlfleet.constructs.terraform_json import TerraformJson, construct_paths
from mlfleet.stacks.environment.errors import MlfleetError
from mlfleet.stacks.review.findings import ReviewFinding

_SEVERITY = {"CRITICAL": "high", "HIGH": "high", "MEDIUM": "medium", "LOW": "low", "INFO": "low"}
TIMEOUT_SECONDS = 600
EXECUTABLE_VARIABLE = "MLFLEET_CHECKOV"
# stacks/review/checkov.py → the repository root, when running from a checkout.
CHECKOUT_EXECUTABLE = Path(__file__).resolve().parents[2] / ".venv-checkov" / "bin" / "checkov"
ACKNOWLEDGEMENTS_FILE = Path(__file__).resolve().parent / "data" / "checkov_acknowledgements.yaml"
# checkov logs a check that raised, and reports it neither passed nor failed.
_CHECK_ERROR = re.compile(r"Failed to run check (\S+) on ")


class CheckovAcknowledgement(BaseModel):
    """`check` failing on a resource whose construct path matches one of `resources` (fnmatch
    globs, e.g. `*/registry/instance`) is accepted, for `reason`."""
    model_config = ConfigDict(extra="forbid", frozen=True)

    check: str = Field(pattern=r"^CKV2?_[A-Z0-9]+_\d+$", description="checkov's check id, e.g. CKV_GCP_6")
    resources: tuple[Annotated[str, StringConstraints(strip_whitespace=True, min_length=1)], ...] = Field(
        min_length=1, description="construct-path globs")
    reason: Annotated[str, StringConstraints(strip_whitespace=True, min_length=10)]

    def covers(self, check: str, path: str) -> bool:
        return check == self.check and any(fnmatch.fnmatchcase(path, glob) for glob in self.resources)


@dataclass(frozen=True)
class CheckovRun:
    ran: bool
    version: str | None
    findings: list[ReviewFinding]
    note: str
    errored_checks: tuple[str, ...] = ()   # checks checkov could not evaluate (they raised)


def executable() -> str | None:
    """The checkov to run: `MLFLEET_CHECKOV`, else the checkout's `.venv-checkov`, else PATH's."""
    configured = os.environ.get(EXECUTABLE_VARIABLE)
    if configured:
        found = shutil.which(configured)
        if found is None:
            raise MlfleetError(f"{EXECUTABLE_VARIABLE}={configured} is not an executable checkov")
        return found
    if os.access(CHECKOUT_EXECUTABLE, os.X_OK):
        return str(CHECKOUT_EXECUTABLE)
    return shutil.which("checkov")


def load_acknowledgements(path: Path = ACKNOWLEDGEMENTS_FILE) -> tuple[CheckovAcknowledgement, ...]:
    """The entries of an acknowledgement file; every invalid one is reported with its field."""
    try:
        data = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise MlfleetError(f"cannot read checkov acknowledgements {path}: {exc.strerror or exc}") from None
    except yaml.YAMLError as exc:
        raise MlfleetError(f"checkov acknowledgements {path} are not valid YAML: {exc}") from None
    if data is None:
        return ()
    if not isinstance(data, list):
        raise MlfleetError(f"invalid checkov acknowledgements {path}: expected a list of entries "
                           "{check, resources, reason}")
    entries, problems = [], []
    for number, item in enumerate(data, 1):
        try:
            entries.append(CheckovAcknowledgement.model_validate(item))
        except ValidationError as exc:
            check = item.get("check") if isinstance(item, dict) else None
            entry = f"entry {number}" + (f" ({check})" if isinstance(check, str) else "")
            for err in exc.errors():
                field = ".".join(str(part) for part in err["loc"]) or "(entry)"
                message = "unknown key (a typo?)" if err["type"] == "extra_forbidden" else err["msg"]
                problems.append(f"  {entry}, {field}: {message}")
    if problems:
        raise MlfleetError(f"invalid checkov acknowledgements {path}:\n" + "\n".join(problems))
    return tuple(entries)


def run(stacks: dict[str, TerraformJson],
        acknowledgements: Sequence[CheckovAcknowledgement] | None = None) -> CheckovRun:
    """Scan every stack (name → Terraform JSON) in one checkov process. `acknowledgements`
    default to the shipped file's."""
    found = executable()
    if found is None:
        return CheckovRun(False, None, [], "checkov was not run: it is not installed (`make setup` puts it in "
                                            f".venv-checkov; or set {EXECUTABLE_VARIABLE} to its path)")
    entries = load_acknowledgements() if acknowledgements is None else acknowledgements
    with tempfile.TemporaryDirectory(prefix="mlfleet-checkov-") as directory:
        for name, tf in stacks.items():
            path = Path(directory) / name / "cdk.tf.json"
            path.parent.mkdir()
            path.write_text(json.dumps(tf, indent=2))
        try:
            completed = subprocess.run(
                [found, "-d", directory, "--framework", "terraform_json", "--skip-download", "-o", "json", "--quiet"],
                capture_output=True, text=True, timeout=TIMEOUT_SECONDS, check=False)
        except subprocess.TimeoutExpired:
            raise MlfleetError(f"checkov did not finish scanning {len(stacks)} stacks within {TIMEOUT_SECONDS} s") \
                from None
        except OSError as exc:
            raise MlfleetError(f"cannot run checkov ({found}): {exc.strerror or exc}") from None
    findings, version = parse_report(_json_report(completed), stacks, entries)
    errored = tuple(sorted(set(_CHECK_ERROR.findall(completed.stderr))))
    acknowledged = sum(1 for f in findings if f.acknowledged)
    note = (f"checkov {version or '(version unknown)'} ran on every stack: {len(findings)} failed check(s), "
            f"{acknowledged} acknowledged")
    if errored:
        note += f"; checkov could not evaluate {', '.join(errored)} (the checks raised)"
    return CheckovRun(True, version, findings, note, errored)


def _json_report(completed: subprocess.CompletedProcess) -> Any:
    """checkov exits 1 when a check fails; any other exit, or output that is not its JSON report,
    is a failure of checkov itself."""
    if completed.returncode in (0, 1):
        try:
            return json.loads(completed.stdout)
        except ValueError:
            pass
    raise MlfleetError(f"checkov failed (exit {completed.returncode}): "
                       f"{(completed.stderr or completed.stdout).strip()[-400:]}")


def parse_report(report: Any, stacks: dict[str, TerraformJson],
                 acknowledgements: Sequence[CheckovAcknowledgement] = ()) -> tuple[list[ReviewFinding], str | None]:
    """Findings and checkov version from checkov's `-o json` output over a directory of
    `<stack>/cdk.tf.json` files.

    checkov prints one object per framework, or a list of them when several ran; a scan with
    nothing to check yields a bare summary without `results`.
    """
    paths = {name: construct_paths(tf) for name, tf in stacks.items()}
    reports = report if isinstance(report, list) else [report] if report else []
    findings = []
    version = None
    for part in reports:
        version = version or part.get("summary", {}).get("checkov_version")
        results = part.get("results", {})
        for check in results.get("failed_checks", []):
            findings.append(_finding(check, paths, acknowledgements, None))
        for check in results.get("skipped_checks", []):
            reason = (check.get("check_result") or {}).get("suppress_comment") or "skipped in checkov"
            findings.append(_finding(check, paths, acknowledgements, reason))
    return findings, version


def _finding(check: dict, paths: dict[str, dict[str, str]], acknowledgements: Sequence[CheckovAcknowledgement],
             skipped: str | None) -> ReviewFinding:
    stack = PurePosixPath(check.get("file_path", "")).parent.name
    address, path = _locate(paths.get(stack, {}), check.get("resource", "?"))
    rule = check.get("check_id", "?")
    title = check.get("check_name", "")
    # What the check read, e.g. `settings/[0]/ip_configuration/[0]/ssl_mode/[0]`: where to look.
    evaluated = (check.get("check_result") or {}).get("evaluated_keys") or []
    acknowledged = skipped or next((a.reason for a in acknowledgements if a.covers(rule, path)), None)
    return ReviewFinding(
        source="checkov", rule=rule, title=title,
        severity=_SEVERITY.get(str(check.get("severity") or "").upper(), "unrated"),
        stack=stack, address=address, path=path, message=f"reads {', '.join(evaluated)}" if evaluated else title,
        fix=check.get("guideline") or "see checkov's documentation of the check", acknowledged=acknowledged)


def _locate(paths: dict[str, str], resource: str) -> tuple[str, str]:
    """(Terraform address, construct path) of the resource checkov names. Its graph checks write
    `type.name`; its Python checks on Terraform JSON write `resource.name`, without the type (a
    logical id is unique in its stack)."""
    block, _, name = resource.partition(".")
    if block == "resource":
        resource = next((a for a in paths if a.partition(".")[2] == name), resource)
    return resource, paths.get(resource, resource)
