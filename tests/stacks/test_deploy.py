"""`mlfleet deploy` hands a synthesized stack to Terraform and reports its failure cleanly:
offline and without credentials, `terraform init` cannot configure the S3 backend."""
from __future__ import annotations

import http.server
import json
import os
import shutil
import threading

import pytest

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


# A region is two stacks: `mlfleet deploy --region R` applies `<env>-R`, then `<env>-R-serving`, whose
# data sources read the cluster the first one made. Terraform here is a stand-in that records each call.

FAKE_TERRAFORM = """#!/bin/sh
echo "$(basename "$PWD") $1" >> "$TERRAFORM_LOG"
"""


@pytest.fixture
def fake_terraform(tmp_path, monkeypatch):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    script = bin_dir / "terraform"
    script.write_text(FAKE_TERRAFORM)
    script.chmod(0o755)
    log = tmp_path / "terraform.log"
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("TERRAFORM_LOG", str(log))
    return lambda: log.read_text().splitlines() if log.exists() else []


@pytest.fixture
def aws_api(monkeypatch):
    """A moto server the deploy's cluster check asks (boto3 reads AWS_ENDPOINT_URL)."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    for var, value in {"AWS_ENDPOINT_URL": f"http://{host}:{port}", "AWS_ACCESS_KEY_ID": "testing",
                       "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-2"}.items():
        monkeypatch.setenv(var, value)
    yield f"http://{host}:{port}"
    server.stop()


@pytest.mark.sandbox  # a moto server
def test_serving_before_its_cluster_stops_with_one_line_naming_the_stack(tmp_path, fake_terraform, aws_api, capsys):
    code = main(["deploy", "--env", "dev", "--region", "us-east-2", "--part", "serving",
                 "--outdir", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 1 and "Traceback" not in err
    assert err.strip().splitlines()[-1] == (
        "mlfleet: error: dev-us-east-2-serving deploys onto cluster mlfleet-dev-us-east-2, which does not exist "
        "yet: deploy dev-us-east-2 first (mlfleet deploy --env dev --region us-east-2 applies both in order)")
    assert fake_terraform() == []  # Terraform never ran


@pytest.mark.sandbox  # a moto server
def test_a_region_deploys_its_stack_then_its_serving_stack(tmp_path, fake_terraform, aws_api):
    import boto3

    boto3.client("eks", region_name="us-east-2").create_cluster(
        name="mlfleet-dev-us-east-2", roleArn="arn:aws:iam::111111111111:role/cluster",
        resourcesVpcConfig={"subnetIds": ["subnet-0aaaaaaaaaaaaaaa1"]})
    assert main(["deploy", "--env", "dev", "--region", "us-east-2", "--auto-approve",
                 "--outdir", str(tmp_path / "out")]) == 0
    assert fake_terraform() == ["dev-us-east-2 init", "dev-us-east-2 apply",
                                "dev-us-east-2-serving init", "dev-us-east-2-serving apply"]
    assert main(["deploy", "--env", "dev", "--region", "us-east-2", "--part", "regional", "--plan",
                 "--outdir", str(tmp_path / "out")]) == 0
    assert fake_terraform()[4:] == ["dev-us-east-2 init", "dev-us-east-2 plan"]


class _NoClusters(http.server.BaseHTTPRequestHandler):
    def do_GET(self):  # the standard library's name
        body = json.dumps({"error": {"code": 404, "message": "cluster not found", "status": "NOT_FOUND"}}).encode()
        self.send_response(404)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.mark.sandbox  # a local HTTP endpoint answering as the GKE API does
def test_a_google_serving_stack_checks_its_gke_cluster_first(tmp_path, fake_terraform, capsys):
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _NoClusters)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        code = main(["deploy", "--env", "research", "--region", "us-east4", "--part", "serving",
                     "--gcp-endpoint", f"http://127.0.0.1:{server.server_port}", "--outdir", str(tmp_path / "out")])
    finally:
        server.shutdown()
    err = capsys.readouterr().err
    assert code == 1 and "Traceback" not in err
    assert "research-us-east4-serving deploys onto cluster mlf-research-us-east4, which does not exist yet: " \
           "deploy research-us-east4 first" in err
    assert fake_terraform() == []


def test_part_applies_to_regions_only(capsys):
    assert main(["deploy", "--env", "dev", "--region", "global", "--part", "serving"]) == 2
    assert "--part serving applies to a region's stacks, not to global" in capsys.readouterr().err
