"""Capture: render an object from a rig with Cycles and write a ViewSet.

Two renders per view, all colour renders first and then all data renders (Cycles keeps the scene
between renders of one kind: only the camera moves). The *colour* render is the scene as it would
render (its lights and world, or a neutral studio light added for the capture) with the scene's pixel
filter, with Cycles' diffuse and glossy light passes and the base colour and metallic as shader AOVs:
from them the lighting-removal passes follow exactly (:mod:`...core.capture.light_split`). The *data*
render swaps in temporary unlit materials and uses a near-zero pixel filter and one sample, so every
pixel holds the values of the surface point at its centre (no blending across edges): albedo and UV
(shader AOVs), world position and normal (Cycles passes), mask (alpha). Everything the capture changes
is restored by :class:`~.scene_changes.SceneChanges`.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import shutil
import tempfile
import sys
import time
from collections import deque
from collections.abc import Callable, Generator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import bpy
import numpy as np
from mathutils import Matrix, Vector

from ...core.capture import coverage as coverage_mod
from ...core.format.cameras import OPENCV_TO_OPENGL, Camera, blender_intrinsics
from ...core.errors import CaptureCancelled, InvalidInputError, OutputNotWritableError
from ...core.format.images import linear_to_srgb, read_exr, to_uint8
from ...core.capture.region import RegionSpec
from ...core.capture.rigs import RigSpec, RigView, build_rig, direction_vector
from ...core.capture.settings import CaptureSettings
from ...core.format.viewset import MESH_FILE, View, ViewSet, stale_entries, write_view_files
from ...core.capture.light_split import metal_edge, split_light
from .data_materials import BASE_AOV, COVER_AOV, METAL_AOV, UV_AOV, colour_material, data_material
from .region import REGION_AOV, mark_region, region_faces
from ..mesh import check_mesh, ensure_uv_map, mesh_data
from .scene_changes import SceneChanges

log = logging.getLogger(__name__)

DATA_FILTER_WIDTH = 0.01  # Cycles' smallest pixel filter: samples land on the pixel centre
_LIGHT_PASSES = ("use_pass_diffuse_direct", "use_pass_diffuse_indirect", "use_pass_diffuse_color",
                 "use_pass_glossy_direct", "use_pass_glossy_indirect", "use_pass_glossy_color")
_TMP_DIR = ".capture_tmp"


@dataclass(frozen=True)
class CaptureProgress:
    """Reported after each render: 1-based ``index`` of ``total`` renders (two per view: every view's colour
    render, then every view's data render), the view's name, which render (``stage``: 'colour' or 'data'),
    seconds in all and per stage.

    ``stages`` holds seconds for 'colour render' or 'data render' (including writing and reading the
    render's EXR) and 'waiting for files': the view's passes are converted and written on a background thread
    while the next view renders (:class:`_FileWriter`); this is the time the renders waited for it.
    """

    index: int
    total: int
    view: str
    seconds: float
    stage: str = "colour"
    stages: dict[str, float] = field(default_factory=dict)


# ----------------------------------------------------------------------------------------- helpers
def _prepare_output(out_dir: Path, overwrite: bool) -> bool:
    """Create/check the output folder; returns whether this capture created it."""
    if out_dir.exists() and not out_dir.is_dir():
        raise OutputNotWritableError(f"{out_dir} exists and is not a folder: choose another output folder")
    created = not out_dir.exists()
    if not created and any(out_dir.iterdir()):
        if not overwrite:
            raise OutputNotWritableError(
                f"{out_dir} is not empty: choose a new folder, or allow overwriting (--overwrite) to replace a capture"
            )
        if not (out_dir / "manifest.json").is_file():
            raise OutputNotWritableError(f"{out_dir} holds files that are not a ViewSet: refusing to overwrite them")
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        probe = out_dir / ".write_test"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise OutputNotWritableError(f"cannot write to {out_dir}: {exc.strerror or exc}; choose another folder") from exc
    return created


def _clean_output(out_dir: Path, created: bool) -> None:
    if created:
        shutil.rmtree(out_dir, ignore_errors=True)
        return
    for p in (*stale_entries(out_dir), out_dir / _TMP_DIR):
        shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink(missing_ok=True)


def _channels(exr: dict[str, np.ndarray], pass_name: str, names: str) -> np.ndarray:
    out = []
    for c in names:
        key = next((k for k in exr if k.endswith(f".{pass_name}.{c}")), None)
        if key is None:
            raise RuntimeError(f"render is missing the {pass_name}.{c} channel")
        out.append(exr[key])
    return np.stack(out, axis=-1)


def _pick_device(scene: Any, wanted: str) -> str:
    if wanted == "CPU":
        return "CPU"
    try:
        prefs = bpy.context.preferences.addons["cycles"].preferences
        prefs.refresh_devices()
        has_gpu = prefs.compute_device_type != "NONE" and any(d.use and d.type != "CPU" for d in prefs.devices)
    except (KeyError, AttributeError, RuntimeError):
        has_gpu = False
    if wanted == "GPU" and not has_gpu:
        raise InvalidInputError("no GPU is set up for Cycles: enable one in Preferences > System, or use CPU")
    return "GPU" if has_gpu else "CPU"


def _scene_cameras(scene: Any, names: list[str], width: int, height: int) -> list[RigView]:
    cams = [o for o in scene.objects if o.type == "CAMERA"]
    if names:
        missing = [n for n in names if n not in {c.name for c in cams}]
        if missing:
            raise InvalidInputError(f"no camera named {', '.join(missing)} in the scene")
        cams = [scene.objects[n] for n in names]
    if not cams:
        raise InvalidInputError("the 'scene' rig needs cameras in the scene: add some or choose another rig")
    views = []
    for i, obj in enumerate(sorted(cams, key=lambda o: o.name) if not names else cams):
        cam = obj.data
        if cam.type != "PERSP":
            raise InvalidInputError(f"camera {obj.name!r} is {cam.type.lower()}: only perspective cameras are supported")
        intr = blender_intrinsics(
            cam.lens, cam.sensor_width, cam.sensor_height, cam.sensor_fit, width, height, cam.shift_x, cam.shift_y
        )
        pose = np.array(obj.matrix_world.normalized(), dtype=np.float64) @ OPENCV_TO_OPENGL
        views.append(RigView(f"view_{i:03d}", Camera(intr, pose), None, None, obj.name))
    return views


def _frame_size(spec: RigSpec, scene: Any, size: int) -> tuple[int, int]:
    if spec.kind != "scene":
        return size, size
    rw, rh = scene.render.resolution_x, scene.render.resolution_y
    s = size / max(rw, rh)
    return max(1, round(rw * s)), max(1, round(rh * s))


def _use_studio(scene: Any, lighting: str) -> bool:
    if lighting != "AUTO":
        return lighting == "STUDIO"
    has_lights = any(o.type == "LIGHT" and not o.hide_render for o in scene.objects)
    return not has_lights and scene.world is None


def _add_studio(scene: Any, changes: SceneChanges, centre: np.ndarray) -> None:
    """A neutral grey world plus one soft key light from the upper front left, both temporary."""
    world = changes.new_id(bpy.data.worlds, "GroupEdit studio")
    world.use_nodes = True
    bg = world.node_tree.nodes.get("Background")
    bg.inputs["Color"].default_value = (0.6, 0.6, 0.6, 1.0)
    bg.inputs["Strength"].default_value = 1.0
    changes.set(scene, "world", world)
    for o in scene.objects:
        if o.type == "LIGHT":
            changes.set(o, "hide_render", True)
    light = changes.new_id(bpy.data.lights, "GroupEdit key", "SUN")
    light.energy = 2.0
    light.angle = math.radians(30.0)
    sun = changes.new_object("GroupEdit key", light, scene.collection)
    direction = direction_vector(-40.0, 50.0)
    sun.rotation_mode = "QUATERNION"
    sun.rotation_quaternion = _quat_pointing(-direction)
    sun.location = tuple(centre)


def _quat_pointing(d: np.ndarray) -> tuple[float, float, float, float]:
    """Quaternion turning Blender's light axis (-Z) onto direction ``d``."""
    return tuple(Vector(tuple(-d)).to_track_quat("Z", "Y"))


# ----------------------------------------------------------------------------------------- capture
@dataclass
class _RenderSetup:
    """What the capture set up in the scene for its renders (all of it undone by ``changes``)."""

    changes: SceneChanges
    view_layer: Any
    slots: list[Any]
    originals: list[Any]
    colour_mats: list[Any]
    data_mats: list[Any]
    cam_data: Any
    cam_obj: Any
    user_filter: float
    studio: bool


def _plan_rig(obj: Any, spec: RigSpec, scene: Any, mesh: Any, width: int, height: int) -> list[Any]:
    """The rig's views: the scene's cameras, or a generated rig framed on (a sample of) the mesh's points."""
    if spec.kind == "scene":
        rig = _scene_cameras(scene, spec.scene_cameras, width, height)
        return [v for i, v in enumerate(rig) if i not in spec.disabled]
    pts = mesh.positions
    if len(pts) > 50_000:
        pts = pts[np.random.default_rng(0).choice(len(pts), 50_000, replace=False)]
    return build_rig(spec, pts, width, height)


def _set_up_render(scene: Any, obj: Any, settings: CaptureSettings, width: int, height: int, uv_map: str,
                   mesh: Any, changes: SceneChanges) -> _RenderSetup:
    """Cycles, the output format, passes, visibility, lights, material copies and a camera, each change recorded."""
    view_layer = bpy.context.view_layer
    render, cycles = scene.render, scene.cycles
    changes.set(render, "engine", "CYCLES")
    changes.set(cycles, "device", _pick_device(scene, settings.device))
    for attr, value in (
        ("resolution_x", width), ("resolution_y", height), ("resolution_percentage", 100),
        ("pixel_aspect_x", 1.0), ("pixel_aspect_y", 1.0), ("use_border", False),
        ("film_transparent", True), ("use_single_layer", True), ("use_compositing", False),
        ("use_sequencer", False), ("use_persistent_data", True),
    ):
        changes.set(render, attr, value)
    for attr, value in (("file_format", "OPEN_EXR_MULTILAYER"), ("color_depth", "32"), ("exr_codec", "NONE")):
        changes.set(render.image_settings, attr, value)
    changes.set(cycles, "use_adaptive_sampling", False)
    for layer in scene.view_layers:
        if layer != view_layer:
            changes.set(layer, "use", False)
    for attr in ("use_pass_position", "use_pass_normal", *_LIGHT_PASSES):
        changes.set(view_layer, attr, True)
    changes.set(view_layer, "material_override", None)
    for name, kind in ((UV_AOV, "COLOR"), (BASE_AOV, "COLOR"), (METAL_AOV, "VALUE"), (COVER_AOV, "VALUE"),
                       (REGION_AOV, "VALUE")):
        if name not in view_layer.aovs:
            aov = view_layer.aovs.add()
            aov.name, aov.type = name, kind
            changes.on_restore(lambda name=name: view_layer.aovs.remove(view_layer.aovs[name]))
    for o in scene.objects:
        if o != obj and o.type not in ("LIGHT", "CAMERA") and o.visible_camera:
            changes.set(o, "visible_camera", False)
    changes.set(obj, "hide_render", False)
    changes.set(obj, "visible_camera", True)
    region = RegionSpec.parse(settings.region)
    if not region.whole_object:
        mark_region(obj, region, changes)
    studio = _use_studio(scene, settings.lighting)
    if studio:
        _add_studio(scene, changes, mesh.positions.mean(axis=0))

    # the object's own materials and their unlit copies, swapped per render
    slots = list(obj.material_slots)
    originals = [s.material for s in slots]
    data_mats = [data_material(m, uv_map, changes) for m in originals] or [data_material(None, uv_map, changes)]
    colour_mats = ([colour_material(m, changes, settings.background) for m in originals]
                   or [colour_material(None, changes, settings.background)])
    for i, s in enumerate(slots):
        changes.set(s, "material", originals[i])

    cam_data = changes.new_id(bpy.data.cameras, "GroupEdit camera")
    cam_obj = changes.new_object("GroupEdit camera", cam_data, scene.collection)
    changes.set(scene, "camera", cam_obj)
    user_filter = cycles.filter_width
    if not settings.inter_reflections:
        changes.set(cycles, "diffuse_bounces", 0)
        changes.set(cycles, "glossy_bounces", 0)
    for attr in ("samples", "filter_width", "use_denoising"):
        changes.set(cycles, attr, getattr(cycles, attr))
    changes.set(render, "filepath", render.filepath)
    return _RenderSetup(changes, view_layer, slots, originals, colour_mats, data_mats, cam_data, cam_obj, user_filter,
                        studio)


def _place_camera(scene: Any, setup: _RenderSetup, view: Any, scene_rig: bool, mesh: Any) -> None:
    """Make the view's camera the scene's: a scene camera as it is, or ours posed and clipped around the mesh."""
    cam = view.camera
    if scene_rig:
        scene.camera = scene.objects[view.label]
        return
    cam_data, cam_obj = setup.cam_data, setup.cam_obj
    scene.camera = cam_obj
    k = cam.intrinsics
    cam_data.sensor_fit, cam_data.sensor_width = "AUTO", 36.0
    cam_data.lens = k.fx * 36.0 / max(k.width, k.height)
    cam_data.shift_x = cam_data.shift_y = 0.0
    cam_obj.matrix_world = Matrix(cam.camera_to_world_opengl.tolist())  # rows
    z = cam.to_camera(mesh.positions)[:, 2]
    z_front = z[z > 0]
    near = max(float(z_front.min()) * 0.5, 1e-4) if len(z_front) else 1e-3
    cam_data.clip_start, cam_data.clip_end = near, max(float(z.max()) * 2.0, near * 10)


def _set(owner: Any, **values: Any) -> None:
    """Set attributes that differ only: setting even an equal value makes Cycles sync the scene again."""
    for name, value in values.items():
        if getattr(owner, name) != value:
            setattr(owner, name, value)


def _use_materials(setup: _RenderSetup, materials: list[Any]) -> None:
    """Put ``materials`` in the object's slots (or, for an object without slots, the first as the override)."""
    for s, m in zip(setup.slots, materials):
        _set(s, material=m)
    if not setup.slots:
        _set(setup.view_layer, material_override=materials[0] if materials and materials[0] is not None else None)


def _render_mode(scene: Any, view_layer: Any, colour: bool, samples: int, filter_width: float, denoise: bool) -> None:
    """Passes, samples, pixel filter, denoising and EXR bit depth of the next render: the colour render's (light
    passes in half floats) or the data render's (positions and normals in full floats). Only what differs is
    changed, so a run of renders of one kind keeps Cycles' synced scene."""
    _set(scene.cycles, samples=samples, filter_width=filter_width, use_denoising=denoise)
    _set(scene.render.image_settings, color_depth="16" if colour else "32")
    _set(view_layer, **{p: colour or p == "use_pass_glossy_color" for p in _LIGHT_PASSES},
         use_pass_position=not colour, use_pass_normal=not colour)


def _render_colour(scene: Any, setup: _RenderSetup, settings: CaptureSettings, tmp: Path) -> dict[str, np.ndarray]:
    """The lit colour render (the copies of the object's materials that shade as they do and write the AOVs): its
    EXR channels."""
    _use_materials(setup, setup.colour_mats)
    colour_filter = setup.user_filter if settings.colour_filter_px is None else settings.colour_filter_px
    _render_mode(scene, setup.view_layer, True, settings.samples, colour_filter, settings.denoise)
    return _render(scene, tmp / "colour.exr")


def _composited(exr: dict[str, np.ndarray], background: tuple[float, float, float]) -> np.ndarray:
    """Linear RGB (H, W, 3) of a render composited over ``background`` (Cycles' RGB is premultiplied)."""
    rgba = _channels(exr, "Combined", "RGBA")
    return rgba[..., :3] + (1.0 - rgba[..., 3:4]) * np.asarray(background, np.float32)


def _colour_passes(exr: dict[str, np.ndarray], settings: CaptureSettings) -> dict[str, np.ndarray]:
    """A view's colour pass and its lighting-removal passes from the colour render's EXR channels."""
    split = split_light(
        _channels(exr, "Combined", "RGBA"),
        tuple(_channels(exr, p, "RGB") for p in ("DiffDir", "DiffInd", "DiffCol")),
        tuple(_channels(exr, p, "RGB") for p in ("GlossDir", "GlossInd", "GlossCol")),
        _channels(exr, BASE_AOV, "RGB"), _channels(exr, METAL_AOV, "X")[..., 0],
        _channels(exr, COVER_AOV, "X")[..., 0], settings.background)
    colour = split.pop("colour_linear")
    albedo = np.clip(split.pop("albedo_filtered"), 0.0, 1.0)
    return {
        "colour": to_uint8(linear_to_srgb(colour)),
        "colour_linear": colour.astype(np.float16),
        "albedo_filtered": to_uint8(linear_to_srgb(albedo)),
        "albedo_linear": albedo.astype(np.float16),
        **{k: v.astype(np.float16) for k, v in split.items()},
    }


def _render_data(scene: Any, setup: _RenderSetup, tmp: Path) -> dict[str, np.ndarray]:
    """The EXR channels of the data render of the current view (one sample at each pixel centre)."""
    _use_materials(setup, setup.data_mats)
    _render_mode(scene, setup.view_layer, False, 1, DATA_FILTER_WIDTH, False)
    return _render(scene, tmp / "data.exr")


def _data_albedo(data_exr: dict[str, np.ndarray], background: tuple[float, float, float]) -> np.ndarray:
    """Linear base colour (H, W, 3) at each pixel centre of a data render, ``background`` where the object does not
    cover the centre."""
    alpha = _channels(data_exr, "Combined", "A")[..., :1]
    albedo = _channels(data_exr, BASE_AOV, "RGB") / np.maximum(alpha, 1e-6)
    return np.where(alpha > 0.5, albedo, np.asarray(background, np.float32))


def _data_passes(data_exr: dict[str, np.ndarray], settings: CaptureSettings, cam: Camera) -> dict[str, np.ndarray]:
    """The passes of one view's data render (unlit base colour, geometry and UV at each pixel centre)."""
    alpha = _channels(data_exr, "Combined", "A")[..., 0]
    mask = alpha > 0.5
    edge = metal_edge(_channels(data_exr, "GlossCol", "RGB"), _channels(data_exr, METAL_AOV, "X")[..., 0])
    position = np.where(mask[..., None], _channels(data_exr, "Position", "XYZ"), 0.0).astype(np.float32)
    return {
        "albedo": to_uint8(linear_to_srgb(_data_albedo(data_exr, settings.background))),
        "mask": mask,
        "depth": np.where(mask, (position - cam.centre) @ cam.forward, 0.0).astype(np.float32),
        "normal": np.where(mask[..., None], _channels(data_exr, "Normal", "XYZ"), 0.0).astype(np.float32),
        "uv": np.where(mask[..., None], _channels(data_exr, UV_AOV, "RG"), 0.0).astype(np.float32),
        "position": position,
        "metal_edge": np.where(mask[..., None], edge, np.nan).astype(np.float16),
        **({} if RegionSpec.parse(settings.region).whole_object else
           {"region": mask & (_channels(data_exr, REGION_AOV, "X")[..., 0] > 0.5 * np.maximum(alpha, 1e-6))}),
    }


class _FileWriter:
    """Converts renders into view files on one background thread while the main thread renders the next view: a
    render releases the GIL, and much of it runs on one core. At most ``ahead`` views wait to be written (their EXR
    channels are held in memory); :meth:`results` gives every job's result in order (and raises its error)."""

    def __init__(self, ahead: int = 2) -> None:
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="groupedit-capture-files")
        self._jobs: list[Future[Any]] = []
        self._ahead = ahead
        self._waiting: deque[Future[Any]] = deque()

    def submit(self, job: Callable[[], Any]) -> float:
        """Queue ``job``; returns the seconds spent waiting for room (earlier jobs still being written)."""
        t0 = time.perf_counter()
        while len(self._waiting) >= self._ahead:
            self._waiting.popleft().result()
        waited = time.perf_counter() - t0
        future = self._pool.submit(job)
        self._jobs.append(future)
        self._waiting.append(future)
        return waited

    def results(self) -> list[Any]:
        return [f.result() for f in self._jobs]

    def close(self) -> None:
        """Drop jobs not started and wait for the one running: nothing writes after this returns."""
        self._pool.shutdown(wait=True, cancel_futures=True)


def _data_files(out_dir: Path, rv: RigView, passes: dict[str, np.ndarray]) -> tuple[dict[str, str], np.ndarray, int]:
    """Write a view's data passes: (their files, its depth map, its pixels in the edit region)."""
    region = int(passes["region"].sum()) if "region" in passes else 0
    return write_view_files(out_dir, rv.name, passes), passes["depth"], region


def _viewset(obj: Any, spec: RigSpec, settings: CaptureSettings, scene: Any, setup: _RenderSetup, out_dir: Path,
             uv_map: str, views: list[View], coverage: float) -> ViewSet:
    """The captured ViewSet with everything its manifest records."""
    units = scene.unit_settings
    return ViewSet(
        root=out_dir, object_name=obj.name, views=views, rig=spec.to_dict(), uv_map=uv_map,
        materials=[m.name if m else "" for m in setup.originals],
        units={"length": units.length_unit.lower(), "scale_length": units.scale_length,
               "system": units.system.lower()},
        capture={**asdict(settings), "lighting_used": "studio" if setup.studio else "scene",
                 "device": scene.cycles.device, "colour_transform": "Standard (sRGB OETF of linear, clipped)",
                 "samples_data": 1, "data_filter_width_px": DATA_FILTER_WIDTH, "engine": "CYCLES"},
        coverage=coverage,
        generator={"name": "groupedit", "version": _version(), "blender": bpy.app.version_string},
    )


def capture_steps(
    obj: Any, spec: RigSpec, settings: CaptureSettings, out_dir: str | Path, scene: Any | None = None
) -> Generator[CaptureProgress, None, ViewSet]:
    """Capture ``obj`` view by view, yielding progress after each; returns the :class:`ViewSet`.

    Steps: check the inputs, plan the rig, prepare the folder, set up the scene (:func:`_set_up_render`), then per
    view place the camera and render (its passes are written into files on a background thread while the next view
    renders: :class:`_FileWriter`); finally the mesh, the coverage and the manifest. Closing the generator early
    (cancel) or any error removes everything this capture wrote and restores the scene. Run it to the end with
    :func:`capture`.
    """
    scene = scene or bpy.context.scene
    spec.validate()
    settings.validate()
    check_mesh(obj)
    out_dir = Path(out_dir).absolute()
    width, height = _frame_size(spec, scene, settings.view_size)
    region = RegionSpec.parse(settings.region)
    if not region.whole_object:
        region_faces(obj, region)  # a region that names nothing fails here, before anything is written
    uv_map = ensure_uv_map(obj, settings.add_uv, settings.uv_map)
    mesh = mesh_data(obj, uv_map)
    rig = _plan_rig(obj, spec, scene, mesh, width, height)
    created = _prepare_output(out_dir, settings.overwrite)
    if settings.overwrite:
        _clean_output(out_dir, created=False)
    tmp = out_dir / _TMP_DIR
    tmp.mkdir(exist_ok=True)
    finished = False
    changes = SceneChanges()
    writer = _FileWriter()
    try:
        setup = _set_up_render(scene, obj, settings, width, height, uv_map, mesh, changes)
        if not region.whole_object:  # the region's triangles, as the modifiers made them
            mesh.region = mesh_data(obj, uv_map).region
        total = 2 * len(rig)
        for n, rv in enumerate(rig):  # every colour render first: the scene stays as Cycles synced it
            t0 = time.perf_counter()
            _place_camera(scene, setup, rv, spec.kind == "scene", mesh)
            exr = _render_colour(scene, setup, settings, tmp)
            t1 = time.perf_counter()
            waited = writer.submit(lambda exr=exr, name=rv.name: write_view_files(
                out_dir, name, _colour_passes(exr, settings)))
            yield CaptureProgress(n + 1, total, rv.name, t1 - t0 + waited, "colour",
                                  {"colour render": t1 - t0, "waiting for files": waited})
        for n, rv in enumerate(rig):  # then every data render
            t0 = time.perf_counter()
            _place_camera(scene, setup, rv, spec.kind == "scene", mesh)
            exr = _render_data(scene, setup, tmp)
            t1 = time.perf_counter()
            waited = writer.submit(lambda exr=exr, rv=rv: _data_files(out_dir, rv,
                                                                      _data_passes(exr, settings, rv.camera)))
            yield CaptureProgress(len(rig) + n + 1, total, rv.name, t1 - t0 + waited, "data",
                                  {"data render": t1 - t0, "waiting for files": waited})
        t0 = time.perf_counter()
        results = writer.results()
        colour_files, data_files = results[:len(rig)], results[len(rig):]
        written = [View(rv.name, rv.camera, {**colour, **data}, rv.azimuth_deg, rv.elevation_deg, rv.label)
                   for rv, colour, (data, _, _) in zip(rig, colour_files, data_files)]
        depth_maps = [(rv.camera, depth) for rv, (_, depth, _) in zip(rig, data_files)]
        region_pixels = sum(pixels for _, _, pixels in data_files)
        log.debug("capture waited %.3f s for the last files", time.perf_counter() - t0)
        if not region.whole_object and not region_pixels:
            raise InvalidInputError(f"no view sees the region {region} of {obj.name!r}: add views that face it "
                                    "(another rig or more views) or choose another region")
        mesh.save(out_dir / MESH_FILE)
        vs = _viewset(obj, spec, settings, scene, setup, out_dir, uv_map, written,
                      coverage_mod.coverage(mesh, depth_maps))
        vs.write_manifest()
        finished = True
        return vs
    finally:
        writer.close()
        changes.restore()
        shutil.rmtree(tmp, ignore_errors=True)
        if not finished:
            _clean_output(out_dir, created)


@contextlib.contextmanager
def _quiet_stdout() -> Generator[None, None, None]:
    """Silence Cycles' per-tile "Fra:" lines (written by C code to file descriptor 1) during a render."""
    sys.stdout.flush()
    try:
        saved = os.dup(1)
    except OSError:  # no usable stdout (some GUI launches): nothing to silence
        yield
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 1)
        yield
    finally:
        os.dup2(saved, 1)
        os.close(saved)
        os.close(devnull)


