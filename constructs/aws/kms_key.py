"""A customer-managed KMS key with rotation, a deletion window and a deterministic alias.

Every mlfleet resource that stores data encrypts with one of these. The alias is the
cross-region handle: another region's stack can name `arn:aws:kms:<region>:<account>:alias/<alias>`
without reading this region's state (principle 1: failure domains first).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field

from cdktn_provider_aws.kms_alias import KmsAlias
from cdktn_provider_aws.kms_key import KmsKey as KmsKeyResource
from cdktn_provider_aws.kms_replica_key import KmsReplicaKey
from constructs import Construct

from mlfleet.constructs.validation import ACCOUNT_ID, KMS_ALIAS_NAME, require


@dataclass(frozen=True, kw_only=True)
class KmsKeyProps:
    alias: str
    """Alias without the `alias/` prefix, e.g. `mlfleet-prod-artifacts`."""
    account_id: str
    description: str = "mlfleet data key"
    """The key's description; default `mlfleet data key`."""
    deletion_window_days: int = 30
    """Days a key scheduled for deletion stays recoverable (7 to 30); default `30`."""
    multi_region: bool = False
    """Create a multi-Region primary key (its replicas can then be made in other regions). Default: off."""
    replica_of_arn: str | None = None
    """Make this key a replica of that multi-Region primary key (`arn:…:key/mrk-…`). Default: none."""
    service_principals: tuple[str, ...] = field(default=())
    """AWS services (e.g. `logs.us-east-1.amazonaws.com`) allowed to use the key in this account. Default: none."""
    tags: dict[str, str] = field(default_factory=dict)
    """AWS tags on the key; default none."""


def alias_arn(region: str, account_id: str, alias: str) -> str:
    """The ARN of a key alias: deterministic, so other regions can name it from config alone."""
    return f"arn:aws:kms:{region}:{account_id}:alias/{alias}"


class KmsKey(Construct):
    """KMS key (rotated yearly, 30-day deletion window) with an account-scoped key policy."""

    def __init__(self, scope: Construct, id_: str, props: KmsKeyProps):
        super().__init__(scope, id_)
        require(bool(KMS_ALIAS_NAME.fullmatch(props.alias)) and not props.alias.startswith("aws/"), self,
                "alias", f"{props.alias!r} is not a valid customer key alias")
        require(ACCOUNT_ID.fullmatch(props.account_id) is not None, self, "account_id",
                f"{props.account_id!r} is not a 12-digit AWS account id")
        require(7 <= props.deletion_window_days <= 30, self, "deletion_window_days",
                "must be between 7 and 30 days")
        require(not (props.multi_region and props.replica_of_arn), self, "replica_of_arn",
                "a replica key cannot itself be a multi-Region primary")
        if props.replica_of_arn is not None:
            require(":key/mrk-" in props.replica_of_arn, self, "replica_of_arn",
                    "must be the ARN of a multi-Region key (…:key/mrk-…)")

        policy = json.dumps(_key_policy(props.account_id, props.service_principals), sort_keys=True)
        tags = dict(props.tags) or None
        if props.replica_of_arn:
            self.key = KmsReplicaKey(
                self, "key", primary_key_arn=props.replica_of_arn, description=props.description,
                deletion_window_in_days=props.deletion_window_days, policy=policy, tags=tags)
        else:
            self.key = KmsKeyResource(
                self, "key", description=props.description, enable_key_rotation=True,
                deletion_window_in_days=props.deletion_window_days,
                multi_region=props.multi_region or None, policy=policy, tags=tags)
        KmsAlias(self, "alias", name=f"alias/{props.alias}", target_key_id=self.key.key_id)
        self.alias = props.alias

    @property
    def key_arn(self) -> str:
        return self.key.arn

    @property
    def key_id(self) -> str:
        return self.key.key_id


def _key_policy(account_id: str, service_principals: tuple[str, ...]) -> dict:
    # Key administration stays with the account (IAM policies grant use to specific roles);
    # no cross-account principal and no wildcard principal.
    statements = [{
        "Sid": "AccountAdministers",
        "Effect": "Allow",
        "Principal": {"AWS": f"arn:aws:iam::{account_id}:root"},
        "Action": "kms:*",
        "Resource": "*",
    }]
    if service_principals:
        statements.append({
            "Sid": "ServicesUseKey",
            "Effect": "Allow",
            "Principal": {"Service": sorted(service_principals)},
            "Action": ["kms:Decrypt", "kms:Encrypt", "kms:GenerateDataKey*", "kms:ReEncrypt*",
                       "kms:DescribeKey"],
            "Resource": "*",
            "Condition": {"StringEquals": {"aws:SourceAccount": account_id}},
        })
    return {"Version": "2012-10-17", "Statement": statements}
