"""SIGTERM under load: readiness turns false at once, every accepted request completes, and the
process exits cleanly within its grace period."""
from __future__ import annotations

import time

import pytest

from mlfleet.runtime.process import RuntimeProcess

from helpers.runtime import request
from helpers.runtime_load import LoadGenerator

pytestmark = pytest.mark.sandbox  # starts or talks to a runtime process


def test_sigterm_drains_queued_and_in_flight_requests(example_repo, manifest_key):
    runtime = RuntimeProcess(example_repo, manifest_public_key=manifest_key.public_key_path,
                             extra_args=["--grace-period", "10", "--grpc-port", "0"]).start()
    # 16 clients x 64 rows: each request is a full batch of the large model, so at any moment
    # about a second of work is queued behind the one running
    load = LoadGenerator(runtime.http_url, "mlp-large", clients=16, rows=64).start()
    try:
        time.sleep(1.0)
        load.stop_issuing()  # clients send nothing new from here on...
        time.sleep(0.02)     # ...and what they did send has been read: it is queued or running
        signalled = time.monotonic()
        runtime.terminate()
        load.join()
        returncode = runtime.process.wait(timeout=15)
        elapsed = time.monotonic() - signalled
    finally:
        runtime.stop()
    assert returncode == 0 and elapsed < 10
    assert not load.errors, load.errors[:3]
    assert set(load.statuses) == {200}
    # the drain really had work: responses were still completing after the signal
    assert sum(done > signalled for done in load.completed_at) >= 1


def test_readiness_turns_false_at_once_while_requests_are_still_served(example_repo, manifest_key):
    with RuntimeProcess(example_repo, manifest_public_key=manifest_key.public_key_path,
                        extra_args=["--shutdown-delay", "1.5", "--grpc-port", "0"]) as runtime:
        body = (b'{"inputs":[{"name":"INPUT__0","datatype":"FP32","shape":[1,64],"data":['
                + b",".join([b"1"] * 64) + b"]}]}")
        runtime.terminate()
        time.sleep(0.2)
        assert request(runtime.http_url, "GET", "/v2/health/ready")[0] == 503
        status, _, failover = request(runtime.http_url, "GET", "/v2/health/failover")
        assert status == 503 and b"shutting down" in failover
        assert request(runtime.http_url, "GET", "/v2/health/live")[0] == 200
        assert request(runtime.http_url, "POST", "/v2/models/mlp/infer", body)[0] == 200
        assert runtime.process.wait(timeout=10) == 0
