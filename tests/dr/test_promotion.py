"""`mlfleet promote` in the staging sandbox (its buckets, Aurora global cluster on real PostgreSQL,
multi-region signing key and the writer's MLflow), with two IAM users of moto as the training and
the review identity (moto's GetCallerIdentity answers the user of the access key)."""
from __future__ import annotations

import json
import os
import statistics
import sys
import time
from pathlib import Path

import pytest

from mlfleet.dr import promotion
from mlfleet.dr.audit import verify
from mlfleet.dr.promotion import AwsCredentials, DatasetRef, PromotionRefused, promote, register_candidate, rollback
from mlfleet.dr.target import Target
from mlfleet.runtime.examples import config_pbtxt
from mlfleet.runtime.manifest import Manifest, sha256_bytes
from mlfleet.runtime.signing import verify_manifest
from mlfleet.stacks.environment import load_environment, naming

REPO = Path(__file__).resolve().parents[2]
ENV = load_environment("staging")  # thresholds: accuracy >= 0.9, latency_p99_ms <= 25
PRIMARY = ENV.primary.name
BUCKET = naming.artifact_bucket(ENV.name, ENV.aws.account_id, PRIMARY)
PREFIX = ENV.artifact_store.models_prefix
APPROVED = naming.approved_prefix(PREFIX)
CANDIDATES = naming.candidates_prefix(PREFIX)
GOOD_METRICS = {"accuracy": 0.95, "latency_p99_ms": 12.0}
DATASETS = [DatasetRef("train-2026-11", "9f2c4e1a7b3d", "s3://datasets/train-2026-11.parquet")]


@pytest.fixture(scope="module")
def box(sandbox):
    """The session's staging sandbox, as `mlfleet sandbox up` leaves it: buckets, the Aurora global
    cluster on real PostgreSQL servers, the multi-region signing key, one MLflow per region."""
    sandbox.reset()
    return sandbox


@pytest.fixture(scope="module")
def aws(box):
    import boto3

    def client(service, region):
        return boto3.client(service, region_name=region, endpoint_url=box.moto_url,
                            aws_access_key_id="admin", aws_secret_access_key="admin")
    return client


@pytest.fixture(scope="module")
def identities(aws):
    iam = aws("iam", PRIMARY)
    made = {}
    for name in ("ml-training-pipeline", "ml-model-review", "ml-model-review-2"):
        arn = iam.create_user(UserName=name)["User"]["Arn"]
        key = iam.create_access_key(UserName=name)["AccessKey"]
        made[name] = (arn, AwsCredentials(key["AccessKeyId"], key["SecretAccessKey"]))
    return made


@pytest.fixture(scope="module")
def mlflow_uri(box):
    """The writer region's MLflow (on the primary's PostgreSQL)."""
    return box.state.mlflow[PRIMARY]


@pytest.fixture
def target(box, tmp_path) -> Target:
    t = Target.sandbox(ENV, box.state_dir)
    t.state_dir = tmp_path  # the audit log per test
    return t


@pytest.fixture
def world_of(target, identities, mlflow_uri, aws):
    """Each test starts without a manifest: the models it promotes are its own."""
    s3 = aws("s3", PRIMARY)
    for name in (naming.MANIFEST_FILE, naming.MANIFEST_SIGNATURE_FILE):
        s3.delete_object(Bucket=BUCKET, Key=APPROVED + name)
    return World(target, identities, mlflow_uri, aws)


