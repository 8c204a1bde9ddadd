"""Talk to the GroupEdit edit server (HTTP ``/v1``) without blocking: a client and a job poller.

bpy-free. :class:`JobPoller.step` does at most one short request and returns at once, so the modal
operator (one step per timer tick) and the headless command (a loop) drive the same object.
"""

from __future__ import annotations

import json
import logging
import os
import time
import urllib.parse
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ImageFormatError, ServerNotRunning, ServerRequestError
from ..format.images import encode_png, png_header
from ..format.protocol import API, MANIFEST_FIELD, JobManifest, ManifestView, image_field, mask_field, pass_field
from ..format.viewset import EDIT_RECORD, EDITED_DIR, PREVIEW_FILE, ViewSet

log = logging.getLogger(__name__)

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


#: What to tell a user for each server error code (appended to the server's own message).
ADVICE = {
    "oom": "out of GPU memory: lower the view size or enable offload",
    "worker_crashed": "the server's worker crashed; it restarted: try again",
    "queue_full": "the server is busy: try again when a job has finished",
    "unauthorized": "set the token from the server's token file in the GroupEdit preferences",
    "model_not_ready": "the server's model is not loaded: see its health message and docs/models.md",
    "payload_too_large": "send fewer or smaller views",
    "storage_full": "the server's disk is full: free space in its data folder",
}


def is_loopback(url: str) -> bool:
    host = urllib.parse.urlparse(url).hostname or ""
    return host in ("localhost", "::1") or host.startswith("127.")


