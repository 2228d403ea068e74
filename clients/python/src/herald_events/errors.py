"""The exceptions this package raises. Every one derives from :class:`HeraldError`.

Errors the server answers with (``connection_error``, ``subscribe_error``, ``publish_error``,
``error``, an HTTP ``errors`` body) become a :class:`ServerError` subclass chosen by the first
``errorType``, so ``except UnauthorizedError`` works whichever operation was refused.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence


class HeraldError(Exception):
    """Base class of every error raised by ``herald_events``."""


class ConfigurationError(HeraldError):
    """The client was set up wrongly: an endpoint it cannot read, SigV4 without botocore or a
    region, a subscription started twice."""


class ConnectionFailedError(HeraldError):
    """The socket could not be opened, or the connection was lost for good (reconnecting is off,
    or gave up). A refused connect authorization is an :class:`UnauthorizedError` instead."""


class ConnectionLostError(HeraldError):
    """The socket closed while an operation waited for its answer.

    For a socket publish, the events may or may not have been published: retry with the same
    ``idempotency_key`` to be sure of exactly once.
    """


class OperationTimeoutError(HeraldError, TimeoutError):
    """The server did not answer an operation in time."""


class ServerError(HeraldError):
    """The server refused an operation.

    Attributes:
        operation: ``"connect"``, ``"subscribe"``, ``"unsubscribe"``, ``"publish"`` (socket) or
            ``"http_publish"``.
        errors: the server's error objects as sent (``errorType``, ``message``, maybe
            ``errorCode``).
        status: the HTTP status for ``http_publish``, else None.
    """

    def __init__(
        self,
        operation: str,
        errors: Sequence[Mapping[str, Any]],
        status: int | None = None,
    ) -> None:
        self.operation = operation
        self.errors: list[dict[str, Any]] = [dict(e) for e in errors]
        self.status = status
        first = self.errors[0] if self.errors else {}
        self.error_type: str = str(first.get("errorType", "UnknownError"))
        self.message: str = str(first.get("message", ""))
        where = f"{operation} (HTTP {status})" if status is not None else operation
        super().__init__(f"{where} refused: {self.error_type}: {self.message}")


class UnauthorizedError(ServerError):
    """``UnauthorizedException`` (or a handler's ``Unauthorized``): bad or expired credentials,
    a mode the operation does not allow, or an unknown namespace (refused alike, on purpose)."""


class BadRequestError(ServerError):
    """``BadRequestException``: an invalid channel, a wildcard publish, an event that is not
    JSON, too many events."""


class LimitExceededError(ServerError):
    """``LimitExceededError`` and friends: a rate or size limit; retrying later may succeed."""


class ConflictError(ServerError):
    """``ConflictException``: a publish with the same idempotency key is in progress, or may have
    been stored; retry with the same key."""


class PayloadTooLargeError(ServerError):
    """``PayloadTooLargeException``: the request was over the size limit."""


class ResumeGapError(HeraldError):
    """A reconnected subscription could not be resumed where it stopped, so events may be
    missing (raised from the iteration only with ``strict_resume=True``; otherwise the gap is
    recorded in ``Subscription.gaps``).

    Attributes:
        reason: the server's ``reason`` (``expired``, ``epoch_changed``, ``too_many``,
            ``no_history``, ``unavailable``).
    """

    def __init__(self, channel: str, reason: str) -> None:
        self.channel = channel
        self.reason = reason
        super().__init__(f"subscription to {channel} resumed with a gap: {reason}")


_BY_TYPE: dict[str, type[ServerError]] = {
    "UnauthorizedException": UnauthorizedError,
    "Unauthorized": UnauthorizedError,
    "BadRequestException": BadRequestError,
    "LimitExceededError": LimitExceededError,
    "LimitExceededException": LimitExceededError,
    "MaxSubscriptionsReachedError": LimitExceededError,
    "TooManyRequestsException": LimitExceededError,
    "ConflictException": ConflictError,
    "PayloadTooLargeException": PayloadTooLargeError,
}


def server_error(operation: str, errors: Any, status: int | None = None) -> ServerError:
    """The exception for a server's ``errors`` list (any shape: a malformed one still raises)."""
    items = [e for e in errors if isinstance(e, Mapping)] if isinstance(errors, list) else []
    first = items[0].get("errorType") if items else None
    cls = _BY_TYPE.get(str(first), ServerError)
    if cls is ServerError and status == 401:
        cls = UnauthorizedError
    return cls(operation, items, status)
