"""`mlfleet promote`: a candidate model version becomes the champion behind gates, in a manifest
signed with the environment's KMS key.

Everything happens in the registry's writer region (the Aurora global cluster's writer; the
primary of a one-region environment): its MLflow, its artifact bucket, its replica of the signing
key. The candidate is read from MLflow (`mlflow.MlflowClient`):

- the model version: tag `mlfleet.author` (the ARN the training side's STS caller identity gave
  when it registered the version), tag `mlfleet.files` (JSON {file: sha256} of what it uploaded to
  `<candidates>/<model>/<version>/`, `config.pbtxt` included), and optionally tag
  `mlfleet.evaluation_run`: the run whose metrics are the evaluation (default the source run);
- its source run: the dataset inputs logged on it (each with a digest) and the code version, the
  run tag `mlflow.source.git.commit` (what MLflow itself records for a run started from git).

Gates, all evaluated, each refusing with one line (exit 3, nothing changed): every threshold of
`promotion.thresholds` holds on the evaluation metrics (a missing metric fails); lineage is
complete (`promotion.require_lineage`); the approver — the caller's own cloud identity, never a
flag — is not the version's author (two sessions of one assumed role are one principal); the
candidate files hash in S3 to what the version records; the current manifest, if any, verifies
against the key. Then: server-side copies of the exact object versions that were hashed into
`<approved>/<model>/<version>/` (and `<approved>/<model>/config.pbtxt`), the new manifest and its
signature (written only if the manifest did not change meanwhile), MLflow's `champion` alias (the
old champion gets `previous-champion`), an audit record. `rollback` re-pins `previous-champion`
the same way, behind the gates that still apply to an approved version.
"""
from __future__ import annotations

import hashlib
import json
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from mlfleet.dr.errors import EXIT_FAILED, DrUsageError, Refused
from mlfleet.dr.kms_signer import KmsManifestSigner
from mlfleet.stacks.environment import naming
from mlfleet.stacks.environment.errors import MlfleetError

if TYPE_CHECKING:
    from mlfleet.dr.target import Target
    from mlfleet.runtime.manifest import Manifest

CHAMPION_ALIAS = "champion"
PREVIOUS_CHAMPION_ALIAS = "previous-champion"
AUTHOR_TAG = "mlfleet.author"
FILES_TAG = "mlfleet.files"
EVALUATION_RUN_TAG = "mlfleet.evaluation_run"
CODE_VERSION_TAG = "mlflow.source.git.commit"
CONFIG_FILE = "config.pbtxt"
NO_CREDENTIALS = ("no AWS credentials: promotion acts, and approves, as the caller's own identity (the review "
                  "identity); configure its credentials")
_COPY_OBJECT_LIMIT = 5 * 1024**3  # CopyObject's limit; larger objects go through a multipart copy


class PromotionFailed(MlfleetError):
    """A service the promotion needs did not answer as it must (MLflow, S3, STS): nothing more was changed."""
    exit_code = EXIT_FAILED


@dataclass(frozen=True)
class AwsCredentials:
    """The identity that acts (and approves); None in the calls below means the target's own."""
    access_key_id: str
    secret_access_key: str
    session_token: str | None = None


@dataclass(frozen=True)
class Gate:
    name: str
    ok: bool
    detail: str

    def line(self) -> str:
        return f"[{'ok' if self.ok else 'REFUSED'}] {self.name}: {self.detail}"


@dataclass
class PromotionResult:
    action: str
    """promote or rollback"""
    model: str
    version: str
    dry_run: bool
    writer_region: str
    approver: str
    author: str | None
    previous_champion: str | None
    gates: list[Gate]
    plan: list[str] = field(default_factory=list)
    manifest_sha256: str | None = None
    signature_key: str | None = None
    timings_s: dict[str, float] = field(default_factory=dict)
    """Seconds per phase: gates, copy, sign (signing and writing manifest and signature), alias, total."""
    audit_head: str | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def refusals(self) -> list[Gate]:
        return [g for g in self.gates if not g.ok]


class PromotionRefused(Refused):
    """One or more gates refused; nothing was changed. The message has one line per refused gate."""

    def __init__(self, result: PromotionResult):
        self.result = result
        super().__init__("\n".join(f"{g.name}: {g.detail}" for g in result.refusals))


# -- the identities --------------------------------------------------------------------------
def principal(arn: str) -> str:
    """The identity an ARN acts as: every session of an assumed role is that role, and IAM paths
    do not make a role or user another one (names are unique in an account)."""
    parts = arn.split(":", 5)
    if len(parts) != 6 or parts[0] != "arn":
        return arn
    partition, service, account, resource = parts[1], parts[2], parts[4], parts[5]
    kind, _, rest = resource.partition("/")
    if service == "sts" and kind == "assumed-role":
        return f"arn:{partition}:iam::{account}:role/{rest.split('/')[0]}"
    if service == "iam" and kind in ("role", "user"):
        return f"arn:{partition}:iam::{account}:{kind}/{rest.rsplit('/', 1)[-1]}"
    return arn


