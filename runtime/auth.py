"""The management credential: one bearer token guards pinning and model repository control on
both front ends, checked the same way (constant-time compare)."""
from __future__ import annotations

import hmac

from .errors import Forbidden, Unauthorized


def check_bearer(admin_token: str | None, authorization: bytes) -> None:
    """`authorization` is the Authorization header (HTTP) or metadata value (gRPC) as sent."""
    if admin_token is None:
        raise Forbidden("model management (pinning, repository load/unload) is disabled: start the "
                        "runtime with --admin-token-file or MLFLEET_ADMIN_TOKEN to enable it")
    scheme, _, credential = authorization.partition(b" ")
    if scheme.lower() != b"bearer" or not hmac.compare_digest(credential.strip(), admin_token.encode()):
        raise Unauthorized("missing or invalid bearer token")
