"""checkov's JSON report mapped into the findings table, from a sample written after checkov's
documented `-o json` output; the subprocess path through a stand-in executable on PATH."""
from __future__ import annotations

import json
import os
import stat
import sys
from pathlib import Path

from mlfleet.stacks.review import checkov

SAMPLE = Path(__file__).parent / "data" / "checkov_sample.json"


def test_failed_and_skipped_checks_become_findings():
    findings, version = checkov.parse_report("prod-us-east-1", json.loads(SAMPLE.read_text()))
    assert version == "3.3.30"
    by_rule = {f.rule: f for f in findings}
    assert sorted(by_rule) == ["CKV_AWS_144", "CKV_AWS_145", "CKV_AWS_18"]   # passed checks are not findings
    assert by_rule["CKV_AWS_18"].severity == "high" and by_rule["CKV_AWS_18"].blocking
    unrated = by_rule["CKV_AWS_144"]
    assert unrated.severity == "unrated" and not unrated.blocking and unrated.fix.startswith("https://")
    assert unrated.source == "checkov" and unrated.address == "aws_s3_bucket.artifacts_bucket_A41425E9"
    assert by_rule["CKV_AWS_145"].acknowledged == "encrypted by the bucket's default encryption resource"


def test_several_frameworks_and_an_empty_scan():
    sample = json.loads(SAMPLE.read_text())
    findings, _ = checkov.parse_report("s", [sample, {"check_type": "secrets", "results": {"failed_checks": []}}])
    assert len(findings) == 3
    assert checkov.parse_report("s", {"passed": 0, "failed": 0, "skipped": 0}) == ([], None)


def test_absent_checkov_is_reported_not_fatal(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    result = checkov.run({"s": tmp_path / "cdk.tf.json"})
    assert not result.ran and result.findings == [] and "not installed" in result.note


def test_runs_checkov_per_stack_with_the_documented_arguments(monkeypatch, tmp_path):
    bindir = tmp_path / "bin"
    bindir.mkdir()
    log = tmp_path / "calls.txt"
    stand_in = bindir / "checkov"
    stand_in.write_text(f"#!{sys.executable}\n"
                        "import sys\n"
                        f"open({str(log)!r}, 'a').write(' '.join(sys.argv[1:]) + '\\n')\n"
                        f"sys.stdout.write(open({str(SAMPLE)!r}).read())\n"
                        "sys.exit(1)\n")
    stand_in.chmod(stand_in.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ['PATH']}")
    files = {"prod-global": tmp_path / "a.json", "prod-us-east-1": tmp_path / "b.json"}
    result = checkov.run(files)
    assert result.ran and result.version == "3.3.30"
    assert sorted({f.stack for f in result.findings}) == ["prod-global", "prod-us-east-1"]
    calls = log.read_text().splitlines()
    assert calls == [f"-f {files[s]} --framework terraform_json --skip-download -o json --quiet" for s in sorted(files)]
