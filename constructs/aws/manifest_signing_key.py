"""The key that signs the champion manifest: an asymmetric multi-Region KMS key (ECC_NIST_P256,
SIGN_VERIFY) in the primary region, a replica of it in every standby region, and the same alias
in every region.

Review signs `approved/manifest.json` with it (KMS `Sign`, ECDSA_SHA_256 over the raw bytes, or
over their SHA-256 digest for a manifest beyond KMS's 4 KiB RAW limit) and
writes the detached signature beside it; every region's runtime verifies with the public key,
which the serving stack reads from the key in its own region. Only the review roles may sign: the
key policy delegates administration to the account but not `Sign` nor `CreateGrant`, and lets
`signer_role_arns` sign (with the one algorithm the registry uses).

Why the primary's stack makes the replicas, through one aliased provider per standby region: a
replica key needs the primary key's ARN, whose `mrk-` id is random and known only once the
primary key exists, and a standby's stack must not read the primary's state to learn it
(principle 1). Made by the primary's apply, each replica lives in its standby region from then on
and needs nothing of the primary region to sign or verify: after the primary is lost, the
standby's review still signs and its runtime still verifies, with the same key material. (Planning
the primary's stack then needs the standby regions' KMS endpoints; planning a standby needs
nothing of the primary.) Multi-Region keys of one family share their key material, so the public
key, and every signature, is the same in every region.

Key rotation: KMS does not rotate asymmetric keys (`EnableKeyRotation` refuses them), so the key
asks for none and the rule pack does not demand it of a SIGN_VERIFY key; rotating means a new key
under the alias, a new manifest signature and the serving stacks applied again.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Protocol

from cdktn import TerraformOutput, TerraformProvider
from cdktn_provider_aws.kms_alias import KmsAlias
from cdktn_provider_aws.kms_key import KmsKey
from cdktn_provider_aws.kms_replica_key import KmsReplicaKey
from constructs import Construct

from mlfleet.constructs.aws.artifact_grants import PolicyStatements
from mlfleet.constructs.validation import ACCOUNT_ID, IAM_ROLE_ARN, KMS_ALIAS_NAME, REGION, require

KEY_SPEC = "ECC_NIST_P256"
KEY_USAGE = "SIGN_VERIFY"
SIGNING_ALGORITHM = "ECDSA_SHA_256"
# Administration, without Sign, Verify or CreateGrant: a grant could hand Sign to anyone.
ADMIN_ACTIONS = ("kms:CancelKeyDeletion", "kms:CreateAlias", "kms:DeleteAlias", "kms:DescribeKey", "kms:DisableKey",
                 "kms:EnableKey", "kms:GetKeyPolicy", "kms:GetKeyRotationStatus", "kms:GetPublicKey",
                 "kms:ListAliases", "kms:ListGrants", "kms:ListKeyPolicies", "kms:ListResourceTags",
                 "kms:PutKeyPolicy", "kms:ReplicateKey", "kms:RevokeGrant", "kms:ScheduleKeyDeletion",
                 "kms:TagResource", "kms:UntagResource", "kms:UpdateAlias", "kms:UpdateKeyDescription",
                 "kms:UpdatePrimaryRegion")
SIGNER_ACTIONS = ("kms:DescribeKey", "kms:GetPublicKey", "kms:Sign")


class ManifestSigningGrants(Protocol):
    """What a review identity is granted to sign with in its region: the `ManifestSigningKey` (in the
    primary's stack) or a `ManifestSigningKeyAlias` (a standby's replica, named by its alias)."""
    def grant_sign(self, grantee: PolicyStatements) -> None: ...


@dataclass(frozen=True, kw_only=True)
class SigningKeyReplica:
    """A standby region the key is replicated to, and the aliased provider of that region."""
    region: str
    provider: TerraformProvider


@dataclass(frozen=True, kw_only=True)
class ManifestSigningKeyProps:
    alias: str
    """Alias without `alias/`, the same in every region, e.g. `mlfleet-prod-manifest-signing`."""
    account_id: str
    region: str
    """The primary region: the stack's default provider's, where the multi-Region primary key lives."""
    signer_role_arns: tuple[str, ...]
    """The review roles (of every region) that may sign; they are named by ARN in the key policy's
    conditions, so they need not exist yet."""
    replicas: tuple[SigningKeyReplica, ...] = ()
    """The standby regions to replicate the key to, each with its aliased provider. Default: none."""
    description: str = "mlfleet manifest signing key"
    """The key's description; default `mlfleet manifest signing key`."""
    deletion_window_days: int = 30
    """Days a key scheduled for deletion stays recoverable (7 to 30); default `30`."""
    tags: dict[str, str] = field(default_factory=dict)
    """AWS tags on the key and its replicas; default none."""


