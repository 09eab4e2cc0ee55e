"""The built runtime image (runtime/Dockerfile) run under podman the way the GPU pools run it:
uid 10001, read-only root, /tmp on tmpfs, the model repository mounted read-only. Driven with
tritonclient over HTTP and gRPC, the failover health probe, and a SIGTERM drain."""
from __future__ import annotations

import json
import os
import time

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient

from mlfleet.runtime.process import free_port

from helpers.runtime import reference_forward, request
from helpers.runtime_load import LoadGenerator

pytestmark = pytest.mark.image

CHAMPION = "2"  # write_example_repository's default champion


def test_image_defaults_to_the_unprivileged_user_and_carries_no_platform_code(run_podman, image, ulimits):
    user = run_podman("image", "inspect", "--format", "{{.Config.User}}", image).stdout.strip()
    assert user == "10001:10001"
    # built in docker format: an OCI image would have dropped the HEALTHCHECK
    healthcheck = json.loads(run_podman("image", "inspect", "--format", "{{json .HealthCheck}}", image).stdout)
    assert "/v2/health/live" in " ".join(healthcheck["Test"])
    # the CDK, moto and the DR clients are the platform's, not the runtime's: they stay out
    probe = ("import importlib.util as u; print([m for m in ('cdktn', 'jsii', 'moto', 'kubernetes', "
             "'google.cloud.compute') if u.find_spec(m)])")
    found = run_podman("run", "--rm", "--network=none", *ulimits, "--entrypoint", "python", image, "-c", probe).stdout
    assert found.strip() == "[]"


def test_the_image_trusts_no_manifest_until_told_which_key_signs_it(image, image_repo, run_podman, ulimits):
    # the entrypoint carries no trust flag: a container started without one stops with one line
    result = run_podman("run", "--rm", "--network=none", *ulimits, "--volume", f"{image_repo}:/models:ro", image,
                        "--model-repository", "/models", timeout=120, check=False)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "pass --manifest-public-key PATH" in result.stderr.strip().splitlines()[-1]


def test_runs_as_uid_10001_and_writes_only_to_tmp(container, run_podman):
    assert run_podman("exec", container.name, "id", "-u").stdout.strip() == "10001"
    assert run_podman("exec", container.name, "touch", "/tmp/probe", check=False).returncode == 0
    for path in ("/opt/venv/probe", "/models/probe", "/probe"):
        denied = run_podman("exec", container.name, "touch", path, check=False)
        assert denied.returncode != 0 and "Read-only file system" in denied.stderr, (path, denied.stderr)


def test_live_and_ready_over_http_and_grpc(container):
    http = httpclient.InferenceServerClient(url=container.http_url.removeprefix("http://"))
    grpc = grpcclient.InferenceServerClient(url=container.grpc_url)
    try:
        for client in (http, grpc):
            assert client.is_server_live() and client.is_server_ready()
            assert client.is_model_ready("mlp") and client.is_model_ready("mlp-large")
        assert http.get_model_metadata("mlp")["versions"] == [CHAMPION]
    finally:
        http.close()
        grpc.close()


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_infer_equals_the_torch_forward(container, image_repo, protocol):
    batch = np.random.default_rng(7).standard_normal((4, 64)).astype(np.float32)
    module = httpclient if protocol == "http" else grpcclient
    url = container.http_url.removeprefix("http://") if protocol == "http" else container.grpc_url
    client = module.InferenceServerClient(url=url)
    try:
        inputs = module.InferInput("INPUT__0", list(batch.shape), "FP32")
        inputs.set_data_from_numpy(batch)
        result = client.infer("mlp", [inputs], outputs=[module.InferRequestedOutput("OUTPUT__0")])
    finally:
        client.close()
    served = result.as_numpy("OUTPUT__0")
    expected = reference_forward(image_repo, "mlp", CHAMPION, batch)
    assert served.shape == (4, 10)
    np.testing.assert_allclose(served, expected, rtol=1e-5, atol=1e-5)


def test_failover_health_is_ok_with_verified_champions(image_repo, start):
    # as the GPU pools run it: a management listener on loopback, where the full document is
    management_port = free_port()
    served = start(f"mlfleet-image-health-{os.getpid()}", image_repo, "--region", "eu-west-1",
                   "--management-port", str(management_port))
    try:
        status, _, body = request(served.http_url, "GET", "/v2/health/failover")
        assert (status, json.loads(body)) == (200, {"status": "MLFLEET_FAILOVER_OK", "region": "eu-west-1"})
        status, _, body = request(f"http://127.0.0.1:{management_port}", "GET", "/v2/health/failover")
        assert status == 200, body
        health = json.loads(body)
        assert health["status"] == "MLFLEET_FAILOVER_OK" and health["region"] == "eu-west-1"
        assert {m: (v["version"], v["checksum_verified"]) for m, v in health["models"].items()} == {
            "mlp": (CHAMPION, True), "mlp-large": (CHAMPION, True)}
    finally:
        served.remove()


def test_sigterm_drains_within_the_grace_period(image_repo, start, run_podman):
    grace = 10
    drained = start(f"mlfleet-image-drain-{os.getpid()}", image_repo, "--grace-period", str(grace))
    try:
        # full batches of the large model: work is still queued when the signal arrives
        load = LoadGenerator(drained.http_url, "mlp-large", clients=8, rows=64).start()
        time.sleep(1.0)
        load.stop_issuing()
        time.sleep(0.02)
        signalled = time.monotonic()
        # podman stop sends SIGTERM and kills only once the timeout has passed
        run_podman("stop", "--time", str(grace + 5), drained.name, timeout=grace + 30)
        elapsed = time.monotonic() - signalled
        load.join()
        exit_code = drained.state("ExitCode")
        logs = drained.logs()
    finally:
        drained.remove()
    assert exit_code == "0" and elapsed < grace, (exit_code, elapsed, logs)
    assert not load.errors, load.errors[:3]
    assert load.statuses and set(load.statuses) == {200}
    assert sum(done > signalled for done in load.completed_at) >= 1
