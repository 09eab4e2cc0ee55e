"""The rule pack on Google Cloud IAM grants, in every form a grant takes: `google_*_iam_member`,
`google_*_iam_binding`, `google_*_iam_policy` (its `policy_data` JSON) and `data.google_iam_policy`.

- MLF002: a public member (allUsers, allAuthenticatedUsers).
- MLF005: a primitive role (owner, editor, viewer).
- MLF042: a project-, folder- or organization-level grant of a role that lets its member act as
  every service account below it (mint tokens, sign, use, create keys, bind workload identities),
  or of a custom role with those permissions. The same role on one service account is fine.
- MLF043 (hardening): a grant's condition block without an expression.
"""
from __future__ import annotations

import json
import re
from typing import Any, Iterator

from mlfleet.constructs.policy.findings import Check, Hits
from mlfleet.constructs.terraform_json import address, all_resources, blocks, data_sources, references

_PUBLIC_MEMBERS = {"allUsers", "allAuthenticatedUsers"}
_PRIMITIVE_ROLES = {"roles/owner", "roles/editor", "roles/viewer"}
IMPERSONATION_ROLES = {"roles/iam.serviceAccountTokenCreator", "roles/iam.serviceAccountOpenIdTokenCreator",
                       "roles/iam.serviceAccountUser", "roles/iam.workloadIdentityUser",
                       "roles/iam.serviceAccountKeyAdmin", "roles/iam.serviceAccountAdmin"}
_IMPERSONATION_PERMISSIONS = {"iam.serviceAccounts.getAccessToken", "iam.serviceAccounts.getOpenIdToken",
                              "iam.serviceAccounts.actAs", "iam.serviceAccounts.implicitDelegation",
                              "iam.serviceAccounts.signBlob", "iam.serviceAccounts.signJwt",
                              "iam.serviceAccountKeys.create", "iam.serviceAccounts.setIamPolicy"}
# Grants on a container of service accounts, not on one of them.
_HIERARCHY = re.compile(r"google_(project|folder|organization)_iam_(member|binding|policy)")
_GRANT = re.compile(r"google_\w+_iam_(member|binding|policy)")
_CUSTOM_ROLES = ("google_project_iam_custom_role", "google_organization_iam_custom_role")


def _bindings(rtype: str, body: dict) -> Iterator[tuple[str, set[str]]]:
    """(role, members) of one grant resource."""
    if rtype.endswith("_iam_policy"):
        try:
            policy = json.loads(body.get("policy_data") or "{}")
        except (TypeError, ValueError):
            return  # a data.google_iam_policy reference: read where it is defined
        for binding in policy.get("bindings", []) if isinstance(policy, dict) else []:
            yield str(binding.get("role")), set(binding.get("members") or [])
        return
    listed = body.get("members")
    members = set(listed if isinstance(listed, list) else []) | ({body["member"]} if body.get("member") else set())
    yield str(body.get("role")), members


def _impersonating_custom_roles(tf: dict) -> dict[str, str]:
    """Custom roles with an impersonation permission: their address and role_id."""
    found = {}
    for rtype in _CUSTOM_ROLES:
        for name, body in tf.get("resource", {}).get(rtype, {}).items():
            if set(body.get("permissions") or []) & _IMPERSONATION_PERMISSIONS:
                found[address(rtype, name)] = str(body.get("role_id"))
    return found


def _impersonates(role: str, custom: dict[str, str]) -> bool:
    return role in IMPERSONATION_ROLES or bool(references(role, "google_project_iam_custom_role") & set(custom)) or \
        bool(references(role, "google_organization_iam_custom_role") & set(custom)) or \
        any(role.endswith(f"/roles/{role_id}") for role_id in custom.values())


def _grants(tf: dict) -> Hits:
    custom = _impersonating_custom_roles(tf)
    policies_of: dict[str, set[str]] = {}  # data.google_iam_policy address → the resource types using it
    for rtype, name, body in all_resources(tf):
        if not _GRANT.fullmatch(rtype):
            continue
        grant = address(rtype, name)
        for data in references(body.get("policy_data"), "data.google_iam_policy"):
            policies_of.setdefault(data, set()).add(rtype)
        yield from _judge(grant, rtype, list(_bindings(rtype, body)), custom)
    for name, doc in data_sources(tf, "google_iam_policy").items():
        data = f"data.google_iam_policy.{name}"
        bindings = [(str(b.get("role")), set(b.get("members") or [])) for b in blocks(doc.get("binding"))]
        # Judged as the most exposed grant that uses it.
        rtype = next((t for t in sorted(policies_of.get(data, ())) if _HIERARCHY.fullmatch(t)), "google_iam_policy")
        yield from _judge(data, rtype, bindings, custom)


def _judge(grant: str, rtype: str, bindings: list[tuple[str, set[Any]]], custom: dict[str, str]) -> Hits:
    for role, members in bindings:
        public = members & _PUBLIC_MEMBERS
        if public:
            yield "MLF002", grant, f"grants {role} to {', '.join(sorted(public))}"
        if role in _PRIMITIVE_ROLES:
            yield "MLF005", grant, f"grants the primitive role {role}"
        level = _HIERARCHY.fullmatch(rtype)
        if level and _impersonates(role, custom):
            yield ("MLF042", grant, f"grants {role} on the whole {level.group(1)}: its members may act as every "
                   "service account in it")


def _empty_conditions(tf: dict) -> Hits:
    """A grant's condition block without an expression: what is left of a dropped restriction."""
    for rtype, name, body in all_resources(tf):
        if _GRANT.fullmatch(rtype) and any(not str(c.get("expression") or "").strip()
                                           for c in blocks(body.get("condition"))):
            yield "MLF043", address(rtype, name), "condition without an expression: the grant is unconditional"


CHECKS: tuple[Check, ...] = (_grants, _empty_conditions)
