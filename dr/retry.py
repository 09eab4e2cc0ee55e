"""Which failures are worth retrying. Throttling, 5xx with an AWS error document, timeouts
and dropped connections are transient; a 4xx is the caller's mistake and an unimplemented
action never starts working, so both fail at once.

An unimplemented action has two faces: a `NotImplemented`-style error code, or (moto through
its server) an HTTP 500 whose body is an HTML page instead of an AWS error document, which
botocore reports as a ResponseParserError."""
from __future__ import annotations

import random
import time
from dataclasses import dataclass
from typing import Callable, TypeVar

T = TypeVar("T")

TRANSIENT, PERMANENT, NOT_IMPLEMENTED = "transient", "permanent", "not-implemented"

_THROTTLING = {"Throttling", "ThrottlingException", "ThrottledException", "RequestThrottled",
               "RequestThrottledException", "TooManyRequestsException", "RequestLimitExceeded",
               "SlowDown", "ProvisionedThroughputExceededException", "PriorRequestNotComplete",
               "BandwidthLimitExceeded", "EC2ThrottledException", "TransactionInProgressException"}
_NOT_IMPLEMENTED = {"NotImplemented", "NotImplementedException", "InvalidAction", "UnknownOperationException",
                    "UnsupportedOperation"}


class NotImplementedByProvider(Exception):
    """The endpoint does not implement an action a runbook needs."""


def classify(exc: BaseException) -> str:
    from botocore.exceptions import (
        ClientError,
        ConnectionClosedError,
        ConnectTimeoutError,
        EndpointConnectionError,
        ReadTimeoutError,
    )
    from botocore.parsers import ResponseParserError

    if isinstance(exc, NotImplementedByProvider):
        return NOT_IMPLEMENTED
    if getattr(exc, "transient", False):  # an error of ours that wraps one worth retrying
        return TRANSIENT
    if isinstance(exc, ResponseParserError):
        return NOT_IMPLEMENTED if "500" in str(exc) and "<html" in str(exc).lower() else TRANSIENT
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        code = str(error.get("Code", ""))
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        if code in _NOT_IMPLEMENTED or status == 501:
            return NOT_IMPLEMENTED
        if code in _THROTTLING or status == 429 or status >= 500:
            return TRANSIENT
        return PERMANENT
    if isinstance(exc, (EndpointConnectionError, ConnectTimeoutError, ReadTimeoutError, ConnectionClosedError,
                        ConnectionError, TimeoutError, OSError)):
        return TRANSIENT
    status = getattr(exc, "status_code", None) or getattr(getattr(exc, "response", None), "status_code", None)
    if status is None and type(exc).__module__.startswith("google.api_core"):
        status = getattr(exc, "code", None)  # GoogleAPICallError: the HTTP status
    if isinstance(status, int):
        if status == 501:
            return NOT_IMPLEMENTED
        return TRANSIENT if status == 429 or status >= 500 else PERMANENT
    return PERMANENT


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 6
    base_s: float = 0.5
    cap_s: float = 20.0

    def delay(self, attempt: int) -> float:
        """Full jitter: spreads a fleet of retries instead of synchronizing them."""
        return random.uniform(0, min(self.cap_s, self.base_s * 2 ** attempt))


class GaveUp(Exception):
    def __init__(self, what: str, kind: str, cause: BaseException, attempts: int):
        self.kind = kind
        self.cause = cause
        reason = {NOT_IMPLEMENTED: "not implemented by the endpoint (not retried)",
                  PERMANENT: "rejected (not retried)",
                  TRANSIENT: f"still failing after {attempts} attempts"}[kind]
        super().__init__(f"{what}: {reason}: {_short(cause)}")


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text[:300]


def call_with_retry(what: str, fn: Callable[[], T], policy: RetryPolicy,
                    sleep: Callable[[float], None] = time.sleep) -> T:
    for attempt in range(policy.attempts):
        try:
            return fn()
        except Exception as exc:  # classified below, re-raised as GaveUp
            kind = classify(exc)
            if kind != TRANSIENT or attempt == policy.attempts - 1:
                raise GaveUp(what, kind, exc, attempt + 1) from exc
            sleep(policy.delay(attempt))
    raise AssertionError("unreachable")
