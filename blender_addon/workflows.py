"""Workflows: the steps after a capture, as one function each, shared by the command line and the operators.

:func:`bake_edited_views` (edited views -> one texture per material of the object, or of the capture's albedo when
the object is not in the scene), :func:`bake_viewset` (the same into files, or applied to the object),
:func:`edit_viewset` (a ViewSet through the edit server, waiting for it), :func:`verify_restyle` (the closed loop:
the restyled object re-rendered from the capture's cameras against the edited views) and :func:`save_outputs` (the
restyled scene and asset). They report through ``say`` (default :func:`print_line`, the command line's output).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .core.bake.restyle import check_texture_size
from .core.errors import GroupEditError, InvalidInputError, ServerRequestError
from .core.format.viewset import EDITED_DIR

if TYPE_CHECKING:
    from .core.bake.restyle import BakeProgress, TextureBake
    from .core.bake.verify import LoopReport
    from .core.client.api import PollStatus
    from .core.format.viewset import ViewSet

log = logging.getLogger(__name__)
Say = Callable[[str], None]


def print_line(line: str) -> None:
    """The command line's ``say``: one line on stdout, flushed (progress must show while a job runs)."""
    print(line, flush=True)


def bake_edited_views(vs: ViewSet, obj: Any | None, size: int, edited: str = EDITED_DIR, delight: bool = True,
                      progress: BakeProgress | None = None) -> list[TextureBake]:
    """The ViewSet's edited views baked into one ``size``² texture per material of ``obj`` (its own images kept
    where the edit did not change them), or, without ``obj``, per material of the capture (the original
    appearance then comes from the capture's albedo)."""
    from .blender.bake.apply_texture import texture_targets
    from .core.bake.edit_bake import EditBakeSettings
    from .core.bake.restyle import TextureTarget, bake_edit_into_targets, load_edited

    check_texture_size(size)
    if obj is not None:
        targets = texture_targets(obj, vs.uv_map)
    else:
        log.info("%r is not in the scene: the original appearance comes from the capture's albedo", vs.object_name)
        targets = [TextureTarget(m or f"material {i}", [i]) for i, m in enumerate(vs.materials or [""])]
    return bake_edit_into_targets(vs, load_edited(vs, edited), targets, size, EditBakeSettings(delight=delight),
                                  progress=progress)


def bake_viewset(views: Path, out: Path, obj_name: str | None, size: int, fmt: str | None, edited: str,
                 delight: bool, apply: bool = False, say: Say = print_line) -> list[Path]:
    """Bake a ViewSet's edited views into texture files (and apply them to the object when asked)."""
    import bpy

    from .blender.bake.apply_texture import apply_textures, write_texture_file
    from .core.bake.restyle import default_texture_path
    from .core.format.viewset import ViewSet

    check_texture_size(size)
    fmt = fmt or ("exr" if out.suffix.lower() == ".exr" else "png8")
    vs = ViewSet.read(views)
    name = obj_name or vs.object_name
    obj = bpy.context.scene.objects.get(name)
    if obj is None and (apply or obj_name):
        raise InvalidInputError(f"no object {name!r} in the scene: open the .blend or asset it came from (--input)")
    t0 = time.perf_counter()
    bakes = bake_edited_views(vs, obj, size, edited, delight)
    for tb in bakes:
        changed = tb.result.changed[tb.result.covered].mean() if tb.result.covered.any() else 0.0
        say(f"{tb.target.name}: {changed:.1%} of the texels changed; {tb.layout.message()}")
        if tb.region is not None:
            say(f"{tb.target.name}: {tb.region.message()}")
    say(f"baked {len(bakes)} texture(s) in {time.perf_counter() - t0:.1f} s")
    if apply:
        return apply_textures(obj, bakes, out.parent, fmt, pack=True, uv_map=vs.uv_map).files
    return [write_texture_file(default_texture_path(out, tb.target, len(bakes)), tb.result.srgb, fmt) for tb in bakes]


def save_outputs(save_blend: Path | None, export: Path | None, obj_name: str, say: Say = print_line) -> None:
    """Save the scene as a new .blend and/or export the object as a new .glb (never over an existing file)."""
    import bpy

    from .core.errors import OutputNotWritableError

    for path in (save_blend, export):
        if path is not None and path.exists():
            raise OutputNotWritableError(f"{path} exists: choose a new file name")
    if save_blend is not None:
        save_blend.parent.mkdir(parents=True, exist_ok=True)
        bpy.ops.wm.save_as_mainfile(filepath=str(save_blend.absolute()), copy=True)
        say(f"restyled scene: {save_blend}")
    if export is not None:
        export.parent.mkdir(parents=True, exist_ok=True)
        obj = bpy.context.scene.objects[obj_name]
        for o in bpy.context.scene.objects:
            o.select_set(o == obj)
        # colour attributes travel even where the restyled material no longer reads them (the input had them)
        bpy.ops.export_scene.gltf(filepath=str(export.absolute()), use_selection=True, export_format="GLB",
                                  export_vertex_color="ACTIVE", export_all_vertex_colors=True)
        say(f"restyled asset: {export}")


