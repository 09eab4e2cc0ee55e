"""The project-wide Google Cloud settings of the global stack: Binary Authorization and Data Access audit logs."""
from __future__ import annotations

import cdktn
import pytest

from mlfleet.constructs.gcp.audit_logs import DataAccessAuditLogs, DataAccessAuditLogsProps
from mlfleet.constructs.gcp.binary_authorization import ImageAdmissionPolicy, ImageAdmissionPolicyProps
from mlfleet.constructs.validation import PropsError

PROJECT = "mlfleet-prod"
RUNTIME = f"us-central1-docker.pkg.dev/{PROJECT}/mlfleet-prod/runtime"


@pytest.fixture
def stack():
    return cdktn.TerraformStack(cdktn.Testing.app(), "test")


def test_the_policy_denies_by_default_and_admits_the_runtime_by_digest_only(stack):
    ImageAdmissionPolicy(stack, "admission", ImageAdmissionPolicyProps(
        project_id=PROJECT, images=(RUNTIME, RUNTIME.replace("us-central1", "us-east4"))))
    (policy,) = stack.to_terraform()["resource"]["google_binary_authorization_policy"].values()
    assert policy["default_admission_rule"] == {"evaluation_mode": "ALWAYS_DENY",
                                                "enforcement_mode": "ENFORCED_BLOCK_AND_AUDIT_LOG"}
    # GKE's own system images are admitted by Google's global policy.
    assert policy["global_policy_evaluation_mode"] == "ENABLE"
    patterns = [p["name_pattern"] for p in policy["admission_whitelist_patterns"]]
    assert patterns == [f"{RUNTIME}@sha256:*", f"{RUNTIME.replace('us-central1', 'us-east4')}@sha256:*"]


@pytest.mark.parametrize("images, message", [
    ((), "images: name at least one image"),
    ((f"{RUNTIME}:v1",), r"images\[0\]: .* without a tag or digest"),
    ((f"{RUNTIME}@sha256:{'a' * 64}",), r"images\[0\]: .* without a tag or digest"),
    (("runtime",), r"images\[0\]: 'runtime' is not <registry>/<path>/<image>"),
    ((RUNTIME, RUNTIME), "images: lists an image twice"),
])
def test_invalid_admission_props_name_the_prop(stack, images, message):
    with pytest.raises(PropsError, match=message):
        ImageAdmissionPolicy(stack, "admission", ImageAdmissionPolicyProps(project_id=PROJECT, images=images))


def test_cloud_storage_reads_and_writes_are_audit_logged(stack):
    DataAccessAuditLogs(stack, "audit", DataAccessAuditLogsProps(project_id=PROJECT))
    (config,) = stack.to_terraform()["resource"]["google_project_iam_audit_config"].values()
    assert (config["project"], config["service"]) == (PROJECT, "storage.googleapis.com")
    assert config["audit_log_config"] == [{"log_type": "DATA_READ"}, {"log_type": "DATA_WRITE"}]


@pytest.mark.parametrize("services, message", [
    ((), "services: name at least one service"),
    (("storage",), r"services\[0\]: 'storage' is not a service name"),
    (("storage.googleapis.com",) * 2, "services: lists a service twice"),
])
def test_invalid_audit_props_name_the_prop(stack, services, message):
    with pytest.raises(PropsError, match=message):
        DataAccessAuditLogs(stack, "audit", DataAccessAuditLogsProps(project_id=PROJECT, services=services))
