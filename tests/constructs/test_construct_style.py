"""The construct style the AWS Construct Library guidelines ask for: a pool takes its cluster (and
keeps its Terraform address), the store writes the grants over its models, "one of" props are
factories, and one pure-Python module owns every name shape."""
from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

from mlfleet.constructs.aws.artifact_grants import ArtifactBucket, PolicyStatements
from mlfleet.constructs.aws.eks_cluster import EksCluster, EksClusterProps
from mlfleet.constructs.aws.eks_gpu_node_pool import EksGpuPoolOptions, Reservation
from mlfleet.constructs.aws.eks_system_node_pool import EksSystemPoolOptions
from mlfleet.constructs.aws.network import ExistingNetwork, VpcNetworkProps
from mlfleet.constructs.gcp.gke_gpu_node_pool import GkeGpuPoolOptions, ReservationAffinity
from mlfleet.constructs.gcp.kms_key import crypto_key_id
from mlfleet.constructs.validation import PropsError

from helpers.template import only_resource, resources

REPO_ROOT = Path(__file__).resolve().parents[2]
ACCOUNT = "111111111111"
SUBNETS = ("subnet-0aaaaaaaaaaaaaaa1", "subnet-0aaaaaaaaaaaaaaa2", "subnet-0aaaaaaaaaaaaaaa3")


def _eks(stack) -> EksCluster:
    return EksCluster(stack, "cluster", EksClusterProps(
        name="mlfleet-prod-us-east-1", account_id=ACCOUNT, region="us-east-1", subnet_ids=SUBNETS))


def _gpu(**overrides) -> EksGpuPoolOptions:
    return EksGpuPoolOptions(**{**dict(name="infer-gpu", instance_types=("g6.12xlarge",), gpus_per_node=4,
                                       min_size=1, max_size=4), **overrides})


def test_an_eks_gpu_pool_takes_its_cluster_and_keeps_its_address_beside_it(synth):
    built = {}

    def build(stack):
        cluster = built["cluster"] = _eks(stack)
        built["pool"] = cluster.add_gpu_pool("pool-infer", _gpu())
        built["efa"] = cluster.add_gpu_pool("pool-train", _gpu(
            name="train-gpu", instance_types=("p5.48xlarge",), gpus_per_node=8, efa_interfaces=32))
        built["system"] = cluster.add_system_pool("system-pool", EksSystemPoolOptions(min_size=3))

    tf = synth(build)
    # Beside the cluster, as a stack creates them: the pools' Terraform addresses do not move.
    assert [built[k].node.path for k in ("pool", "efa", "system")] == [
        "test/pool-infer", "test/pool-train", "test/system-pool"]
    cluster_id = only_resource(tf, "aws_eks_cluster") and next(iter(resources(tf, "aws_eks_cluster")))
    groups = {g["node_group_name"]: g for g in resources(tf, "aws_eks_node_group").values()}
    assert set(groups) == {"infer-gpu", "train-gpu", "system"}
    node_role = next(n for n, r in resources(tf, "aws_iam_role").items() if r["name"].endswith("-node"))
    for group in groups.values():
        assert group["cluster_name"] == f"${{aws_eks_cluster.{cluster_id}.name}}"
        assert group["node_role_arn"] == f"${{aws_iam_role.{node_role}.arn}}"
    assert groups["infer-gpu"]["subnet_ids"] == list(SUBNETS) == groups["system"]["subnet_ids"]
    assert groups["system"]["scaling_config"]["min_size"] == 3
    # EFA: one AZ (the placement group's) and the cluster security group on every interface.
    assert groups["train-gpu"]["subnet_ids"] == [SUBNETS[0]]
    templates = {t["name_prefix"] if "name_prefix" in t else t["name"]: t
                 for t in resources(tf, "aws_launch_template").values()}
    efa_template = next(t for t in templates.values() if t.get("network_interfaces"))
    assert {tuple(i["security_groups"]) for i in efa_template["network_interfaces"]} == {
        (f"${{aws_eks_cluster.{cluster_id}.vpc_config[0].cluster_security_group_id}}",)}
    # Every pool encrypts its volumes with the cluster's key: no key of its own.
    assert len(resources(tf, "aws_kms_key")) == 1