class World:
    def __init__(self, target, identities, uri, aws):
        self.target, self.uri, self.aws = target, uri, aws
        self.training_arn, self.training = identities["ml-training-pipeline"]
        self.review_arn, self.review = identities["ml-model-review"]
        self.s3 = aws("s3", PRIMARY)

    def register(self, model: str, *, config: str | None = None, metrics=None, datasets=DATASETS,
                 code: str | None = "4b825dc642cb6eb9a060e54bf8d69288fbee4904", as_=None, **extra) -> str:
        files = {"model.pt": f"torchscript of {model} {time.time_ns()}".encode(),
                 "canary.json": json.dumps({"inputs": {}, "outputs": {}}).encode(),
                 "config.pbtxt": (config or config_pbtxt(model, (64, 256, 10), 0)).encode()}
        return register_candidate(self.target, model, files, metrics=GOOD_METRICS if metrics is None else metrics,
                                  datasets=datasets, code_version=code, credentials=as_ or self.training,
                                  uri=self.uri, **extra)

    def promote(self, model: str, version: str, *, as_=None, **kwargs):
        return promote(self.target, model, version, credentials=as_ or self.review, uri=self.uri, **kwargs)

    def rollback(self, model: str, **kwargs):
        return rollback(self.target, model, credentials=self.review, uri=self.uri, **kwargs)

    def read(self, key: str) -> bytes:
        return self.s3.get_object(Bucket=BUCKET, Key=key)["Body"].read()

    def snapshot(self) -> set[tuple[str, str]]:
        """Every version of every object in the writer's bucket: an overwrite shows as well as a new key."""
        versions = self.s3.list_object_versions(Bucket=BUCKET)
        return {(v["Key"], v["VersionId"]) for v in versions.get("Versions", [])}

    def manifest(self) -> tuple[bytes, Manifest]:
        raw = self.read(APPROVED + naming.MANIFEST_FILE)
        return raw, Manifest.load(raw)

    def verifies(self) -> str:
        """The manifest's signature checked with the KMS key's public half (as the runtime gets it)."""
        from cryptography.hazmat.primitives import serialization

        der = self.aws("kms", PRIMARY).get_public_key(KeyId=f"alias/{naming.manifest_signing_key_alias(ENV.name)}")
        key = serialization.load_der_public_key(der["PublicKey"])
        raw, _ = self.manifest()
        return verify_manifest(raw, self.read(APPROVED + naming.MANIFEST_SIGNATURE_FILE), key).key_id

    def alias(self, model: str, alias: str) -> str | None:
        from mlflow import MlflowClient
        from mlflow.exceptions import MlflowException

        try:
            return MlflowClient(self.uri).get_model_version_by_alias(model, alias).version
        except MlflowException:
            return None


@pytest.mark.sandbox
def test_a_good_candidate_is_promoted_signed_pinned_and_audited(world_of):
    w = world_of
    version = w.register("fraud")
    result = w.promote("fraud", version)

    assert result.refusals == [] and result.writer_region == PRIMARY and result.approver == w.review_arn
    raw, manifest = w.manifest()
    entry = manifest.models["fraud"]
    assert entry.champion == version and entry.versions[version].approved_by == w.review_arn
    for file, sha in entry.versions[version].files.items():
        assert sha256_bytes(w.read(f"{APPROVED}fraud/{version}/{file}")) == sha
        assert sha == sha256_bytes(w.read(f"{CANDIDATES}fraud/{version}/{file}"))
    assert entry.config_sha256 == sha256_bytes(w.read(f"{APPROVED}fraud/config.pbtxt"))
    assert w.verifies() == result.signature_key and ":key/mrk-" in result.signature_key
    assert result.manifest_sha256 == sha256_bytes(raw)
    assert w.alias("fraud", "champion") == version
    assert set(result.timings_s) == {"gates", "copy", "sign", "alias", "total"}
    audit = [json.loads(line) for line in w.target.audit_path.read_text().splitlines()]
    assert audit[-1]["action"] == "promote" and audit[-1]["result"] == "ok"
    assert audit[-1]["actor"] == w.review_arn and audit[-1]["detail"]["author"] == w.training_arn
    assert audit[-1]["detail"]["manifest_sha256"] == result.manifest_sha256
    assert verify(w.target.audit_path).head == result.audit_head


def _tamper_model_file(w, model, version):
    w.s3.put_object(Bucket=BUCKET, Key=f"{CANDIDATES}{model}/{version}/model.pt", Body=b"not what was registered")


