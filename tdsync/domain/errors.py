"""Domain layer: One exception type per user-visible error code of SPEC.md.

The HTTP API, the CLI and the Dagster ops all raise and translate these, so a code means the
same thing wherever it shows up.
"""

from __future__ import annotations

from typing import Any


class TdsyncError(Exception):
    """Base of every error a user can see; carries the SPEC error code and HTTP status."""

    error_code = "internal_error"
    http_status = 500

    def __init__(self, message: str, detail: Any = None) -> None:
        super().__init__(message)
        self.message = message
        self.detail = detail

    def as_dict(self) -> dict[str, Any]:
        return {"error_code": self.error_code, "message": self.message, "detail": self.detail}


class ValidationFailed(TdsyncError):
    error_code = "validation_error"
    http_status = 422


class InvalidObjectId(TdsyncError):
    error_code = "invalid_object_id"
    http_status = 400


class ConnectionNotFound(TdsyncError):
    error_code = "database_connection_not_found"
    http_status = 404


class TableDescriptionNotFound(TdsyncError):
    error_code = "table_description_not_found"
    http_status = 404


class DuplicateAlias(TdsyncError):
    error_code = "duplicate_alias"
    http_status = 409


class InvalidDatabaseConnection(TdsyncError):
    error_code = "invalid_database_connection"
    http_status = 400


class EmptyDatabase(TdsyncError):
    error_code = "empty_database"
    http_status = 400


class ConnectionBusy(TdsyncError):
    """Another refresh or scan of the connection kept running past the bounded wait."""

    error_code = "connection_busy"
    http_status = 409


class RequestTooLarge(TdsyncError):
    """An API request body over the API's limit, refused before it is read whole."""

    error_code = "request_too_large"
    http_status = 413


class StorageUnavailable(TdsyncError):
    error_code = "storage_unavailable"
    http_status = 503


class Unauthorized(TdsyncError):
    error_code = "unauthorized"
    http_status = 401


class ConfigurationError(TdsyncError):
    """A start-up problem (missing or wrong encryption key, bad environment)."""

    error_code = "configuration_error"
    http_status = 500


ERRORS_BY_CODE: dict[str, type[TdsyncError]] = {
    cls.error_code: cls
    for cls in (
        ValidationFailed,
        InvalidObjectId,
        ConnectionNotFound,
        TableDescriptionNotFound,
        DuplicateAlias,
        InvalidDatabaseConnection,
        EmptyDatabase,
        ConnectionBusy,
        RequestTooLarge,
        StorageUnavailable,
        Unauthorized,
        ConfigurationError,
    )
}


def error_from_code(code: str, message: str, detail: Any = None) -> TdsyncError:
    """Rebuild an error from its code, e.g. from a failed Dagster run's metadata."""
    return ERRORS_BY_CODE.get(code, TdsyncError)(message, detail)
