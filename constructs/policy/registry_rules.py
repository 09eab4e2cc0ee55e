"""The rule pack on the model registry's separation of duties: only review writes the approved area
(the runtime's model repository, `<models_prefix>approved/`), and every runtime verifies the signed
manifest it serves from there.

- MLF036: an IAM policy (AWS) or a bucket IAM binding (Google Cloud) that lets a role other than
  review write or delete in an approved area, or a bucket guard that exempts one. The approved
  areas of a stack are the `.../approved/*` resources its policies and conditions name.
- MLF037: a runtime container (one with `--model-repository`) without `--manifest-public-key`, or
  with `--allow-unsigned`, which serves whatever manifest it finds.
"""
from __future__ import annotations

import fnmatch
import json
import re
from typing import Any, Iterator

from mlfleet.constructs.policy.findings import Check, Hits
from mlfleet.constructs.terraform_json import addressed, blocks, references, resources

APPROVED_AREA = "approved/"
# Keys inside an approved area: a model version's file, the manifest and its signature.
_PROBES = ("mlp/1/model.pt", "manifest.json", "manifest.json.sig")
_S3_WRITES = ("s3:PutObject", "s3:DeleteObject", "s3:DeleteObjectVersion")
_GCS_WRITE_ROLES = {"roles/storage.objectCreator", "roles/storage.objectUser", "roles/storage.objectAdmin",
                    "roles/storage.admin", "roles/storage.legacyBucketWriter", "roles/storage.legacyBucketOwner"}
_GCS_PREFIX = re.compile(r'resource\.name\.startsWith\("projects/_/buckets/([^/"]+)/objects/([^"]*)"\)')
_REVIEW = re.compile(r"-review$")
_RUNTIME_FLAG = "--model-repository"
_KEY_FLAG = "--manifest-public-key"
_UNSIGNED_FLAG = "--allow-unsigned"


def _listed(value: Any) -> list:
    return value if isinstance(value, list) else [value] if value is not None else []


def _statements(document: Any) -> list[dict]:
    try:
        doc = json.loads(document) if isinstance(document, str) else document
    except ValueError:
        return []  # an unresolved document is checked where it is defined
    return [s for s in _listed((doc or {}).get("Statement")) if isinstance(s, dict)]


def _covers(statement: dict, action: str, resource: str) -> bool:
    actions = _listed(statement.get("Action"))
    return any(fnmatch.fnmatchcase(action, a) for a in actions) and any(
        fnmatch.fnmatchcase(resource, r) for r in _listed(statement.get("Resource")) if isinstance(r, str))


def _aws_approved_areas(tf: dict) -> set[str]:
    """Every `arn:aws:s3:::<bucket>/<...>approved/*` the stack's IAM and bucket policies name."""
    documents = [body.get("policy") for rtype in ("aws_iam_role_policy", "aws_iam_policy", "aws_s3_bucket_policy")
                 for _, body in addressed(tf, rtype)]
    return {r for document in documents for s in _statements(document) for r in _listed(s.get("Resource"))
            if isinstance(r, str) and r.startswith("arn:aws:s3:::") and r.endswith(f"/{APPROVED_AREA}*")}


def _writes_approved(statements: list[dict], areas: set[str]) -> list[str]:
    """The approved areas the policy lets its holder write (an explicit deny in it wins)."""
    found = []
    for area in sorted(areas):
        root = area[:-1]
        # Keys of the area: a version's file, the manifest and its signature, and whatever key a
        # statement names inside the area.
        keys = {root + k for k in _PROBES} | {str(r).replace("*", "x") for s in statements
                                              for r in _listed(s.get("Resource")) if str(r).startswith(root)}
        if any(_allowed(statements, action, key) for action in _S3_WRITES for key in sorted(keys)):
            found.append(area)
    return found


def _allowed(statements: list[dict], action: str, key: str) -> bool:
    effects = {s.get("Effect") for s in statements if _covers(s, action, key)}
    return "Allow" in effects and "Deny" not in effects