class BackendClient:
    """Requests to one server. ``timeout``: seconds a request may take in all, its answer read (uploads and downloads
    get ``upload_timeout``); ``deadline``: a ``time.monotonic()`` time after which no request runs or goes on (the
    overall limit of an edit). A server that trickles bytes or never reads an upload cannot hold a call longer."""

    def __init__(self, url: str, token: str = "", timeout: float = 5.0, upload_timeout: float = 300.0,
                 online_access: bool = True, start_hint: str = "groupedit-server",
                 deadline: float | None = None) -> None:
        if not is_loopback(url) and not online_access:
            raise ServerRequestError(f"{url} is not on this computer and Blender's online access is off: "
                               "allow it in Preferences > System > Network, or use a local server", "offline")
        import requests  # bundled with Blender; imported late so that core stays importable without it

        self._requests = requests
        self.url = url.rstrip("/")
        self.timeout, self.upload_timeout, self.start_hint = timeout, upload_timeout, start_hint
        self.deadline = deadline
        self.session = requests.Session()
        self._geometry_passes: list[str] | None = None
        if token:
            self.session.headers["Authorization"] = f"Bearer {token}"

    def _too_slow(self) -> ServerRequestError:
        return ServerRequestError(f"the server at {self.url} did not answer in time", "timeout", True)

    def _call(self, method: str, path: str, timeout: float | None = None, **kw: Any) -> Any:
        """One request, its answer read whole within ``timeout`` (and the deadline); errors as ServerRequestError."""
        end = time.monotonic() + (timeout or self.timeout)
        if self.deadline is not None:
            end = min(end, self.deadline)
        if end <= time.monotonic():
            raise self._too_slow()
        try:
            r = self.session.request(method, self.url + path, timeout=end - time.monotonic(), stream=True, **kw)
            chunks = []
            read1 = getattr(r.raw, "read1", None)  # urllib3 2: what has arrived, so a trickle cannot hold a read
            while chunk := (read1(1 << 16, decode_content=True) if read1 else r.raw.read(1024, decode_content=True)):
                chunks.append(chunk)
                if time.monotonic() > end:
                    r.close()
                    raise self._too_slow()
            r._content, r._content_consumed = b"".join(chunks), True  # the answer, read under our clock
        except self._requests.ConnectionError as exc:
            if time.monotonic() >= end:  # a socket timeout while sending shows as a connection error
                raise self._too_slow() from exc
            raise ServerNotRunning(f"backend not running at {self.url}: start it with '{self.start_hint}'",
                                    "not_running", True) from exc
        except self._requests.Timeout as exc:
            raise self._too_slow() from exc
        except self._requests.RequestException as exc:  # a broken answer (chunked encoding, content decoding)
            raise ServerRequestError(f"the server at {self.url} sent a broken answer: {exc}", "bad_response",
                                     True) from exc
        if r.status_code >= 400:
            try:
                err = r.json()["error"]
                code, message, retryable = err["code"], err["message"], err.get("retryable", False)
            except (ValueError, KeyError, TypeError):
                code, message, retryable = "http", f"HTTP {r.status_code}", False
            advice = ADVICE.get(code)
            raise ServerRequestError(f"{message}" + (f" ({advice})" if advice and advice not in message else ""), code, retryable)
        return r

    def _json(self, r: Any, needs: tuple[str, ...] = ()) -> dict[str, Any]:
        """The answer as a JSON object holding ``needs``; anything else is a :class:`ServerRequestError` that says
        what answered (another program on the port, a proxy's page)."""
        try:
            body = r.json()
        except ValueError:
            kind = r.headers.get("content-type", "unknown content")
            raise ServerRequestError(f"{self.url} answered with {kind}, not a GroupEdit server's JSON: is another "
                                     "program using this address? Check the server URL", "bad_response") from None
        missing = [k for k in needs if not isinstance(body, dict) or k not in body]
        if missing:
            raise ServerRequestError(f"{self.url} answered without {', '.join(missing)}: not a GroupEdit server of "
                                     "this version? Check the server URL", "bad_response")
        return body

    def health(self) -> dict[str, Any]:
        return self._json(self._call("GET", f"{API}/health"), ("status",))

    def geometry_passes(self) -> list[str]:
        """The ViewSet passes the server's editor uses (its health's ``editor.geometry_passes``), asked once."""
        if self._geometry_passes is None:
            editor = self.health().get("editor") or {}
            self._geometry_passes = [str(p) for p in editor.get("geometry_passes") or []]
        return self._geometry_passes

    def submit(self, viewset: ViewSet, instruction: str, options: dict[str, Any] | None = None,
               reference: np.ndarray | None = None, idempotency_key: str | None = None,
               geometry: list[str] | None = None, description: str | None = None) -> dict[str, Any]:
        """Upload the ViewSet's colour images, masks and cameras with the instruction; returns the job.

        The masks are the edit region's (the ``region`` pass) where the capture has one, else the object's.

        Every view's camera goes along (``K`` 3x3 and OpenCV ``camera_to_world`` 4x4, see docs/protocol.md), and
        the ViewSet's object name as the job's ``subject``. ``description``: what the result should show (an
        editor that prompts with it, such as groupediting, otherwise derives one from the instruction).
        ``geometry``: ViewSet passes to upload as well (``.npy`` as stored); None asks the server which its editor
        uses. A pass is sent only when every view has it.
        """
        passes = self.geometry_passes() if geometry is None else geometry
        passes = [p for p in passes if all(p in v.files for v in viewset.views)]
        files: dict[str, tuple[str, bytes, str]] = {}
        views = []
        for i, v in enumerate(viewset.views):
            mask = viewset.load(v, "region" if "region" in v.files else "mask").astype(np.uint8) * 255
            files[image_field(i)] = (f"{v.name}.png", viewset.path(v, "colour").read_bytes(), "image/png")
            files[mask_field(i)] = (f"{v.name}_mask.png", encode_png(mask, compression=1), "image/png")
            camera = {"K": v.camera.intrinsics.matrix.tolist(), "camera_to_world": v.camera.camera_to_world.tolist()}
            for p in passes:
                files[pass_field(p, i)] = (f"{v.name}_{p}.npy", viewset.path(v, p).read_bytes(),
                                           "application/octet-stream")
            views.append(ManifestView(v.name, image_field(i), mask_field(i), camera,
                                      {p: pass_field(p, i) for p in passes}))
        manifest = JobManifest(instruction=instruction, views=views, options=options or {},
                               description=description.strip() if description and description.strip() else None,
                               subject=viewset.object_name)
        if reference is not None:
            files["reference"] = ("reference.png", encode_png(reference), "image/png")
            manifest.reference = "reference"
        headers = {"Idempotency-Key": idempotency_key or uuid.uuid4().hex}
        return self._json(self._call("POST", f"{API}/jobs", timeout=self.upload_timeout,
                                     data={MANIFEST_FIELD: manifest.to_json()}, files=files, headers=headers),
                          ("id", "state"))

    def job(self, job_id: str) -> dict[str, Any]:
        return self._json(self._call("GET", f"{API}/jobs/{job_id}"), ("id", "state"))

    def cancel(self, job_id: str) -> dict[str, Any]:
        return self._json(self._call("POST", f"{API}/jobs/{job_id}/cancel"))

    def preview(self, job_id: str) -> bytes:
        """The job's latest live preview: PNG bytes of one contact sheet of all views (at most 512 px wide).

        Raises :class:`ServerRequestError` with code ``not_found`` when the job has none (yet, or any more)."""
        data = self._call("GET", f"{API}/jobs/{job_id}/preview").content
        if not data.startswith(_PNG_SIGNATURE):
            raise ServerRequestError(f"the server's preview of job {job_id} is not a PNG", "bad_preview")
        return data

    def result(self, job_id: str, index: int, size: tuple[int, int]) -> bytes:
        """PNG bytes of the job's edited view ``index``, checked from the header alone (8-bit RGB or RGBA of ``size``
        (width, height)): nothing is decoded, so a UI that downloads results between frames does not stall."""
        data = self._call("GET", f"{API}/jobs/{job_id}/results/{index}", timeout=self.upload_timeout).content
        try:
            w, h, depth, ctype = png_header(data)
        except ImageFormatError as exc:
            raise ServerRequestError(f"result {index} of job {job_id} is not a PNG: {exc}", "bad_result") from exc
        if (w, h) != tuple(size) or depth != 8 or ctype not in (2, 6):
            raise ServerRequestError(f"result {index} of job {job_id} is a {w}x{h} PNG of depth {depth}, colour type "
                                     f"{ctype}; expected 8-bit RGB at {size[0]}x{size[1]}", "bad_result")
        return data


