"""checkov's JSON report mapped into the findings table (from a sample written after checkov's
`-o json` output over a directory of stacks), the acknowledgement file, where checkov is found,
and the subprocess path through stand-in executables."""
from __future__ import annotations

import json
import stat
import sys
from pathlib import Path

import pytest

from mlfleet.stacks.environment.errors import MlfleetError
from mlfleet.stacks.review import checkov

SAMPLE = Path(__file__).parent / "data" / "checkov_sample.json"
STACKS = {"prod-us-east-1": {"resource": {
    "aws_s3_bucket": {"artifacts_bucket_A41425E9": {
        "//": {"metadata": {"path": "prod-us-east-1/artifacts/bucket"}}, "bucket": "b"}},
    "aws_rds_cluster_instance": {"registry_instance-1_245ABDAA": {
        "//": {"metadata": {"path": "prod-us-east-1/registry/instance-1"}}, "instance_class": "db.r7g.large"}}}}}
REASON = "enhanced monitoring is Aurora's own Performance Insights here (a test reason)"


def _stand_in(path: Path, body: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"#!{sys.executable}\nimport sys\n{body}")
    path.chmod(path.stat().st_mode | stat.S_IEXEC)
    return path


@pytest.fixture
def no_checkov(monkeypatch, tmp_path):
    """Nothing to find: no variable, no checkout virtualenv, an empty PATH."""
    monkeypatch.delenv(checkov.EXECUTABLE_VARIABLE, raising=False)
    monkeypatch.setattr(checkov, "CHECKOUT_EXECUTABLE", tmp_path / "no-venv" / "bin" / "checkov")
    monkeypatch.setenv("PATH", str(tmp_path / "empty-path"))


def test_failed_and_skipped_checks_become_findings_at_construct_paths():
    findings, version = checkov.parse_report(json.loads(SAMPLE.read_text()), STACKS)
    assert version == "3.3.30"
    by_rule = {f.rule: f for f in findings}
    assert sorted(by_rule) == ["CKV_AWS_118", "CKV_AWS_144", "CKV_AWS_145", "CKV_AWS_18"]  # passed ones are not
    assert by_rule["CKV_AWS_18"].severity == "high" and by_rule["CKV_AWS_18"].blocking
    unrated = by_rule["CKV_AWS_144"]
    assert unrated.severity == "unrated" and not unrated.blocking and unrated.fix.startswith("https://")
    assert (unrated.source, unrated.stack) == ("checkov", "prod-us-east-1")
    assert (unrated.address, unrated.path) == ("aws_s3_bucket.artifacts_bucket_A41425E9",
                                               "prod-us-east-1/artifacts/bucket")
    # checkov's Python checks name `resource.<logical id>`: the type is found in the stack.
    python_check = by_rule["CKV_AWS_118"]
    assert (python_check.address, python_check.path) == (
        "aws_rds_cluster_instance.registry_instance-1_245ABDAA", "prod-us-east-1/registry/instance-1")
    assert python_check.message == "reads monitoring_interval" and unrated.message == unrated.title
    assert by_rule["CKV_AWS_145"].acknowledged == "encrypted by the bucket's default encryption resource"
    assert by_rule["CKV_AWS_118"].acknowledged is None


def test_an_entry_acknowledges_its_check_on_the_paths_its_globs_match():
    entries = [checkov.CheckovAcknowledgement(check="CKV_AWS_118", resources=("*/registry/instance-*",),
                                              reason=REASON),
               # the right path, another check: covers nothing here
               checkov.CheckovAcknowledgement(check="CKV_AWS_226", resources=("*",), reason=REASON)]
    findings, _ = checkov.parse_report(json.loads(SAMPLE.read_text()), STACKS, entries)
    by_rule = {f.rule: f for f in findings}
    assert by_rule["CKV_AWS_118"].acknowledged == REASON
    assert by_rule["CKV_AWS_144"].acknowledged is None and by_rule["CKV_AWS_18"].blocking
    assert not entries[0].covers("CKV_AWS_118", "prod-us-east-1/registry/cluster")


def test_several_frameworks_and_an_empty_scan():
    sample = json.loads(SAMPLE.read_text())
    findings, _ = checkov.parse_report([sample, {"check_type": "secrets", "results": {"failed_checks": []}}], STACKS)
    assert len(findings) == 4
    assert checkov.parse_report({"passed": 0, "failed": 0, "skipped": 0}, STACKS) == ([], None)


def test_the_shipped_acknowledgements_load_with_their_reasons():
    entries = {e.check: e for e in checkov.load_acknowledgements()}
    assert {"CKV_GCP_12", "CKV_GCP_6"} <= set(entries)
    assert "CKV_GCP_13" not in entries  # fixed: the clusters say issue_client_certificate = false
    assert entries["CKV_GCP_6"].covers("CKV_GCP_6", "research-us-east4/registry/instance")
    assert "ENCRYPTED_ONLY" in entries["CKV_GCP_6"].reason
    assert "ADVANCED_DATAPATH" in entries["CKV_GCP_12"].reason