def _aws(tf: dict) -> Hits:
    areas = _aws_approved_areas(tf)
    if not areas:
        return
    roles = {f"aws_iam_role.{name}": body.get("name", "") for name, body in resources(tf, "aws_iam_role").items()}
    for policy, body in addressed(tf, "aws_iam_role_policy"):
        role = next((roles[r] for r in references(body.get("role"), "aws_iam_role") if r in roles),
                    str(body.get("role", "")))
        if _REVIEW.search(role):
            continue
        for area in _writes_approved(_statements(body.get("policy")), areas):
            yield "MLF036", policy, f"role {role or '?'} may write the approved area {area}"
    for policy, body in addressed(tf, "aws_s3_bucket_policy"):
        for statement in _statements(body.get("policy")):
            if statement.get("Effect") != "Deny" or not any(r in areas for r in _listed(statement.get("Resource"))):
                continue
            exempt = [a for values in (statement.get("Condition") or {}).values() if isinstance(values, dict)
                      for a in _listed(values.get("aws:PrincipalArn")) if not _REVIEW.search(str(a))]
            if exempt:
                yield "MLF036", policy, f"the approved area's guard exempts {', '.join(sorted(exempt))}"


def _condition_prefixes(body: dict) -> Iterator[tuple[str, str]]:
    for condition in blocks(body.get("condition")):
        yield from _GCS_PREFIX.findall(str(condition.get("expression", "")))


def _gcp(tf: dict) -> Hits:
    grants = addressed(tf, "google_storage_bucket_iam_member")
    areas = {(bucket, prefix) for _, body in grants for bucket, prefix in _condition_prefixes(body)
             if prefix.endswith(APPROVED_AREA)}
    accounts = {f"google_service_account.{name}": body.get("account_id", "")
                for name, body in resources(tf, "google_service_account").items()}
    for grant, body in grants:
        if body.get("role") not in _GCS_WRITE_ROLES:
            continue
        member = str(body.get("member", ""))
        account = next((accounts[a] for a in references(member, "google_service_account") if a in accounts),
                       member.partition(":")[2].split("@")[0])
        if _REVIEW.search(account):
            continue
        prefixes = list(_condition_prefixes(body))
        for bucket, area in sorted(areas):
            if body.get("bucket") != bucket:
                continue
            # No condition: the whole bucket. A condition: any of its prefixes that holds the area.
            # (a prefix holding the area, or one inside it).
            if not blocks(body.get("condition")) or any(
                    b == bucket and ((area + _PROBES[0]).startswith(p) or p.startswith(area)) for b, p in prefixes):
                yield "MLF036", grant, f"{account or member} may write the approved area gs://{bucket}/{area}"


def _runtime_args(tf: dict) -> Iterator[tuple[str, str, list[str]]]:
    for rtype in ("kubernetes_deployment_v1", "kubernetes_deployment"):
        for workload, body in addressed(tf, rtype):
            spec = (blocks(body.get("spec")) or [{}])[0]
            template = (blocks(spec.get("template")) or [{}])[0]
            pod = (blocks(template.get("spec")) or [{}])[0]
            for container in blocks(pod.get("container")):
                args = [str(a) for a in container.get("args") or []]
                if any(a == _RUNTIME_FLAG or a.startswith(_RUNTIME_FLAG + "=") for a in args):
                    yield workload, str(container.get("name")), args


def _signed_manifest(tf: dict) -> Hits:
    for workload, name, args in _runtime_args(tf):
        if _UNSIGNED_FLAG in args:
            yield "MLF037", workload, f"container {name} runs with {_UNSIGNED_FLAG}: it serves unsigned manifests"
        elif not any(a == _KEY_FLAG or a.startswith(_KEY_FLAG + "=") for a in args):
            yield "MLF037", workload, f"container {name} has no {_KEY_FLAG}: nothing verifies the manifest it serves"


CHECKS: tuple[Check, ...] = (_aws, _gcp, _signed_manifest)
