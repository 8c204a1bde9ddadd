"""The backend's error hierarchy: each error has a stable ``code`` (the HTTP error schema's) and an HTTP status."""

from __future__ import annotations

from typing import Any


class BackendError(Exception):
    """Base class: ``code`` names the error for clients, ``retryable`` says whether trying again may help."""

    code = "internal"
    status = 500
    retryable = False

    def __init__(self, message: str, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details or {}

    def to_dict(self) -> dict[str, Any]:
        return {"error": {"code": self.code, "message": self.message, "retryable": self.retryable, "details": self.details}}


class InvalidInput(BackendError):
    code, status = "invalid_input", 400


class PayloadTooLarge(BackendError):
    code, status = "payload_too_large", 413


class QueueFull(BackendError):
    code, status, retryable = "queue_full", 429, True


class NotFound(BackendError):
    code, status = "not_found", 404


class Conflict(BackendError):
    code, status = "conflict", 409


class Unauthorized(BackendError):
    code, status = "unauthorized", 401


class Forbidden(BackendError):
    code, status = "forbidden", 403


class Cancelled(BackendError):
    code, status = "cancelled", 409


class OutOfMemory(BackendError):
    code, status, retryable = "oom", 507, True


class ModelNotReady(BackendError):
    code, status, retryable = "model_not_ready", 503, True


class WorkerCrashed(BackendError):
    code, status, retryable = "worker_crashed", 500, True
