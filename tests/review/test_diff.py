"""The review's difference from a base: a base synth directory or a git ref, and the loud
warning when a change replaces or deletes a stateful resource."""
from __future__ import annotations

import copy
import subprocess

import pytest

from mlfleet.stacks.environment import load_environment
from mlfleet.stacks.environment.errors import MlfleetError
from mlfleet.stacks.review.base import load_base
from mlfleet.stacks.review.diff import compare
from mlfleet.stacks.review.report import build_review, render_markdown
from mlfleet.stacks.review.synth import synthesize_for_review


@pytest.fixture(scope="module")
def changed_prod():
    """prod with the object lock dropped (replaces every bucket) and the standby warm size raised."""
    env = load_environment("prod")
    data = env.model_dump()
    data["artifact_store"]["object_lock"] = None
    data["gpu_pools"][0]["warm_standby"] = 3
    changed = type(env).model_validate(data)
    return changed, synthesize_for_review(changed)


def test_stateful_replacement_is_a_loud_warning(examples, changed_prod):
    _, base_stacks, _ = examples["prod"]
    env, (stacks, findings) = changed_prod
    review = build_review(env, base=(base_stacks, "test base"), synthesized=(stacks, findings), run_checkov=False)
    assert review.diff is not None
    warnings = review.diff.warnings
    assert {(w.stack, w.rtype, w.action) for w in warnings} == {
        (f"prod-{r}", "aws_s3_bucket", "replaced") for r in ("us-east-1", "us-west-2", "us-east-2")}
    bucket = warnings[0]
    assert "object_lock_enabled" in bucket.paths and "object_lock_enabled cannot change in place" in bucket.note
    markdown = render_markdown(review)
    assert markdown.count("**WARNING: this change REPLACES stateful resource") == 3
    scaled = [c for c in review.diff.changes if c.stack == "prod-us-west-2" and c.rtype == "aws_eks_node_group"
              and "scaling_config.min_size" in c.paths]
    assert len(scaled) == 1 and scaled[0].action == "changed" and not scaled[0].destructive
    removed = {c.rtype for c in review.diff.changes if c.action == "removed"}
    assert "aws_s3_bucket_object_lock_configuration" in removed


def test_unchanged_environment_has_an_empty_diff(examples):
    _, stacks, _ = examples["staging"]
    assert compare(stacks, copy.deepcopy(stacks), "same").empty


def _bucket_stack(logical: str, name: str, **extra) -> dict:
    return {"resource": {"aws_s3_bucket": {logical: {"bucket": name, **extra}}}}


def test_changed_logical_id_of_a_stateful_resource_is_destroy_and_create():
    diff = compare({"s": _bucket_stack("old_1", "data")}, {"s": _bucket_stack("new_2", "data")}, "b")
    [removed] = [c for c in diff.changes if c.action == "removed"]
    assert removed.destructive and "aws_s3_bucket.new_2" in removed.note
    assert [w.address for w in diff.warnings] == ["aws_s3_bucket.old_1"]


def test_lifecycle_ignored_attributes_do_not_replace():
    base = {"s": {"resource": {"aws_rds_cluster": {"c": {
        "cluster_identifier": "db", "global_cluster_identifier": "g1",
        "lifecycle": {"ignore_changes": ["global_cluster_identifier"]}}}}}}
    head = copy.deepcopy(base)
    head["s"]["resource"]["aws_rds_cluster"]["c"]["global_cluster_identifier"] = "g2"
    [change] = compare(base, head, "b").changes
    assert change.action == "changed" and change.ignored == ("global_cluster_identifier",)
    head["s"]["resource"]["aws_rds_cluster"]["c"]["cluster_identifier"] = "db2"
    [change] = compare(base, head, "b").changes
    assert change.action == "replaced" and change.destructive


