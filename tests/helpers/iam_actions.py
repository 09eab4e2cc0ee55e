"""The IAM action of an AWS request as the sandbox's fault proxy saw it (its signing service, its
method and path, or its query/JSON action name), from botocore's own service models: what a test
compares with the permissions a policy grants."""
from __future__ import annotations

import re
from functools import cache

import botocore.session

# Where the IAM action is not the API operation's name.
# A PUT of an object reads as CopyObject too (the copy source is a header): its IAM action is PutObject.
_IAM_NAME = {("s3", "HeadObject"): "GetObject", ("s3", "ListObjectsV2"): "ListBucket",
             ("s3", "ListObjects"): "ListBucket", ("s3", "HeadBucket"): "ListBucket", ("s3", "CopyObject"): "PutObject",
             ("s3", "GetObjectLockConfiguration"): "GetBucketObjectLockConfiguration"}
_IAM_PREFIX = {"monitoring": "cloudwatch"}  # CloudWatch signs as `monitoring`
_SERVICES = ("s3", "rds", "route53", "eks", "dynamodb", "cloudwatch", "sts", "kms", "ecr", "iam",
             "route53-recovery-cluster", "route53-recovery-control-config")


@cache
def _routes() -> dict[str, list[tuple[str, re.Pattern, str]]]:
    """signing name -> [(HTTP method, path pattern, operation)], most specific path first."""
    session = botocore.session.get_session()
    routes: dict[str, list[tuple[str, re.Pattern, str]]] = {}
    for name in _SERVICES:
        model = session.get_service_model(name)
        for operation in model.operation_names:
            http = model.operation_model(operation).http
            uri, _, query = http["requestUri"].partition("?")
            pattern = re.escape(uri.rstrip("/") or "/")
            pattern = re.sub(r"\\\{[A-Za-z0-9_]+\\\+\\\}", ".+", pattern)  # {Key+}: slashes too
            pattern = re.sub(r"\\\{[A-Za-z0-9_]+\\\}", "[^/]+", pattern)
            marker = query.split("=")[0] if query else ""
            routes.setdefault(model.signing_name or name, []).append(
                (http["method"], re.compile(f"^{pattern}/?$"), operation + ("?" + marker if marker else "")))
    for entries in routes.values():
        entries.sort(key=lambda e: (-len(e[1].pattern), "?" not in e[2]))
    return routes


def iam_action(service: str, action: str, query: str = "") -> str | None:
    """`s3:PutObject` for ("s3", "PUT /bucket/key"); None where no operation matches."""
    prefix = _IAM_PREFIX.get(service, service)
    method, _, target = action.partition(" ")
    if not target:  # a query or JSON protocol names its action
        return f"{prefix}:{_IAM_NAME.get((service, action), action)}"
    path, _, in_path = target.partition("?")
    query = "&".join(q for q in (query, in_path) if q)
    for verb, pattern, operation in _routes().get(service, []):
        name, _, marker = operation.partition("?")
        if verb == method and pattern.match(path) and (
                not marker or any(p.split("=")[0] == marker for p in query.split("&"))):
            return f"{prefix}:{_IAM_NAME.get((service, name), name)}"
    return None
