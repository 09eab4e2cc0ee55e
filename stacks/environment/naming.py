"""Deterministic names of everything mlfleet creates, derived from the environment alone.

Any region's stack, runbook or review can name another region's bucket, cluster or database
without reading that region's state (principle 1), and a runbook finds what a stack created.
"""
from __future__ import annotations


def stack_name(env: str, region: str) -> str:
    return f"{env}-{region}"


def global_stack_name(env: str) -> str:
    return f"{env}-global"


def state_bucket(account_id: str, region: str) -> str:
    """Terraform state lives in the region it describes, one bucket per account and region."""
    return f"mlfleet-tfstate-{account_id}-{region}"


def state_key(env: str, region: str) -> str:
    return f"{env}/{region}/terraform.tfstate"


def artifact_bucket(env: str, account_id: str, region: str) -> str:
    return f"mlfleet-{env}-{account_id}-{region}"


def artifact_key_alias(env: str) -> str:
    """The same alias in every region, so replication can name the destination key."""
    return f"mlfleet-{env}-artifacts"


def artifact_audit_trail(env: str, region: str) -> str:
    """The region's CloudTrail of object reads and writes in its artifact bucket."""
    return f"mlfleet-{env}-{region}-artifacts"


def artifact_audit_bucket(env: str, account_id: str, region: str) -> str:
    """Where that trail delivers (at most 62 characters: a 20-character environment, the longest region)."""
    return f"{artifact_bucket(env, account_id, region)}-audit"


def artifact_audit_key_alias(env: str) -> str:
    return f"{artifact_key_alias(env)}-audit"


def cluster_name(env: str, region: str) -> str:
    return f"mlfleet-{env}-{region}"


def node_group_name(pool: str) -> str:
    return f"{pool}-gpu"


def registry_database() -> str:
    """The registry's database in Aurora, which a Cloud SQL replica in Google Cloud follows."""
    return "registry"


def global_cluster_id(env: str) -> str:
    return f"mlfleet-{env}-registry"


def db_cluster_id(env: str, region: str) -> str:
    return f"mlfleet-{env}-registry-{region}"


def dr_lock_table(env: str) -> str:
    """The runbooks' lock table, the same name in every AWS region (each region has its own)."""
    return f"mlfleet-{env}-dr-locks"


DR_LOCK_KEY = "lock"
"""The lock table's partition key: the locked runbook's key."""


def dr_lock_key_alias(env: str) -> str:
    return f"mlfleet-{env}-dr-locks"


def dr_runbook_policy(env: str) -> str:
    """The DR runbooks' IAM policy (IAM is global: one per environment)."""
    return f"mlfleet-{env}-dr-runbooks"


def role_name(env: str, region: str, purpose: str) -> str:
    """IAM is global: role names carry the region so regional stacks never collide."""
    return f"mlfleet-{env}-{region}-{purpose}"


# Google Cloud. Bucket names are global; ids have short limits (service accounts 30, GKE
# clusters 40 characters), which the environment model checks against these names.

def gcp_global_stack_name(env: str) -> str:
    return f"{env}-gcp-global"


def gcp_state_bucket(project: str, region: str) -> str:
    return f"{project}-tfstate-{region}"


def gcp_state_prefix(env: str, region: str) -> str:
    return f"{env}/{region}"


def gcp_network(env: str) -> str:
    return f"mlfleet-{env}"


def gcp_subnet(env: str, region: str) -> str:
    return f"mlfleet-{env}-{region}"


def gcp_key_ring(env: str, location: str) -> str:
    return f"mlfleet-{env}-{location}"


def gke_cluster_name(env: str, region: str) -> str:
    return f"mlf-{env}-{region}"


def gke_node_service_account(env: str, region: str) -> str:
    return f"{env}-{region}-nodes"


def gcp_identity_prefix(env: str) -> str:
    """Service account ids `<prefix>-serving`, `-training`, `-review`."""
    return f"mlf-{env}"


