"""`mlfleet demo`'s promotion part, in the sandbox: a training identity registers a candidate of
the example model in the writer's MLflow, a review identity promotes it behind the environment's
gates (signed with the sandbox's KMS key), and every region's runtime is pinned to it once the
approved area has replicated — the path a new champion takes before the drill fails it over.

The sandbox's MLflow starts empty while its approved area already holds the example's versions
1 and 2 (seeded as a promotion leaves them): training's registrations of those two are recorded
first, so that MLflow's version numbers and the manifest's agree."""
from __future__ import annotations

from typing import Callable

from mlfleet.dr.promotion import AwsCredentials, DatasetRef, PromotionResult, promote, register_candidate
from mlfleet.dr.sandbox import EXAMPLE_MODEL, Sandbox
from mlfleet.dr.target import Target
from mlfleet.stacks.environment import naming

# What the example's training run logs: it meets every example environment's thresholds.
METRICS = {"accuracy": 0.97, "latency_p99_ms": 8.0, "calibration_error": 0.02}
DATASETS = [DatasetRef("demo-train", "5f1c0ffee0ddba11", "s3://datasets/demo-train.parquet")]
CODE_VERSION = "4b825dc642cb6eb9a060e54bf8d69288fbee4904"


def identities(box: Sandbox) -> dict[str, tuple[str, AwsCredentials]]:
    """A training and a review identity: IAM users of the sandbox's moto (ARN, credentials)."""
    iam = box.client("iam", box.env.primary.name, direct=True)
    made = {}
    for purpose in ("training", "review"):
        name = f"mlfleet-{box.env.name}-demo-{purpose}"
        arn = iam.create_user(UserName=name)["User"]["Arn"]
        key = iam.create_access_key(UserName=name)["AccessKey"]
        made[purpose] = (arn, AwsCredentials(key["AccessKeyId"], key["SecretAccessKey"]))
    return made


def promote_a_candidate(box: Sandbox, target: Target, say: Callable[[str], None]) -> PromotionResult:
    people = identities(box)
    training, review = people["training"][1], people["review"][1]
    repository = box.example_repository
    config = (repository / EXAMPLE_MODEL / "config.pbtxt").read_bytes()

    def files(version: str) -> dict[str, bytes]:
        folder = repository / EXAMPLE_MODEL / version
        return {**{p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}, "config.pbtxt": config}

    def register(version_files: dict[str, bytes]) -> str:
        return register_candidate(target, EXAMPLE_MODEL, version_files, metrics=METRICS, datasets=DATASETS,
                                  code_version=CODE_VERSION, credentials=training)

    for approved in ("1", "2"):  # the history the approved area already holds
        register(files(approved))
    candidate = register(files("2"))  # retrained: the same architecture, a new version
    say(f"training ({people['training'][0]}) registered {EXAMPLE_MODEL} v{candidate}; "
        f"review ({people['review'][0]}) promotes it")
    result = promote(target, EXAMPLE_MODEL, candidate, credentials=review, progress=say)
    for gate in result.gates:
        say(f"  {gate.line()}")
    timings = ", ".join(f"{phase} {seconds * 1000:.0f} ms" for phase, seconds in result.timings_s.items())
    say(f"  signed by {result.signature_key}; {timings}")
    approved = naming.approved_prefix(box.env.artifact_store.models_prefix)
    copied = [f"{approved}{EXAMPLE_MODEL}/{candidate}/{name}" for name in files("2") if name != "config.pbtxt"]
    box.wait_replicated(copied + [approved + naming.MANIFEST_FILE, approved + naming.MANIFEST_SIGNATURE_FILE])
    for region in box.env.regions:
        box.pin(region.name, candidate, reload_manifest=True)  # the runtime verifies the new signature first
    say(f"  {EXAMPLE_MODEL} v{candidate} pinned in {', '.join(r.name for r in box.env.regions)}")
    return result