def test_a_gke_gpu_pool_takes_its_cluster_and_keeps_its_address_beside_it(synth):
    from cdktn_provider_google.provider import GoogleProvider

    from mlfleet.constructs.gcp.gke_cluster import GkeCluster, GkeClusterProps

    project, region = "mlfleet-prod", "us-central1"
    key = crypto_key_id(project, region, "mlfleet-prod-usc1", "gke")
    built = {}

    def build(stack):
        GoogleProvider(stack, "google", project=project, region=region)
        cluster = GkeCluster(stack, "cluster", GkeClusterProps(
            project_id=project, project_number="123456789012", region=region, name="mlfleet-prod-usc1",
            network=f"projects/{project}/global/networks/mlfleet",
            subnetwork=f"projects/{project}/regions/{region}/subnetworks/mlfleet-usc1",
            pods_range_name="pods", services_range_name="services", kms_key_id=key))
        built["pool"] = cluster.add_gpu_pool("pool-infer", GkeGpuPoolOptions(
            name="infer-gpu", node_locations=("us-central1-a",), machine_type="g2-standard-8",
            accelerator_type="nvidia-l4", accelerator_count=1, max_size=4,
            reservation=ReservationAffinity.specific("l4-usc1")))

    tf = synth(build, with_provider=False)
    assert built["pool"].node.path == "test/pool-infer"
    gpu_pool = next(p for p in resources(tf, "google_container_node_pool").values() if p["name"] == "infer-gpu")
    cluster_id = next(iter(resources(tf, "google_container_cluster")))
    account = next(iter(resources(tf, "google_service_account")))
    assert gpu_pool["cluster"] == f"${{google_container_cluster.{cluster_id}.id}}"
    assert gpu_pool["location"] == region and gpu_pool["project"] == project
    assert gpu_pool["node_config"]["service_account"] == f"${{google_service_account.{account}.email}}"
    assert gpu_pool["node_config"]["boot_disk_kms_key"] == key
    assert gpu_pool["node_config"]["reservation_affinity"]["values"] == ["l4-usc1"]


def test_reservation_factories_name_exactly_what_their_kind_needs():
    assert ReservationAffinity.none() == ReservationAffinity(type="NONE")
    assert ReservationAffinity.any() == ReservationAffinity()
    assert ReservationAffinity.specific("r1") == ReservationAffinity(type="SPECIFIC", name="r1")
    assert Reservation.odcr("cr-0123456789abcdef0") != Reservation.capacity_block("cr-0123456789abcdef0")
    existing = ExistingNetwork(vpc_id="vpc-0123456789abcdef0", private_subnet_ids=SUBNETS[:2], cidr="10.0.0.0/16")
    assert VpcNetworkProps.import_existing(existing) == VpcNetworkProps(existing=existing)
    assert VpcNetworkProps.create(cidr="10.20.0.0/16", availability_zones=("us-east-1a",), nat_gateways="single") \
        == VpcNetworkProps(cidr="10.20.0.0/16", availability_zones=("us-east-1a",), nat_gateways="single")


def test_the_artifact_bucket_writes_each_partys_statements_in_grant_order():
    bucket = ArtifactBucket(bucket_name="mlfleet-prod-artifacts", key_arn="arn:aws:kms:us-east-1:1:key/k",
                            region="us-east-1")
    grantee = PolicyStatements()
    bucket.grant_read_approved(grantee)
    bucket.grant_write_candidates(grantee)
    assert [s["Sid"] for s in grantee.statements] == [
        "ReadApproved", "DecryptArtifacts",
        "WriteCandidates", "ReadCandidates", "ListCandidates", "EncryptUploads", "DenyApprovedWrites"]
    by_sid = {s["Sid"]: s for s in grantee.statements}
    assert by_sid["ReadApproved"]["Resource"] == "arn:aws:s3:::mlfleet-prod-artifacts/models/approved/*"
    assert bucket.manifest_key == "models/approved/manifest.json"
    assert bucket.manifest_signature_key == "models/approved/manifest.json.sig"
    assert by_sid["DecryptArtifacts"]["Condition"] == {
        "StringEquals": {"kms:ViaService": "s3.us-east-1.amazonaws.com"}}
    assert (by_sid["DenyApprovedWrites"]["Effect"], by_sid["DenyApprovedWrites"]["Resource"]) == (
        "Deny", "arn:aws:s3:::mlfleet-prod-artifacts/models/approved/*")


def test_the_gcs_artifact_bucket_grants_in_the_grantees_scope(synth):
    from cdktn_provider_google.provider import GoogleProvider
    from constructs import Construct

    from mlfleet.constructs.gcp.artifact_grants import GcsArtifactBucket

    def build(stack):
        GoogleProvider(stack, "google", project="mlfleet-prod", region="us-central1")
        grantee = Construct(stack, "identity")
        grant = GcsArtifactBucket(bucket_name="mlfleet-prod-artifacts").grant_read_approved(
            grantee, "serving-approved-read", "serviceAccount:s@mlfleet-prod.iam.gserviceaccount.com")
        assert grant.node.path == "test/identity/serving-approved-read"

    binding = only_resource(synth(build, with_provider=False), "google_storage_bucket_iam_member")
    assert binding["role"] == "roles/storage.objectViewer"
    assert binding["condition"]["expression"] == (
        'resource.name.startsWith("projects/_/buckets/mlfleet-prod-artifacts/objects/models/approved/")')


