"""The DR runbooks' run lock in one AWS region: a DynamoDB table with one item per locked
runbook, written by the runbooks with conditional puts (holder id, lease, heartbeat).

A runbook locks in the region it moves traffic to, the one region that must be up for the run
to matter, so every AWS region of an environment has its own table under the same name. The
table is on demand (a few writes per run), encrypted with a customer-managed key, kept with
point-in-time recovery, and protected from deletion: a lost lock table lets two runs act at once.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from cdktn import Token
from cdktn_provider_aws.dynamodb_table import (
    DynamodbTable,
    DynamodbTableAttribute,
    DynamodbTablePointInTimeRecovery,
    DynamodbTableServerSideEncryption,
)
from constructs import Construct

from mlfleet.constructs.validation import DYNAMODB_ATTRIBUTE_NAME, DYNAMODB_TABLE_NAME, KMS_KEY_OR_ALIAS_ARN, require


@dataclass(frozen=True, kw_only=True)
class DrLockTableProps:
    table_name: str
    """The table's name, the same in every region (the runbooks find it by name)."""
    kms_key_arn: str
    """This region's customer-managed KMS key that encrypts the table."""
    key_attribute: str = "lock"
    """The partition key (a string: the locked runbook's key); default `lock`."""
    tags: dict[str, str] = field(default_factory=dict)
    """AWS tags on the table; default none."""


class DrLockTable(Construct):
    """An on-demand, KMS-encrypted DynamoDB table with point-in-time recovery and deletion protection."""

    def __init__(self, scope: Construct, id_: str, props: DrLockTableProps):
        super().__init__(scope, id_)
        require(bool(DYNAMODB_TABLE_NAME.fullmatch(props.table_name)), self, "table_name",
                f"{props.table_name!r} is not a DynamoDB table name (3 to 255 of A-Z a-z 0-9 _ . -)")
        require(Token.is_unresolved(props.kms_key_arn) or bool(KMS_KEY_OR_ALIAS_ARN.fullmatch(props.kms_key_arn)),
                self, "kms_key_arn", f"{props.kms_key_arn!r} is not a KMS key ARN (the lock table is encrypted "
                "with a customer-managed key)")
        require(bool(DYNAMODB_ATTRIBUTE_NAME.fullmatch(props.key_attribute)), self, "key_attribute",
                f"{props.key_attribute!r} is not a DynamoDB attribute name")
        self.table = DynamodbTable(
            self, "table", name=props.table_name, billing_mode="PAY_PER_REQUEST", hash_key=props.key_attribute,
            attribute=[DynamodbTableAttribute(name=props.key_attribute, type="S")],
            server_side_encryption=DynamodbTableServerSideEncryption(enabled=True, kms_key_arn=props.kms_key_arn),
            point_in_time_recovery=DynamodbTablePointInTimeRecovery(enabled=True),
            deletion_protection_enabled=True, tags=dict(props.tags) or None)
        self.table_name = self.table.name
        self.table_arn = self.table.arn
