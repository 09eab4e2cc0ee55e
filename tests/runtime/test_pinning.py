"""Champion pinning: verified load, canary, atomic switch, refusal that keeps the old version
serving, the authenticated management endpoint, and failover health telling the truth."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import tritonclient.http as httpclient

from mlfleet.runtime.examples import write_example_repository
from mlfleet.runtime.manifest import Manifest, sha256_file
from mlfleet.runtime.process import RuntimeProcess

from helpers.runtime import ADMIN_TOKEN, reference_forward, request_json

pytestmark = pytest.mark.sandbox  # starts or talks to a runtime process


AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


def _add_version(root, model, version, model_from, canary_from, *, listed_hashes_from=None):
    folder = root / model / version
    folder.mkdir()
    shutil.copy(root / model / model_from / "model.pt", folder / "model.pt")
    shutil.copy(root / model / canary_from / "canary.json", folder / "canary.json")
    manifest = json.loads((root / "manifest.json").read_text())
    source = folder if listed_hashes_from is None else root / model / listed_hashes_from
    manifest["models"][model]["versions"][version] = {
        "files": {name: sha256_file(source / name) for name in ("model.pt", "canary.json")},
        "approved_by": "ml-review", "approved_at": "2025-02-01T00:00:00Z"}
    (root / "manifest.json").write_text(json.dumps(manifest))


@pytest.fixture(scope="module")
def repo(tmp_path_factory, manifest_key):
    root = tmp_path_factory.mktemp("pin-repo")
    write_example_repository(root, versions=("1", "2"), champion="2")
    # version 3: the manifest lists version 1's checksums but the folder holds version 2's model
    _add_version(root, "mlp", "3", model_from="2", canary_from="1", listed_hashes_from="1")
    # version 4: checksums match, but the golden canary expects version 2's outputs from version 1's model
    _add_version(root, "mlp", "4", model_from="1", canary_from="2")
    manifest_key.signing_key.sign_file(root / "manifest.json")  # the review approves all four
    return root


@pytest.fixture(scope="module")
def served(repo, manifest_key):
    with RuntimeProcess(repo, admin_token=ADMIN_TOKEN, extra_args=["--grpc-port", "0"],
                        manifest_public_key=manifest_key.public_key_path) as process:
        yield process


def _outputs(url, batch, version=None):
    client = httpclient.InferenceServerClient(url.removeprefix("http://"))
    tensor = httpclient.InferInput("INPUT__0", list(batch.shape), "FP32")
    tensor.set_data_from_numpy(batch)
    result = client.infer("mlp", [tensor], model_version=version or "")
    return result.get_response()["model_version"], result.as_numpy("OUTPUT__0")


def test_management_endpoint_requires_the_bearer_token(served):
    path = "/v2/mlfleet/models/mlp/pin"
    assert request_json(served.http_url, "POST", path, {"version": "1"})[0] == 401
    status, body = request_json(served.http_url, "POST", path, {"version": "1"},
                                {"Authorization": "Bearer wrong"})
    assert status == 401 and "token" in body["error"]
    assert request_json(served.http_url, "POST", path, {"version": 1}, AUTH)[0] == 400
    status, body = request_json(served.http_url, "POST", path, {"version": "7"}, AUTH)
    assert status == 404 and "not approved" in body["error"]
    assert request_json(served.http_url, "POST", "/v2/mlfleet/models/nope/pin", {"version": "1"}, AUTH)[0] == 404
    assert request_json(served.http_url, "GET", path)[1] == {"model": "mlp", "version": "2", "champion": "2",
                                                             "previous": None}


def test_refused_versions_keep_the_old_one_serving(served, repo):
    batch = np.ones((1, 64), np.float32)
    for version, reason in (("3", "does not match the manifest"), ("4", "canary failed")):
        status, body = request_json(served.http_url, "POST", "/v2/mlfleet/models/mlp/pin", {"version": version}, AUTH)
        assert status == 409 and reason in body["error"], body
        served_version, outputs = _outputs(served.http_url, batch)
        assert served_version == "2"
        np.testing.assert_allclose(outputs, reference_forward(repo, "mlp", "2", batch), rtol=1e-5, atol=1e-5)
    assert request_json(served.http_url, "GET", "/v2/health/failover")[0] == 200


def test_repin_switches_and_failover_health_reports_the_deviation(served, repo, manifest_key):
    batch = np.full((2, 64), 0.25, np.float32)
    status, body = request_json(served.http_url, "POST", "/v2/mlfleet/models/mlp/pin", {"version": "1"}, AUTH)
    assert (status, body) == (200, {"model": "mlp", "version": "1", "previous": "2"})
    served_version, outputs = _outputs(served.http_url, batch)
    assert served_version == "1"
    np.testing.assert_allclose(outputs, reference_forward(repo, "mlp", "1", batch), rtol=1e-5, atol=1e-5)
    status, body = request_json(served.http_url, "GET", "/v2/models/mlp/versions/2/ready")
    assert status == 404  # the old version was unloaded

    status, health = request_json(served.http_url, "GET", "/v2/health/failover")
    assert status == 503 and health["status"] == "FAILING"
    assert any("serving version 1, the champion is 2" in r for r in health["reasons"])
    assert "MLFLEET_FAILOVER_OK" not in json.dumps(health)

    # The DR runbook's move: publish a manifest naming version 1 champion, then re-pin with reload.
    manifest = json.loads((repo / "manifest.json").read_text())
    manifest["models"]["mlp"]["champion"] = "1"
    (repo / "manifest.json").write_text(json.dumps(manifest))
    manifest_key.signing_key.sign_file(repo / "manifest.json")
    status, body = request_json(served.http_url, "POST", "/v2/mlfleet/models/mlp/pin",
                                {"version": "1", "reload_manifest": True}, AUTH)
    assert status == 200
    status, health = request_json(served.http_url, "GET", "/v2/health/failover")
    assert status == 200 and health["status"] == "MLFLEET_FAILOVER_OK"
    assert health["models"]["mlp"] == {"version": "1", "champion": "1", "checksum_verified": True,
                                       "canary_passed_at": health["models"]["mlp"]["canary_passed_at"]}
    assert request_json(served.http_url, "GET", "/v2/mlfleet/models/mlp/pin")[1]["champion"] == "1"


def test_reload_of_a_broken_manifest_is_refused(served, repo, manifest_key):
    good, good_signature = (repo / "manifest.json").read_text(), (repo / "manifest.json.sig").read_bytes()
    (repo / "manifest.json").write_text('{"models": {"mlp": {"champion": "9", "versions": {}}}}')
    manifest_key.signing_key.sign_file(repo / "manifest.json")  # signed, so the content is what is refused
    try:
        status, body = request_json(served.http_url, "POST", "/v2/mlfleet/models/mlp/pin",
                                    {"version": "1", "reload_manifest": True}, AUTH)
        assert status == 409 and "manifest reload refused" in body["error"] and "models.mlp.versions" in body["error"]
    finally:
        (repo / "manifest.json").write_text(good)
        (repo / "manifest.json.sig").write_bytes(good_signature)
    assert Manifest.load(repo / "manifest.json").models["mlp"].champion == "1"
    assert request_json(served.http_url, "GET", "/v2/health/ready")[0] == 200
