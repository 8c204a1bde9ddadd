"""The HTTP API (``/v1``): validate, queue, report progress, serve results.

See docs/protocol.md. Every error is ``{"error": {"code", "message", "retryable", "details"}}``.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from blender_addon.core.format.protocol import (
    API,
    GEOMETRY_PASSES,
    MANIFEST_FIELD,
    JobManifest,
    ManifestError,
    ManifestView,
)
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response, StreamingResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Receive, Scope, Send

from . import __version__
from .config import Limits, ServerConfig
from .datalock import lock_data_dir
from .errors import BackendError, Forbidden, InvalidInput, MethodNotAllowed, NotFound, PayloadTooLarge, Unauthorized
from .jobfiles import decode_image, image_size, preview_path, read_metadata, result_path, stage_inputs
from .store import TERMINAL, Job, JobStore
from .viewdata import Camera, all_or_none, decode_pass, decode_token_file, parse_camera
from .worker import Supervisor, device_memory


log = logging.getLogger(__name__)


def _error(exc: BackendError) -> JSONResponse:
    return JSONResponse(exc.to_dict(), status_code=exc.status)


class GuardMiddleware:
    """Before any route: Host/Origin checks (DNS rebinding, CSRF), the token, and the body-size limit.

    The body limit is checked from Content-Length before reading; a body without one is counted
    while it streams and cut off at the limit.
    """

    def __init__(self, app: ASGIApp, config: ServerConfig) -> None:
        self.app = app
        self.config = config
        port = config.port
        names = {"127.0.0.1", "localhost", "[::1]", config.host}
        self.hosts = names | {f"{n}:{port}" for n in names}
        self.origins = {f"http://{n}:{port}" for n in names} | {f"http://{n}" for n in names}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        try:
            if headers.get("host", "") not in self.hosts and not self.config.token:
                raise Forbidden(f"Host {headers.get('host')!r} is not this server: requests must address it directly")
            origin = headers.get("origin")
            if origin is not None and origin not in self.origins:
                raise Forbidden(f"requests from web pages ({origin}) are refused")
            if self.config.token:
                given = headers.get("authorization", "")
                expected = f"Bearer {self.config.token}"
                if not hmac.compare_digest(given.encode(), expected.encode()):
                    raise Unauthorized("missing or wrong token: send 'Authorization: Bearer <token>' "
                                       "(the token file is in the server's data folder)")
            limit = self.config.limits.max_body_bytes
            length = headers.get("content-length")
            if length is not None and length.isdigit() and int(length) > limit:
                raise PayloadTooLarge(f"request body of {length} bytes is over the limit of {limit}: "
                                      "send fewer or smaller views", {"limit": limit})
        except BackendError as exc:
            return await _error(exc)(scope, receive, send)
        seen = 0

        async def counted() -> dict[str, Any]:
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > limit:
                raise PayloadTooLarge(f"request body over the limit of {limit} bytes", {"limit": limit})
            return message

        await self.app(scope, counted, send)


@dataclass
class StagedView:
    """One view of a submitted job, checked: the uploaded image and mask bytes (decoded once to validate them),
    its camera and geometry passes (float32 (H, W, C))."""

    name: str
    image: bytes
    mask: bytes
    camera: Camera | None
    passes: dict[str, np.ndarray]


async def _file(form: Any, field_name: str, what: str) -> bytes:
    """The bytes of an uploaded file field, or :class:`InvalidInput` naming the field."""
    part = form.get(field_name)
    if part is None or isinstance(part, str):
        raise InvalidInput(f"{what}: file field {field_name!r} must be uploaded")
    await part.seek(0)  # a field may be read twice (its header first, see check_job_pixels)
    return await part.read()


async def read_manifest(form: Any, limits: Limits) -> JobManifest:
    """The job's manifest (``docs/protocol.md``), parsed and its sizes checked."""
    raw = form.get(MANIFEST_FIELD)
    if raw is None:
        raise InvalidInput(f"missing the '{MANIFEST_FIELD}' field (JSON with instruction and views)")
    try:
        manifest = JobManifest.from_json(raw if isinstance(raw, str) else await raw.read())
        manifest.check_sizes(limits.max_views, limits.max_instruction_chars)
    except ManifestError as exc:
        raise InvalidInput(str(exc)) from exc
    return manifest