def _clients(target: Target, credentials: AwsCredentials | None) -> Callable[[str, str], Any]:
    if credentials is None:
        return target.client
    import boto3
    from botocore.config import Config

    config = Config(retries={"total_max_attempts": 2}, connect_timeout=target.connect_timeout_s,
                    read_timeout=target.read_timeout_s)
    cache: dict[tuple[str, str], Any] = {}

    def client(service: str, region: str):
        if (service, region) not in cache:
            cache[service, region] = boto3.client(
                service, region_name=region, endpoint_url=target.aws_endpoint, config=config,
                aws_access_key_id=credentials.access_key_id, aws_secret_access_key=credentials.secret_access_key,
                aws_session_token=credentials.session_token)
        return cache[service, region]
    return client


def caller_arn(client: Callable[[str, str], Any], region: str) -> str:
    """The acting identity, from STS: the approver of a promotion, the author of a registration."""
    from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

    try:
        return client("sts", region).get_caller_identity()["Arn"]
    except NoCredentialsError:
        raise DrUsageError(NO_CREDENTIALS) from None
    except (ClientError, BotoCoreError) as exc:
        raise PromotionFailed(f"STS GetCallerIdentity in {region} failed: {_aws_reason(exc)}") from None


def _aws_reason(exc: Exception) -> str:
    response = getattr(exc, "response", None)
    if isinstance(response, dict) and response.get("Error"):
        return f"{response['Error'].get('Code')}: {response['Error'].get('Message', '')}".rstrip(": ")
    return str(exc)


# -- where: the writer region, its MLflow ------------------------------------------------------
def writer_region(target: Target, client: Callable[[str, str], Any]) -> str:
    """The registry's writer: the Aurora global cluster's writer member, asked through each AWS
    region in turn (the primary may be the region that is lost)."""
    from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

    from mlfleet.dr.aws import writer_region as writer_of

    env = target.env
    if env.primary.cloud != "aws":
        raise DrUsageError(f"environment {env.name} has its registry on Google Cloud: promotion there needs the "
                           "Cloud KMS signer, which is not built yet; nothing was changed")
    if len(env.regions) == 1:
        return env.primary.name
    global_id = naming.global_cluster_id(env.name)
    problems = []
    for region in [env.primary, *env.standbys]:
        if region.cloud != "aws":
            continue
        try:
            clusters = client("rds", region.name).describe_global_clusters(
                GlobalClusterIdentifier=global_id)["GlobalClusters"]
        except NoCredentialsError:
            raise DrUsageError(NO_CREDENTIALS) from None
        except (ClientError, BotoCoreError) as exc:
            problems.append(f"{region.name}: {_aws_reason(exc)}")
            continue
        writer = writer_of(clusters[0]) if clusters else None
        if writer:
            return writer
        problems.append(f"{region.name}: no writer member")
    raise PromotionFailed(f"cannot find the registry's writer region (global cluster {global_id}): "
                          + "; ".join(problems))


def tracking_uri(target: Target, region: str) -> str:
    """The MLflow of `region`: from the sandbox's state, or the environment's model_registry."""
    if target.kind == "sandbox":
        uris = target.mlflow_urls
        if region not in uris:
            raise DrUsageError(f"the sandbox of {target.env.name} runs no MLflow for {region}")
        return uris[region]
    uri = target.env.model_registry.tracking_uri_of(region)
    if uri is None:
        raise DrUsageError(f"environment {target.env.name} gives no model_registry.tracking_uri: "
                           "promotion reads the candidate from the writer region's MLflow")
    return uri


def mlflow_client(uri: str):
    """An MlflowClient, after a /health probe: a server that is down fails in one line, at once,
    rather than after the client's minutes of retries."""
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(f"{uri.rstrip('/')}/health", timeout=5) as answer:
            answer.read()
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise PromotionFailed(f"MLflow at {uri} is not reachable ({reason}); nothing was changed") from None
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def _mlflow_call(what: str, fn: Callable, *args, **kwargs):
    from mlflow.exceptions import MlflowException

    try:
        return fn(*args, **kwargs)
    except MlflowException as exc:
        raise PromotionFailed(f"MLflow: {what}: {exc.message.splitlines()[0] if exc.message else exc}") from None


def _registered_model(mlflow, model: str) -> None:
    from mlflow.exceptions import MlflowException

    try:
        mlflow.get_registered_model(model)
    except MlflowException as exc:
        if exc.error_code == "RESOURCE_DOES_NOT_EXIST":
            raise DrUsageError(f"MLflow has no registered model {model!r}") from None
        raise PromotionFailed(f"MLflow: reading model {model!r}: {exc.message}") from None