def edit_viewset(views: Path, instruction: str, server: str, token: str = "", timeout: float = 3600.0,
                 online_access: bool = True, description: str | None = None,
                 options: dict[str, object] | None = None, say: Say = print_line) -> PollStatus:
    """Submit a ViewSet to the server and wait, printing a progress bar; returns the final status (its message
    says where the edited views are and, for editors that prompt a model, the text the model was given)."""
    from .core.client.api import BackendClient, JobPoller
    from .core.format.viewset import ViewSet

    client = BackendClient(server, token, online_access=online_access, deadline=time.monotonic() + timeout)
    poller = JobPoller(client, ViewSet.read(views), instruction, options=options, description=description)
    last = ""
    try:
        while not poller.step().finished:
            st = poller.status
            bar = "#" * int(20 * st.fraction)
            line = f"[{bar:<20}] {st.state} {st.stage} {st.step}/{st.total}" if st.total else f"{st.state}: {st.message}"
            if line != last:
                say(line)
                last = line
            if time.monotonic() > client.deadline:
                _cancel_quietly(poller)
                raise ServerRequestError(f"the edit took longer than {timeout:.0f} s (--timeout) and was cancelled",
                                         "timeout")
            if st.state in ("queued", "running"):
                time.sleep(0.2)
    except KeyboardInterrupt:
        _cancel_quietly(poller)
        raise
    if poller.status.state == "failed" and time.monotonic() > client.deadline:
        _cancel_quietly(poller)
        raise ServerRequestError(f"the edit took longer than {timeout:.0f} s (--timeout): {poller.status.message}",
                                 "timeout")
    return poller.status


def _cancel_quietly(poller: Any) -> None:
    """Cancel the poller's job with a few seconds of grace past any deadline; a server that cannot be reached to
    cancel is only logged (the caller is reporting a more important failure)."""
    poller.client.deadline = None
    try:
        poller.cancel()
    except GroupEditError as exc:
        log.warning("could not cancel the job: %s", exc)


def verify_restyle(vs: ViewSet, obj: Any, out: Path, edited: str = EDITED_DIR, say: Say = print_line
                   ) -> LoopReport:
    """The closed loop (:mod:`.core.bake.verify`): render the restyled ``obj`` from the capture's cameras as the
    capture rendered its colour, compare with the edited views on the object's pixels; write one error image per
    view into ``out`` and return the report."""
    from .blender.capture.render import render_views
    from .core.bake.restyle import load_edited
    from .core.bake.verify import ERROR_GAIN, closed_loop
    from .core.format.images import write_png

    t0 = time.perf_counter()
    rendered = render_views(obj, vs)
    regional = all("region" in v.files for v in vs.views)
    outside = ([vs.load(v, "colour") for v in vs.views], [vs.load(v, "region") for v in vs.views]) if regional else None
    report, errors = closed_loop([v.name for v in vs.views], load_edited(vs, edited), rendered,
                                 [vs.load(v, "mask") for v in vs.views], [vs.load(v, "position") for v in vs.views],
                                 outside)
    out.mkdir(parents=True, exist_ok=True)
    for v, image, error in zip(vs.views, rendered, errors):
        write_png(out / f"{v.name}_render.png", image)
        write_png(out / f"{v.name}_error.png", error)
    for line in report.lines():
        say(line)
    say(f"re-rendered {len(rendered)} views in {time.perf_counter() - t0:.1f} s; renders and error images "
        f"(x{ERROR_GAIN}): {out}")
    return report


def score_viewset(views: Path, edited: str | None, spread: bool = True) -> dict[str, object]:
    """The consistency of the capture's views and, with ``edited``, of that edit: ``consistency_db`` is the edit's
    (or the capture's without one), ``capture_consistency_db`` the capture's own (the ceiling of an edit), and
    likewise, with ``spread``, ``texel_spread`` / ``capture_texel_spread`` (8-bit levels; lower is more consistent:
    a bake's gather each, left out where a UI waits)."""
    from .core.consistency import texel_spread, viewset_consistency
    from .core.export.views import export_images
    from .core.format.viewset import ViewSet

    vs = ViewSet.read(views)
    original = export_images(vs, None)
    capture, _ = viewset_consistency(vs, original)
    scored = original if edited is None else export_images(vs, edited)
    report, images = (capture, None) if edited is None else viewset_consistency(vs, scored)
    return {"consistency_db": report.consistency_db, "capture_consistency_db": capture.consistency_db,
            **({"texel_spread": texel_spread(vs, scored), "capture_texel_spread": texel_spread(vs, original)}
               if spread else {}),
            "report": report, "images": images, "names": [v.name for v in vs.views]}
