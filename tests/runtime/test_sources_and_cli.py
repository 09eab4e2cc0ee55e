"""The S3 source against a moto server, the serve CLI's contract and its one-line errors."""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

import boto3
import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from moto.server import ThreadedMotoServer

from mlfleet.runtime.cli import register
from mlfleet.runtime.manifest import Manifest, ManifestError
from mlfleet.runtime.process import RuntimeProcess, free_port

from helpers.runtime import reference_forward, request_json

pytestmark = pytest.mark.sandbox  # starts or talks to a runtime process


BUCKET = "models-eu-west-1"


@pytest.fixture(scope="module")
def s3(example_repo, manifest_key):
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port)
    server.start()
    env = {"AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}", "AWS_REGION": "eu-west-1",
           "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}
    client = boto3.client("s3", endpoint_url=env["AWS_ENDPOINT_URL"], region_name="eu-west-1",
                          aws_access_key_id="testing", aws_secret_access_key="testing")
    client.create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
    for path in example_repo.rglob("*"):
        if path.is_file() and not path.relative_to(example_repo).parts[0] == "mlp-large":
            client.upload_file(str(path), BUCKET, f"serving/{path.relative_to(example_repo)}")
    manifest = Manifest.load(example_repo / "manifest.json")
    only_mlp = Manifest.model_validate({"models": {"mlp": manifest.models["mlp"].model_dump(mode="json")}})
    manifest_bytes = only_mlp.model_dump_json().encode()
    client.put_object(Bucket=BUCKET, Key="serving/manifest.json", Body=manifest_bytes)
    signature = manifest_key.signing_key.sign(manifest_bytes)
    client.put_object(Bucket=BUCKET, Key="serving/manifest.json.sig", Body=signature)
    yield client, env
    server.stop()


def _serve(*args, env=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mlfleet.runtime", "--http-port", "0", "--grpc-port", "0", *args],
                          capture_output=True, text=True, timeout=60, env={**os.environ, **(env or {})})


def test_serves_from_s3_and_pinning_is_disabled_without_a_token(s3, example_repo, manifest_key):
    _, env = s3
    os.environ.pop("MLFLEET_ADMIN_TOKEN", None)
    with RuntimeProcess(f"s3://{BUCKET}/serving/", env=env,
                        manifest_public_key=manifest_key.public_key_path) as runtime:
        batch = np.random.default_rng(0).standard_normal((4, 64), dtype=np.float32)
        client = grpcclient.InferenceServerClient(runtime.grpc_url)
        tensor = grpcclient.InferInput("INPUT__0", [4, 64], "FP32")
        tensor.set_data_from_numpy(batch)
        got = client.infer("mlp", [tensor]).as_numpy("OUTPUT__0")
        np.testing.assert_allclose(got, reference_forward(example_repo, "mlp", "2", batch), rtol=1e-5, atol=1e-5)
        status, body = request_json(runtime.http_url, "POST", "/v2/mlfleet/models/mlp/pin", {"version": "1"},
                                    {"Authorization": "Bearer anything"})
        assert status == 403 and "disabled" in body["error"]


def test_tampered_s3_object_refuses_to_start_with_one_line(s3, manifest_key):
    client, env = s3
    key_flag = ("--manifest-public-key", str(manifest_key.public_key_path))
    original = client.get_object(Bucket=BUCKET, Key="serving/mlp/2/model.pt")["Body"].read()
    tampered = bytearray(original)
    tampered[len(tampered) // 2] ^= 0xFF
    client.put_object(Bucket=BUCKET, Key="serving/mlp/2/model.pt", Body=bytes(tampered))
    try:
        result = _serve("--model-repository", f"s3://{BUCKET}/serving", *key_flag, env=env)
    finally:
        client.put_object(Bucket=BUCKET, Key="serving/mlp/2/model.pt", Body=original)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert "mlp/2/model.pt: sha256" in lines[-1] and "refusing to load" in lines[-1]
    assert "Traceback" not in result.stderr
    # the signature is read from the same bucket: without it nothing is loaded
    signature = client.get_object(Bucket=BUCKET, Key="serving/manifest.json.sig")["Body"].read()
    client.delete_object(Bucket=BUCKET, Key="serving/manifest.json.sig")
    try:
        result = _serve("--model-repository", f"s3://{BUCKET}/serving", *key_flag, env=env)
    finally:
        client.put_object(Bucket=BUCKET, Key="serving/manifest.json.sig", Body=signature)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "manifest.json.sig is missing" in result.stderr.strip().splitlines()[-1]


@pytest.mark.parametrize("setup, fragment", [
    (lambda root: None, "manifest.json"),
    (lambda root: (root / "manifest.json").write_text("{not json"), "not valid JSON"),
    (lambda root: (root / "manifest.json").write_text(json.dumps(
        {"models": {"mlp": {"champion": "3", "versions": {}}}})), "models.mlp.versions"),
])
def test_bad_repository_is_exit_2_without_traceback(tmp_path, setup, fragment, manifest_key):
    setup(tmp_path)
    if (tmp_path / "manifest.json").exists():  # signed: what is refused is the manifest's content
        manifest_key.signing_key.sign_file(tmp_path / "manifest.json")
    key_flag = ("--manifest-public-key", str(manifest_key.public_key_path))
    result = _serve("--model-repository", str(tmp_path), *key_flag)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert fragment in result.stderr.strip().splitlines()[-1]
    result = _serve("--model-repository", str(tmp_path / "missing"), *key_flag)
    assert result.returncode == 2 and "is not a folder" in result.stderr


def test_register_adds_serve_without_importing_torch():
    probe = ("import argparse, sys; from mlfleet.runtime.cli import register; p = argparse.ArgumentParser();"
             "register(p.add_subparsers()); print('torch' in sys.modules, 'uvicorn' in sys.modules)")
    assert subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True).stdout.split() == \
        ["False", "False"]
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["serve", "--model-repository", "s3://b/p", "--grpc-port", "0", "--region", "us-east-2"])
    assert (args.http_port, args.grpc_port, args.host, args.region) == (8000, 0, "127.0.0.1", "us-east-2")
    assert args.handler.__name__ == "run_serve"
    with pytest.raises(SystemExit):
        parser.parse_args(["serve", "--model-repository", "x", "--http-port", "70000"])


