"""The Cloud Storage source: the runtime serves a model repository from gs:// through
google-cloud-storage, here against the fake Google endpoint over HTTP (STORAGE_EMULATOR_HOST),
and a tampered or missing object stops it with one line."""
from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
import tritonclient.http as httpclient

from mlfleet.dr.sandbox.fake_gcp import FakeGcp
from mlfleet.dr.sandbox.faults import FaultBook, Ledger
from mlfleet.runtime.manifest import Manifest
from mlfleet.runtime.process import RuntimeProcess

from helpers.runtime import reference_forward

pytestmark = pytest.mark.sandbox  # starts or talks to a runtime process


BUCKET = "mlfleet-research-research-models"
PREFIX = "models/champion"


@pytest.fixture(scope="module")
def gcs(example_repo, manifest_key):
    fake = FakeGcp(FaultBook(), Ledger()).start()
    for path in example_repo.rglob("*"):
        relative = path.relative_to(example_repo)
        if path.is_file() and relative.parts[0] != "mlp-large":
            fake.put_object(BUCKET, f"{PREFIX}/{relative}", path.read_bytes())
    manifest = Manifest.load(example_repo / "manifest.json")
    only_mlp = Manifest.model_validate({"models": {"mlp": manifest.models["mlp"].model_dump(mode="json")}})
    manifest_bytes = only_mlp.model_dump_json().encode()
    fake.put_object(BUCKET, f"{PREFIX}/manifest.json", manifest_bytes)
    fake.put_object(BUCKET, f"{PREFIX}/manifest.json.sig", manifest_key.signing_key.sign(manifest_bytes))
    yield fake, {"STORAGE_EMULATOR_HOST": fake.url, "GOOGLE_CLOUD_PROJECT": "mlfleet-research"}
    fake.stop()


def _serve(*args, env=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mlfleet.runtime", "--http-port", "0", "--grpc-port", "0", *args],
                          capture_output=True, text=True, timeout=60, env={**os.environ, **(env or {})})


def test_serves_the_champion_from_cloud_storage(gcs, example_repo, manifest_key):
    fake, env = gcs
    with RuntimeProcess(f"gs://{BUCKET}/{PREFIX}/", env=env,
                        manifest_public_key=manifest_key.public_key_path) as runtime:
        batch = np.random.default_rng(1).standard_normal((3, 64), dtype=np.float32)
        client = httpclient.InferenceServerClient(runtime.http_url.removeprefix("http://"))
        tensor = httpclient.InferInput("INPUT__0", [3, 64], "FP32")
        tensor.set_data_from_numpy(batch, binary_data=True)
        got = client.infer("mlp", [tensor]).as_numpy("OUTPUT__0")
        np.testing.assert_allclose(got, reference_forward(example_repo, "mlp", "2", batch), rtol=1e-5, atol=1e-5)
    reads = fake.ledger.count(service="storage", method="GET")
    assert reads >= 4  # the manifest, its signature, the model's config and its weights, each through the API


def test_tampered_object_refuses_to_start_with_one_line(gcs, manifest_key):
    fake, env = gcs
    key_flag = ("--manifest-public-key", str(manifest_key.public_key_path))
    key = (BUCKET, f"{PREFIX}/mlp/2/model.pt")
    original = fake.objects[key]
    tampered = bytearray(original)
    tampered[len(tampered) // 2] ^= 0xFF
    fake.put_object(*key, bytes(tampered))
    try:
        result = _serve("--model-repository", f"gs://{BUCKET}/{PREFIX}", *key_flag, env=env)
    finally:
        fake.put_object(*key, original)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert "mlp/2/model.pt: sha256" in last and "refusing to load" in last
    # a manifest changed after signing, read from the same bucket, is refused before anything loads
    manifest_key_name = (BUCKET, f"{PREFIX}/manifest.json")
    signed = fake.objects[manifest_key_name]
    fake.put_object(*manifest_key_name, signed.replace(b'"champion":"2"', b'"champion":"1"'))
    try:
        result = _serve("--model-repository", f"gs://{BUCKET}/{PREFIX}", *key_flag, env=env)
    finally:
        fake.put_object(*manifest_key_name, signed)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "does not verify" in result.stderr.strip().splitlines()[-1]


def test_missing_repository_is_one_line(gcs, manifest_key):
    _, env = gcs
    result = _serve("--model-repository", f"gs://{BUCKET}/models/nothing-here",
                    "--manifest-public-key", str(manifest_key.public_key_path), env=env)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert f"gs://{BUCKET}/models/nothing-here/manifest.json: not found" in result.stderr.strip().splitlines()[-1]
