"""TLS, opt-in: with --tls-cert and --tls-key the HTTP port serves HTTPS and the gRPC port TLS
(tritonclient over both, with a throwaway self-signed certificate), so does the metrics listener,
the management listener stays plain, and a missing, unreadable or mismatched certificate or key is
one line and exit code 2."""
from __future__ import annotations

import datetime
import http.client
import ipaddress
import os
import ssl
import subprocess
import sys
from pathlib import Path
from typing import NamedTuple

import gevent.ssl
import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from mlfleet.runtime.examples import write_example_repository
from mlfleet.runtime.process import RuntimeProcess, free_port

from helpers.runtime import ADMIN_TOKEN, request_json

pytestmark = pytest.mark.sandbox  # starts or talks to a runtime process

INPUT0 = np.arange(16, dtype=np.int32).reshape(1, 16)
INPUT1 = np.ones((1, 16), dtype=np.int32)


class CertPair(NamedTuple):
    cert: Path
    key: Path


def _self_signed(directory: Path, name: str = "server") -> CertPair:
    """A throwaway self-signed certificate for 127.0.0.1 and localhost, and its key (PEM)."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                                        x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .sign(key, hashes.SHA256()))
    pair = CertPair(directory / f"{name}.crt", directory / f"{name}.key")
    pair.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    pair.key.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return pair


@pytest.fixture(scope="module")
def tls_pair(tmp_path_factory) -> CertPair:
    return _self_signed(tmp_path_factory.mktemp("tls"))


@pytest.fixture(scope="module")
def repo(tmp_path_factory, manifest_key) -> Path:
    root = tmp_path_factory.mktemp("tls-repository")
    write_example_repository(root, models=("simple",), versions=("1",), champion="1",
                             signing_key=manifest_key.signing_key)
    return root


@pytest.fixture(scope="module")
def tls_runtime(repo, tls_pair, manifest_key, tmp_path_factory):
    log = tmp_path_factory.mktemp("tls-logs") / "runtime.log"
    metrics_port = free_port()
    with RuntimeProcess(repo, manifest_public_key=manifest_key.public_key_path, admin_token=ADMIN_TOKEN,
                        management_port=True, tls_cert=tls_pair.cert, tls_key=tls_pair.key,
                        log_path=log, extra_args=["--metrics-port", str(metrics_port)]) as runtime:
        runtime.metrics_port = metrics_port
        yield runtime


def _check_sums(result) -> None:
    np.testing.assert_array_equal(result.as_numpy("OUTPUT0"), INPUT0 + INPUT1)
    np.testing.assert_array_equal(result.as_numpy("OUTPUT1"), INPUT0 - INPUT1)


def _inputs(client) -> list:
    inputs = [client.InferInput("INPUT0", [1, 16], "INT32"), client.InferInput("INPUT1", [1, 16], "INT32")]
    inputs[0].set_data_from_numpy(INPUT0)
    inputs[1].set_data_from_numpy(INPUT1)
    return inputs


def test_the_http_port_serves_https_to_tritonclient(tls_runtime, tls_pair):
    assert tls_runtime.http_url.startswith("https://")
    client = httpclient.InferenceServerClient(
        tls_runtime.http_url.removeprefix("https://"), ssl=True, ssl_options={"ca_certs": str(tls_pair.cert)},
        ssl_context_factory=gevent.ssl.create_default_context)
    try:
        assert client.is_server_live() and client.is_server_ready() and client.is_model_ready("simple")
        _check_sums(client.infer("simple", _inputs(httpclient)))
    finally:
        client.close()


def test_the_grpc_port_serves_tls_to_tritonclient(tls_runtime, tls_pair):
    client = grpcclient.InferenceServerClient(tls_runtime.grpc_url, ssl=True,
                                              root_certificates=str(tls_pair.cert))
    try:
        assert client.is_server_live() and client.is_server_ready()
        _check_sums(client.infer("simple", _inputs(grpcclient), client_timeout=10))
    finally:
        client.close()


def test_plain_http_to_the_tls_port_fails(tls_runtime):
    connection = http.client.HTTPConnection("127.0.0.1", tls_runtime.http_port, timeout=5)
    try:
        try:
            connection.request("GET", "/v2/health/live")
            response = connection.getresponse()
        except (ConnectionError, http.client.HTTPException):
            return  # the TLS listener dropped the plaintext request
        assert response.status == 400, response.status  # uvicorn's answer to a non-TLS hello, never a 200
    finally:
        connection.close()


def test_plaintext_grpc_to_the_tls_port_fails(tls_runtime):
    from tritonclient.utils import InferenceServerException

    client = grpcclient.InferenceServerClient(tls_runtime.grpc_url)
    try:
        with pytest.raises(InferenceServerException):
            client.is_server_live(client_timeout=3)
    finally:
        client.close()


def test_the_metrics_listener_serves_https(tls_runtime, tls_pair):
    context = ssl.create_default_context(cafile=str(tls_pair.cert))
    connection = http.client.HTTPSConnection("127.0.0.1", tls_runtime.metrics_port, timeout=5, context=context)
    try:
        connection.request("GET", "/metrics")
        response = connection.getresponse()
        assert response.status == 200 and b'nv_inference_count{model="simple",version="1"}' in response.read()
    finally:
        connection.close()
    plain = http.client.HTTPConnection("127.0.0.1", tls_runtime.metrics_port, timeout=5)
    try:
        plain.request("GET", "/metrics")
        assert plain.getresponse().status != 200  # uvicorn's 400 to a non-TLS hello, or a dropped connection
    except (ConnectionError, http.client.HTTPException):
        pass
    finally:
        plain.close()


def test_the_management_listener_stays_plain_http(tls_runtime):
    assert tls_runtime.management_url.startswith("http://")
    status, _ = request_json(tls_runtime.management_url, "GET", "/v2/health/live")
    assert status == 200


def _serve(repo: Path, manifest_key, *args: str) -> subprocess.CompletedProcess:
    environment = {k: v for k, v in os.environ.items() if k != "MLFLEET_ADMIN_TOKEN"}
    return subprocess.run([sys.executable, "-m", "mlfleet.runtime", "--model-repository", str(repo),
                           "--manifest-public-key", str(manifest_key.public_key_path),
                           "--http-port", "0", "--grpc-port", "0", *args],
                          capture_output=True, text=True, timeout=60, env=environment)


def _one_line_error(result: subprocess.CompletedProcess, *fragments: str) -> None:
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def test_only_one_of_the_flags_exits_2(repo, manifest_key, tls_pair):
    _one_line_error(_serve(repo, manifest_key, "--tls-cert", str(tls_pair.cert)), "--tls-cert needs --tls-key")
    _one_line_error(_serve(repo, manifest_key, "--tls-key", str(tls_pair.key)), "--tls-key needs --tls-cert")


def test_an_unreadable_file_exits_2_naming_the_flag(repo, manifest_key, tls_pair, tmp_path):
    missing = tmp_path / "missing.pem"
    _one_line_error(_serve(repo, manifest_key, "--tls-cert", str(missing), "--tls-key", str(tls_pair.key)),
                    "--tls-cert", "No such file")
    _one_line_error(_serve(repo, manifest_key, "--tls-cert", str(tls_pair.cert), "--tls-key", str(missing)),
                    "--tls-key", "No such file")
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a pem file\n")
    _one_line_error(_serve(repo, manifest_key, "--tls-cert", str(garbage), "--tls-key", str(tls_pair.key)),
                    "--tls-cert", "not a PEM certificate")
    _one_line_error(_serve(repo, manifest_key, "--tls-cert", str(tls_pair.cert), "--tls-key", str(garbage)),
                    "--tls-key", "not an unencrypted PEM private key")


def test_a_key_that_does_not_match_the_cert_exits_2(repo, manifest_key, tls_pair, tmp_path):
    other = _self_signed(tmp_path, "other")
    _one_line_error(_serve(repo, manifest_key, "--tls-cert", str(tls_pair.cert), "--tls-key", str(other.key)),
                    "--tls-key", "does not match --tls-cert")