def _model_version(mlflow, model: str, version: str):
    from mlflow.exceptions import MlflowException

    _registered_model(mlflow, model)
    try:
        return mlflow.get_model_version(model, version)
    except MlflowException as exc:
        if exc.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
            raise DrUsageError(f"model {model!r} has no version {version!r} in MLflow") from None
        raise PromotionFailed(f"MLflow: reading {model} v{version}: {exc.message}") from None


def _run(mlflow, run_id: str | None):
    from mlflow.exceptions import MlflowException

    if not run_id:
        return None
    try:
        return mlflow.get_run(run_id)
    except MlflowException as exc:
        if exc.error_code == "RESOURCE_DOES_NOT_EXIST":
            return None
        raise PromotionFailed(f"MLflow: reading run {run_id}: {exc.message}") from None


# -- the bucket ------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Object:
    sha256: str
    version_id: str | None
    size: int


class _Bucket:
    def __init__(self, s3, name: str):
        self.s3, self.name = s3, name

    def _get(self, key: str) -> dict | None:
        """GetObject's answer, None when the key does not exist; PromotionFailed otherwise."""
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return self.s3.get_object(Bucket=self.name, Key=key)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404", "NotFound"):
                return None
            raise PromotionFailed(f"reading s3://{self.name}/{key}: {_aws_reason(exc)}") from None
        except BotoCoreError as exc:
            raise PromotionFailed(f"reading s3://{self.name}/{key}: {exc}") from None

    def read(self, key: str) -> tuple[bytes, str] | None:
        """(body, ETag), None when the key does not exist."""
        answer = self._get(key)
        return None if answer is None else (answer["Body"].read(), answer["ETag"])

    def hash(self, key: str) -> _Object | None:
        """The sha256 of the object, streamed, and the version of it that was read."""
        answer = self._get(key)
        if answer is None:
            return None
        digest, size = hashlib.sha256(), 0
        for chunk in answer["Body"].iter_chunks(1 << 20):
            digest.update(chunk)
            size += len(chunk)
        return _Object(digest.hexdigest(), answer.get("VersionId"), size)

    def copy(self, source_key: str, source: _Object, key: str) -> None:
        from botocore.exceptions import BotoCoreError, ClientError

        copy_source = {"Bucket": self.name, "Key": source_key}
        if source.version_id and source.version_id != "null":
            copy_source["VersionId"] = source.version_id  # exactly what was hashed, not what is there now
        try:
            if source.size <= _COPY_OBJECT_LIMIT:
                self.s3.copy_object(CopySource=copy_source, Bucket=self.name, Key=key)
            else:
                self.s3.copy(copy_source, self.name, key)
        except (ClientError, BotoCoreError) as exc:
            raise PromotionFailed(f"copying s3://{self.name}/{source_key} to {key}: {_aws_reason(exc)}") from None

    def write(self, key: str, body: bytes, *, if_match: str | None, content_type: str) -> None:
        """Put `body`; with `if_match` only over that ETag, without only where nothing is (a
        concurrent promotion's manifest is never overwritten)."""
        from botocore.exceptions import BotoCoreError, ClientError

        condition = {"IfMatch": if_match} if if_match else {"IfNoneMatch": "*"}
        try:
            self.s3.put_object(Bucket=self.name, Key=key, Body=body, ContentType=content_type, **condition)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("PreconditionFailed", "ConditionalRequestConflict"):
                raise PromotionFailed(f"s3://{self.name}/{key} changed during the promotion (another promotion?); "
                                      "run it again") from None
            raise PromotionFailed(f"writing s3://{self.name}/{key}: {_aws_reason(exc)}") from None
        except BotoCoreError as exc:
            raise PromotionFailed(f"writing s3://{self.name}/{key}: {exc}") from None

    def delete(self, key: str) -> None:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            self.s3.delete_object(Bucket=self.name, Key=key)
        except (ClientError, BotoCoreError) as exc:
            raise PromotionFailed(f"deleting s3://{self.name}/{key}: {_aws_reason(exc)}") from None

    def put(self, key: str, body: bytes, *, content_type: str) -> None:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            self.s3.put_object(Bucket=self.name, Key=key, Body=body, ContentType=content_type)
        except (ClientError, BotoCoreError) as exc:
            raise PromotionFailed(f"writing s3://{self.name}/{key}: {_aws_reason(exc)}") from None