@dataclass
class PollStatus:
    """What the UI shows: ``state`` is submitting/queued/running/downloading/done/failed/cancelled."""

    state: str
    stage: str = ""
    step: int = 0
    total: int = 0
    message: str = ""
    job_id: str | None = None
    files: list[str] = field(default_factory=list)
    #: The latest live preview on disk (``<viewset>/.preview.png``, a PNG contact sheet of all views), if any.
    preview_path: Path | None = None
    #: How many previews have been downloaded for this job: a UI reloads its image when this changes.
    preview_count: int = 0
    #: The denoising step the latest preview shows.
    preview_step: int = 0
    #: How the server made the edit (its result metadata; for groupediting: preset, the text encoded, sampler, ...).
    result: dict[str, Any] | None = None

    @property
    def prompt(self) -> str:
        """The text the model was given, when the editor reports one ("" otherwise)."""
        return str(((self.result or {}).get("text") or {}).get("prompt", ""))

    @property
    def finished(self) -> bool:
        return self.state in ("done", "failed", "cancelled")

    @property
    def fraction(self) -> float:
        return self.step / self.total if self.total else 0.0


#: Error codes a poller tries again, per state: a slow answer, a broken one, a server that is restarting.
TRANSIENT: dict[str, tuple[str, ...]] = {
    "submitting": ("timeout", "bad_response"),
    **{state: ("timeout", "bad_response", "not_running") for state in ("queued", "running", "downloading")},
}
#: Transient failures in a row after which a poller gives up.
RETRIES = 5


