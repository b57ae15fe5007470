"""One error root for the core; each error carries the HTTP status the API answers with.

The web layer renders every ``PublisherError`` as one RFC 9457 problem document
and the CLI prints it as one line with exit code 2, so a message must name the
object it is about and say what is wrong.
"""

from __future__ import annotations

from typing import Any, ClassVar


class PublisherError(Exception):
    """Something the caller asked for cannot be done."""

    status: ClassVar[int] = 400
    #: a short, stable slug; the problem document's ``type`` ends with it
    kind: ClassVar[str] = "bad-request"
    title: ClassVar[str] = "Bad request"

    def __init__(self, detail: str, **extra: Any) -> None:
        super().__init__(detail)
        self.detail = detail
        self.extra = extra


class ConfigError(PublisherError):
    """The configuration file or an environment override is invalid."""

    kind = "config"
    title = "Invalid configuration"


class ChannelUnavailable(PublisherError):
    """The channel has nothing to send through (no SMS gateway, no SMTP server): a message
    asked for now would never go out, so it is not asked for (publisher.readiness)."""

    status = 503
    kind = "channel-unavailable"
    title = "Channel unavailable"

    def __init__(self, channel: str, reason: str) -> None:
        super().__init__(f"{channel}: {reason}", channel=channel)
        self.channel = channel


class ValidationFailed(PublisherError):
    """The request body or parameters do not validate."""

    status = 422
    kind = "validation"
    title = "Invalid input"


class NotFound(PublisherError):
    status = 404
    kind = "not-found"
    title = "Not found"


class ItemNotFound(NotFound):
    def __init__(self, item_id: str) -> None:
        super().__init__(f"no item with id {item_id!r}", item_id=item_id)


class Conflict(PublisherError):
    status = 409
    kind = "conflict"
    title = "Conflict"


class InvalidTransition(Conflict):
    kind = "invalid-transition"
    title = "Transition not allowed"


class DuplicateIndexNo(Conflict):
    kind = "duplicate-index-no"
    title = "索引号 already in use"


class Forbidden(PublisherError):
    status = 403
    kind = "forbidden"
    title = "Forbidden"


class FourEyesViolation(Forbidden):
    kind = "four-eyes"
    title = "Approval needs a second person"


class Unauthorized(PublisherError):
    status = 401
    kind = "unauthorized"
    title = "Authentication required"


class PreconditionRequired(PublisherError):
    status = 428
    kind = "precondition-required"
    title = "If-Match required"


class PreconditionFailed(PublisherError):
    status = 412
    kind = "precondition-failed"
    title = "Stale If-Match"


class PayloadTooLarge(PublisherError):
    status = 413
    kind = "payload-too-large"
    title = "Payload too large"


class UnsupportedMediaType(PublisherError):
    status = 415
    kind = "unsupported-media-type"
    title = "Unsupported media type"


class TooManyRequests(PublisherError):
    """Tried too often (log-in failures); `retry_after` seconds until it may try again."""

    status = 429
    kind = "too-many-requests"
    title = "Too many requests"


class Busy(PublisherError):
    """The server cannot take this now (every password-hashing slot is in use)."""

    status = 503
    kind = "busy"
    title = "Busy"