def test_validation_is_pure_python_and_loads_no_cdk():
    # The environment core checks names against the same shapes: importing them must not start jsii.
    probe = ("import sys, mlfleet.constructs.validation as v; "
             "assert v.S3_BUCKET_NAME.match('mlfleet-prod'); "
             "print(sorted(m for m in sys.modules if m.split('.')[0] in ('jsii', 'constructs', 'cdktn')))")
    out = subprocess.run([sys.executable, "-c", probe], cwd=REPO_ROOT, capture_output=True, text=True,
                         check=True).stdout.strip()
    assert out == "[]"


# Value formats of one service, not names: they stay beside the one construct that reads them.
LOCAL_FORMATS = {
    "aws/aurora_registry.py": {"_ENGINE_VERSION"},
    "aws/eks_cluster.py": {"_VERSION"},
    "aws/eks_system_node_pool.py": {"_ARM_FAMILY"},
    "gcp/cloud_sql_registry.py": {"_TIER", "_HHMM"},
    "gcp/gke_gpu_node_pool.py": {"_MIG_PARTITION"},
    "serving_deployment.py": {"_QUANTITY"},
}


def test_every_name_shape_lives_in_the_validation_module():
    constructs = REPO_ROOT / "constructs"
    found: dict[str, set[str]] = {}
    for path in sorted(constructs.rglob("*.py")):
        rel = path.relative_to(constructs).as_posix()
        if rel == "validation.py" or rel.startswith("policy"):
            continue
        names = set(re.findall(r"^(\w+) = re\.compile\(", path.read_text(), flags=re.MULTILINE))
        if names:
            found[rel] = names
    assert found == LOCAL_FORMATS


def test_every_optional_prop_documents_its_default():
    missing = []
    for path in sorted((REPO_ROOT / "constructs").rglob("*.py")):
        if path.relative_to(REPO_ROOT / "constructs").as_posix().startswith("policy"):
            continue  # the policy pass's findings and rules, not construct props
        for node in ast.walk(ast.parse(path.read_text())):
            if not (isinstance(node, ast.ClassDef) and any("dataclass" in ast.unparse(d) for d in node.decorator_list)):
                continue
            for field_, after in zip(node.body, node.body[1:] + [None], strict=True):
                if isinstance(field_, ast.AnnAssign) and field_.value is not None:
                    doc = after.value.value if isinstance(after, ast.Expr) and isinstance(after.value, ast.Constant) \
                        else ""
                    if "default" not in str(doc).lower():
                        missing.append(f"{path.relative_to(REPO_ROOT)}: {node.name}.{ast.unparse(field_.target)}")
    assert missing == []


def test_watches_are_made_from_the_pool_and_the_store_they_watch(synth):
    from mlfleet.constructs.aws.monitoring import GpuCapacityWatch, ReplicationWatch
    from mlfleet.constructs.aws.s3_artifact_store import ReplicaTarget, S3ArtifactStore, S3ArtifactStoreProps

    built = {}

    def build(stack):
        built["pool"] = _eks(stack).add_gpu_pool("pool-infer", _gpu(min_size=2))
        built["store"] = S3ArtifactStore(stack, "artifacts", S3ArtifactStoreProps(
            bucket_name="mlfleet-prod-use1", account_id=ACCOUNT, region="us-east-1", role="primary",
            key_alias="mlfleet-prod-artifacts",
            replicate_to=(ReplicaTarget(region="us-west-2", bucket_name="mlfleet-prod-usw2"),)))

    synth(build)
    pool = GpuCapacityWatch.of_pool(built["pool"])
    assert (pool.pool, pool.minimum_in_service) == ("infer-gpu", 2)
    assert pool.autoscaling_group_name == built["pool"].autoscaling_group_name
    assert ReplicationWatch.of_store(built["store"]) == (ReplicationWatch(
        source_bucket="mlfleet-prod-use1", destination_bucket="mlfleet-prod-usw2", rule_id="replicate-to-us-west-2"),)


def test_a_name_with_a_trailing_newline_is_refused(synth):
    # A pattern's `$` also matches before a final newline: every shape is checked whole.
    for props in (dict(account_id=ACCOUNT + "\n"), dict(region="us-east-1\n"), dict(name="mlfleet-prod\n")):
        with pytest.raises(PropsError):
            synth(lambda stack, props=props: EksCluster(stack, "cluster", EksClusterProps(**{
                **dict(name="mlfleet-prod-us-east-1", account_id=ACCOUNT, region="us-east-1", subnet_ids=SUBNETS),
                **props})))
