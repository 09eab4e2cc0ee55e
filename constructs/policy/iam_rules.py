"""The rule pack on AWS policy documents, wherever one lives: identity policies (role, user, group,
managed, inline), trust policies, resource policies (S3, KMS, SNS, SQS, ECR, Secrets Manager, VPC
endpoints, …) and `aws_iam_policy_document` data sources, read in one statement shape.

- MLF005: an Allow with a wildcard action (`*`, `s3:*`, and partial ones: `s3:Put*`, `iam:*Policy`,
  `*:Get*`), or with NotAction; an attached AWS managed policy that grants everything of a service.
  Exempt: a key policy's `kms:*` to the stack's own account root (the documented delegation of the
  key to the account's IAM policies), and `_NARROW_WILDCARDS`, whose expansion is a short fixed list.
- MLF040: iam:PassRole on any role (`*`, `…:role/*`, NotResource) without an `iam:PassedToService`
  condition: the holder hands any role, admin included, to any service it can start.
- MLF041: an Allow to any principal (`*`, `{"AWS": "*"}`, NotPrincipal) without a condition on a key
  of `NARROWING_KEYS` that names who (or which account, organisation, VPC, source) may act; a web
  identity federation that does not pin the token's subject (`<issuer>:sub`; Cognito: `:aud`).
- MLF043 (hardening): an empty `Condition` or an empty operator map, the trace of a condition a
  generator dropped.

Documents only known at apply (`${data….json}`) are judged where they are defined.
"""
from __future__ import annotations

import fnmatch
import json
import re
from typing import Any, Iterator

from mlfleet.constructs.policy.exposure_rules import internet_exposure
from mlfleet.constructs.policy.findings import Check, Hits
from mlfleet.constructs.terraform_json import addressed, blocks, data_sources, providers

# Where a policy document lives: resource type → the attribute that holds it.
_DOCUMENTS: dict[str, str] = {
    "aws_iam_role_policy": "policy", "aws_iam_policy": "policy", "aws_iam_user_policy": "policy",
    "aws_iam_group_policy": "policy", "aws_iam_role": "assume_role_policy",
    "aws_s3_bucket_policy": "policy", "aws_s3_bucket": "policy", "aws_kms_key": "policy",
    "aws_kms_replica_key": "policy", "aws_sns_topic": "policy", "aws_sns_topic_policy": "policy",
    "aws_sqs_queue": "policy", "aws_sqs_queue_policy": "policy", "aws_ecr_repository_policy": "policy",
    "aws_ecr_registry_policy": "policy", "aws_secretsmanager_secret": "policy",
    "aws_secretsmanager_secret_policy": "policy", "aws_vpc_endpoint": "policy", "aws_vpc_endpoint_policy": "policy",
    "aws_backup_vault_policy": "policy", "aws_efs_file_system_policy": "policy",
    "aws_cloudwatch_log_resource_policy": "policy_document", "aws_opensearch_domain_policy": "access_policies",
    "aws_api_gateway_rest_api_policy": "policy", "aws_glacier_vault": "access_policy",
}
_KEY_POLICIES = {"aws_kms_key", "aws_kms_replica_key"}
_ENDPOINT_POLICIES = {"aws_vpc_endpoint", "aws_vpc_endpoint_policy"}

# Partial wildcards that expand to a short, fixed list of actions (AWS's own key policy uses them).
_NARROW_WILDCARDS = {
    "kms:generatedatakey*": ("kms:GenerateDataKey", "kms:GenerateDataKeyPair",
                             "kms:GenerateDataKeyPairWithoutPlaintext", "kms:GenerateDataKeyWithoutPlaintext"),
    "kms:reencrypt*": ("kms:ReEncryptFrom", "kms:ReEncryptTo"),
}
# AWS managed policies that grant every action of a service (or of all of them).
_FULL_ACCESS = re.compile(r"arn:aws[a-z-]*:iam::aws:policy/(.*/)?(AdministratorAccess|PowerUserAccess|\w*FullAccess)")

