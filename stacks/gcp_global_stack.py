"""`<env>-gcp-global`: what Google Cloud keeps above its regions — the VPC (global, with the
private services access Cloud SQL uses), the dual-region artifact bucket and its key, the manifest
signing key (in the same multi-region key ring), the serving, training and review identities,
and, when the primary is on AWS, the Storage Transfer job that brings the primary's artifacts
across.

Its state lives in the first Google Cloud standby (or the Google Cloud primary), like
`<env>-global`'s, so it can be planned while the primary region is down.

Project-wide settings live here too: Data Access audit logs of Cloud Storage (every read and write of
the artifacts, with the caller) and the project's Binary Authorization policy that the GKE clusters
enforce."""
from __future__ import annotations

from cdktn import TerraformStack
from cdktn_provider_google.storage_bucket import StorageBucket
from cdktn_provider_google.storage_bucket_iam_member import StorageBucketIamMember
from constructs import Construct

from mlfleet.constructs.gcp.audit_logs import DataAccessAuditLogs, DataAccessAuditLogsProps
from mlfleet.constructs.gcp.binary_authorization import ImageAdmissionPolicy, ImageAdmissionPolicyProps
from mlfleet.constructs.gcp.cross_cloud_artifact_copy import S3ToGcsTransfer, S3ToGcsTransferProps
from mlfleet.constructs.gcp.gcs_artifact_store import GcsArtifactStore, GcsArtifactStoreProps
from mlfleet.constructs.gcp.kms_key import CloudKmsKey, CloudKmsKeyProps, crypto_key_id
from mlfleet.constructs.gcp.manifest_signing_key import CloudKmsSigningKey, CloudKmsSigningKeyProps
from mlfleet.constructs.gcp.network import GcpVpc, GcpVpcProps
from mlfleet.constructs.gcp.serving_identity import GcpServingIdentity, GcpServingIdentityProps
from mlfleet.stacks.environment import GCS_MULTI_REGIONS, Environment, naming
from mlfleet.stacks.stack_base import configure_backend, gcp_project, google_labels, google_provider

ARTIFACT_KEY = "artifacts"


def artifact_multi_region(env: Environment) -> str:
    """The multi-region around the dual-region artifact bucket (`US`, `EU`, `ASIA`): where its key ring is."""
    pair = env.gcp_artifact_regions
    assert pair is not None  # there are Google Cloud regions
    return GCS_MULTI_REGIONS[pair[0].split("-")[0]]


def manifest_signing_key_id(env: Environment) -> str:
    """The manifest signing key's id, derived from the environment: the serving stacks read its public key."""
    location = artifact_multi_region(env).lower()
    return crypto_key_id(gcp_project(env).project_id, location, naming.gcp_key_ring(env.name, location),
                         naming.gcp_manifest_signing_key(env.name))


def gcp_state_region(env: Environment) -> str:
    gcp = env.regions_on("gcp")
    standbys = [r for r in gcp if r.role == "standby"]
    return (standbys or gcp)[0].name


class GcpGlobalStack(TerraformStack):
    def __init__(self, scope: Construct, env: Environment):
        super().__init__(scope, naming.gcp_global_stack_name(env.name))
        gcp = gcp_project(env)
        project = gcp.project_id
        labels = google_labels(env)
        configure_backend(self, env, gcp_state_region(env), "gcp-global")
        google_provider(self, env, gcp_state_region(env))

        network_name = env.gcp_network_name
        assert network_name is not None  # the environment has its gcp section
        # An existing VPC is used as it is (its private services access included).
        self.vpc = GcpVpc(self, "network", GcpVpcProps(project_id=project, name=network_name,
                                                       private_services_cidr=gcp.private_services_cidr)) \
            if gcp.existing_vpc is None else None

        pair = env.gcp_artifact_regions
        assert pair is not None  # there are Google Cloud regions
        multi_region = artifact_multi_region(env)
        # A configurable dual-region's key lives in its multi-region.
        self.artifact_key = CloudKmsKey(self, "artifact-key", CloudKmsKeyProps(
            project_id=project, location=multi_region.lower(),
            key_ring=naming.gcp_key_ring(env.name, multi_region.lower()), key=ARTIFACT_KEY))
        store = env.artifact_store
        bucket = naming.gcs_artifact_bucket(env.name, project)
        self.artifacts = GcsArtifactStore(self, "artifacts", GcsArtifactStoreProps(
            project_id=project, project_number=gcp.project_number, bucket_name=bucket, location=multi_region,
            data_locations=tuple(pair), kms_key_id=self.artifact_key.key_id, models_prefix=store.models_prefix,
            noncurrent_version_days=store.noncurrent_version_days, soft_delete_days=gcp.soft_delete_days,
            labels=labels))

        # In the artifacts' multi-region key ring: every Google region signs and verifies the same key.
        self.signing_key = CloudKmsSigningKey(self, "manifest-signing-key", CloudKmsSigningKeyProps(
            project_id=project, location=multi_region.lower(),
            key_ring=naming.gcp_key_ring(env.name, multi_region.lower()),
            key_ring_id=self.artifact_key.key_ring.id, name=naming.gcp_manifest_signing_key(env.name)))

        self.identity = GcpServingIdentity(self, "identity", GcpServingIdentityProps(
            project_id=project, name_prefix=naming.gcp_identity_prefix(env.name), artifacts=self.artifacts,
            training_principals=tuple(env.identities.of_cloud("training", "gcp")),
            review_principals=tuple(env.identities.of_cloud("review", "gcp")), signing_key=self.signing_key))

        self.transfer: S3ToGcsTransfer | None = None
        if env.primary.cloud == "aws":
            source = env.primary.name
            self.transfer = S3ToGcsTransfer(self, "artifact-transfer", S3ToGcsTransferProps(
                project_id=project, project_number=gcp.project_number,
                source_bucket=naming.artifact_bucket(env.name, env.aws.account_id, source), source_region=source,
                role_arn=f"arn:aws:iam::{env.aws.account_id}:role/{naming.gcs_transfer_role(env.name, source)}",
                destination=self.artifacts, models_prefix=store.models_prefix))

        self.audit_logs = DataAccessAuditLogs(self, "audit-logs", DataAccessAuditLogsProps(project_id=project))
        self.image_admission: ImageAdmissionPolicy | None = None
        if gcp.manage_binary_authorization_policy:
            self.image_admission = ImageAdmissionPolicy(self, "image-admission", ImageAdmissionPolicyProps(
                project_id=project, images=tuple(naming.gcp_image(env.name, project, r.name, env.serving.image.name)
                                                 for r in env.regions_on("gcp"))))

        # Grants on the bucket name it by its (deterministic) name: they come after the bucket.
        bucket_address = f"{StorageBucket.TF_RESOURCE_TYPE}.{self.artifacts.bucket.friendly_unique_id}"
        for granting in (self.identity, self.transfer):
            for child in granting.node.find_all() if granting else ():
                if isinstance(child, StorageBucketIamMember):
                    child.add_override("depends_on", [bucket_address])