@pytest.mark.parametrize(("entry", "problem"), [
    ({"check": "CKV_GCP_6", "resources": ["*"], "reason": "long enough reason", "expires": "never"},
     "entry 1 (CKV_GCP_6), expires: unknown key (a typo?)"),
    ({"check": "CKV_GCP_6", "resources": ["*"], "reason": "   "},
     "entry 1 (CKV_GCP_6), reason: String should have at least 10 characters"),
    ({"check": "GCP_6", "resources": ["*"], "reason": "long enough reason"},
     "entry 1 (GCP_6), check: String should match pattern"),
    ({"check": "CKV_GCP_6", "resources": [], "reason": "long enough reason"},
     "entry 1 (CKV_GCP_6), resources: Tuple should have at least 1 item"),
    ({"check": "CKV_GCP_6", "reason": "long enough reason"}, "entry 1 (CKV_GCP_6), resources: Field required"),
])
def test_an_invalid_entry_is_named_with_its_field(tmp_path, entry, problem):
    path = tmp_path / "acks.yaml"
    path.write_text(json.dumps([entry]))
    with pytest.raises(MlfleetError, match="invalid checkov acknowledgements") as caught:
        checkov.load_acknowledgements(path)
    assert problem in str(caught.value)


def test_every_invalid_entry_is_reported_and_a_non_list_refused(tmp_path):
    path = tmp_path / "acks.yaml"
    good = {"check": "CKV_GCP_6", "resources": ["*"], "reason": "long enough reason"}
    path.write_text(json.dumps([good, {**good, "reason": ""}, {**good, "check": "nope"}]))
    with pytest.raises(MlfleetError) as caught:
        checkov.load_acknowledgements(path)
    assert "entry 2 (CKV_GCP_6), reason" in str(caught.value) and "entry 3 (nope), check" in str(caught.value)
    path.write_text("check: CKV_GCP_6\n")
    with pytest.raises(MlfleetError, match="expected a list of entries"):
        checkov.load_acknowledgements(path)


def test_absent_checkov_is_reported_not_fatal(no_checkov):
    result = checkov.run(STACKS)
    assert not result.ran and result.findings == [] and "not installed" in result.note
    assert "make setup" in result.note and checkov.EXECUTABLE_VARIABLE in result.note


def test_checkov_is_found_by_variable_then_checkout_then_path(no_checkov, monkeypatch, tmp_path):
    on_path = _stand_in(tmp_path / "path" / "checkov", "")
    monkeypatch.setenv("PATH", str(on_path.parent))
    assert checkov.executable() == str(on_path)
    checkout = _stand_in(tmp_path / "checkout" / ".venv-checkov" / "bin" / "checkov", "")
    monkeypatch.setattr(checkov, "CHECKOUT_EXECUTABLE", checkout)
    assert checkov.executable() == str(checkout)
    configured = _stand_in(tmp_path / "elsewhere" / "checkov", "")
    monkeypatch.setenv(checkov.EXECUTABLE_VARIABLE, str(configured))
    assert checkov.executable() == str(configured)


def test_a_variable_naming_no_executable_is_an_error(no_checkov, monkeypatch, tmp_path):
    monkeypatch.setenv(checkov.EXECUTABLE_VARIABLE, str(tmp_path / "missing" / "checkov"))
    with pytest.raises(MlfleetError, match=f"{checkov.EXECUTABLE_VARIABLE}=.* is not an executable checkov"):
        checkov.run(STACKS)


def test_one_checkov_scans_a_directory_of_every_stack(no_checkov, monkeypatch, tmp_path):
    log = tmp_path / "calls.json"
    stand_in = _stand_in(tmp_path / "bin" / "checkov", (
        "import json, pathlib\n"
        "directory = pathlib.Path(sys.argv[sys.argv.index('-d') + 1])\n"
        "files = {str(p.relative_to(directory)): json.loads(p.read_text()) for p in directory.rglob('*.json')}\n"
        f"pathlib.Path({str(log)!r}).open('a').write(json.dumps([sys.argv[1:], files]) + '\\n')\n"
        "sys.stderr.write('[ERROR]  Failed to run check CKV_GCP_54 on /x/cdk.tf.json:sql.i\\n')\n"
        f"sys.stdout.write(open({str(SAMPLE)!r}).read())\n"
        "sys.exit(1)\n"))
    monkeypatch.setenv(checkov.EXECUTABLE_VARIABLE, str(stand_in))
    stacks = {**STACKS, "prod-global": {"resource": {}}}
    entry = checkov.CheckovAcknowledgement(check="CKV_AWS_118", resources=("*/registry/*",), reason=REASON)
    result = checkov.run(stacks, [entry])
    [(args, files)] = [json.loads(line) for line in log.read_text().splitlines()]
    assert args[0] == "-d" and args[2:] == ["--framework", "terraform_json", "--skip-download", "-o", "json", "--quiet"]
    assert files == {f"{name}/cdk.tf.json": tf for name, tf in stacks.items()}
    assert result.ran and result.version == "3.3.30" and result.errored_checks == ("CKV_GCP_54",)
    assert result.note == ("checkov 3.3.30 ran on every stack: 4 failed check(s), 2 acknowledged; "
                           "checkov could not evaluate CKV_GCP_54 (the checks raised)")
    assert {f.rule: f.acknowledged for f in result.findings}["CKV_AWS_118"] == REASON


def test_output_that_is_not_a_report_is_an_error(no_checkov, monkeypatch, tmp_path):
    stand_in = _stand_in(tmp_path / "bin" / "checkov", "sys.stderr.write('unknown framework'); sys.exit(2)\n")
    monkeypatch.setenv(checkov.EXECUTABLE_VARIABLE, str(stand_in))
    with pytest.raises(MlfleetError, match=r"checkov failed \(exit 2\): unknown framework"):
        checkov.run(STACKS)