# Condition keys that narrow "any principal" to someone: who calls, from which account,
# organisation, network or source resource. (Matched case-insensitively, as IAM does.)
NARROWING_KEYS = ("aws:PrincipalArn", "aws:PrincipalAccount", "aws:PrincipalOrgID", "aws:PrincipalOrgPaths",
                  "aws:SourceAccount", "aws:SourceArn", "aws:SourceOwner", "aws:SourceOrgID", "aws:SourceOrgPaths",
                  "aws:SourceVpc", "aws:SourceVpce", "aws:SourceIp", "kms:CallerAccount")
# A VPC endpoint policy also narrows by the resources it lets the VPC reach (the exfiltration guard).
_ENDPOINT_NARROWING_KEYS = ("aws:ResourceAccount", "aws:ResourceOrgID", "aws:ResourceOrgPaths")
# Operators that require the key to hold a listed value. `…IfExists`, `Not…`, `ForAllValues:` and
# `Null` all hold for a request without the key (or with any other value).
_POSITIVE_OPERATORS = {"stringequals", "stringequalsignorecase", "stringlike", "arnequals", "arnlike", "ipaddress"}
_ACCOUNT_KEYS = {"aws:principalaccount", "aws:sourceaccount", "aws:sourceowner", "kms:calleraccount",
                 "aws:resourceaccount"}
# A role no pattern names on purpose: IAM names cannot hold "~", so only wildcards match it.
_ROLE_PROBE = "arn:{partition}:iam::{account}:role/~/~"


def _listed(value: Any) -> list:
    return value if isinstance(value, list) else [] if value is None else [value]


def _parse(document: Any) -> list[dict] | None:
    """A policy document's statements, or None when it is only known at apply."""
    try:
        doc = json.loads(document) if isinstance(document, str) else document
    except ValueError:
        return None
    if not isinstance(doc, dict):
        return None
    return [s for s in _listed(doc.get("Statement")) if isinstance(s, dict)]


def _from_data_source(doc: dict) -> list[dict]:
    """An `aws_iam_policy_document`'s statement blocks in the JSON shape the other documents have."""
    out = []
    for block in blocks(doc.get("statement")):
        statement: dict[str, Any] = {"Effect": block.get("effect", "Allow")}
        for hcl, key in (("actions", "Action"), ("not_actions", "NotAction"), ("resources", "Resource"),
                         ("not_resources", "NotResource")):
            if block.get(hcl) is not None:
                statement[key] = block[hcl]
        for hcl, key in (("principals", "Principal"), ("not_principals", "NotPrincipal")):
            for p in blocks(block.get(hcl)):
                ids = _listed(p.get("identifiers"))
                if p.get("type") == "*":
                    statement[key] = "*"
                elif isinstance(statement.setdefault(key, {}), dict):
                    statement[key].setdefault(p.get("type"), []).extend(ids)
        if "condition" in block:
            conditions: dict[str, dict] = {}
            for c in blocks(block.get("condition")):
                conditions.setdefault(str(c.get("test")), {})[str(c.get("variable"))] = c.get("values")
            statement["Condition"] = conditions
        out.append(statement)
    return out


def documents(tf: dict) -> Iterator[tuple[str, str, list[dict]]]:
    """(address, resource type, statements) of every policy document the stack defines."""
    for rtype, attribute in _DOCUMENTS.items():
        for resource, body in addressed(tf, rtype):
            statements = _parse(body.get(attribute))
            if statements is not None:
                yield resource, rtype, statements
            if rtype == "aws_iam_role":
                for inline in blocks(body.get("inline_policy")):
                    inline_statements = _parse(inline.get("policy"))
                    if inline_statements is not None:
                        yield resource, "aws_iam_role_policy", inline_statements
    for name, doc in data_sources(tf, "aws_iam_policy_document").items():
        # Documents merged in (`source_…`, `override_…`) end up in this one's JSON.
        merged = [s for key in ("source_policy_documents", "override_policy_documents")
                  for document in _listed(doc.get(key)) for s in _parse(document) or []]
        yield f"data.aws_iam_policy_document.{name}", "aws_iam_policy_document", _from_data_source(doc) + merged