async def check_job_pixels(form: Any, manifest: JobManifest, limits: Limits) -> None:
    """Refuse a job whose images hold more than ``limits.max_job_pixels`` together, from their headers alone."""
    total = 0
    for i, view in enumerate(manifest.views):
        w, h = image_size(await _file(form, view.image, f"view {i} ({view.name})"), f"view {i} image")
        total += w * h
    if manifest.reference:
        w, h = image_size(await _file(form, manifest.reference, "reference"), "reference image")
        total += w * h
    if total > limits.max_job_pixels:
        raise PayloadTooLarge(f"the job's images hold {total} pixels together, over the limit of "
                              f"{limits.max_job_pixels}: send fewer views or a smaller view size",
                              {"limit": limits.max_job_pixels, "pixels": total})


async def read_view(form: Any, index: int, view: ManifestView, limits: Limits) -> StagedView:
    """One view's files, camera and geometry passes, each checked (see :mod:`.viewdata`)."""
    what = f"view {index} ({view.name})"
    image, mask = await _file(form, view.image, what), await _file(form, view.mask, what)
    img = decode_image(image, f"view {index} image", limits.max_pixels, "RGB")
    m = decode_image(mask, f"view {index} mask", limits.max_pixels, "L")
    if m.shape != img.shape[:2]:
        raise InvalidInput(f"{what}: mask {m.shape[1]}x{m.shape[0]} does not match image "
                           f"{img.shape[1]}x{img.shape[0]}")
    camera = parse_camera(view.camera, f"{what} camera") if view.camera is not None else None
    passes = {name: decode_pass(await _file(form, field_name, f"{what} geometry"), name, f"{what} {name}",
                                img.shape[:2])
              for name, field_name in view.geometry.items()}
    return StagedView(view.name, image, mask, camera, passes)


async def submit_job(request: Request, store: JobStore, limits: Limits) -> Job:
    """Read, check and stage one submitted job (``POST /v1/jobs``); a retried submit (same ``Idempotency-Key``)
    returns the job it made the first time."""
    key = request.headers.get("idempotency-key")
    if key and (known := store.by_key(key)) is not None:  # a retried submit: the same job, once
        return known
    try:
        form = await request.form(max_files=(2 + len(GEOMETRY_PASSES)) * limits.max_views + 2, max_fields=8)
    except PayloadTooLarge:
        raise
    except Exception as exc:  # noqa: BLE001 - malformed multipart
        raise InvalidInput(f"the body is not valid multipart form data: {exc}") from exc
    manifest = await read_manifest(form, limits)
    await check_job_pixels(form, manifest, limits)
    views = [await read_view(form, i, v, limits) for i, v in enumerate(manifest.views)]
    cameras = [v.camera for v in views]
    staged_cameras = cameras if all_or_none([c is not None for c in cameras], "a camera") else None
    geometry = {p: [v.passes[p] for v in views] for p in GEOMETRY_PASSES
                if all_or_none([p in v.passes for v in views], f"the {p} pass")}
    reference = await _file(form, manifest.reference, "reference") if manifest.reference else None
    if reference is not None:
        decode_image(reference, "reference image", limits.max_pixels, "RGB")
    tokens = None
    if manifest.geometry_tokens:
        tokens = decode_token_file(await _file(form, manifest.geometry_tokens, "geometry_tokens (a .npy file)"),
                                   len(views))
    text = {k: v for k, v in (("description", manifest.description), ("subject", manifest.subject)) if v}
    job, _created = await asyncio.to_thread(
        store.create, manifest.instruction, manifest.options, [v.name for v in views], key,
        lambda folder: stage_inputs(folder, [v.image for v in views], [v.mask for v in views], reference,
                                    staged_cameras, geometry, text, tokens),
        limits.max_queue,
    )
    return job


def _shutting_down(request: Request) -> bool:
    """Whether the HTTP server is stopping (SIGTERM, Ctrl-C): open event streams end, so that it can."""
    server = getattr(request.app.state, "http_server", None)
    return bool(server is not None and server.should_exit)


async def event_stream(store: JobStore, job_id: str, after: int, request: Request) -> AsyncIterator[bytes]:
    """Server-sent events of one job after event id ``after``, until its final state (or the client leaves)."""
    cursor = after
    while True:
        batch = store.events(job_id, cursor)
        for eid, kind, data in batch:
            cursor = eid
            yield f"id: {eid}\nevent: {kind}\ndata: {json.dumps(data)}\n\n".encode()
            if kind in TERMINAL:
                return
        if not batch:
            if store.get(job_id).state in TERMINAL and not store.events(job_id, cursor):
                return
            if await request.is_disconnected() or _shutting_down(request):
                return
            await asyncio.sleep(0.05)