# -- one promotion's context -------------------------------------------------------------------
class _Session:
    """The writer region's bucket, MLflow and signer, the approver, and the current manifest."""

    def __init__(self, target: Target, *, credentials: AwsCredentials | None, uri: str | None,
                 progress: Callable[[str], None]):
        self.target, self.env, self.progress = target, target.env, progress
        client = _clients(target, credentials)
        self.region = writer_region(target, client)
        self.approver = caller_arn(client, self.region)
        progress(f"writer region {self.region}; acting as {self.approver}")
        self.mlflow = mlflow_client(uri or tracking_uri(target, self.region))
        self.bucket = _Bucket(client("s3", self.region), target.bucket(self.region))
        models_prefix = self.env.artifact_store.models_prefix
        self.candidates = naming.candidates_prefix(models_prefix)
        self.approved = naming.approved_prefix(models_prefix)
        self.signer = KmsManifestSigner(client("kms", self.region),
                                        naming.manifest_signing_key_alias(self.env.name), self.region)
        self.signer.public_key()  # a missing key stops here, before any gate or change
        self.manifest_key = self.approved + naming.MANIFEST_FILE
        self.signature_key = self.approved + naming.MANIFEST_SIGNATURE_FILE
        current = self.bucket.read(self.manifest_key)
        signature = self.bucket.read(self.signature_key)
        self.manifest_bytes: bytes | None = current[0] if current else None
        self.manifest_etag: str | None = current[1] if current else None
        self.signature_bytes: bytes | None = signature[0] if signature else None

    def manifest_gate(self) -> tuple[Gate, Manifest | None]:
        from mlfleet.runtime.manifest import Manifest, ManifestError, sha256_bytes
        from mlfleet.runtime.signing import SignatureError

        where = f"s3://{self.bucket.name}/{self.manifest_key}"
        if self.manifest_bytes is None:
            return Gate("manifest", True, f"no manifest at {where} yet: this is the first champion"), None
        try:
            info = self.signer.verify(self.manifest_bytes, self.signature_bytes)
            manifest = Manifest.load(self.manifest_bytes)
        except (SignatureError, ManifestError) as exc:
            return Gate("manifest", False, f"the current manifest {where} cannot be extended: {exc}"), None
        return Gate("manifest", True, f"{where} (sha256 {sha256_bytes(self.manifest_bytes)[:12]}) verifies "
                                      f"with {info.key_id}"), manifest

    def candidate_key(self, model: str, version: str, file: str) -> str:
        return f"{self.candidates}{model}/{version}/{file}"

    def approved_key(self, model: str, version: str, file: str) -> str:
        if file == CONFIG_FILE:
            return f"{self.approved}{model}/{CONFIG_FILE}"
        return f"{self.approved}{model}/{version}/{file}"


# -- the gates -------------------------------------------------------------------------------
def _threshold_gates(env, mlflow, model_version, source_run) -> list[Gate]:
    thresholds = env.promotion.thresholds
    if not thresholds:
        return []
    evaluation_id = model_version.tags.get(EVALUATION_RUN_TAG) or model_version.run_id
    run = source_run if evaluation_id == model_version.run_id else _run(mlflow, evaluation_id)
    gates = []
    for threshold in thresholds:
        name = f"threshold {threshold}"
        if run is None:
            gates.append(Gate(name, False, f"the evaluation run {evaluation_id or '(none)'} does not exist"))
            continue
        measured = run.data.metrics.get(threshold.metric)
        if measured is None:
            gates.append(Gate(name, False, f"{threshold.metric} is not logged on the evaluation run {run.info.run_id}"))
        else:
            verdict = "holds" if threshold.holds(measured) else "does not hold"
            gates.append(Gate(name, threshold.holds(measured),
                              f"{threshold.metric} = {measured:g} on run {run.info.run_id}: {verdict}"))
    return gates


def _lineage_gate(env, model_version, run) -> Gate:
    problems, found = [], []
    if run is None:
        problems.append(f"its source run {model_version.run_id or '(none)'} does not exist")
    else:
        inputs = run.inputs.dataset_inputs if run.inputs else []
        if not inputs:
            problems.append("no dataset input is logged on its source run")
        undigested = [d.dataset.name for d in inputs if not d.dataset.digest]
        if undigested:
            problems.append(f"dataset input(s) without a digest: {', '.join(undigested)}")
        found += [f"{d.dataset.name}@{d.dataset.digest[:12]}" for d in inputs if d.dataset.digest]
        code = run.data.tags.get(CODE_VERSION_TAG)
        if not code:
            problems.append(f"no code version (run tag {CODE_VERSION_TAG})")
        else:
            found.append(f"code {code[:12]}")
    if not problems:
        return Gate("lineage", True, f"run {run.info.run_id}: {', '.join(found)}")
    if not env.promotion.require_lineage:
        return Gate("lineage", True, f"not required (promotion.require_lineage: false): {'; '.join(problems)}")
    return Gate("lineage", False, "; ".join(problems))


