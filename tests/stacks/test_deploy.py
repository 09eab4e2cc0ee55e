"""`mlfleet deploy` hands a synthesized stack to Terraform and reports its failure cleanly:
offline and without credentials, `terraform init` cannot configure the S3 backend."""
from __future__ import annotations

import shutil

from mlfleet.stacks.cli import main
from mlfleet.stacks.deploy import terraform_steps


def test_deploy_without_credentials_fails_with_terraforms_message(tmp_path, monkeypatch, capfd):
    for var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_PROFILE", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("TF_IN_AUTOMATION", "1")
    code = main(["deploy", "--env", "dev", "--region", "us-east-2", "--plan", "--outdir", str(tmp_path / "out")])
    out, err = capfd.readouterr()
    assert code == 1 and "Traceback" not in err
    assert (tmp_path / "out" / "stacks" / "dev-us-east-2" / "cdk.tf.json").is_file()
    if shutil.which("terraform") or shutil.which("tofu"):
        assert "terraform init failed for dev-us-east-2" in err
        assert "credential" in (out + err).lower()  # Terraform's own explanation reaches the user
    else:
        assert "is not on PATH" in err


def test_deploy_refuses_a_region_outside_the_environment(capsys):
    assert main(["deploy", "--env", "dev", "--region", "eu-west-1"]) == 2
    assert "has no region 'eu-west-1'; choose one of us-east-2, global" in capsys.readouterr().err


def test_plan_only_never_applies(tmp_path):
    steps = terraform_steps(tmp_path, plan_only=True, auto_approve=True)
    assert [s[0] for s in steps] == ["init", "plan"]
    assert terraform_steps(tmp_path, plan_only=False, auto_approve=True)[1][:2] == ["apply", "-input=false"]


def test_deploy_reaches_the_google_stacks_and_their_gcs_backend(tmp_path, monkeypatch, capfd):
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(tmp_path / "no-such-key.json"))
    monkeypatch.setenv("TF_IN_AUTOMATION", "1")
    code = main(["deploy", "--env", "research", "--region", "gcp-global", "--plan", "--outdir", str(tmp_path / "out")])
    out, err = capfd.readouterr()
    assert code == 1 and "Traceback" not in err
    synthesized = tmp_path / "out" / "stacks" / "research-gcp-global" / "cdk.tf.json"
    assert '"gcs"' in synthesized.read_text()
    if shutil.which("terraform") or shutil.which("tofu"):
        assert "terraform init failed for research-gcp-global" in err
    else:
        assert "is not on PATH" in err


def test_deploy_offers_gcp_global_only_with_google_regions(capsys):
    assert main(["deploy", "--env", "hybrid", "--region", "eu-west-1"]) == 2
    assert "choose one of us-east-1, us-central1, global, gcp-global" in capsys.readouterr().err
    assert main(["deploy", "--env", "dev", "--region", "gcp-global"]) == 2
    assert "choose one of us-east-2, global" in capsys.readouterr().err
