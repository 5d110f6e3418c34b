"""Domain errors raised by services; the web layer maps each to an HTTP status and a typed
JSON or HTML error, so services never know about HTTP."""
from __future__ import annotations


class ServiceError(Exception):
    status = 400
    code = "invalid"

    def __init__(self, message: str = "", fields: dict[str, str] | None = None):
        super().__init__(message or self.__doc__ or self.code)
        self.message = message or (self.__doc__ or self.code).strip()
        self.fields = fields or {}


class Invalid(ServiceError):
    """The request is not valid."""
    status, code = 400, "invalid"


class Unprocessable(ServiceError):
    """The request is well-formed but cannot be carried out."""
    status, code = 422, "unprocessable"


class Forbidden(ServiceError):
    """You do not have the privilege to do this."""
    status, code = 403, "forbidden"


class NotFound(ServiceError):
    """No such record, or you may not see it."""
    status, code = 404, "not_found"


class Conflict(ServiceError):
    """The record changed or already exists."""
    status, code = 409, "conflict"