def _allows(statement: dict) -> bool:
    return statement.get("Effect", "Allow") == "Allow"  # no Effect: fail closed


def _covers_action(statement: dict, action: str) -> bool:
    action = action.lower()
    if "NotAction" in statement:
        return not any(fnmatch.fnmatchcase(action, str(a).lower()) for a in _listed(statement["NotAction"]))
    return any(fnmatch.fnmatchcase(action, str(a).lower()) for a in _listed(statement.get("Action")))


def _own_accounts(tf: dict) -> set[str]:
    return {str(a) for p in providers(tf, "aws") for a in _listed(p.get("allowed_account_ids"))}


_ACCOUNT_ROOT = re.compile(r"(arn:aws[a-z-]*:iam::)?(\d{12})(:root)?")


def _delegates_key_to_account(statement: dict, accounts: set[str]) -> bool:
    """A key policy's `kms:*` to the stack's own account root: the key defers to the account's IAM.
    A stack that declares no `allowed_account_ids` (a construct on its own) cannot tell its own
    account from another's, so any account root is taken for its own."""
    principal = statement.get("Principal")
    roots = [_ACCOUNT_ROOT.fullmatch(str(r)) for r in (
        _listed(principal.get("AWS")) if isinstance(principal, dict) and set(principal) == {"AWS"} else [])]
    return bool(roots) and _listed(statement.get("Action")) == ["kms:*"] and all(
        r is not None and (r.group(1) is None) == (r.group(3) is None) and (not accounts or r.group(2) in accounts)
        for r in roots)


def _wildcard_actions(statement: dict) -> list[str]:
    found = ["NotAction"] if "NotAction" in statement else []
    return found + [str(a) for a in _listed(statement.get("Action"))
                    if ("*" in str(a) or "?" in str(a)) and str(a).lower() not in _NARROW_WILDCARDS]


def _any_role(resource: str) -> bool:
    """Whether a Resource pattern matches a role its author never named."""
    parts = resource.split(":", 5)
    partition = parts[1] if len(parts) > 1 and parts[1] and not set(parts[1]) & set("*?") else "aws"
    account = parts[4] if len(parts) > 4 and parts[4].isdigit() else "000000000000"
    return fnmatch.fnmatchcase(_ROLE_PROBE.format(partition=partition, account=account).lower(), resource.lower())


def _narrowing_value(key: str, value: Any) -> bool:
    text = str(value)
    if not text:
        return False
    if not set(text) & set("*?"):
        return True
    if key in _ACCOUNT_KEYS or key.endswith(":sub") or key.endswith(":aud"):
        return not text.startswith(("*", "?"))
    if text.startswith("arn:"):
        fields = text.split(":", 5)
        account = fields[4] if len(fields) > 4 else "*"
        return account.isdigit() or (account == "" and len(fields) > 5 and not fields[5].startswith(("*", "?")))
    return not text.startswith(("*", "?"))


def _condition_on(statement: dict, keys: set[str]) -> bool:
    """Whether the statement requires one of `keys` (lowercase) to hold values that name someone."""
    conditions = statement.get("Condition")
    for operator, entries in (conditions.items() if isinstance(conditions, dict) else []):
        op = str(operator).lower().removeprefix("foranyvalue:")
        if op not in _POSITIVE_OPERATORS or not isinstance(entries, dict):
            continue
        for key, values in entries.items():
            key = str(key).lower()
            listed = _listed(values)
            if key not in keys or not listed:
                continue
            if key == "aws:sourceip" and internet_exposure(listed):
                continue
            if all(_narrowing_value(key, v) for v in listed):
                return True
    return False


def _public_principal(statement: dict, rtype: str) -> str | None:
    if "NotPrincipal" in statement:
        return "NotPrincipal allows every principal it does not name"
    principal = statement.get("Principal")
    public = principal == "*" or isinstance(principal, dict) and any(
        "*" in _listed(principal.get(kind)) for kind in ("AWS", "CanonicalUser"))
    if not public:
        return None
    if rtype in _ENDPOINT_POLICIES and _names_its_resources(statement):
        return None  # an endpoint policy's "*" is any caller in the VPC: what it may reach is what matters
    keys = {k.lower() for k in NARROWING_KEYS + (_ENDPOINT_NARROWING_KEYS if rtype in _ENDPOINT_POLICIES else ())}
    return None if _condition_on(statement, keys) else "allows any principal without a narrowing condition"


