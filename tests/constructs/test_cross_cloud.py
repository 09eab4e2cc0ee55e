"""The constructs that join an AWS primary to a Google Cloud standby: the Storage Transfer job
and the AWS role it assumes (artifacts), and the Database Migration Service replica (registry).
Least privilege on both sides, CMEK and private IPs, validation with the prop's name."""
from __future__ import annotations

import json
from datetime import datetime, timezone

import pytest

from mlfleet.constructs.acknowledgements import acknowledgements_for
from mlfleet.constructs.aws.gcs_transfer_role import S3ToGcsTransferRole, S3ToGcsTransferRoleProps
from mlfleet.constructs.aws.kms_key import KmsKey, KmsKeyProps
from mlfleet.constructs.aws.rds_ca import rds_ca_bundle
from mlfleet.constructs.gcp.artifact_grants import GcsArtifactBucket
from mlfleet.constructs.gcp.cloud_sql_registry import AUDIT_FLAGS, CloudSqlInstanceSettings
from mlfleet.constructs.gcp.cross_cloud_artifact_copy import S3ToGcsTransfer, S3ToGcsTransferProps
from mlfleet.constructs.gcp.cross_cloud_registry import (
    STATE_PASSWORD_REASON,
    AuroraToCloudSqlReplica,
    AuroraToCloudSqlReplicaProps,
)
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
    built = {}
    tf = synth(google(lambda s: built.setdefault("r", AuroraToCloudSqlReplica(s, "registry", replica_props(
        settings=settings)))), with_provider=False)
    profiles = {p["connection_profile_id"]: p
                for p in resources(tf, "google_database_migration_service_connection_profile").values()}
    source = profiles["mlfleet-prod-registry-usc1-source"]["postgresql"]
    assert source["host"] == "mlfleet-prod-registry.cluster-c0abc.us-east-1.rds.amazonaws.com"
    assert source["ssl"] == {"type": "SERVER_ONLY", "ca_certificate": rds_ca_bundle()}
    assert source["username"] == "mlfleet_replication"
    assert source["password"].startswith("${data.google_secret_manager_secret_version.")
    destination = profiles["mlfleet-prod-registry-usc1"]["cloudsql"]["settings"]
    assert destination["cmek_key_name"] == KEY and destination["edition"] == "ENTERPRISE_PLUS"
    assert destination["ip_config"] == {"enable_ipv4": False, "private_network": NETWORK, "require_ssl": True}
    assert destination["tier"] == "db-perf-optimized-N-4"
    assert destination["database_flags"]["cloudsql.iam_authentication"] == "on"
    # The replica DMS creates audits as the Cloud SQL registry does (pgAudit, statement logging).
    assert AUDIT_FLAGS.items() <= destination["database_flags"].items()
    assert destination["source_id"].startswith("${google_database_migration_service_connection_profile.")
    job = only_resource(tf, "google_database_migration_service_migration_job")
    assert job["type"] == "CONTINUOUS" and job["vpc_peering_connectivity"] == {"vpc": NETWORK}
    assert job["deletion_policy"] == "ABANDON"
    assert tf["output"]["registry_replica_instance"]["value"] == "mlfleet-prod-registry-usc1"
    # The one finding: the replication password passes through state (no write-only argument),
    # acknowledged on the source profile with its reason.
    findings = [f for f in evaluate_terraform("gcp", tf) if f.rule != "MLF006"]
    assert [(f.rule, f.address.rsplit("_", 1)[0]) for f in findings] == [
        ("MLF048", "google_database_migration_service_connection_profile.registry_source")]
    source = built["r"].node.find_child("source")
    assert [a.reason for a in acknowledgements_for(source, "MLF048")] == [STATE_PASSWORD_REASON]


def test_the_rds_ca_bundle_holds_only_unexpired_amazon_rds_roots_of_the_examples_regions():
    from cryptography import x509
    from cryptography.x509.oid import NameOID

    from mlfleet.stacks.environment import environment_names, load_environment

    certificates = x509.load_pem_x509_certificates(rds_ca_bundle().encode())
    now = datetime.now(timezone.utc)
    names = []
    for certificate in certificates:
        subject = certificate.subject
        assert subject == certificate.issuer  # a root: self-issued
        certificate.verify_directly_issued_by(certificate)  # and self-signed
        assert subject.get_attributes_for_oid(NameOID.ORGANIZATIONAL_UNIT_NAME)[0].value == "Amazon RDS"
        assert certificate.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
        assert certificate.not_valid_after_utc > now, f"{subject.rfc4514_string()} has expired: refresh the bundle"
        names.append(subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value)
    regions = {r.name for n in environment_names() for r in load_environment(n).regions_on("aws")}
    for region in sorted(regions):  # the CA Aurora uses by default, rds-ca-rsa2048-g1, in each
        assert f"Amazon RDS {region} Root CA RSA2048 G1" in names


def test_transfer_role_takes_the_kms_region_from_the_stack_when_the_key_is_a_token(synth):
    def build(stack):
        key = KmsKey(stack, "key", KmsKeyProps(alias="mlfleet-prod-artifacts", account_id="111111111111"))
        S3ToGcsTransferRole(stack, "transfer", role_props(key_arn=key.key_arn))

    tf = synth(build, region="eu-west-1")
    statements = {s["Sid"]: s for s in json.loads(only_resource(tf, "aws_iam_role_policy")["policy"])["Statement"]}
    assert statements["DecryptModels"]["Resource"].startswith("${aws_kms_key.")
    assert statements["DecryptModels"]["Condition"] == {
        "StringEquals": {"kms:ViaService": "s3.eu-west-1.amazonaws.com"}}


def test_transfer_role_refuses_a_key_outside_the_stacks_region(synth):
    with pytest.raises(PropsError, match="transfer: key_arn: .*not a KMS key ARN in the stack's region us-west-2"):
        synth(lambda s: S3ToGcsTransferRole(s, "transfer", role_props()), region="us-west-2")


def test_transfer_role_needs_a_stack_with_an_aws_provider(synth):
    with pytest.raises(PropsError, match="transfer: region: stack test has no default AWS provider"):
        synth(lambda s: S3ToGcsTransferRole(s, "transfer", role_props()), with_provider=False)


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
    assert rules == ["MLF001", "MLF002", "MLF048"]


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