def test_manifest_errors_name_the_field():
    with pytest.raises(ManifestError, match=r"models\.m\.versions\.1\.files: .*model.pt must be listed"):
        Manifest.load(json.dumps({"models": {"m": {"champion": "1", "versions": {"1": {
            "files": {"canary.json": "0" * 64}, "approved_by": "a",
            "approved_at": "2025-01-01T00:00:00Z"}}}}}).encode())
    with pytest.raises(ManifestError, match="UTC"):
        Manifest.load(json.dumps({"models": {"m": {"champion": "1", "versions": {"1": {
            "files": {"canary.json": "0" * 64, "model.pt": "1" * 64}, "approved_by": "a",
            "approved_at": "2025-01-01T00:00:00+02:00"}}}}}).encode())
    with pytest.raises(ManifestError, match="relative path"):
        Manifest.load(json.dumps({"models": {"m": {"champion": "1", "versions": {"1": {
            "files": {"../x": "0" * 64, "canary.json": "0" * 64, "model.pt": "1" * 64}, "approved_by": "a",
            "approved_at": "2025-01-01T00:00:00Z"}}}}}).encode())
    with pytest.raises(ManifestError, match="champion '2' is not an approved version"):
        Manifest.load(json.dumps({"models": {"m": {"champion": "2", "versions": {"1": {
            "files": {"canary.json": "0" * 64, "model.pt": "1" * 64}, "approved_by": "a",
            "approved_at": "2025-01-01T00:00:00Z"}}}}}).encode())


def test_example_repository_is_deterministic(tmp_path, example_repo):
    from mlfleet.runtime.examples import write_example_repository

    again = write_example_repository(tmp_path, models=("mlp",))
    assert again.models["mlp"] == Manifest.load(example_repo / "manifest.json").models["mlp"]
    assert Manifest.load(again.model_dump_json().encode()) == again
