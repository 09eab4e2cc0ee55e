"""The runtime image's ECR repository, replicated to the regions that serve it.

Every region pulls the runtime by digest from a repository in its own region, so a regional
outage of ECR elsewhere never stops a rollout or a node replacement here. The repository is
immutable (a tag always names the same digest), scanned on push, encrypted with the region's
customer-managed key, and expires untagged images.

- `EcrImageRepository` in the primary region: the repository, and (with `replicate_to`) the
  registry's replication configuration sending every repository whose name starts with the
  repository's name to each standby region of the same account.
- `EcrReplicaTemplate` in each standby region: a repository creation template, so that the
  repository replication creates there gets the same settings (immutable, the standby's KMS key,
  the same lifecycle policy) instead of ECR's defaults (mutable, AES-256).

A registry has ONE replication configuration per account and region: `aws_ecr_replication_configuration`
owns it whole and would overwrite any other team's rules. Where someone else owns that configuration,
set `manage_registry_replication=False`: nothing is written, and `replication_rule` is the rule (a
plain dict, in the resource's Terraform shape) to add to theirs.

A creation template's prefix is a namespace: ECR appends a '/' to it, so the template of
`mlfleet/runtime` has the prefix `mlfleet`. A replicated repository's name therefore has a
namespace (at least one '/').
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field

from cdktn import Token
from cdktn_provider_aws.ecr_lifecycle_policy import EcrLifecyclePolicy
from cdktn_provider_aws.ecr_replication_configuration import (
    EcrReplicationConfiguration,
    EcrReplicationConfigurationReplicationConfiguration,
    EcrReplicationConfigurationReplicationConfigurationRule,
    EcrReplicationConfigurationReplicationConfigurationRuleDestination,
    EcrReplicationConfigurationReplicationConfigurationRuleRepositoryFilter,
)
from cdktn_provider_aws.ecr_repository import (
    EcrRepository,
    EcrRepositoryEncryptionConfiguration,
    EcrRepositoryImageScanningConfiguration,
)
from cdktn_provider_aws.ecr_repository_creation_template import (
    EcrRepositoryCreationTemplate,
    EcrRepositoryCreationTemplateEncryptionConfiguration,
)
from cdktn_provider_aws.iam_role import IamRole
from cdktn_provider_aws.iam_role_policy import IamRolePolicy
from constructs import Construct

from mlfleet.constructs.aws.iam_policy import policy_document
from mlfleet.constructs.validation import (
    ACCOUNT_ID,
    ECR_REPOSITORY_NAME,
    IAM_ROLE_NAME,
    KMS_KEY_OR_ALIAS_ARN,
    REGION,
    require,
)

DEFAULT_UNTAGGED_EXPIRY_DAYS = 14


@dataclass(frozen=True, kw_only=True)
class EcrImageRepositoryProps:
    name: str
    """The repository's name, e.g. `mlfleet/runtime`; with `replicate_to` it needs a namespace (a '/')."""
    kms_key_arn: str
    """This region's customer-managed KMS key that encrypts the images."""
    account_id: str
    replicate_to: tuple[str, ...] = ()
    """Standby regions of the same account that get every image; default none (a standby's own repository
    is created by replication, under its `EcrReplicaTemplate`)."""
    manage_registry_replication: bool = True
    """Write the registry's (one, account-wide) replication configuration; default on. Off: only
    `replication_rule` is exposed, for the team that owns the configuration."""
    untagged_expiry_days: int = DEFAULT_UNTAGGED_EXPIRY_DAYS
    """Days an untagged image is kept after its push; default `14`."""
    tags: dict[str, str] = field(default_factory=dict)
    """AWS tags on the repository; default none."""