def _author_gate(model_version, approver: str) -> Gate:
    author = model_version.tags.get(AUTHOR_TAG)
    if not author:
        return Gate("separation of duties", False,
                    f"the version has no {AUTHOR_TAG} tag: who registered it is unknown")
    if principal(author) == principal(approver):
        who = approver if author == approver else f"{approver} acts as {principal(author)}, which"
        return Gate("separation of duties", False,
                    f"{who} registered this version ({author}): another identity must approve it")
    return Gate("separation of duties", True, f"approver {approver}, author {author}")


def _recorded_files(model_version) -> tuple[dict[str, str], str | None]:
    """{file: sha256} from the version's tag, or a reason it cannot be used."""
    from pathlib import PurePosixPath

    raw = model_version.tags.get(FILES_TAG)
    if not raw:
        return {}, f"the version has no {FILES_TAG} tag (the files training uploaded, with their sha256)"
    try:
        files = json.loads(raw)
    except json.JSONDecodeError:
        return {}, f"its {FILES_TAG} tag is not JSON"
    if not isinstance(files, dict) or not all(isinstance(v, str) and len(v) == 64 for v in files.values()):
        return {}, f"its {FILES_TAG} tag is not an object of file -> sha256"
    for name in files:
        path = PurePosixPath(name)
        if not name or path.is_absolute() or ".." in path.parts or "\\" in name:
            return {}, f"its {FILES_TAG} tag names {name!r}, not a path inside the version folder"
    from mlfleet.runtime.manifest import CANARY_FILE, MODEL_FILE

    missing = [f for f in (MODEL_FILE, CANARY_FILE, CONFIG_FILE) if f not in files]
    if missing:
        return files, f"its {FILES_TAG} tag does not list {', '.join(missing)}"
    return files, None


def _files_gate(session: _Session, model: str, version: str, model_version) -> tuple[Gate, dict[str, _Object]]:
    recorded, problem = _recorded_files(model_version)
    if problem:
        return Gate("candidate files", False, problem), {}
    found, problems = {}, []
    for file, expected in sorted(recorded.items()):
        key = session.candidate_key(model, version, file)
        obj = session.bucket.hash(key)
        if obj is None:
            problems.append(f"{file} is missing from s3://{session.bucket.name}/{key}")
        elif obj.sha256 != expected:
            problems.append(f"{file} has sha256 {obj.sha256[:12]}… in S3, {expected[:12]}… recorded (changed since "
                            "it was registered)")
        else:
            found[file] = obj
    if problems:
        return Gate("candidate files", False, "; ".join(problems)), {}
    total = sum(o.size for o in found.values())
    return Gate("candidate files", True, f"{len(found)} files, {total} bytes in "
                                         f"s3://{session.bucket.name}/{session.candidate_key(model, version, '')} "
                                         "match their recorded sha256"), found


# -- promote and rollback ----------------------------------------------------------------------
def promote(target: Target, model: str, version: str, *, dry_run: bool = False,
            progress: Callable[[str], None] = lambda line: None, credentials: AwsCredentials | None = None,
            uri: str | None = None) -> PromotionResult:
    """Make `model` v`version` the champion; PromotionRefused (exit 3, nothing changed) when a gate fails.

    `credentials`: the identity that acts and approves (default the target's: the sandbox's, or the
    default credential chain); `uri`: the writer's MLflow (default the sandbox's or the environment's)."""
    started = time.monotonic()
    session = _Session(target, credentials=credentials, uri=uri, progress=progress)
    mlflow = session.mlflow
    model_version = _model_version(mlflow, model, str(version))
    version = str(model_version.version)
    source_run = _run(mlflow, model_version.run_id)
    manifest_gate, manifest = session.manifest_gate()
    files_gate, objects = _files_gate(session, model, version, model_version)
    gates = [*_threshold_gates(session.env, mlflow, model_version, source_run),
             _lineage_gate(session.env, model_version, source_run),
             _author_gate(model_version, session.approver), files_gate, manifest_gate]
    previous = _current_champion(mlflow, model, manifest)
    result = PromotionResult("promote", model, version, dry_run, session.region, session.approver,
                             model_version.tags.get(AUTHOR_TAG), previous if previous != version else None, gates)
    result.timings_s["gates"] = time.monotonic() - started
    already = manifest is not None and model in manifest.models and manifest.models[model].champion == version
    result.plan = _plan(session, model, version, objects, result, already=already)
    if result.refusals or dry_run:
        return _finish(session, result, started, refused=bool(result.refusals))
    if already:
        result.notes.append(f"v{version} is already the champion in the signed manifest; only the aliases are set")
    else:
        _copy(session, result, objects)
        config = objects[CONFIG_FILE].sha256
        files = {f: o.sha256 for f, o in objects.items() if f != CONFIG_FILE}
        _write_manifest(session, result, _with_champion(manifest, model, version, files=files, config_sha256=config,
                                                        approved_by=session.approver))
    _set_aliases(session, result, model, version, previous=result.previous_champion)
    return _finish(session, result, started, refused=False)


