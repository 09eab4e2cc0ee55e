"""The constructs that join an AWS primary to a Google Cloud standby: the Storage Transfer job
and the AWS role it assumes (artifacts), and the Database Migration Service replica (registry).
Least privilege on both sides, CMEK and private IPs, validation with the prop's name."""
from __future__ import annotations

import json

import pytest

from mlfleet.constructs.aws.gcs_transfer_role import S3ToGcsTransferRole, S3ToGcsTransferRoleProps
from mlfleet.constructs.gcp.artifact_grants import GcsArtifactBucket
from mlfleet.constructs.gcp.cloud_sql_registry import CloudSqlInstanceSettings
from mlfleet.constructs.gcp.cross_cloud_artifact_copy import S3ToGcsTransfer, S3ToGcsTransferProps
from mlfleet.constructs.gcp.cross_cloud_registry import AuroraToCloudSqlReplica, AuroraToCloudSqlReplicaProps
from mlfleet.constructs.gcp.kms_key import crypto_key_id
from mlfleet.constructs.policy import evaluate_terraform
from mlfleet.constructs.validation import PropsError

from helpers.template import only_resource, resources

PROJECT, NUMBER, REGION = "mlfleet-prod", "123456789012", "us-central1"
NETWORK = f"projects/{PROJECT}/global/networks/mlfleet-prod"
KEY = crypto_key_id(PROJECT, REGION, "r", "registry")
ROLE_ARN = "arn:aws:iam::111111111111:role/mlfleet-prod-us-east-1-gcs-transfer"


def google(build):
    from cdktn_provider_google.provider import GoogleProvider

    def _build(stack):
        GoogleProvider(stack, "google", project=PROJECT, region=REGION)
        return build(stack)
    return _build


def role_props(**overrides) -> S3ToGcsTransferRoleProps:
    return S3ToGcsTransferRoleProps(**{**dict(
        role_name="mlfleet-prod-us-east-1-gcs-transfer", account_id="111111111111",
        bucket_name="mlfleet-prod-111111111111-us-east-1",
        key_arn="arn:aws:kms:us-east-1:111111111111:key/0b1c2d3e-4f50-6172-8394-a5b6c7d8e9f0",
        transfer_agent_subject_id="104444444444444444444"), **overrides})


def transfer_props(**overrides) -> S3ToGcsTransferProps:
    return S3ToGcsTransferProps(**{**dict(
        project_id=PROJECT, project_number=NUMBER, source_bucket="mlfleet-prod-111111111111-us-east-1",
        source_region="us-east-1", role_arn=ROLE_ARN,
        destination=GcsArtifactBucket(bucket_name="mlfleet-prod-models")), **overrides})


def replica_props(**overrides) -> AuroraToCloudSqlReplicaProps:
    return AuroraToCloudSqlReplicaProps(**{**dict(
        project_id=PROJECT, project_number=NUMBER, region=REGION, instance_name="mlfleet-prod-registry-usc1",
        source_host="mlfleet-prod-registry.cluster-c0abc.us-east-1.rds.amazonaws.com",
        password_secret="mlfleet-prod-registry-replication", private_network=NETWORK, kms_key_id=KEY), **overrides})


def test_transfer_role_trusts_only_the_projects_agent_and_reads_only_models(synth):
    tf = synth(lambda s: S3ToGcsTransferRole(s, "transfer", role_props()))
    role = only_resource(tf, "aws_iam_role")
    (trust,) = json.loads(role["assume_role_policy"])["Statement"]
    assert trust == {"Effect": "Allow", "Principal": {"Federated": "accounts.google.com"},
                     "Action": "sts:AssumeRoleWithWebIdentity",
                     "Condition": {"StringEquals": {"accounts.google.com:sub": "104444444444444444444"}}}
    statements = {s["Sid"]: s for s in json.loads(only_resource(tf, "aws_iam_role_policy")["policy"])["Statement"]}
    bucket = "arn:aws:s3:::mlfleet-prod-111111111111-us-east-1"
    assert statements["ReadModels"]["Resource"] == f"{bucket}/models/*"
    assert statements["ListModels"]["Condition"] == {"StringLike": {"s3:prefix": "models/*"}}
    assert statements["DecryptModels"]["Condition"] == {
        "StringEquals": {"kms:ViaService": "s3.us-east-1.amazonaws.com"}}
    assert all(s["Effect"] == "Allow" and "*" not in s["Action"] for s in statements.values())
    assert not [f for f in evaluate_terraform("aws", tf) if f.rule != "MLF006"]