def _render(scene: Any, path: Path) -> dict[str, np.ndarray]:
    scene.render.filepath = str(path)
    with _quiet_stdout():
        bpy.ops.render.render(write_still=True, scene=scene.name)
    return read_exr(path)


def _version() -> str:
    from ... import __version__

    return __version__


#: What :func:`render_views` can render again: the lit colour or the unlit base colour (the ``albedo`` pass).
RENDERABLE = ("colour", "albedo")


def render_views(obj: Any, vs: ViewSet, pass_name: str = "colour", scene: Any | None = None,
                 linear: bool = False) -> list[np.ndarray]:
    """The object as it is now (e.g. restyled) rendered from the capture's cameras the way the capture rendered
    ``pass_name`` ('colour': its samples, pixel filter, background and the lighting it used; 'albedo': the unlit
    base colour at each pixel centre): N uint8 sRGB (H, W, 3), or with ``linear`` N float32 linear (H, W, 3) before
    any clipping and encoding (the background colour outside the object).

    The scene is restored afterwards, as after a capture. Views of a scene-camera rig are rendered through our own
    camera with the recorded intrinsics (a scene camera's lens shift is part of them).
    """
    if pass_name not in RENDERABLE:
        raise InvalidInputError(f"can render again only {' or '.join(RENDERABLE)}, not {pass_name!r}")
    scene = scene or bpy.context.scene
    known = {f.name for f in fields(CaptureSettings)}
    settings = CaptureSettings(**{k: v for k, v in (vs.capture or {}).items() if k in known})
    settings.background = tuple(settings.background)  # JSON gives a list
    settings.lighting = "STUDIO" if (vs.capture or {}).get("lighting_used") == "studio" else "SCENE"
    settings.region = None  # a re-render shows the whole object
    size = vs.views[0].camera.intrinsics
    mesh = vs.mesh()  # the capture's evaluated mesh: the restyle changed materials, not geometry
    changes = SceneChanges()
    tmp = Path(tempfile.mkdtemp(prefix="groupedit-render-"))
    try:
        setup = _set_up_render(scene, obj, settings, size.width, size.height, vs.uv_map, mesh, changes)
        out = []
        for v in vs.views:
            k = v.camera.intrinsics
            scene.render.resolution_x, scene.render.resolution_y = k.width, k.height
            _place_camera(scene, setup, v, False, mesh)
            setup.cam_data.shift_x = (k.width / 2 - k.cx) / max(k.width, k.height)
            setup.cam_data.shift_y = (k.cy - k.height / 2) / max(k.width, k.height)
            if pass_name == "colour":
                image = _composited(_render_colour(scene, setup, settings, tmp), settings.background)
            else:
                image = _data_albedo(_render_data(scene, setup, tmp), settings.background)
            out.append(image.astype(np.float32) if linear else to_uint8(linear_to_srgb(image)))
        return out
    finally:
        changes.restore()
        shutil.rmtree(tmp, ignore_errors=True)


def capture(
    obj: Any,
    spec: RigSpec,
    settings: CaptureSettings,
    out_dir: str | Path,
    progress: Callable[[CaptureProgress], None] | None = None,
    cancel: Callable[[], bool] | None = None,
) -> ViewSet:
    """Run :func:`capture_steps` to the end. ``cancel()`` returning True stops it (raises CaptureCancelled)."""
    steps = capture_steps(obj, spec, settings, out_dir)
    try:
        while True:
            step = next(steps)
            if progress:
                progress(step)
            if cancel and cancel():
                steps.close()
                raise CaptureCancelled("capture cancelled: nothing was kept")
    except StopIteration as stop:
        return stop.value