class EcrImageRepository(Construct):
    """An immutable, scanned, KMS-encrypted ECR repository, replicated to standby regions."""

    def __init__(self, scope: Construct, id_: str, props: EcrImageRepositoryProps):
        super().__init__(scope, id_)
        _validate_repository(self, props)
        self.repository = EcrRepository(
            self, "repository", name=props.name, image_tag_mutability="IMMUTABLE",
            image_scanning_configuration=EcrRepositoryImageScanningConfiguration(scan_on_push=True),
            encryption_configuration=[EcrRepositoryEncryptionConfiguration(
                encryption_type="KMS", kms_key=props.kms_key_arn)],
            tags=dict(props.tags) or None)
        EcrLifecyclePolicy(self, "lifecycle", repository=self.repository.name,
                           policy=lifecycle_policy(props.untagged_expiry_days))

        self.replication_rule: dict | None = None
        """The replication rule (Terraform shape of `replication_configuration.rule`), or None without
        `replicate_to`: written here, or added by the configuration's owner."""
        self.replication: EcrReplicationConfiguration | None = None
        if props.replicate_to:
            self.replication_rule = {
                "destination": [{"region": region, "registry_id": props.account_id}
                                for region in props.replicate_to],
                "repository_filter": [{"filter": props.name, "filter_type": "PREFIX_MATCH"}]}
            if props.manage_registry_replication:
                self.replication = EcrReplicationConfiguration(
                    self, "replication",
                    replication_configuration=EcrReplicationConfigurationReplicationConfiguration(rule=[
                        EcrReplicationConfigurationReplicationConfigurationRule(
                            destination=[EcrReplicationConfigurationReplicationConfigurationRuleDestination(
                                region=region, registry_id=props.account_id) for region in props.replicate_to],
                            repository_filter=[
                                EcrReplicationConfigurationReplicationConfigurationRuleRepositoryFilter(
                                    filter=props.name, filter_type="PREFIX_MATCH")])]))

        self.repository_url: str = self.repository.repository_url
        self.repository_name: str = self.repository.name
        self.arn: str = self.repository.arn


@dataclass(frozen=True, kw_only=True)
class EcrReplicaTemplateProps:
    repository_name: str
    """The replicated repository's name, e.g. `mlfleet/runtime`; its namespace (`mlfleet`) is the prefix."""
    kms_key_arn: str
    """This (standby) region's customer-managed KMS key, which replicated images are encrypted with."""
    account_id: str
    region: str
    """This region: the role may use the key only through ECR here."""
    role_name: str
    """The role ECR assumes to create the repository with the key; IAM is global, so include the region."""
    untagged_expiry_days: int = DEFAULT_UNTAGGED_EXPIRY_DAYS
    """Days an untagged image is kept, as in the primary; default `14`."""
    resource_tags: dict[str, str] = field(default_factory=dict)
    """AWS tags ECR puts on the repositories it creates; default none."""
    tags: dict[str, str] = field(default_factory=dict)
    """AWS tags on the role; default none."""


class EcrReplicaTemplate(Construct):
    """The creation template that gives a replicated repository the primary's settings (see module docstring).

    A template that encrypts with KMS (or tags) needs a custom role that ECR assumes to create the
    repository; it gets the key, through ECR in this region, and the ECR calls of the namespace only.
    Scanning is not a template setting: it is the registry's scanning configuration."""

    def __init__(self, scope: Construct, id_: str, props: EcrReplicaTemplateProps):
        super().__init__(scope, id_)
        _validate_template(self, props)
        prefix = creation_template_prefix(props.repository_name)
        tags = dict(props.tags) or None
        self.role = IamRole(
            self, "role", name=props.role_name,
            description=f"ECR creates replicated {prefix}/ repositories with their KMS key",
            assume_role_policy=policy_document([{
                "Effect": "Allow", "Principal": {"Service": "ecr.amazonaws.com"}, "Action": "sts:AssumeRole",
                # Only ECR acting for this account, not for another account that names the role.
                "Condition": {"StringEquals": {"aws:SourceAccount": props.account_id}}}]),
            tags=tags)
        ecr_actions = ["ecr:CreateRepository", "ecr:ReplicateImage"]
        if props.resource_tags:
            ecr_actions.append("ecr:TagResource")
        self.role_policy = IamRolePolicy(self, "role-policy", name="create-replicated-repositories",
                                         role=self.role.id, policy=policy_document([
            {"Sid": "CreateNamespaceRepositories", "Effect": "Allow", "Action": ecr_actions,
             "Resource": f"arn:aws:ecr:{props.region}:{props.account_id}:repository/{prefix}/*"},
            {"Sid": "EncryptWithTheRegionKey", "Effect": "Allow",
             "Action": ["kms:CreateGrant", "kms:Decrypt", "kms:DescribeKey", "kms:Encrypt",
                        "kms:GenerateDataKey*", "kms:RetireGrant"],
             "Resource": props.kms_key_arn,
             "Condition": {"StringEquals": {"kms:ViaService": f"ecr.{props.region}.amazonaws.com"}}}]))
        self.template = EcrRepositoryCreationTemplate(
            self, "template", prefix=prefix, applied_for=["REPLICATION"],
            description=f"Repositories replication creates under {prefix}/: as the primary's",
            image_tag_mutability="IMMUTABLE",
            encryption_configuration=[EcrRepositoryCreationTemplateEncryptionConfiguration(
                encryption_type="KMS", kms_key=props.kms_key_arn)],
            lifecycle_policy=lifecycle_policy(props.untagged_expiry_days),
            resource_tags=dict(props.resource_tags) or None, custom_role_arn=self.role.arn,
            # ECR checks the role when the template is created: its policy must exist by then.
            depends_on=[self.role_policy])
        self.prefix = prefix
        self.repository_name = props.repository_name
        self.repository_url = (f"{props.account_id}.dkr.ecr.{props.region}.amazonaws.com/"
                               f"{props.repository_name}")
        """Where this region pulls from, once replication has created the repository."""
        self.arn = f"arn:aws:ecr:{props.region}:{props.account_id}:repository/{props.repository_name}"


