"""The Google constructs pass the policy pack by construction: every rule that applies to
their resources (CMEK, private access, deletion protection, GPU taint, metadata server,
no public or primitive IAM) finds nothing."""
from __future__ import annotations

import test_gcp_artifact_store as store
import test_gcp_cloud_sql_registry as sql
import test_gcp_gke_cluster as gke
import test_gcp_gke_gpu_node_pool as pool
import test_gcp_serving_identity as identity

from mlfleet.constructs.gcp.cloud_sql_registry import CloudSqlRegistry
from mlfleet.constructs.gcp.gcs_artifact_store import GcsArtifactStore
from mlfleet.constructs.gcp.gke_cluster import GkeCluster
from mlfleet.constructs.gcp.gke_gpu_node_pool import GkeGpuNodePool
from mlfleet.constructs.gcp.serving_identity import GcpServingIdentity
from mlfleet.constructs.policy import evaluate_terraform


def test_google_constructs_have_no_policy_findings(synth):
    def build(stack):
        GkeCluster(stack, "gke", gke.props())
        GkeGpuNodePool(stack, "pool", pool.props())
        GcsArtifactStore(stack, "store", store.props())
        CloudSqlRegistry(stack, "registry", sql.primary())
        GcpServingIdentity(stack, "identity", identity.props())

    tf = synth(pool.google(build), with_provider=False)
    assert {"google_container_cluster", "google_container_node_pool", "google_storage_bucket",
            "google_sql_database_instance"} <= set(tf["resource"])
    # MLF006 is the stack's: labels come from the provider's default_labels, set by stacks.
    assert [f for f in evaluate_terraform("gcp", tf) if f.rule != "MLF006"] == []