@dataclass(frozen=True, kw_only=True)
class ManifestSigningKeyAlias:
    """The signing key (or its replica) in one region, named by its alias alone: what a standby's
    review role is granted on, since the replica's ARN is not known to the standby's stack."""
    alias: str
    account_id: str
    region: str

    def grant_sign(self, grantee: PolicyStatements) -> None:
        """Sign with, and read the public key of, the key that carries the alias in this region only."""
        # IAM authorizes KMS use on the key, never on an alias ARN: match the key by its alias.
        grantee.add({
            "Sid": "SignManifest", "Effect": "Allow", "Action": list(SIGNER_ACTIONS),
            "Resource": f"arn:aws:kms:{self.region}:{self.account_id}:key/*",
            "Condition": {"ForAnyValue:StringEquals": {"kms:ResourceAliases": f"alias/{self.alias}"}},
        })


class ManifestSigningKey(Construct):
    """The multi-Region signing key, its replicas and its alias in every region (see the module docstring)."""

    def __init__(self, scope: Construct, id_: str, props: ManifestSigningKeyProps):
        super().__init__(scope, id_)
        _validate(self, props)
        self.alias = props.alias
        self.regions = (props.region, *(r.region for r in props.replicas))
        policy = json.dumps(_key_policy(props.account_id, props.signer_role_arns), sort_keys=True)
        tags = dict(props.tags) or None
        self.key = KmsKey(self, "key", description=props.description, customer_master_key_spec=KEY_SPEC,
                          key_usage=KEY_USAGE, multi_region=True, deletion_window_in_days=props.deletion_window_days,
                          policy=policy, tags=tags)
        KmsAlias(self, "alias", name=f"alias/{props.alias}", target_key_id=self.key.key_id)
        self.replica_keys: dict[str, KmsReplicaKey] = {}
        for replica in props.replicas:
            key = KmsReplicaKey(self, f"replica-{replica.region}", provider=replica.provider,
                                primary_key_arn=self.key.arn, description=props.description,
                                deletion_window_in_days=props.deletion_window_days, policy=policy, tags=tags)
            KmsAlias(self, f"alias-{replica.region}", provider=replica.provider, name=f"alias/{props.alias}",
                     target_key_id=key.key_id)
            self.replica_keys[replica.region] = key
        TerraformOutput(self, "arn", value=self.key.arn,
                        description="The manifest signing key (multi-Region primary)").override_logical_id(
            "manifest_signing_key_arn")

    @property
    def key_arn(self) -> str:
        return self.key.arn

    def grant_sign(self, grantee: PolicyStatements) -> None:
        """Sign with, and read the public key of, the primary key (the primary region's review)."""
        grantee.add({"Sid": "SignManifest", "Effect": "Allow", "Action": list(SIGNER_ACTIONS),
                     "Resource": self.key.arn})


def _key_policy(account_id: str, signers: tuple[str, ...]) -> dict:
    root = {"AWS": f"arn:aws:iam::{account_id}:root"}
    signer = {"ArnEquals": {"aws:PrincipalArn": sorted(signers)}}
    return {"Version": "2012-10-17", "Statement": [{
        # Administration stays with the account (IAM decides who), signing does not.
        "Sid": "AccountAdministers", "Effect": "Allow", "Principal": root, "Action": list(ADMIN_ACTIONS),
        "Resource": "*",
    }, {
        # Any message type: a manifest over KMS's 4 KiB RAW limit is signed as its SHA-256 digest.
        "Sid": "ReviewSigns", "Effect": "Allow", "Principal": root, "Action": "kms:Sign", "Resource": "*",
        "Condition": {**signer, "StringEquals": {"kms:SigningAlgorithm": SIGNING_ALGORITHM}},
    }, {
        "Sid": "ReviewVerifies", "Effect": "Allow", "Principal": root,
        "Action": ["kms:DescribeKey", "kms:GetPublicKey", "kms:Verify"], "Resource": "*", "Condition": signer,
    }]}


def _validate(scope: Construct, props: ManifestSigningKeyProps) -> None:
    require(bool(KMS_ALIAS_NAME.fullmatch(props.alias)) and not props.alias.startswith(("aws/", "alias/")), scope,
            "alias", f"{props.alias!r} is not a customer key alias (without the 'alias/' prefix)")
    require(bool(ACCOUNT_ID.fullmatch(props.account_id)), scope, "account_id",
            f"{props.account_id!r} is not a 12-digit AWS account id")
    require(bool(REGION.fullmatch(props.region)), scope, "region", f"{props.region!r} is not an AWS region name")
    require(7 <= props.deletion_window_days <= 30, scope, "deletion_window_days", "must be between 7 and 30 days")
    require(len(props.signer_role_arns) >= 1, scope, "signer_role_arns",
            "name at least one review role: a key nobody may sign with signs no manifest")
    for i, arn in enumerate(props.signer_role_arns):
        require(bool(IAM_ROLE_ARN.fullmatch(arn)), scope, f"signer_role_arns[{i}]",
                f"{arn!r} is not an IAM role ARN (wildcards are not allowed)")
    seen = {props.region}
    for i, replica in enumerate(props.replicas):
        require(bool(REGION.fullmatch(replica.region)), scope, f"replicas[{i}].region",
                f"{replica.region!r} is not an AWS region name")
        require(replica.region not in seen, scope, f"replicas[{i}].region",
                f"{replica.region} is the primary's region or listed twice")
        seen.add(replica.region)
