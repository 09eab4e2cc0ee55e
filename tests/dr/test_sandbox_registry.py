"""The sandbox's registry as a user meets it: MLflow's artifacts land in the region's bucket, in
the area training may write, and `sandbox status` shows each region's MLflow and the writer."""
from __future__ import annotations

import pytest

from mlfleet.dr.sandbox import SANDBOX_CREDENTIALS
from mlfleet.stacks.environment import naming

pytestmark = pytest.mark.sandbox


def test_mlflow_run_artifacts_land_in_the_regions_candidates_area(sandbox, target, tmp_path, monkeypatch):
    from mlflow import MlflowClient

    for name, value in {"MLFLOW_S3_ENDPOINT_URL": sandbox.state.aws_endpoint, **SANDBOX_CREDENTIALS}.items():
        monkeypatch.setenv(name, value)
    primary = sandbox.env.primary.name
    client = MlflowClient(tracking_uri=sandbox.state.mlflow[primary])
    experiment = client.get_experiment_by_name("Default")
    run = client.create_run(experiment.experiment_id)
    (tmp_path / "eval.json").write_text('{"accuracy": 0.97}')
    client.log_artifact(run.info.run_id, str(tmp_path / "eval.json"))

    root = naming.mlflow_artifact_prefix(sandbox.env.artifact_store.models_prefix)
    assert experiment.artifact_location == f"s3://{sandbox.bucket(primary)}/{root}{experiment.experiment_id}"
    keys = [o["Key"] for o in sandbox.client("s3", primary, direct=True).list_objects_v2(
        Bucket=sandbox.bucket(primary), Prefix=root).get("Contents", [])]
    assert f"{root}{experiment.experiment_id}/{run.info.run_id}/artifacts/eval.json" in keys
    assert all(key.startswith(naming.candidates_prefix(sandbox.env.artifact_store.models_prefix)) for key in keys)


def test_sandbox_status_shows_each_regions_mlflow_and_the_registry_writer(sandbox, target, capsys):
    from mlfleet.stacks import cli

    assert cli.main(["sandbox", "status", "--env", sandbox.env.name, "--state-dir", str(sandbox.state_dir)]) == 0
    out = capsys.readouterr().out
    for region in sandbox.env.regions:
        assert f"  MLflow {region.name}: {sandbox.state.mlflow[region.name]}" in out
    assert f'"writer": "{sandbox.env.primary.name}"' in out


def test_a_reset_starts_no_second_prober_or_lag_publisher(sandbox, target):
    """Each reset re-patches moto for this sandbox; its background loops stay one each (a prober
    per reset once piled up, loading the runtimes' health endpoints until probes timed out)."""
    for _ in range(3):
        sandbox.reset()
    assert sorted(t.name for t in sandbox.extensions._threads) == ["db-lag", "health-prober"]
    assert all(t.is_alive() for t in sandbox.extensions._threads)
