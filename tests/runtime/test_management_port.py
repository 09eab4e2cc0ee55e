"""The management listener: with --management-port, pinning and model load/unload are served on a
loopback listener of their own and are absent from the public HTTP and gRPC ports; both listeners
drain together on SIGTERM. Also the optional admin token file and the flags' one-line errors."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time

import grpc
import pytest
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

from mlfleet.runtime.examples import write_example_repository
from mlfleet.runtime.process import RuntimeProcess, free_port

from helpers.runtime import ADMIN_TOKEN, request, request_json

pytestmark = pytest.mark.sandbox  # starts or talks to a runtime process

AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
GRPC_AUTH = {"authorization": f"Bearer {ADMIN_TOKEN}"}
PIN = "/v2/mlfleet/models/mlp/pin"
MANAGEMENT_ROUTES = (PIN, "/v2/repository/models/mlp/load", "/v2/repository/models/mlp/unload")


@pytest.fixture(scope="module")
def repo(tmp_path_factory, manifest_key):
    root = tmp_path_factory.mktemp("management-repo")
    write_example_repository(root, versions=("1", "2"), champion="2", signing_key=manifest_key.signing_key)
    return root


@pytest.fixture(scope="module")
def served(repo, manifest_key):
    with RuntimeProcess(repo, manifest_public_key=manifest_key.public_key_path,
                        admin_token=ADMIN_TOKEN, management_port=True) as process:
        yield process


def _infer_version(url: str) -> str:
    body = {"inputs": [{"name": "INPUT__0", "datatype": "FP32", "shape": [1, 64], "data": [1.0] * 64}]}
    status, answer = request_json(url, "POST", "/v2/models/mlp/infer", body)
    assert status == 200, answer
    return answer["model_version"]


def _refused(host: str, port: int) -> bool:
    try:
        socket.create_connection((host, port), timeout=2).close()
    except ConnectionRefusedError:
        return True
    return False


def _stalled_post(port: int, path: str, body: bytes, sent: int) -> socket.socket:
    """A request whose body stops after `sent` bytes: in flight until the rest is sent."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=15)
    sock.sendall(f"POST {path} HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {ADMIN_TOKEN}\r\n"
                 f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n".encode() + body[:sent])
    return sock


def _response(sock: socket.socket) -> tuple[int, bytes]:
    chunks = []
    while chunk := sock.recv(65536):
        chunks.append(chunk)
    head, _, payload = b"".join(chunks).partition(b"\r\n\r\n")
    return int(head.split()[1]), payload


def test_management_routes_are_absent_from_the_public_port(served):
    for path in MANAGEMENT_ROUTES:
        # with the token or without: the same 404 as a path that never existed, never 401/403/405
        for headers in (AUTH, {}):
            status, body = request_json(served.http_url, "POST", path, {"version": "1"}, headers)
            assert (status, body) == (404, {"error": f"no route for {path}"})
    status, body = request_json(served.http_url, "PUT", PIN)
    assert status == 405 and "POST" not in body["error"]  # the 405 does not reveal the hidden method
    # the read-only pin status stays public, and nothing was pinned
    assert request_json(served.http_url, "GET", PIN) == (200, {"model": "mlp", "version": "2", "champion": "2",
                                                               "previous": None})
    assert _infer_version(served.http_url) == "2"


def test_pin_and_repository_control_work_on_the_management_port(served):
    url = served.management_url
    assert request_json(url, "POST", PIN, {"version": "1"})[0] == 401
    assert request_json(url, "POST", PIN, {"version": "1"}, {"Authorization": "Bearer wrong"})[0] == 401
    assert request_json(url, "POST", PIN, {"version": "1"}, AUTH) == (200, {"model": "mlp", "version": "1",
                                                                            "previous": "2"})
    assert request_json(url, "GET", PIN)[1]["version"] == "1"
    assert _infer_version(served.http_url) == "1"  # the switch is the one data plane's
    assert request_json(url, "POST", "/v2/repository/models/mlp/unload", None, AUTH)[0] == 200
    assert request_json(served.http_url, "POST", "/v2/models/mlp/infer", {"inputs": []})[0] == 404
    status, body = request_json(url, "POST", "/v2/repository/models/mlp/load", None, AUTH)
    assert (status, body) == (200, {"name": "mlp", "version": "2", "state": "READY"})
    assert _infer_version(served.http_url) == "2"
    # health is served there too; the data plane is not
    assert request(url, "GET", "/v2/health/ready")[0] == 200
    assert request(url, "GET", "/v2/health/failover")[0] in (200, 503)
    for method, path in (("POST", "/v2/models/mlp/infer"), ("GET", "/v2/models/mlp"), ("GET", "/metrics"),
                         ("GET", "/v2")):
        assert request(url, method, path)[0] == 404, path


def test_grpc_repository_control_is_unimplemented_on_the_public_port(served):
    client = grpcclient.InferenceServerClient(served.grpc_url)
    for call in (lambda: client.unload_model("mlp", headers=GRPC_AUTH),
                 lambda: client.load_model("mlp", headers=GRPC_AUTH),
                 lambda: client.unload_model("mlp")):  # no token: the same answer, no oracle
        with pytest.raises(InferenceServerException) as raised:
            call()
        assert raised.value.status() == str(grpc.StatusCode.UNIMPLEMENTED)
    assert client.is_model_ready("mlp")  # the unload was never performed
    assert _infer_version(served.http_url) == "2"


def test_management_listener_is_bound_to_loopback_only(served):
    port = served.management_port
    socket.create_connection(("127.0.0.1", port), timeout=2).close()
    # 127.0.0.2 is a local address of every Linux machine: a listener bound there answers...
    with socket.create_server(("127.0.0.2", 0)) as control:
        socket.create_connection(control.getsockname(), timeout=2).close()
    # ...but the management listener, bound to 127.0.0.1 alone, does not
    assert _refused("127.0.0.2", port)


def test_sigterm_drains_the_management_listener_with_the_public_one(repo, manifest_key):
    runtime = RuntimeProcess(repo, manifest_public_key=manifest_key.public_key_path,
                             admin_token=ADMIN_TOKEN, management_port=True,
                             extra_args=["--shutdown-delay", "1", "--grace-period", "10", "--grpc-port", "0"]).start()
    try:
        pin = json.dumps({"version": "1"}).encode()
        infer = json.dumps({"inputs": [{"name": "INPUT__0", "datatype": "FP32", "shape": [1, 64],
                                        "data": [1.0] * 64}]}).encode()
        management = _stalled_post(runtime.management_port, PIN, pin, 5)
        public = _stalled_post(runtime.http_port, "/v2/models/mlp/infer", infer, 10)
        time.sleep(0.2)  # both requests are being read
        signalled = time.monotonic()
        runtime.terminate()
        time.sleep(0.3)
        # within the shutdown delay both listeners still answer, readiness false on both
        assert request(runtime.management_url, "GET", "/v2/health/ready")[0] == 503
        assert request(runtime.http_url, "GET", "/v2/health/ready")[0] == 503
        time.sleep(1.2)
        # past it, both stop accepting...
        assert _refused("127.0.0.1", runtime.management_port) and _refused("127.0.0.1", runtime.http_port)
        # ...and what they had accepted finishes
        management.sendall(pin[5:])
        public.sendall(infer[10:])
        status, body = _response(management)
        assert status == 200 and json.loads(body)["version"] == "1"
        assert _response(public)[0] == 200
        assert runtime.process.wait(timeout=10) == 0 and time.monotonic() - signalled < 10
    finally:
        management.close()
        public.close()
        runtime.stop()


def test_a_stalled_management_request_is_answered_before_the_grace_period_ends(repo, manifest_key):
    runtime = RuntimeProcess(repo, manifest_public_key=manifest_key.public_key_path,
                             admin_token=ADMIN_TOKEN, management_port=True,
                             extra_args=["--grace-period", "3", "--grpc-port", "0"]).start()
    stalled = _stalled_post(runtime.management_port, PIN, b'{"version": "1"}', 3)
    try:
        signalled = time.monotonic()
        runtime.terminate()
        status, body = _response(stalled)
        assert status == 503 and b"server shutting down" in body
        assert runtime.process.wait(timeout=10) == 0 and time.monotonic() - signalled < 3.5
    finally:
        stalled.close()
        runtime.stop()


def _serve(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    environment = {k: v for k, v in os.environ.items() if k != "MLFLEET_ADMIN_TOKEN"}
    return subprocess.run([sys.executable, "-m", "mlfleet.runtime", *args], capture_output=True, text=True,
                          timeout=60, env={**environment, **(env or {})})


def _one_line_error(result: subprocess.CompletedProcess, fragment: str) -> None:
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    assert fragment in result.stderr.strip().splitlines()[-1]


def test_a_missing_optional_token_file_disables_pinning_and_says_so_once(repo, tmp_path, manifest_key):
    log = tmp_path / "runtime.log"
    missing = tmp_path / "secret" / "token"
    with RuntimeProcess(repo, manifest_public_key=manifest_key.public_key_path,
                        log_path=log, env={"MLFLEET_ADMIN_TOKEN": ""},
                        extra_args=["--admin-token-file", str(missing), "--admin-token-optional",
                                    "--grpc-port", "0"]) as runtime:
        status, body = request_json(runtime.http_url, "POST", PIN, {"version": "1"}, AUTH)
        assert status == 403 and "disabled" in body["error"]
        assert _infer_version(runtime.http_url) == "2"
    lines = [line for line in log.read_text().splitlines() if "pinning" in line]
    assert len(lines) == 1 and str(missing) in lines[0] and "does not exist" in lines[0]


def test_token_file_errors_stay_errors(tmp_path):
    repository = ["--model-repository", str(tmp_path)]
    missing = str(tmp_path / "missing")
    _one_line_error(_serve(*repository, "--admin-token-file", missing), f"--admin-token-file {missing}")
    (tmp_path / "empty").write_text("\n")
    _one_line_error(_serve(*repository, "--admin-token-file", str(tmp_path / "empty"), "--admin-token-optional"),
                    "the file is empty")
    (tmp_path / "folder").mkdir()
    _one_line_error(_serve(*repository, "--admin-token-file", str(tmp_path / "folder"), "--admin-token-optional"),
                    "Is a directory")
    _one_line_error(_serve(*repository, "--admin-token-optional"), "--admin-token-optional needs --admin-token-file")


@pytest.mark.parametrize("args, fragment", [
    (["--http-port", "8123", "--management-port", "8123"], "is also the --http-port"),
    (["--grpc-port", "8124", "--management-port", "8124"], "is also the --grpc-port"),
    (["--management-port", "70000"], "port 70000 is outside 0..65535"),
    (["--management-port", "0"], "--management-port must be 1..65535"),
    (["--management-port", "x"], "'x' is not a port number"),
    (["--management-host", "127.0.0.1"], "--management-host needs --management-port"),
])
def test_bad_management_flags_exit_2_with_one_line(tmp_path, args, fragment):
    _one_line_error(_serve("--model-repository", str(tmp_path), *args), fragment)


def test_a_management_port_in_use_is_one_line(repo, manifest_key):
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        result = _serve("--model-repository", str(repo), "--http-port", str(free_port()), "--grpc-port", "0",
                        "--management-port", str(port), "--manifest-public-key", str(manifest_key.public_key_path))
    _one_line_error(result, f"cannot listen for management on 127.0.0.1:{port}")
