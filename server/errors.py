"""Domain errors raised by services; the web layer maps each to an HTTP status and a typed
JSON or HTML error, so services never know about HTTP. Messages are English, marked with
``server.i18n.N_`` (values as ``%(name)s``) so the web layer shows them in the reader's
language."""
from __future__ import annotations

from server.i18n import N_


class ServiceError(Exception):
    status = 400
    code = "invalid"
    default = N_("The request is not valid.")

    def __init__(self, message: str = "", fields: dict[str, str] | None = None):
        super().__init__(message or self.default)
        self.message = message or self.default
        self.fields = fields or {}


class Invalid(ServiceError):
    """The request is not valid."""
    default = N_("The request is not valid.")
    status, code = 400, "invalid"


class Unprocessable(ServiceError):
    """The request is well-formed but cannot be carried out."""
    default = N_("The request is well-formed but cannot be carried out.")
    status, code = 422, "unprocessable"


class Forbidden(ServiceError):
    """You do not have the privilege to do this."""
    default = N_("You do not have the privilege to do this.")
    status, code = 403, "forbidden"


class NotFound(ServiceError):
    """No such record, or you may not see it."""
    default = N_("No such record, or you may not see it.")
    status, code = 404, "not_found"


class Conflict(ServiceError):
    """The record changed or already exists."""
    default = N_("The record changed or already exists.")
    status, code = 409, "conflict"
