"""Health that failover can trust: fast under saturation, and failing for the right reasons."""
from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import tritonclient.http as httpclient

from mlfleet.runtime.examples import write_example_repository
from mlfleet.runtime.manifest import CONFIG_FILE, sha256_file
from mlfleet.runtime.process import RuntimeProcess

from helpers.runtime import request, request_json
from helpers.runtime_load import LoadGenerator
from helpers.runtime_signing import edit_manifest

pytestmark = pytest.mark.sandbox  # starts or talks to a runtime process


def test_health_endpoints_stay_fast_while_inference_saturates(runtime):
    load = LoadGenerator(runtime.http_url, "mlp-large", clients=12).start()
    try:
        time.sleep(0.5)
        latencies = []
        for _ in range(60):
            started = time.perf_counter()
            status, _, body = request(runtime.http_url, "GET", "/v2/health/failover")
            latencies.append(time.perf_counter() - started)
            assert status == 200 and b"MLFLEET_FAILOVER_OK" in body[:5120]
            assert request(runtime.http_url, "GET", "/v2/health/ready")[0] == 200
            time.sleep(0.01)
    finally:
        load.join()
    assert len(load.statuses) > 50 and set(load.statuses) == {200} and not load.errors
    latencies.sort()
    # generous for a shared 2-core test box; bench/serve.py reports the measured p99
    assert latencies[int(len(latencies) * 0.99) - 1] < 0.1


def test_failover_health_ignores_queue_depth_and_fails_on_stale_canary(example_repo, manifest_key):
    # Overload is a capacity signal, not a failover signal: past --max-queue-depth requests are
    # shed (tests/runtime/test_admission.py) and failover health stays OK; a stale canary fails it.
    with RuntimeProcess(example_repo, manifest_public_key=manifest_key.public_key_path,
                        extra_args=["--canary-interval", "600", "--canary-max-age", "4",
                                    "--max-queue-depth", "2", "--grpc-port", "0"]) as runtime:
        ready_at = time.monotonic()  # the load-time canary passed just before this
        status, body = request_json(runtime.http_url, "GET", "/v2/health/failover")
        assert status == 200 and body["region"] == "local" and body["gpu"]["present"] in (True, False)
        load = LoadGenerator(runtime.http_url, "mlp-large", clients=16).start()
        try:
            samples = []
            while time.monotonic() < ready_at + 2.5:  # well before the canary turns stale
                samples.append(request_json(runtime.http_url, "GET", "/v2/health/failover"))
                time.sleep(0.02)
        finally:
            load.join()
        assert len(samples) >= 10 and all(status == 200 and "reasons" not in body for status, body in samples)
        assert 503 in load.statuses and set(load.statuses) <= {200, 503}  # the excess was shed
        assert request(runtime.http_url, "GET", "/v2/health/ready")[0] == 200  # k8s readiness is unaffected
        time.sleep(max(0.0, ready_at + 4.2 - time.monotonic()))
        status, body = request_json(runtime.http_url, "GET", "/v2/health/failover")
        assert status == 503 and any("no canary passed in the last 4 s" in r for r in body["reasons"])
        assert "MLFLEET_FAILOVER_OK" not in str(body)


@pytest.mark.parametrize("path", ["/v2/health/live", "/v2/health/ready"])
def test_live_and_ready_answer_200(runtime, path):
    assert request(runtime.http_url, "GET", path)[0] == 200


TOKEN = "MLFLEET_FAILOVER_OK"
# A model name that must stay inside the pod; it carries the token, which no failing body may.
CRAFTED = f"acme-fraud-scorer-{TOKEN}"


@pytest.fixture(scope="module")
def crafted_repo(tmp_path_factory, manifest_key) -> Path:
    """The example `mlp` served under the name CRAFTED (folder, config and manifest renamed, signed)."""
    root = tmp_path_factory.mktemp("crafted-repository")
    write_example_repository(root, versions=("1",), champion="1", signing_key=manifest_key.signing_key)
    (root / "mlp").rename(root / CRAFTED)
    config = root / CRAFTED / CONFIG_FILE
    config.write_text(config.read_text().replace('name: "mlp"', f'name: "{CRAFTED}"'))

    def rename(document: dict) -> None:
        entry = document["models"].pop("mlp")
        document["models"][CRAFTED] = {**entry, "config_sha256": sha256_file(config)}

    edit_manifest(root, manifest_key.signing_key, rename)
    return root


def test_public_failover_health_says_only_status_and_region_and_management_says_everything(
        crafted_repo, manifest_key):
    with RuntimeProcess(crafted_repo, region="eu-west-1", management_port=True,
                        manifest_public_key=manifest_key.public_key_path,
                        extra_args=["--canary-interval", "600", "--canary-max-age", "4",
                                    "--grpc-port", "0"]) as runtime:
        ready_at = time.monotonic()  # the load-time canary passed just before this
        status, _, public = request(runtime.http_url, "GET", "/v2/health/failover")
        assert (status, json.loads(public)) == (200, {"status": TOKEN, "region": "eu-west-1"})
        for secret in (b"acme-fraud-scorer", b"tests-session-key", b"gpu", b"version", b"champion"):
            assert secret not in public
        status, full = request_json(runtime.management_url, "GET", "/v2/health/failover")
        assert status == 200 and full["status"] == TOKEN and full["region"] == "eu-west-1"
        assert full["models"][CRAFTED]["version"] == full["models"][CRAFTED]["champion"] == "1"
        assert full["manifest_signature"] == {"verified": True, "key_id": "tests-session-key"}
        assert full["gpu"]["present"] in (True, False) and "queue_depth" in full and "error_rate" in full

        # tritonclient's health calls answer on both listeners
        for url in (runtime.http_url, runtime.management_url):
            client = httpclient.InferenceServerClient(url.removeprefix("http://"))
            try:
                assert client.is_server_live() and client.is_server_ready()
            finally:
                client.close()

        time.sleep(max(0.0, ready_at + 4.2 - time.monotonic()))  # the canary turns stale: failing
        status, _, public = request(runtime.http_url, "GET", "/v2/health/failover")
        assert (status, json.loads(public)) == (503, {"status": "FAILING", "region": "eu-west-1"})
        assert b"acme-fraud-scorer" not in public and TOKEN.encode() not in public
        status, _, body = request(runtime.management_url, "GET", "/v2/health/failover")
        assert status == 503 and TOKEN.encode() not in body  # not even inside the model's name
        failing = json.loads(body)
        shown = CRAFTED.replace(TOKEN, "<token>")
        assert failing["status"] == "FAILING" and failing["models"][shown]["version"] == "1"
        assert failing["reasons"] == [f"{shown}: no canary passed in the last 4 s"]