def test_transfer_job_copies_hourly_into_the_mirror_prefix_only(synth):
    tf = synth(google(lambda s: S3ToGcsTransfer(s, "transfer", transfer_props())), with_provider=False)
    job = only_resource(tf, "google_storage_transfer_job")
    spec = job["transfer_spec"]
    assert spec["aws_s3_data_source"] == {"bucket_name": "mlfleet-prod-111111111111-us-east-1", "path": "models/",
                                          "role_arn": ROLE_ARN}
    assert spec["gcs_data_sink"] == {"bucket_name": "mlfleet-prod-models", "path": "models/mirror/us-east-1/"}
    assert spec["transfer_options"]["delete_objects_unique_in_sink"] is False
    assert job["schedule"]["repeat_interval"] == "3600s" and job["status"] == "ENABLED"
    grants = resources(tf, "google_storage_bucket_iam_member")
    assert {g["role"] for g in grants.values()} == {"roles/storage.legacyBucketReader", "roles/storage.objectUser"}
    writer = next(g for g in grants.values() if g["role"] == "roles/storage.objectUser")
    assert writer["member"] == f"serviceAccount:project-{NUMBER}@storage-transfer-service.iam.gserviceaccount.com"
    assert writer["condition"]["expression"] == \
        'resource.name.startsWith("projects/_/buckets/mlfleet-prod-models/objects/models/mirror/us-east-1/")'
    assert len(job["depends_on"]) == 2  # the job runs only once the agent may write
    assert [f for f in evaluate_terraform("gcp", tf) if f.rule != "MLF006"] == []


def test_dms_replica_is_private_encrypted_and_continuous(synth):
    settings = CloudSqlInstanceSettings(tier="db-perf-optimized-N-4")
    tf = synth(google(lambda s: AuroraToCloudSqlReplica(s, "registry", replica_props(settings=settings))),
               with_provider=False)
    profiles = {p["connection_profile_id"]: p
                for p in resources(tf, "google_database_migration_service_connection_profile").values()}
    source = profiles["mlfleet-prod-registry-usc1-source"]["postgresql"]
    assert source["host"] == "mlfleet-prod-registry.cluster-c0abc.us-east-1.rds.amazonaws.com"
    assert source["ssl"] == {"type": "REQUIRED"} and source["username"] == "mlfleet_replication"
    assert source["password"].startswith("${data.google_secret_manager_secret_version.")
    destination = profiles["mlfleet-prod-registry-usc1"]["cloudsql"]["settings"]
    assert destination["cmek_key_name"] == KEY and destination["edition"] == "ENTERPRISE_PLUS"
    assert destination["ip_config"] == {"enable_ipv4": False, "private_network": NETWORK, "require_ssl": True}
    assert destination["tier"] == "db-perf-optimized-N-4"
    assert destination["database_flags"]["cloudsql.iam_authentication"] == "on"
    assert destination["source_id"].startswith("${google_database_migration_service_connection_profile.")
    job = only_resource(tf, "google_database_migration_service_migration_job")
    assert job["type"] == "CONTINUOUS" and job["vpc_peering_connectivity"] == {"vpc": NETWORK}
    assert job["deletion_policy"] == "ABANDON"
    assert tf["output"]["registry_replica_instance"]["value"] == "mlfleet-prod-registry-usc1"
    assert [f for f in evaluate_terraform("gcp", tf) if f.rule != "MLF006"] == []


def test_a_ca_certificate_verifies_the_source(synth):
    pem = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
    tf = synth(google(lambda s: AuroraToCloudSqlReplica(s, "registry", replica_props(source_ca_certificate=pem))),
               with_provider=False)
    source = next(p for p in resources(tf, "google_database_migration_service_connection_profile").values()
                  if "postgresql" in p)
    assert source["postgresql"]["ssl"] == {"type": "SERVER_ONLY", "ca_certificate": pem}


def test_policy_catches_a_public_dms_destination(synth):
    def build(stack):
        replica = AuroraToCloudSqlReplica(stack, "registry", replica_props())
        destination = next(c for c in replica.node.children if c.node.id == "destination")
        destination.add_override("cloudsql.settings.ip_config.enable_ipv4", True)
        destination.add_override("cloudsql.settings.cmek_key_name", None)

    tf = synth(google(build), with_provider=False)
    rules = sorted(f.rule for f in evaluate_terraform("gcp", tf) if f.rule != "MLF006")
    assert rules == ["MLF001", "MLF002"]


@pytest.mark.parametrize("build,prop", [
    (lambda s: S3ToGcsTransferRole(s, "t", role_props(transfer_agent_subject_id="agent@x")),
     "transfer_agent_subject_id"),
    (lambda s: S3ToGcsTransferRole(s, "t", role_props(models_prefix="/models")), "models_prefix"),
    (lambda s: S3ToGcsTransfer(s, "t", transfer_props(repeat_interval_seconds=600)), "repeat_interval_seconds"),
    (lambda s: S3ToGcsTransfer(s, "t", transfer_props(role_arn="arn:aws:iam::1:role/x")), "role_arn"),
    (lambda s: S3ToGcsTransfer(s, "t", transfer_props(source_region="us-central1")), "source_region"),
    (lambda s: AuroraToCloudSqlReplica(s, "r", replica_props(source_host="10.0.0.1:5432")), "source_host"),
    (lambda s: AuroraToCloudSqlReplica(s, "r", replica_props(kms_key_id=crypto_key_id(PROJECT, "us-east1", "r", "k"))),
     "kms_key_id"),
    (lambda s: AuroraToCloudSqlReplica(s, "r", replica_props(password_secret="a/b")), "password_secret"),
])
def test_invalid_props_name_the_prop(synth, build, prop):
    with pytest.raises(PropsError) as info:
        synth(google(build), with_provider=False)
    assert info.value.prop == prop