def rollback(target: Target, model: str, *, dry_run: bool = False,
             progress: Callable[[str], None] = lambda line: None, credentials: AwsCredentials | None = None,
             uri: str | None = None) -> PromotionResult:
    """Re-pin the version MLflow's `previous-champion` alias names: behind the gates that still
    apply to a version approved before (the manifest verifies and lists it, its approved copy is
    intact, its config.pbtxt is the one recorded, the approver is not its author), re-signed."""
    from mlflow.exceptions import MlflowException

    started = time.monotonic()
    session = _Session(target, credentials=credentials, uri=uri, progress=progress)
    mlflow = session.mlflow
    _registered_model(mlflow, model)
    try:
        model_version = mlflow.get_model_version_by_alias(model, PREVIOUS_CHAMPION_ALIAS)
    except MlflowException as exc:
        if exc.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
            raise DrUsageError(f"model {model!r} has no {PREVIOUS_CHAMPION_ALIAS} alias in MLflow: "
                               "there is nothing to roll back to") from None
        raise PromotionFailed(f"MLflow: reading {model}@{PREVIOUS_CHAMPION_ALIAS}: {exc.message}") from None
    version = str(model_version.version)
    manifest_gate, manifest = session.manifest_gate()
    gates = [manifest_gate]
    objects: dict[str, _Object] = {}
    entry = manifest.models.get(model) if manifest else None
    if manifest_gate.ok and (entry is None or version not in entry.versions):
        gates.append(Gate("approved", False, f"v{version} is not an approved version of {model} in the manifest"))
    elif entry is not None:
        approved = entry.versions[version]
        gates.append(Gate("approved", True, f"v{version} approved by {approved.approved_by} at "
                                            f"{approved.approved_at.isoformat()}"))
        gates.append(_approved_copy_gate(session, model, version, approved.files))
        config_gate, objects = _rollback_config_gate(session, model, version, model_version)
        gates.append(config_gate)
    gates.append(_author_gate(model_version, session.approver))
    previous = entry.champion if entry is not None else None
    result = PromotionResult("rollback", model, version, dry_run, session.region, session.approver,
                             model_version.tags.get(AUTHOR_TAG), previous, gates)
    result.timings_s["gates"] = time.monotonic() - started
    result.plan = _plan(session, model, version, objects, result, already=False)
    if result.refusals or dry_run:
        return _finish(session, result, started, refused=bool(result.refusals))
    assert manifest is not None and entry is not None  # the gates hold
    _copy(session, result, objects)
    _write_manifest(session, result, _with_champion(manifest, model, version, files=None,
                                                    config_sha256=objects[CONFIG_FILE].sha256, approved_by=None))
    _set_aliases(session, result, model, version, previous=None)
    return _finish(session, result, started, refused=False)


def _copy(session: _Session, result: PromotionResult, objects: dict[str, _Object]) -> None:
    phase = time.monotonic()
    for file, obj in objects.items():
        session.bucket.copy(session.candidate_key(result.model, result.version, file), obj,
                            session.approved_key(result.model, result.version, file))
    result.timings_s["copy"] = time.monotonic() - phase


def _approved_copy_gate(session: _Session, model: str, version: str, files: dict[str, str]) -> Gate:
    problems = []
    for file, expected in sorted(files.items()):
        key = session.approved_key(model, version, file)
        obj = session.bucket.hash(key)
        if obj is None:
            problems.append(f"{file} is missing from s3://{session.bucket.name}/{key}")
        elif obj.sha256 != expected:
            problems.append(f"{file} has sha256 {obj.sha256[:12]}…, the manifest {expected[:12]}…")
    if problems:
        return Gate("approved copy", False, "; ".join(problems))
    return Gate("approved copy", True, f"{len(files)} files in s3://{session.bucket.name}/"
                                       f"{session.approved_key(model, version, '')} match the manifest")


