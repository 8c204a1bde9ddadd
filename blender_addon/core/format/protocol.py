"""The edit server's protocol as both sides read it: the job manifest, the names of its file fields, job states and
error codes (docs/protocol.md). bpy-free and numpy-free: the add-on's client builds a :class:`JobManifest`, the
server (``backend/app.py``) parses one with :meth:`JobManifest.from_json`, and neither writes these facts again.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

#: Path prefix of every endpoint.
API = "/v1"
#: A job's states, in order; the last three are final.
JOB_STATES = ("queued", "running", "succeeded", "failed", "cancelled")
TERMINAL_STATES = JOB_STATES[2:]
#: Error codes a response or a failed job carries, and their HTTP status.
ERROR_STATUS: dict[str, int] = {
    "invalid_input": 400, "unauthorized": 401, "forbidden": 403, "not_found": 404, "method_not_allowed": 405,
    "conflict": 409,
    "cancelled": 409, "payload_too_large": 413, "queue_full": 429, "internal": 500, "worker_crashed": 500,
    "model_not_ready": 503, "oom": 507, "storage_full": 507,
}
#: ViewSet passes a job may carry as geometry (``.npy`` uploads), and their channels.
GEOMETRY_PASSES: dict[str, int] = {"position": 3}
#: Longest subject label a job may give (an object name).
MAX_SUBJECT_CHARS = 200
#: The multipart field that holds the manifest.
MANIFEST_FIELD = "manifest"
#: Deepest nesting of arrays and objects a manifest may have.
MAX_JSON_DEPTH = 32


def _no_constant(name: str) -> Any:
    raise ManifestError(f"the manifest holds {name}, which JSON does not allow: send finite numbers")


def _check_json_values(value: Any, depth: int = 0) -> None:
    """Raise :class:`ManifestError` for nesting deeper than :data:`MAX_JSON_DEPTH` or a string (key or value) that is
    not valid Unicode (a lone UTF-16 surrogate)."""
    if depth > MAX_JSON_DEPTH:
        raise ManifestError(f"the manifest is nested too deeply (at most {MAX_JSON_DEPTH} levels)")
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise ManifestError(f"the manifest holds a string that is not valid Unicode (a lone surrogate): "
                                f"{value.encode('utf-8', 'backslashreplace').decode()[:80]!r}") from None
    elif isinstance(value, dict):
        for k, v in value.items():
            _check_json_values(k, depth + 1)
            _check_json_values(v, depth + 1)
    elif isinstance(value, list):
        for v in value:
            _check_json_values(v, depth + 1)


def image_field(index: int) -> str:
    """The file field of view ``index``'s image (the client's choice of names, any unique names are accepted)."""
    return f"image_{index}"


def mask_field(index: int) -> str:
    return f"mask_{index}"


def pass_field(name: str, index: int) -> str:
    return f"{name}_{index}"


class ManifestError(ValueError):
    """A manifest that does not follow the protocol; the message says what to fix."""


@dataclass
class ManifestView:
    """One view of a job: its ``name``, the file fields of its ``image`` and ``mask``, an optional ``camera``
    (``{"K": 3x3, "camera_to_world": 4x4}``, OpenCV, checked by the server) and ``geometry`` (pass -> file field)."""

    name: str
    image: str
    mask: str
    camera: dict[str, Any] | None = None
    geometry: dict[str, str] = field(default_factory=dict)


@dataclass
class JobManifest:
    """What a job asks for (the ``manifest`` field of ``POST /v1/jobs``)."""

    instruction: str
    views: list[ManifestView]
    options: dict[str, Any] = field(default_factory=dict)
    description: str | None = None
    subject: str | None = None
    reference: str | None = None
    geometry_tokens: str | None = None

    def to_json(self) -> str:
        """The manifest as sent: fields that are None are left out."""
        data = {k: v for k, v in asdict(self).items() if v is not None}
        data["views"] = [{k: v for k, v in view.items() if v not in (None, {})} for view in data["views"]]
        return json.dumps(data, ensure_ascii=False)

    @classmethod
    def from_json(cls, raw: str | bytes) -> JobManifest:
        """Parse and check the manifest's structure (not its files); raises :class:`ManifestError`.

        Strict JSON only: no NaN or Infinity, at most :data:`MAX_JSON_DEPTH` levels of nesting, and every string
        valid Unicode (no lone surrogates), so that nothing a client sends can fail later, when it is stored.
        """
        try:
            data = json.loads(raw, parse_constant=_no_constant)
        except RecursionError:
            raise ManifestError(f"the manifest is nested too deeply (at most {MAX_JSON_DEPTH} levels)") from None
        except ManifestError:
            raise
        except (ValueError, TypeError) as exc:
            raise ManifestError(f"the manifest is not valid JSON: {exc}") from exc
        _check_json_values(data)
        if not isinstance(data, dict):
            raise ManifestError("the manifest must be a JSON object with 'instruction' and 'views'")
        views = data.get("views")
        if not isinstance(views, list):
            raise ManifestError("the manifest needs 'views': a list of {name, image, mask} objects")
        options = data.get("options", {})
        if not isinstance(options, dict):
            raise ManifestError("'options' must be an object of option names and values")
        text: dict[str, str | None] = {}
        for key in ("instruction", "description", "subject", "reference", "geometry_tokens"):
            value = data.get(key)
            if value is not None and not isinstance(value, str):
                raise ManifestError(f"'{key}' must be a string, got {type(value).__name__}")
            text[key] = value
        parsed = []
        for i, v in enumerate(views):
            if not isinstance(v, dict) or not all(isinstance(v.get(k), str) for k in ("name", "image", "mask")):
                raise ManifestError(f"view {i} needs 'name', 'image' and 'mask' fields (strings)")
            geometry = v.get("geometry") or {}
            if not isinstance(geometry, dict) or not all(isinstance(f, str) for f in geometry.values()):
                raise ManifestError(f"view {i} ({v['name']}): 'geometry' must map pass names to file fields, "
                                    'like {"position": "position_0"}')
            camera = v.get("camera")
            if camera is not None and not isinstance(camera, dict):
                raise ManifestError(f"view {i} ({v['name']}): 'camera' must be an object with 'K' and "
                                    "'camera_to_world'")
            parsed.append(ManifestView(v["name"], v["image"], v["mask"], camera, dict(geometry)))
        return cls(instruction=text["instruction"] or "", views=parsed, options=dict(options),
                   description=text["description"], subject=text["subject"], reference=text["reference"],
                   geometry_tokens=text["geometry_tokens"])

    def check_sizes(self, max_views: int, max_text_chars: int) -> None:
        """Raise :class:`ManifestError` when there are too many views or a text is too long."""
        if not 1 <= len(self.views) <= max_views:
            raise ManifestError(f"a job takes 1 to {max_views} views, got {len(self.views)}")
        for what, value, limit in (("instruction", self.instruction, max_text_chars),
                                   ("description", self.description or "", max_text_chars),
                                   ("subject", self.subject or "", MAX_SUBJECT_CHARS)):
            if len(value) > limit:
                raise ManifestError(f"{what} of {len(value)} characters is over {limit}")