@pytest.mark.sandbox
@pytest.mark.parametrize("case, register, before, expected", [
    ("threshold", {"metrics": {"accuracy": 0.85, "latency_p99_ms": 12.0}}, None,
     "threshold accuracy >= 0.9: accuracy = 0.85"),
    ("missing metric", {"metrics": {"accuracy": 0.97}}, None,
     "threshold latency_p99_ms <= 25: latency_p99_ms is not logged"),
    ("no dataset", {"datasets": []}, None, "lineage: no dataset input is logged"),
    ("no code version", {"code": None}, None, "lineage: no code version"),
    ("tampered file", {}, _tamper_model_file, "candidate files: model.pt has sha256"),
])
def test_each_gate_refuses_on_its_own_and_nothing_is_written(world_of, case, register, before, expected):
    w = world_of
    model = "m-" + case.replace(" ", "-")
    version = w.register(model, **register)
    if before:
        before(w, model, version)
    bucket = w.snapshot()
    with pytest.raises(PromotionRefused) as refused:
        w.promote(model, version)
    assert refused.value.exit_code == 3
    lines = str(refused.value).splitlines()
    assert len(lines) == 1 and lines[0].startswith(expected), lines
    assert [g.name for g in refused.value.result.refusals] == [lines[0].split(":")[0]]
    assert w.snapshot() == bucket and w.alias(model, "champion") is None
    assert json.loads(w.target.audit_path.read_text().splitlines()[-1])["result"] == "refused"


@pytest.mark.sandbox
def test_the_author_cannot_approve_their_own_version(world_of):
    w = world_of
    version = w.register("selfie")
    bucket = w.snapshot()
    with pytest.raises(PromotionRefused) as refused:
        w.promote("selfie", version, as_=w.training)
    assert str(refused.value) == (f"separation of duties: {w.training_arn} registered this version "
                                  f"({w.training_arn}): another identity must approve it")
    assert w.snapshot() == bucket


def test_two_sessions_of_one_role_are_one_principal():
    assert promotion.principal("arn:aws:sts::222222222222:assumed-role/ml-training/alice") == \
        promotion.principal("arn:aws:sts::222222222222:assumed-role/ml-training/pipeline-42") == \
        promotion.principal("arn:aws:iam::222222222222:role/teams/ml-training")
    assert promotion.principal("arn:aws:iam::222222222222:role/ml-training") != \
        promotion.principal("arn:aws:iam::222222222222:role/ml-review")


@pytest.mark.sandbox
def test_a_manifest_that_does_not_verify_is_not_extended(world_of):
    w = world_of
    w.promote("base", w.register("base"))
    raw, _ = w.manifest()
    w.s3.put_object(Bucket=BUCKET, Key=APPROVED + naming.MANIFEST_FILE, Body=raw.replace(b'"champion"', b' "champion"'))
    try:
        version = w.register("after-tamper")
        bucket = w.snapshot()
        with pytest.raises(PromotionRefused) as refused:
            w.promote("after-tamper", version)
        message = str(refused.value)
        assert message.startswith("manifest: the current manifest") and "does not verify" in message
        assert w.snapshot() == bucket
    finally:
        w.s3.put_object(Bucket=BUCKET, Key=APPROVED + naming.MANIFEST_FILE, Body=raw)


@pytest.mark.sandbox
def test_a_new_config_is_carried_and_rollback_re_pins_the_previous_champion(world_of):
    w = world_of
    first_config = config_pbtxt("ranker", (64, 256, 10), 0)
    second_config = config_pbtxt("ranker", (64, 256, 10), 2000)  # batching changed with the new version
    first = w.register("ranker", config=first_config)
    w.promote("ranker", first)
    second = w.register("ranker", config=second_config)
    promoted = w.promote("ranker", second)
    assert promoted.previous_champion == first
    _, manifest = w.manifest()
    assert manifest.models["ranker"].champion == second and set(manifest.models["ranker"].versions) == {first, second}
    assert w.read(f"{APPROVED}ranker/config.pbtxt").decode() == second_config
    assert manifest.models["ranker"].config_sha256 == sha256_bytes(second_config.encode())
    assert (w.alias("ranker", "champion"), w.alias("ranker", "previous-champion")) == (second, first)

    rolled = w.rollback("ranker")
    _, manifest = w.manifest()
    assert rolled.version == first and manifest.models["ranker"].champion == first
    assert manifest.models["ranker"].config_sha256 == sha256_bytes(first_config.encode())
    assert w.read(f"{APPROVED}ranker/config.pbtxt").decode() == first_config
    assert w.verifies() and (w.alias("ranker", "champion"), w.alias("ranker", "previous-champion")) == (first, None)
    with pytest.raises(promotion.DrUsageError, match="no previous-champion alias"):
        w.rollback("ranker")


