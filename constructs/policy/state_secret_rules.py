"""Secrets Terraform would keep in its state: a password set through a plain argument.

Terraform records every argument in state, so a password set as one is readable in clear text by
whoever can read the state bucket (and by every `terraform show`), whether it is a literal or a
reference to a secret store's data source (which lands in state too). A write-only argument
(`*_wo`, Terraform 1.11+) or a service-managed secret (RDS `manage_master_user_password`) keeps it
out; where the provider offers neither, the construct acknowledges the finding with its reason.
"""
from __future__ import annotations

from mlfleet.constructs.policy.findings import Check, Hits
from mlfleet.constructs.terraform_json import addressed, blocks

# Resource type → its secret arguments; a dotted name is an argument of a nested block.
SECRET_ARGUMENTS: dict[str, tuple[str, ...]] = {
    "aws_db_instance": ("password",),
    "aws_rds_cluster": ("master_password",),
    "aws_docdb_cluster": ("master_password",),
    "aws_redshift_cluster": ("master_password",),
    "aws_dms_endpoint": ("password",),
    "aws_secretsmanager_secret_version": ("secret_string", "secret_binary"),
    "aws_ssm_parameter": ("value",),
    "google_sql_user": ("password",),
    "google_secret_manager_secret_version": ("secret_data",),
    "google_database_migration_service_connection_profile": (
        "postgresql.password", "mysql.password", "oracle.password", "sqlserver.password",
        "alloydb.settings.initial_user.password"),
}


def _values(body: object, dotted: str) -> list[object]:
    """The values of `dotted` in `body`, through nested blocks written as objects or lists."""
    head, _, rest = dotted.partition(".")
    found: list[object] = []
    for block in blocks(body.get(head) if isinstance(body, dict) else None):
        found += _values(block, rest) if rest else [block]
    return found


def _state_secrets(tf: dict) -> Hits:
    for rtype, arguments in SECRET_ARGUMENTS.items():
        for resource, body in addressed(tf, rtype):
            if rtype == "aws_ssm_parameter" and body.get("type") != "SecureString":
                continue  # a plain parameter holds no secret
            for argument in arguments:
                if any(value not in (None, "") for value in _values(body, argument)):
                    yield ("MLF048", resource,
                           f"{argument} is a plain argument, so Terraform keeps the secret in state "
                           f"(use {argument.rsplit('.', 1)[-1]}_wo or a service-managed secret)")


CHECKS: tuple[Check, ...] = (_state_secrets,)