def _rollback_config_gate(session: _Session, model: str, version: str, model_version) -> tuple[Gate, dict]:
    """The version's own config.pbtxt (the approved area holds the champion's only), from its candidate files."""
    recorded, _ = _recorded_files(model_version)
    expected = recorded.get(CONFIG_FILE)
    key = session.candidate_key(model, version, CONFIG_FILE)
    if expected is None:
        return Gate("config", False, f"the version's {FILES_TAG} tag records no {CONFIG_FILE}"), {}
    obj = session.bucket.hash(key)
    if obj is None:
        return Gate("config", False, f"{CONFIG_FILE} of v{version} is missing from "
                                     f"s3://{session.bucket.name}/{key}"), {}
    if obj.sha256 != expected:
        return Gate("config", False, f"{CONFIG_FILE} of v{version} has sha256 {obj.sha256[:12]}…, "
                                     f"{expected[:12]}… recorded"), {}
    return Gate("config", True, f"{CONFIG_FILE} of v{version} (sha256 {expected[:12]}) matches"), {CONFIG_FILE: obj}


def _current_champion(mlflow, model: str, manifest: Manifest | None) -> str | None:
    """The champion the manifest names, else the one MLflow's alias names (a first signed manifest)."""
    from mlflow.exceptions import MlflowException

    if manifest is not None and model in manifest.models:
        return manifest.models[model].champion
    try:
        return str(mlflow.get_model_version_by_alias(model, CHAMPION_ALIAS).version)
    except MlflowException:
        return None