def create_app(config: ServerConfig) -> FastAPI:
    """The FastAPI application for ``config`` (starts the supervisor and worker on startup)."""
    config.validate()
    lock = lock_data_dir(Path(config.data_dir), f"http://{config.host}:{config.port}")  # before any job is touched
    store = JobStore(config.data_dir)
    supervisor = Supervisor(store, config)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        store.purge(config.result_ttl_s)
        supervisor.start()
        yield
        supervisor.stop()
        store.close()

    app = FastAPI(title="GroupEdit server", version=__version__, lifespan=lifespan)
    app.add_middleware(GuardMiddleware, config=config)
    app.state.store, app.state.supervisor, app.state.data_lock = store, supervisor, lock

    @app.exception_handler(BackendError)
    async def backend_error(request: Request, exc: BackendError) -> JSONResponse:
        return _error(exc)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        """Starlette's and FastAPI's own errors (unknown path, wrong method, ...) in the protocol's shape."""
        if exc.status_code == 405:
            return _error(MethodNotAllowed(f"{request.method} is not allowed on {request.url.path}"))
        if exc.status_code == 404:
            return _error(NotFound("no such resource"))
        return _error(InvalidInput(str(exc.detail)))

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = "; ".join(f"{'.'.join(str(p) for p in e.get('loc', ()))}: {e.get('msg')}" for e in exc.errors())
        return _error(InvalidInput(f"bad request parameters: {problems}"))

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error on %s %s", request.method, request.url.path)
        return _error(BackendError(f"the server failed on this request ({type(exc).__name__}); see its log"))

    def job_view(job_id: str) -> dict[str, Any]:
        job = store.get(job_id)
        preview = store.last_preview(job_id) if job.state in ("running", "succeeded") else None
        result = read_metadata(store.folder(job.id)) if job.state == "succeeded" else None
        return {**job.to_dict(store.position(job)), "progress": store.last_progress(job_id), "preview": preview,
                "result": result}

    @app.get(f"{API}/health")
    def health() -> dict[str, Any]:
        queued = len(store.queued())
        status = supervisor.status
        return {
            "status": status, "version": __version__, "editor": supervisor.editor_info or {"name": config.editor},
            "load_error": supervisor.load_error, "queue_length": queued, "running": supervisor.current,
            "worker_pid": supervisor.worker_pid, "limits": config.limits.to_dict(),
            **(supervisor.memory or device_memory()),
        }

    @app.post(f"{API}/jobs", status_code=202)
    async def submit(request: Request) -> JSONResponse:
        job = await submit_job(request, store, config.limits)
        return JSONResponse(job.to_dict(store.position(job)), status_code=202)

    @app.get(f"{API}/jobs")
    def list_jobs() -> dict[str, Any]:
        return {"jobs": [j.to_dict(store.position(j)) for j in store.list()]}

    @app.get(f"{API}/jobs/{{job_id}}")
    def get_job(job_id: str) -> dict[str, Any]:
        return job_view(job_id)

    @app.post(f"{API}/jobs/{{job_id}}/cancel")
    def cancel(job_id: str) -> dict[str, Any]:
        job = store.request_cancel(job_id)
        return job.to_dict(store.position(job))

    @app.get(f"{API}/jobs/{{job_id}}/results/{{index}}")
    def result(job_id: str, index: int) -> FileResponse:
        job = store.get(job_id)
        if job.state != "succeeded":
            raise NotFound(f"job {job_id} has no results (it is {job.state})")
        if not 0 <= index < len(job.views):
            raise NotFound(f"job {job_id} has views 0 to {len(job.views) - 1}")
        return FileResponse(result_path(store.folder(job.id), index), media_type="image/png")

    @app.get(f"{API}/jobs/{{job_id}}/preview")
    def preview(job_id: str) -> Response:
        job = store.get(job_id)  # an unknown id is 404 before any path is made; the folder name is the store's
        try:
            # read whole (a few hundred kB at most): the worker may replace the file at any moment, and a
            # streamed file could change between its size and its bytes
            data = preview_path(store.folder(job.id)).read_bytes()
        except FileNotFoundError:
            raise NotFound(f"job {job_id} has no preview yet (it is {job.state})") from None
        return Response(data, media_type="image/png", headers={"Cache-Control": "no-store"})

    @app.get(f"{API}/jobs/{{job_id}}/events")
    async def events(job_id: str, request: Request, after: int = 0) -> StreamingResponse:
        store.get(job_id)
        last = request.headers.get("last-event-id")
        start = int(last) if last and last.isdigit() else after

        return StreamingResponse(event_stream(store, job_id, start, request), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache"})

    return app
