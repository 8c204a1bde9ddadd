"""The backend's error hierarchy: each error has a stable ``code`` and the HTTP status the protocol gives that code
(:data:`blender_addon.core.format.protocol.ERROR_STATUS`, where both are written)."""

from __future__ import annotations

from typing import Any

from blender_addon.core.format.protocol import ERROR_STATUS


class BackendError(Exception):
    """Base class: ``code`` names the error for clients, ``retryable`` says whether trying again may help;
    ``status`` is the protocol's for the code."""

    code = "internal"
    status = ERROR_STATUS[code]
    retryable = False

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls.status = ERROR_STATUS[cls.code]

    def __init__(self, message: str, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details or {}

    def to_dict(self) -> dict[str, Any]:
        return {"error": {"code": self.code, "message": self.message, "retryable": self.retryable, "details": self.details}}


class InvalidInput(BackendError):
    code = "invalid_input"


class PayloadTooLarge(BackendError):
    code = "payload_too_large"


class QueueFull(BackendError):
    code, retryable = "queue_full", True


class NotFound(BackendError):
    code = "not_found"


class MethodNotAllowed(BackendError):
    code = "method_not_allowed"


class Conflict(BackendError):
    code = "conflict"


class Unauthorized(BackendError):
    code = "unauthorized"


class Forbidden(BackendError):
    code = "forbidden"


class Cancelled(BackendError):
    code = "cancelled"


class OutOfMemory(BackendError):
    code, retryable = "oom", True


class StorageFull(BackendError):
    code, retryable = "storage_full", True


class ModelNotReady(BackendError):
    code, retryable = "model_not_ready", True


class WorkerCrashed(BackendError):
    code, retryable = "worker_crashed", True