def gcs_artifact_bucket(env: str, project: str) -> str:
    return f"{project}-{env}-models"


def cloud_sql_instance(env: str, region: str) -> str:
    return f"mlfleet-{env}-registry-{region}"


def gcs_transfer_role(env: str, region: str) -> str:
    """The AWS role Storage Transfer Service assumes to read the primary's artifact bucket."""
    return role_name(env, region, "gcs-transfer")


def registry_replication_secret(env: str) -> str:
    """Secret Manager secret with the password DMS replicates the Aurora registry with."""
    return f"mlfleet-{env}-registry-replication"


# The serving plane: the in-cluster parts of a region, in a stack of their own.

def serving_stack_name(env: str, region: str) -> str:
    """`<env>-<region>-serving`: applied after `<env>-<region>`, whose cluster it deploys onto."""
    return f"{env}-{region}-serving"


def serving_state_name(region: str) -> str:
    return f"{region}-serving"


def image_repository(env: str, image: str) -> str:
    """The ECR repository of the runtime image; replication rules match its `mlfleet-<env>/` prefix."""
    return f"{image_repository_prefix(env)}/{image}"


def image_repository_prefix(env: str) -> str:
    return f"mlfleet-{env}"


def image_key_alias(env: str) -> str:
    return f"mlfleet-{env}-images"


def artifact_registry_repository(env: str) -> str:
    """The Artifact Registry repository of a Google Cloud region; the image is `<repository>/<name>`."""
    return f"mlfleet-{env}"


def gcp_image(env: str, project: str, region: str, image: str) -> str:
    """The runtime image's name (without digest) in a Google Cloud region's Artifact Registry repository."""
    return f"{region}-docker.pkg.dev/{project}/{artifact_registry_repository(env)}/{image}"


def serving_namespace() -> str:
    return "mlfleet"


def runtime_service_account() -> str:
    """The runtime's Kubernetes service account, bound to the serving identity on either cloud."""
    return "mlfleet-runtime"


def runtime_deployment(pool: str) -> str:
    """The runtime's Deployment on one serving pool; the DR runbooks scale it on failover."""
    return f"mlfleet-runtime-{pool}"


def runtime_endpoint_service() -> str:
    """The Service (behind the region's load balancer) that selects every runtime pod of the region."""
    return "mlfleet-runtime"


# The model registry: who writes where in a region's artifact store, and what signs the champion.

CANDIDATES_AREA = "candidates/"
APPROVED_AREA = "approved/"
MANIFEST_FILE = "manifest.json"
MANIFEST_SIGNATURE_FILE = "manifest.json.sig"


def candidates_prefix(models_prefix: str) -> str:
    """`<models_prefix>candidates/`: training uploads versions here and nowhere else."""
    return f"{models_prefix}{CANDIDATES_AREA}"


def approved_prefix(models_prefix: str) -> str:
    """`<models_prefix>approved/`: the runtime's model repository (signed manifest, approved
    versions), written by the review identity only."""
    return f"{models_prefix}{APPROVED_AREA}"


def manifest_signing_key_alias(env: str) -> str:
    """The asymmetric KMS key that signs the champion manifest; the same alias in every AWS
    region, on the multi-region key and its replicas (without the `alias/` prefix)."""
    return f"mlfleet-{env}-manifest-signing"


def gcp_manifest_signing_key(env: str) -> str:
    """The Cloud KMS asymmetric signing key of a Google Cloud environment (in its key ring)."""
    return f"mlfleet-{env}-manifest-signing"


def registry_probe_table() -> str:
    """The table a runbook writes to through the new writer to prove the registry is writable."""
    return "mlfleet_dr_probe"


def mlflow_artifact_prefix(models_prefix: str) -> str:
    """MLflow's artifact root in a region's bucket, `<models_prefix>candidates/mlflow/`: clients
    upload run artifacts themselves, so it lies in the area training may write."""
    return f"{candidates_prefix(models_prefix)}mlflow/"