def creation_template_prefix(repository_name: str) -> str:
    """The creation template prefix that covers `repository_name`: its namespace (ECR appends the '/')."""
    return repository_name.rsplit("/", 1)[0]


def lifecycle_policy(untagged_expiry_days: int) -> str:
    return json.dumps({"rules": [{
        "rulePriority": 1, "description": f"Expire untagged images {untagged_expiry_days} days after push",
        "selection": {"tagStatus": "untagged", "countType": "sinceImagePushed", "countUnit": "days",
                      "countNumber": untagged_expiry_days},
        "action": {"type": "expire"}}]}, sort_keys=True)


def _validate_name(scope: Construct, prop: str, name: str, *, namespaced: bool) -> None:
    require(bool(ECR_REPOSITORY_NAME.fullmatch(name)), scope, prop,
            f"{name!r} is not an ECR repository name (lowercase components separated by '/', 2-256 characters)")
    if namespaced:
        require("/" in name, scope, prop,
                f"{name!r} has no namespace: a creation template's prefix is a namespace (ECR appends '/'), "
                "so a replicated repository is named like 'mlfleet/runtime'")


def _validate_common(scope: Construct, props: EcrImageRepositoryProps | EcrReplicaTemplateProps) -> None:
    require(bool(ACCOUNT_ID.fullmatch(props.account_id)), scope, "account_id",
            f"{props.account_id!r} is not a 12-digit AWS account id")
    require(Token.is_unresolved(props.kms_key_arn) or bool(KMS_KEY_OR_ALIAS_ARN.fullmatch(props.kms_key_arn)),
            scope, "kms_key_arn", f"{props.kms_key_arn!r} is not a KMS key ARN (images are encrypted with a "
            "customer-managed key, never AES-256)")
    require(1 <= props.untagged_expiry_days <= 3650, scope, "untagged_expiry_days",
            f"{props.untagged_expiry_days} is not between 1 and 3650 days")


def _validate_repository(scope: Construct, props: EcrImageRepositoryProps) -> None:
    _validate_name(scope, "name", props.name, namespaced=bool(props.replicate_to))
    _validate_common(scope, props)
    for i, region in enumerate(props.replicate_to):
        require(bool(REGION.fullmatch(region)), scope, f"replicate_to[{i}]", f"{region!r} is not an AWS region name")
    require(len(set(props.replicate_to)) == len(props.replicate_to), scope, "replicate_to", "lists a region twice")


def _validate_template(scope: Construct, props: EcrReplicaTemplateProps) -> None:
    _validate_name(scope, "repository_name", props.repository_name, namespaced=True)
    _validate_common(scope, props)
    require(bool(REGION.fullmatch(props.region)), scope, "region", f"{props.region!r} is not an AWS region name")
    require(bool(IAM_ROLE_NAME.fullmatch(props.role_name)), scope, "role_name",
            f"{props.role_name!r} is not a valid IAM role name (letters, digits, +=,.@_-; at most 64 characters)")
