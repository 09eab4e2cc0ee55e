"""Data Access audit logs of a Google Cloud project's services.

Admin Activity audit logs are always on; Data Access logs (who read or wrote which object) are off by
default. For Cloud Storage they record every read and write of the artifact buckets with the caller's
identity, which is what per-bucket access logging would give, in Cloud Logging and under IAM.

`google_project_iam_audit_config` is authoritative for its service in the project: a project shared
with other workloads keeps one audit config per service, so this construct is made once per project.
"""
from __future__ import annotations

from dataclasses import dataclass

from cdktn_provider_google.project_iam_audit_config import ProjectIamAuditConfig, ProjectIamAuditConfigAuditLogConfig
from constructs import Construct

from mlfleet.constructs.validation import GOOGLE_API_SERVICE, GOOGLE_PROJECT_ID, require


@dataclass(frozen=True, kw_only=True)
class DataAccessAuditLogsProps:
    project_id: str
    services: tuple[str, ...] = ("storage.googleapis.com",)
    """Services whose reads (`DATA_READ`) and writes (`DATA_WRITE`) are logged; default Cloud Storage."""


class DataAccessAuditLogs(Construct):
    """Data Access audit logs (reads and writes) for each of `services` (see module docstring)."""

    def __init__(self, scope: Construct, id_: str, props: DataAccessAuditLogsProps):
        super().__init__(scope, id_)
        require(bool(GOOGLE_PROJECT_ID.fullmatch(props.project_id)), self, "project_id",
                f"{props.project_id!r} is not a Google Cloud project id")
        require(len(props.services) >= 1, self, "services", "name at least one service")
        require(len(set(props.services)) == len(props.services), self, "services", "lists a service twice")
        for i, service in enumerate(props.services):
            require(bool(GOOGLE_API_SERVICE.fullmatch(service)), self, f"services[{i}]",
                    f"{service!r} is not a service name like storage.googleapis.com")
        self.audit_configs = [ProjectIamAuditConfig(
            self, service.split(".")[0], project=props.project_id, service=service,
            audit_log_config=[ProjectIamAuditConfigAuditLogConfig(log_type=log_type)
                              for log_type in ("DATA_READ", "DATA_WRITE")]) for service in props.services]