def test_base_directory_of_a_previous_synth(tmp_path, examples):
    env, stacks, _ = examples["staging"]
    from mlfleet.stacks.app import build_app

    app, _ = build_app([env], tmp_path / "cdktf.out")
    app.synth()
    base, label = load_base(str(tmp_path / "cdktf.out"), "staging", tmp_path / "unused.yaml")
    assert base == stacks and "cdktf.out" in label
    with pytest.raises(MlfleetError, match="no stack of environment prod"):
        load_base(str(tmp_path / "cdktf.out"), "prod", tmp_path / "unused.yaml")
    (tmp_path / "empty").mkdir()
    with pytest.raises(MlfleetError, match=r"no stacks/<name>/cdk.tf.json"):
        load_base(str(tmp_path / "empty"), "prod", tmp_path / "unused.yaml")


def _git(repo, home):
    """A git of its own in `repo`: no user configuration, a fixed identity."""
    def git(*args):
        subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True,
                       env={"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.com", "GIT_COMMITTER_NAME": "t",
                            "GIT_COMMITTER_EMAIL": "t@example.com", "HOME": str(home), "PATH": "/usr/bin:/bin"})
    return git


def test_base_git_ref_synthesizes_the_environment_file_of_that_ref(tmp_path, examples):
    from mlfleet.stacks.environment import ENVIRONMENTS_DIR

    repo = tmp_path / "repo"
    repo.mkdir()
    env_file = repo / "staging.yaml"
    original = (ENVIRONMENTS_DIR / "staging.yaml").read_text()
    env_file.write_text(original)
    git = _git(repo, tmp_path)
    git("init", "-q")
    git("add", "staging.yaml")
    git("commit", "-q", "-m", "base")
    env_file.write_text(original.replace("max_size: 6", "max_size: 8"))
    base, label = load_base("HEAD", "staging", env_file)
    _, stacks, _ = examples["staging"]
    assert base == stacks and label.startswith("git HEAD (")
    with pytest.raises(MlfleetError, match="neither a directory nor a git ref"):
        load_base("no-such-ref", "staging", env_file)


def test_base_git_ref_from_before_the_examples_moved_reads_their_former_path(tmp_path, examples):
    from mlfleet.stacks.environment import ENVIRONMENTS_DIR

    repo = tmp_path / "repo"
    former = repo / "stacks" / "environments" / "staging.yaml"
    former.parent.mkdir(parents=True)
    original = (ENVIRONMENTS_DIR / "staging.yaml").read_text()
    former.write_text(original)
    git = _git(repo, tmp_path)
    git("init", "-q")
    git("add", "stacks")
    git("commit", "-q", "-m", "before the move")
    env_file = repo / "stacks" / "environment" / "examples" / "staging.yaml"
    env_file.parent.mkdir(parents=True)
    env_file.write_text(original.replace("max_size: 6", "max_size: 8"))
    former.unlink()
    base, label = load_base("HEAD", "staging", env_file)
    _, stacks, _ = examples["staging"]
    assert base == stacks and label.endswith(" stacks/environments/staging.yaml")
    git("add", "-A", "stacks")
    git("commit", "-q", "-m", "the move")
    base, label = load_base("HEAD", "staging", env_file)
    assert base != stacks and label.endswith(" stacks/environment/examples/staging.yaml")
    assert load_base("HEAD~1", "staging", repo / "stacks" / "environment" / "examples" / "dev.yaml")[0] == {}


def test_renaming_the_dms_replica_replaces_what_dms_replicates_into():
    def stack(profile_id: str) -> dict:
        return {"s": {"resource": {"google_database_migration_service_connection_profile": {"dest": {
            "connection_profile_id": profile_id, "location": "us-central1",
            "cloudsql": {"settings": {"tier": "db-perf-optimized-N-2"}}}}}}}

    diff = compare(stack("mlfleet-hybrid-registry-us-central1"), stack("mlfleet-hybrid-registry-usc1"), "b")
    [change] = diff.changes
    assert change.action == "replaced" and change.destructive
    assert [w.rtype for w in diff.warnings] == ["google_database_migration_service_connection_profile"]