def _names_its_resources(statement: dict) -> bool:
    """Every resource is named: a bucket (any key in it), or a resource of a named account. Through a
    VPC endpoint such a statement cannot carry data to a place of the caller's choosing."""
    resources = [str(r) for r in _listed(statement.get("Resource"))]
    return bool(resources) and "NotResource" not in statement and all(_named(r) for r in resources)


def _named(arn: str) -> bool:
    parts = arn.split(":", 5)
    if len(parts) < 6 or parts[0] != "arn":
        return False
    service, account, rest = parts[2], parts[4], parts[5]
    if service == "s3":
        return bool(rest) and not {"*", "?"} & set(rest.split("/", 1)[0])
    return bool(account) and not {"*", "?", "$"} & set(account)


def _unpinned_federation(statement: dict) -> str | None:
    principal = statement.get("Principal")
    for issuer in _listed(principal.get("Federated")) if isinstance(principal, dict) else []:
        issuer = str(issuer)
        if ":saml-provider/" in issuer:
            continue  # the account's own identity provider asserts who signs in
        host = issuer.split(":oidc-provider/", 1)[-1]
        key = f"{host}:aud" if host == "cognito-identity.amazonaws.com" else f"{host}:sub"
        if not _condition_on(statement, {key.lower()}):
            return f"federated principal {issuer} without a {key} condition: any identity it issues may assume"
    return None


def _statements(tf: dict) -> Hits:
    accounts = _own_accounts(tf)
    for resource, rtype, statements in documents(tf):
        wildcards: list[str] = []
        for statement in statements:
            if not _allows(statement):
                continue
            if not (rtype in _KEY_POLICIES and _delegates_key_to_account(statement, accounts)):
                wildcards += _wildcard_actions(statement)
            if _covers_action(statement, "iam:PassRole") and (
                    "NotResource" in statement or any(_any_role(str(r)) for r in _listed(statement.get("Resource")))
            ) and not _condition_on(statement, {"iam:passedtoservice"}):
                yield "MLF040", resource, "iam:PassRole on any role without an iam:PassedToService condition"
            for why in (_public_principal(statement, rtype), _unpinned_federation(statement)):
                if why:
                    yield "MLF041", resource, f"{statement.get('Sid') or 'a statement'}: {why}"
        if wildcards:
            yield "MLF005", resource, f"allows {', '.join(sorted(set(wildcards)))}"


def _managed_policies(tf: dict) -> Hits:
    for rtype in ("aws_iam_role_policy_attachment", "aws_iam_user_policy_attachment",
                  "aws_iam_group_policy_attachment", "aws_iam_policy_attachment"):
        for attachment, body in addressed(tf, rtype):
            if _FULL_ACCESS.fullmatch(str(body.get("policy_arn", ""))):
                yield "MLF005", attachment, f"attaches {body['policy_arn']}, every action of its services"
    for role, body in addressed(tf, "aws_iam_role"):
        for arn in _listed(body.get("managed_policy_arns")):
            if _FULL_ACCESS.fullmatch(str(arn)):
                yield "MLF005", role, f"attaches {arn}, every action of its services"


def _empty_conditions(tf: dict) -> Hits:
    for resource, _, statements in documents(tf):
        for statement in statements:
            if "Condition" not in statement:
                continue
            conditions = statement["Condition"]
            if not conditions or not isinstance(conditions, dict) or any(
                    not entries or isinstance(entries, dict) and any(_listed(v) == [] for v in entries.values())
                    for entries in conditions.values()):
                yield ("MLF043", resource, f"{statement.get('Sid') or 'a statement'} has an empty Condition or "
                       "operator: the trace of a dropped condition")


CHECKS: tuple[Check, ...] = (_statements, _managed_policies, _empty_conditions)