class JobPoller:
    """One edit job from submit to the edited views in ``<viewset>/edited/``; drive it with :meth:`step`.

    Live previews: the job status the poller reads anyway carries the latest ``preview`` (its ``event_id``
    changes with every new one). When it changes, the next :meth:`step` downloads it instead of polling, into
    ``<viewset>/.preview.png`` (written whole, then renamed), and raises ``status.preview_count``. A preview
    that is gone by then (the job finished or was cancelled) is skipped; previews never fail a job.
    """

    def __init__(self, client: BackendClient, viewset: ViewSet, instruction: str,
                 options: dict[str, Any] | None = None, reference: np.ndarray | None = None,
                 description: str | None = None) -> None:
        self.client, self.viewset, self.instruction = client, viewset, instruction
        self.options, self.reference, self.description = options or {}, reference, description
        self._result: dict[str, Any] | None = None
        self.key = uuid.uuid4().hex  # the same key on a retried submit gives the same job
        self.status = PollStatus("submitting")
        self._download_index = 0
        self._preview_seen: int | None = None  # event id of the preview last downloaded
        self._preview_wanted: dict[str, Any] | None = None  # the job's newer preview, fetched at the next step
        self._preview_path: Path | None = None
        self._preview_count = 0
        self._preview_step = 0
        self._failures = 0  # transient failures in a row

    @property
    def preview_file(self) -> Path:
        """Where live previews go: ``<viewset>/.preview.png``."""
        return self.viewset.root / PREVIEW_FILE

    def step(self) -> PollStatus:
        """Advance by at most one request. A transient failure (:data:`TRANSIENT`: a slow or broken answer, a server
        restarting) is tried again at the next step, up to :data:`RETRIES` times in a row (a submit is safe to repeat:
        its idempotency key gives the same job); other errors end the job with state 'failed' and a message."""
        if self.status.finished:
            return self.status
        try:
            if self._preview_wanted is not None and self.status.state in ("queued", "running"):
                self._fetch_preview()
            else:
                self._advance()
            self._failures = 0
        except ServerRequestError as exc:
            transient = exc.code in TRANSIENT.get(self.status.state, ())
            if transient and self._failures < RETRIES:
                self._failures += 1
                self.status.message = f"{exc}; trying again ({self._failures}/{RETRIES})"
                log.info("job %s: %s", self.status.job_id, self.status.message)
            else:
                self.status = PollStatus("failed", message=str(exc), job_id=self.status.job_id)
        self._carry_preview()
        return self.status

    def _carry_preview(self) -> None:
        st = self.status
        st.preview_path, st.preview_count, st.preview_step = self._preview_path, self._preview_count, self._preview_step
        st.result = self._result

    def _note_preview(self, job: dict[str, Any]) -> None:
        """Remember the job's newest preview when it is one not downloaded yet."""
        preview = job.get("preview")
        if preview and preview.get("event_id") != self._preview_seen:
            self._preview_wanted = preview

    def _fetch_preview(self) -> None:
        wanted, self._preview_wanted = self._preview_wanted, None
        assert wanted is not None and self.status.job_id is not None
        try:
            data = self.client.preview(self.status.job_id)
        except ServerRequestError as exc:
            if exc.code not in ("not_found", "bad_preview"):
                raise
            log.info("preview of job %s skipped: %s", self.status.job_id, exc)
            return
        target = self.preview_file
        part = target.with_name(target.name + ".part")
        part.write_bytes(data)
        os.replace(part, target)
        self._preview_seen = wanted.get("event_id")
        self._preview_path = target
        self._preview_count += 1
        self._preview_step = int(wanted.get("step", 0))

    def cancel(self) -> PollStatus:
        if self.status.job_id and not self.status.finished:
            try:
                self.client.cancel(self.status.job_id)
            except ServerRequestError as exc:
                if exc.code != "conflict":
                    raise
        self.status = PollStatus("cancelled", message="cancelled", job_id=self.status.job_id)
        self._carry_preview()
        return self.status

    def _advance(self) -> None:
        st = self.status
        if st.state == "submitting":
            job = self.client.submit(self.viewset, self.instruction, self.options, self.reference, self.key,
                                     description=self.description)
            self.status = PollStatus("queued", job_id=job["id"],
                                     message=f"queued (position {job.get('queue_position', '?')})")
        elif st.state in ("queued", "running"):
            job = self.client.job(st.job_id)
            p = job.get("progress") or {}
            if job["state"] in ("queued", "running"):
                self._note_preview(job)
                msg = (f"queued (position {job.get('queue_position', '?')})" if job["state"] == "queued"
                       else p.get("stage", "running"))
                self.status = PollStatus(job["state"], p.get("stage", ""), p.get("step", 0), p.get("total", 0), msg, st.job_id)
            elif job["state"] == "succeeded":
                self._result = job.get("result")
                self.status = PollStatus("downloading", "download", 0, len(self.viewset.views), "downloading", st.job_id)
            else:
                err = job.get("error") or {}
                code = err.get("code", "")
                msg = err.get("message", job["state"])
                advice = ADVICE.get(code)
                self.status = PollStatus("cancelled" if job["state"] == "cancelled" else "failed",
                                         message=msg + (f" ({advice})" if advice and advice not in msg else ""),
                                         job_id=st.job_id)
        elif st.state == "downloading":
            i = self._download_index
            view = self.viewset.views[i]
            k = view.camera.intrinsics
            data = self.client.result(st.job_id, i, (k.width, k.height))
            part = self.viewset.root / (EDITED_DIR + ".part")
            part.mkdir(exist_ok=True)
            (part / f"{view.name}.png").write_bytes(data)
            st.files.append(f"{EDITED_DIR}/{view.name}.png")
            self._download_index += 1
            st.step = self._download_index
            if self._download_index == len(self.viewset.views):
                record = {"instruction": self.instruction, "description": self.description, "job": st.job_id,
                          "result": self._result}
                (part / EDIT_RECORD).write_text(json.dumps(record, indent=2, ensure_ascii=False) + "\n")
                final = self.viewset.root / EDITED_DIR
                if final.exists():  # keep an earlier edit: edited -> edited.1, edited.2, ...
                    n = 1
                    while final.with_name(f"{EDITED_DIR}.{n}").exists():
                        n += 1
                    os.replace(final, final.with_name(f"{EDITED_DIR}.{n}"))
                os.replace(part, final)
                done = PollStatus("done", "done", st.step, st.total, f"{st.step} edited views in {final}", st.job_id,
                                  st.files, result=self._result)
                if done.prompt:
                    done.message += f"; the model was told: {done.prompt!r}"
                self.status = done