@pytest.mark.sandbox
def test_dry_run_evaluates_every_gate_and_changes_nothing(world_of):
    w = world_of
    version = w.register("dry")
    bucket, audit = w.snapshot(), w.target.audit_path.exists()
    result = w.promote("dry", version, dry_run=True)
    assert result.refusals == [] and len(result.gates) == 6
    assert any(step.startswith(f"copy s3://{BUCKET}/{CANDIDATES}dry/{version}/model.pt") for step in result.plan)
    assert w.snapshot() == bucket and w.alias("dry", "champion") is None
    assert w.target.audit_path.exists() == audit
    bad = w.register("dry-bad", metrics={"accuracy": 0.1, "latency_p99_ms": 99.0})
    bucket = w.snapshot()
    with pytest.raises(PromotionRefused) as refused:
        w.promote("dry-bad", bad, dry_run=True)
    assert len(refused.value.result.refusals) == 2 and w.snapshot() == bucket
    assert w.target.audit_path.exists() == audit


@pytest.mark.sandbox
def test_a_version_evaluated_on_a_run_of_its_own(world_of):
    w = world_of
    version = w.register("evaluated", metrics={"loss": 0.2}, evaluation_metrics=GOOD_METRICS)
    assert w.promote("evaluated", version).refusals == []


@pytest.mark.sandbox
def test_unknown_model_or_version_is_a_usage_error(world_of):
    w = world_of
    with pytest.raises(promotion.DrUsageError, match="no registered model 'nope'"):
        w.promote("nope", "1")
    w.register("known")
    with pytest.raises(promotion.DrUsageError, match="has no version '99'"):
        w.promote("known", "99")


@pytest.mark.sandbox
def test_the_command_line_acts_as_the_callers_identity(world_of, monkeypatch, capsys, box, tmp_path):
    """`mlfleet promote --target aws` through the default credential chain (here: the environment)."""
    import boto3

    from mlfleet.stacks import cli
    from mlfleet.stacks import environment as environment_module

    w = world_of
    env = ENV.model_copy(update={"model_registry": ENV.model_registry.model_copy(update={"tracking_uri": w.uri})})
    monkeypatch.setattr(environment_module, "load_environment", lambda name: env)
    monkeypatch.setattr(boto3, "DEFAULT_SESSION", None)
    monkeypatch.setenv("AWS_ENDPOINT_URL", box.moto_url)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", w.training.access_key_id)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", w.training.secret_access_key)
    version = w.register("cli")
    argv = ["promote", "--env", "staging", "--model", "cli", "--version", version, "--target", "aws",
            "--state-dir", str(tmp_path)]
    assert cli.main(argv) == 3
    out = capsys.readouterr().out
    assert [line for line in out.splitlines() if "[REFUSED]" in line] == [
        f"  [REFUSED] separation of duties: {w.training_arn} registered this version ({w.training_arn}): "
        "another identity must approve it"]
    monkeypatch.setattr(boto3, "DEFAULT_SESSION", None)  # it keeps the credentials it resolved first
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", w.review.access_key_id)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", w.review.secret_access_key)
    assert cli.main(argv) == 0
    assert f"promote cli v{version}: done in {PRIMARY}" in capsys.readouterr().out
    assert cli.main(["promote", "--env", "staging", "--model", "cli", "--rollback", "--target", "aws",
                     "--state-dir", str(tmp_path)]) == 2
    assert "no previous-champion alias" in capsys.readouterr().err


