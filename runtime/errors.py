"""Errors that reach a client. Each carries what it means (`ErrorKind`), never a protocol's code:
the REST front end maps the meaning to an HTTP status, the gRPC front end to a gRPC status code,
and the data plane decides from it whether the error is the server's fault (it counts against
failover health) or the client's."""
from __future__ import annotations

import enum


class ErrorKind(enum.Enum):
    INVALID_ARGUMENT = "invalid argument"
    UNAUTHENTICATED = "unauthenticated"
    PERMISSION_DENIED = "permission denied"
    NOT_FOUND = "not found"
    METHOD_NOT_ALLOWED = "method not allowed"
    CONFLICT = "conflict"
    TOO_LARGE = "too large"
    UNAVAILABLE = "unavailable"
    OVERLOADED = "overloaded"  # shed by admission control: a capacity signal, not a fault
    INTERNAL = "internal"

    @property
    def server_side(self) -> bool:
        """The server failed the request (not the client): it counts in the error rate."""
        return self in (ErrorKind.UNAVAILABLE, ErrorKind.INTERNAL)


class ServingError(Exception):
    """A failure inside the server; subclasses name the client-facing meanings."""

    kind = ErrorKind.INTERNAL

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


class BadRequest(ServingError):
    """The request is malformed or does not fit the model."""

    kind = ErrorKind.INVALID_ARGUMENT


class Unauthorized(ServingError):
    """A management call without a valid credential."""

    kind = ErrorKind.UNAUTHENTICATED


class Forbidden(ServingError):
    """A management call that this process does not allow at all."""

    kind = ErrorKind.PERMISSION_DENIED


class NotFound(ServingError):
    """No such model, version or route."""

    kind = ErrorKind.NOT_FOUND


class MethodNotAllowed(ServingError):
    """The route exists, the method does not."""

    kind = ErrorKind.METHOD_NOT_ALLOWED


class Conflict(ServingError):
    """A refused re-pin (verification, canary or manifest failure) or one already in progress."""

    kind = ErrorKind.CONFLICT


class PayloadTooLarge(ServingError):
    kind = ErrorKind.TOO_LARGE


class Unavailable(ServingError):
    """Not ready: starting, draining or unloading."""

    kind = ErrorKind.UNAVAILABLE


class Overloaded(ServingError):
    """Shed at admission: the model already holds its bound of queued and executing requests.
    Not the server failing: it never counts in the failover error rate."""

    kind = ErrorKind.OVERLOADED


class ModelFailure(ServingError):
    """The model itself failed on valid input: a server-side error that counts against health."""