def _with_champion(manifest: Manifest | None, model: str, version: str, *, files: dict[str, str] | None,
                   config_sha256: str, approved_by: str | None) -> bytes:
    """The manifest's bytes with `version` the champion of `model` (approved now by `approved_by`
    with `files`, unless it is approved already), every other model and version kept."""
    from mlfleet.runtime.manifest import Manifest

    data: dict = manifest.model_dump(mode="json") if manifest is not None else {"models": {}}
    entry = data["models"].setdefault(model, {"versions": {}})
    if files is not None:
        entry["versions"][version] = {
            "files": files, "approved_by": approved_by,
            "approved_at": datetime.now(timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")}
    entry["champion"] = version
    entry["config_sha256"] = config_sha256
    return (Manifest.model_validate(data).model_dump_json(indent=2) + "\n").encode()


def _write_manifest(session: _Session, result: PromotionResult, manifest: bytes) -> None:
    from mlfleet.runtime.manifest import sha256_bytes

    phase = time.monotonic()
    signature = session.signer.sign(manifest)
    session.bucket.write(session.manifest_key, manifest, if_match=session.manifest_etag,
                         content_type="application/json")
    try:
        session.bucket.put(session.signature_key, signature, content_type="application/json")
    except PromotionFailed:
        # A manifest without its signature is refused by every runtime and by the next promotion:
        # put back the manifest the old signature signs (or none), then report.
        if session.manifest_bytes is not None:
            session.bucket.put(session.manifest_key, session.manifest_bytes, content_type="application/json")
        else:
            session.bucket.delete(session.manifest_key)
        raise
    result.manifest_sha256, result.signature_key = sha256_bytes(manifest), session.signer.key_arn
    result.timings_s["sign"] = time.monotonic() - phase
    session.progress(f"manifest {result.manifest_sha256[:12]} signed with {session.signer.key_arn}")


def _set_aliases(session: _Session, result: PromotionResult, model: str, version: str, *,
                 previous: str | None) -> None:
    phase = time.monotonic()
    mlflow = session.mlflow
    _mlflow_call(f"set {model}@{CHAMPION_ALIAS}", mlflow.set_registered_model_alias, model, CHAMPION_ALIAS, version)
    if previous is not None:
        _mlflow_call(f"set {model}@{PREVIOUS_CHAMPION_ALIAS}", mlflow.set_registered_model_alias, model,
                     PREVIOUS_CHAMPION_ALIAS, previous)
    elif result.action == "rollback":  # rolled back: a second rollback must not re-pin the version just left
        _mlflow_call(f"remove {model}@{PREVIOUS_CHAMPION_ALIAS}", mlflow.delete_registered_model_alias, model,
                     PREVIOUS_CHAMPION_ALIAS)
    result.timings_s["alias"] = time.monotonic() - phase


def _plan(session: _Session, model: str, version: str, objects: dict[str, _Object], result: PromotionResult,
          *, already: bool) -> list[str]:
    where = f"s3://{session.bucket.name}/"
    if already:
        return [f"{model} v{version} is the champion in the manifest already: set the {CHAMPION_ALIAS} alias"]
    plan = [f"copy {where}{session.candidate_key(model, version, f)} -> {session.approved_key(model, version, f)}"
            for f in sorted(objects)]
    plan.append(f"write {where}{session.manifest_key} with {model} champion v{version}"
                + (f" (was v{result.previous_champion})" if result.previous_champion else ""))
    plan.append(f"sign it with alias/{session.signer.alias} in {session.region} into {session.signature_key}")
    plan.append(f"set MLflow alias {model}@{CHAMPION_ALIAS} -> v{version}"
                + (f", {model}@{PREVIOUS_CHAMPION_ALIAS} -> v{result.previous_champion}"
                   if result.previous_champion and result.action == "promote" else
                   f", remove {model}@{PREVIOUS_CHAMPION_ALIAS}" if result.action == "rollback" else ""))
    return plan


def _finish(session: _Session, result: PromotionResult, started: float, *, refused: bool) -> PromotionResult:
    from mlfleet.dr.audit import target_log

    result.timings_s["total"] = time.monotonic() - started
    if not result.dry_run:
        audit = target_log(session.target, actor=session.approver)
        record = audit.append(
            run_id=uuid.uuid4().hex, action=result.action, target=f"{result.model}/v{result.version}",
            result="refused" if refused else "ok",
            detail={"env": session.env.name, "region": session.region, "approver": result.approver,
                    "author": result.author, "previous_champion": result.previous_champion,
                    "gates": [{"gate": g.name, "ok": g.ok, "detail": g.detail} for g in result.gates],
                    "manifest_sha256": result.manifest_sha256, "signature_key": result.signature_key,
                    "timings_s": {k: round(v, 4) for k, v in result.timings_s.items()}})
        result.audit_head = record["hash"]
    if refused:
        raise PromotionRefused(result)
    return result


# -- what a training pipeline does ------------------------------------------------------------
@dataclass(frozen=True)
class DatasetRef:
    name: str
    digest: str
    source: str
    """Where the data lives, e.g. s3://bucket/datasets/train-2026-11.parquet"""


def register_candidate(target: Target, model: str, files: dict[str, bytes], *, metrics: dict[str, float],
                       datasets: list[DatasetRef], code_version: str | None,
                       credentials: AwsCredentials | None = None, uri: str | None = None,
                       region: str | None = None, evaluation_metrics: dict[str, float] | None = None) -> str:
    """Log a training run (metrics, dataset inputs with digests, the code version), register a new
    version of `model` with `mlfleet.author` (the caller's STS identity) and `mlfleet.files`, and
    upload `files` (model.pt, canary.json, config.pbtxt, …) to `<candidates>/<model>/<version>/`.
    `evaluation_metrics`: log them on a separate evaluation run named by `mlfleet.evaluation_run`.
    Returns the version MLflow assigned."""
    import os

    from mlflow.entities import Dataset, DatasetInput, Metric

    from mlfleet.runtime.manifest import sha256_bytes

    os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
    client = _clients(target, credentials)
    region = region or writer_region(target, client)
    author = caller_arn(client, region)
    mlflow = mlflow_client(uri or tracking_uri(target, region))
    bucket = _Bucket(client("s3", region), target.bucket(region))
    candidates = naming.candidates_prefix(target.env.artifact_store.models_prefix)
    experiment = _mlflow_call("read the Default experiment", mlflow.get_experiment_by_name, "Default")
    now_ms = int(time.time() * 1000)

    def logged_run(name: str, values: dict[str, float], tags: dict[str, str]) -> str:
        run = _mlflow_call("create a run", mlflow.create_run, experiment.experiment_id, tags=tags, run_name=name)
        _mlflow_call("log metrics", mlflow.log_batch, run.info.run_id,
                     metrics=[Metric(k, float(v), now_ms, 0) for k, v in values.items()])
        return run.info.run_id

    run_tags = {CODE_VERSION_TAG: code_version} if code_version else {}
    run_id = logged_run(f"train-{model}", metrics, run_tags)
    if datasets:
        _mlflow_call("log dataset inputs", mlflow.log_inputs, run_id, datasets=[
            DatasetInput(Dataset(name=d.name, digest=d.digest, source_type="s3", source=json.dumps({"uri": d.source})))
            for d in datasets])
    _mlflow_call("end the run", mlflow.set_terminated, run_id)
    tags = {AUTHOR_TAG: author, FILES_TAG: json.dumps({f: sha256_bytes(b) for f, b in sorted(files.items())})}
    if evaluation_metrics is not None:
        evaluation = logged_run(f"evaluate-{model}", evaluation_metrics, run_tags)
        _mlflow_call("end the evaluation run", mlflow.set_terminated, evaluation)
        tags[EVALUATION_RUN_TAG] = evaluation
    from mlflow.exceptions import MlflowException

    try:
        mlflow.create_registered_model(model)
    except MlflowException as exc:
        if exc.error_code != "RESOURCE_ALREADY_EXISTS":
            raise PromotionFailed(f"MLflow: create registered model {model}: {exc.message}") from None
    source = f"s3://{bucket.name}/{candidates}{model}/"
    version = str(_mlflow_call(f"create a version of {model}", mlflow.create_model_version, model, source,
                               run_id=run_id, tags=tags).version)
    for file, body in sorted(files.items()):
        bucket.put(f"{candidates}{model}/{version}/{file}", body, content_type="application/octet-stream")
    return version