@pytest.mark.sandbox
def test_a_signature_that_cannot_be_written_leaves_the_old_manifest(world_of, monkeypatch):
    w = world_of
    w.promote("steady", w.register("steady"))
    before, _ = w.manifest()
    original_put = promotion._Bucket.put

    def put(self, key, body, *, content_type):
        if key.endswith(naming.MANIFEST_SIGNATURE_FILE):
            raise promotion.PromotionFailed(f"writing s3://{self.name}/{key}: AccessDenied")
        return original_put(self, key, body, content_type=content_type)

    monkeypatch.setattr(promotion._Bucket, "put", put)
    with pytest.raises(promotion.PromotionFailed, match="AccessDenied") as failed:
        w.promote("steady", w.register("steady"))
    assert failed.value.exit_code == 1
    monkeypatch.undo()
    assert w.manifest()[0] == before and w.verifies()  # what the runtimes serve still verifies


@pytest.mark.sandbox
def test_mlflow_down_is_one_line(world_of):
    w = world_of
    with pytest.raises(promotion.PromotionFailed, match=r"MLflow at http://127.0.0.1:9 is not reachable") as failed:
        promote(w.target, "fraud", "1", credentials=w.review, uri="http://127.0.0.1:9")
    assert failed.value.exit_code == 1 and "\n" not in str(failed.value)


@pytest.mark.sandbox
def test_a_missing_signing_key_is_one_line_before_anything_is_read(world_of, box, tmp_path):
    from mlfleet.dr.kms_signer import SigningFailed

    dev = load_environment("dev")  # one region, us-east-2, where no key was made
    target = Target(env=dev, kind="sandbox", state_dir=tmp_path, hosted_zone_id="", serving_urls={},
                    admin_token=None, aws_endpoint=box.moto_url)
    with pytest.raises(SigningFailed, match="^the manifest signing key alias/mlfleet-dev-manifest-signing does not "
                                            "exist in us-east-2") as failed:
        promote(target, "fraud", "1", credentials=world_of.review, uri=world_of.uri)
    assert failed.value.exit_code == 1 and "\n" not in str(failed.value)


@pytest.mark.sandbox
def test_promotion_end_to_end_time(world_of):
    """The median of a few promotions (gates: MLflow reads and S3 hashing; copy; KMS sign; alias)."""
    w = world_of
    totals = []
    for index in range(5):
        version = w.register(f"timed-{index}")
        totals.append(w.promote(f"timed-{index}", version).timings_s["total"])
    median = statistics.median(totals)
    print(f"promotion end to end: median {median * 1000:.0f} ms over {len(totals)} runs", file=sys.stderr)
    assert median < 5.0


@pytest.fixture(autouse=True, scope="module")
def _quiet_mlflow():
    os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")


# The command line's one-line refusals before anything is reached (no server needed).
@pytest.mark.parametrize("argv, expected", [
    (["--env", "research", "--model", "m", "--version", "1", "--target", "aws"],
     "mlfleet: error: environment research has its registry on Google Cloud: promotion there needs the Cloud KMS "
     "signer, which is not built yet; nothing was changed"),
    (["--env", "staging", "--model", "m", "--version", "1", "--target", "aws"],
     "mlfleet: error: no AWS credentials: promotion acts, and approves, as the caller's own identity (the review "
     "identity); configure its credentials"),
    (["--env", "staging", "--model", "m", "--rollback"], "mlfleet: error: no sandbox is running for environment"),
])
def test_command_line_usage_errors_are_one_line(argv, expected, monkeypatch, capsys, tmp_path):
    import boto3

    from mlfleet.stacks import cli

    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setattr(boto3, "DEFAULT_SESSION", None)
    assert cli.main(["promote", *argv, "--state-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(expected) and len(err.strip().splitlines()) == 1, err


def test_the_version_or_rollback_is_required(capsys):
    from mlfleet.stacks import cli

    with pytest.raises(SystemExit) as exited:
        cli.main(["promote", "--env", "staging", "--model", "m", "--version", "1", "--rollback"])
    assert exited.value.code == 2 and "not allowed with argument" in capsys.readouterr().err
