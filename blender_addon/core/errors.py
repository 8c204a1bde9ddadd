"""The add-on's error hierarchy: every error a user can see derives from :class:`GroupEditError`.

Messages are written for the user: they say what is wrong *and* what to do about it.
"""

from __future__ import annotations


class GroupEditError(Exception):
    """Base class of every error raised on purpose by the add-on and its CLI."""

    #: Process exit code used by the command line for this kind of error.
    exit_code: int = 1


class InvalidInputError(GroupEditError):
    """Bad arguments or settings (a rig with no views, a view size out of range, ...)."""

    exit_code = 2


class ObjectNotFoundError(InvalidInputError):
    """The named object does not exist in the scene."""


class NotAMeshError(InvalidInputError):
    """The chosen object is not a mesh (or has no faces)."""


class MissingUVError(InvalidInputError):
    """The mesh has no UV map; the user may opt in to add one."""


class OutputNotWritableError(GroupEditError):
    """The output folder cannot be created or written."""

    exit_code = 3


class InputFileError(GroupEditError):
    """An input file (.blend, .glb, ...) is missing or cannot be read."""

    exit_code = 3


class ViewSetFormatError(GroupEditError):
    """A ViewSet folder or manifest is missing, malformed, or of an unsupported version."""

    exit_code = 3


class ImageFormatError(GroupEditError):
    """An image file (PNG or EXR) is not in a form this reader understands."""

    exit_code = 3


class ServerRequestError(GroupEditError):
    """The edit server refused or failed a request; ``code`` is the server's error code (docs/protocol.md) or
    one of the client's own (``not_running``, ``timeout``, ``offline``, ``http``, ``bad_preview``)."""

    exit_code = 4

    def __init__(self, message: str, code: str = "server", retryable: bool = False) -> None:
        super().__init__(message)
        self.code, self.retryable = code, retryable


class ServerNotRunning(ServerRequestError):
    """Nothing answers at the server's address."""


class RestyleShortfallError(GroupEditError):
    """The bake changed far less of the object than the edit changed in the views (nothing is applied)."""

    exit_code = 5


class CaptureCancelled(GroupEditError):
    """The user cancelled a capture; nothing of it is left on disk."""

    exit_code = 130
