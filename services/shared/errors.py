"""The one error model: domain code raises a `ServiceError`, the bootstrap turns it into a status.

Every module below a servicer raises one of these classes (or a subclass named for the domain,
such as matching's `UnknownGalleryError(NotFound)`). `services.shared.server` maps them to
`context.abort(code, message)` in one place, for unary and streaming RPCs alike, so servicers
hold no `try/except` of their own. The message is what the caller reads: it says what to fix.

A call to another service that fails is turned into the same model by `from_rpc_error`: a
downstream outage is UNAVAILABLE naming the service, any other status is passed on as it came.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import grpc


class ServiceError(Exception):
    """An error the caller must see as a gRPC status with this message."""

    code: grpc.StatusCode = grpc.StatusCode.INTERNAL

    def __init__(self, message: str, code: grpc.StatusCode | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code

    def __str__(self) -> str:
        return self.message


class InvalidArgument(ServiceError):
    code = grpc.StatusCode.INVALID_ARGUMENT


class NotFound(ServiceError):
    code = grpc.StatusCode.NOT_FOUND


class AlreadyExists(ServiceError):
    code = grpc.StatusCode.ALREADY_EXISTS


class FailedPrecondition(ServiceError):
    code = grpc.StatusCode.FAILED_PRECONDITION


class PermissionDenied(ServiceError):
    code = grpc.StatusCode.PERMISSION_DENIED


class ResourceExhausted(ServiceError):
    code = grpc.StatusCode.RESOURCE_EXHAUSTED


class Unavailable(ServiceError):
    code = grpc.StatusCode.UNAVAILABLE


class DeadlineExceeded(ServiceError):
    code = grpc.StatusCode.DEADLINE_EXCEEDED


# A downstream answering these is out (or overloaded) rather than refusing the request.
OUTAGE_CODES = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED})


def first_line(error: BaseException) -> str:
    """A database driver error's first line: never the statement or its parameters (SQLAlchemy's `orig`)."""
    original = getattr(error, "orig", None) or error
    text = str(original).strip().splitlines()
    return text[0] if text else type(original).__name__


def from_rpc_error(error: grpc.RpcError, service: str) -> ServiceError:
    """The ServiceError for a failed call to `service` (a name the caller understands)."""
    code = error.code() if hasattr(error, "code") else grpc.StatusCode.UNKNOWN
    details = (error.details() if hasattr(error, "details") else None) or ""
    if code in OUTAGE_CODES:
        return Unavailable(f"{service} is unavailable: {details or code.name}")
    return ServiceError(details or f"{service} failed with {code.name}", code)


@contextmanager
def calling(service: str) -> Iterator[None]:
    """`with calling("matching"): stub.Search(...)` raises the ServiceError for a failed call."""
    try:
        yield
    except grpc.RpcError as error:
        raise from_rpc_error(error, service) from error


def abort_with(context: grpc.ServicerContext, error: ServiceError) -> None:
    """Ends the RPC with the error's status (raises, as `context.abort` does)."""
    context.abort(error.code, error.message)
