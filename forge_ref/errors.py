"""Errors that carry their HTTP status and render as OpenAI-shaped JSON.

    ForgeError                    any error a client may see
     ├── BadRequest               400 invalid_request_error
     ├── Unauthorized             401 authentication_error
     ├── Forbidden                403 permission_error
     ├── NotFound                 404 not_found_error
     ├── Conflict                 409 conflict
     ├── PayloadTooLarge          413 request_too_large
     └── UpstreamError            the provider failed: 429 passes through, else 502 / 504

One renderer (``ForgeError.body``) is used by every handler, so the shape
``{"error": {"message", "type", "code", "param"}}`` cannot drift.
"""

from __future__ import annotations

import orjson


class ForgeError(Exception):
    status = 500
    type = "server_error"
    code: str | None = None

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        type: str | None = None,
        code: str | None = None,
        param: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        if status is not None:
            self.status = status
        if type is not None:
            self.type = type
        if code is not None:
            self.code = code
        self.param = param
        self.headers = headers or {}

    def body(self) -> bytes:
        return error_body(self.message, self.type, self.code, self.param)


def error_body(message: str, type: str, code: str | None = None, param: str | None = None) -> bytes:
    return orjson.dumps({"error": {"message": message, "type": type, "param": param, "code": code}})


class BadRequest(ForgeError):
    """The request body or parameters are invalid."""

    status = 400
    type = "invalid_request_error"


class Unauthorized(ForgeError):
    """No key, or a key that matches no user. RFC 9110 (11.6.1): every 401 carries a challenge."""

    status = 401
    type = "authentication_error"
    code = "invalid_api_key"

    def __init__(self, message: str, **kw) -> None:
        super().__init__(message, **kw)
        self.headers.setdefault("WWW-Authenticate", "Bearer")


class Forbidden(ForgeError):
    """The caller is known but may not do this (admin endpoints)."""

    status = 403
    type = "permission_error"


class NotFound(ForgeError):
    """Unknown model, provider or route."""

    status = 404
    type = "not_found_error"


class Conflict(ForgeError):
    """The write collides with existing data (a duplicate provider name)."""

    status = 409
    type = "invalid_request_error"
    code = "conflict"


class PayloadTooLarge(ForgeError):
    """The request body exceeds the configured limit."""

    status = 413
    type = "invalid_request_error"
    code = "request_too_large"


class UpstreamError(ForgeError):
    """The provider failed, timed out or answered something unusable."""

    status = 502
    type = "upstream_error"
    code = "upstream_error"


class UpstreamTimeout(UpstreamError):
    """The provider did not answer within the configured timeout."""

    status = 504
    code = "upstream_timeout"
