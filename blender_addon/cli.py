"""The ``groupedit`` command line, shared by ``blender -b --command groupedit`` and the console entry.

Subcommands:
  capture INPUT --out DIR   render a rig of views of an object into a ViewSet
  demo --out DIR            start a local server, capture a sample, edit it, write a before/after sheet

  check INPUT               capture the unlit base colour, bake it back, compare with the texture (JSON report)
  edit --views DIR         send a ViewSet to the edit server, wait, download the edited views

Exit codes: 0 success, 1 unexpected error, 2 bad arguments or input, 3 a file or folder problem,
4 the edit server is unreachable or failed the job, 130 cancelled (see :mod:`.core.errors`).
"""

from __future__ import annotations

import argparse
import logging
import shlex
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from .core.errors import GroupEditError, InvalidInputError

if TYPE_CHECKING:
    from .core.client import PollStatus
from .core.rigs import PRESETS, RigSpec


DEFAULT_SERVER = "http://127.0.0.1:8765"
SAMPLE_ASSETS = Path(__file__).resolve().parent.parent / "assets"


def _floats(text: str) -> list[float]:
    try:
        return [float(x) for x in text.split(",") if x.strip()]
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from exc


def _ints(text: str) -> list[int]:
    try:
        return [int(x) for x in text.split(",") if x.strip()]
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"expected comma-separated view indices, got {text!r}") from exc


def _add_capture_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--object", help="object to capture (default: the only, or largest, mesh)")
    p.add_argument("--views", type=int, default=10, help="number of views of a generated rig (default 10)")
    p.add_argument("--rig", choices=list(PRESETS), default="orbit-poles", help="camera rig preset")
    p.add_argument("--elevations", type=_floats, default=[20.0], help="ring elevations in degrees, e.g. 30,-15")
    p.add_argument("--start-azimuth", type=float, default=0.0, help="azimuth of the first view (degrees)")
    p.add_argument("--top", action="store_true", help="add a view from straight above")
    p.add_argument("--bottom", action="store_true", help="add a view from straight below")
    p.add_argument("--cameras", default="", help="with --rig scene: comma-separated camera names (default all)")
    p.add_argument("--skip", type=_ints, default=[], help="comma-separated view indices to leave out")
    p.add_argument("--fov", type=float, default=40.0, help="field of view of the larger image side (degrees)")
    p.add_argument("--margin", type=float, default=0.05, help="share of the frame kept free on each side")
    p.add_argument("--view-size", type=int, default=512, help="image size in pixels (larger side)")
    p.add_argument("--samples", type=int, default=32, help="Cycles samples of the colour render")
    p.add_argument("--lighting", choices=["AUTO", "SCENE", "STUDIO"], default="AUTO")
    p.add_argument("--device", choices=["AUTO", "CPU", "GPU"], default="AUTO", help="Cycles device")
    p.add_argument("--add-uv", action="store_true", help="add a Smart UV Project map if the mesh has none")
    p.add_argument("--overwrite", action="store_true", help="replace an earlier capture in --out")
    p.add_argument("--out", required=True, type=Path, help="output folder for the ViewSet (new or empty)")


def build_parser(inside_blender: bool) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="groupedit", description="GroupEdit for Blender: capture, edit and bake views")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debugging detail")
    sub = parser.add_subparsers(dest="command", required=True)
    cap = sub.add_parser("capture", help="render views of an object into a ViewSet folder")
    cap.add_argument(
        "input", nargs="?" if inside_blender else None, type=Path,
        help=".blend, .glb, .gltf, .fbx or .obj" + (" (default: the open file)" if inside_blender else ""),
    )
    _add_capture_args(cap)
    check = sub.add_parser("check", help="capture the unlit base colour, bake it back, compare with the texture")
    check.add_argument("input", nargs="?" if inside_blender else None, type=Path, help="asset or .blend")
    check.add_argument("--object", help="object to check (default: the only, or largest, mesh)")
    check.add_argument("--views", type=int, default=10, help="views of the rig (default 10)")
    check.add_argument("--rig", choices=list(PRESETS), default="orbit-poles")
    check.add_argument("--view-size", type=int, default=1024)
    check.add_argument("--texture-size", type=int, default=1024)
    check.add_argument("--json", type=Path, help="write the report here (default <out>/check.json)")
    check.add_argument("--out", type=Path, help="folder for the ViewSet, baked texture and error map "
                       "(default: a new temporary folder, kept)")
    edit = sub.add_parser("edit", help="edit a ViewSet's views on the edit server")
    edit.add_argument("--views", type=Path, required=True, help="ViewSet folder (from capture)")
    edit.add_argument("--instruction", required=True, help='what to change, e.g. "make it dark green"')
    edit.add_argument("--server", default=DEFAULT_SERVER, help=f"server URL (default {DEFAULT_SERVER})")
    edit.add_argument("--token", default="", help="Bearer token of a server started with --token-file")
    edit.add_argument("--timeout", type=float, default=3600.0, help="seconds to wait for the job")
    demo = sub.add_parser("demo", help="capture a sample asset, edit it on a local server, write before/after")
    demo.add_argument("--asset", type=Path, default=SAMPLE_ASSETS / "Suzanne.glb", help="asset to use")
    demo.add_argument("--views", type=int, default=8)
    demo.add_argument("--view-size", type=int, default=256)
    demo.add_argument("--samples", type=int, default=16)
    demo.add_argument("--instruction", default="make it dark green")
    demo.add_argument("--out", type=Path, default=Path("demo_output"), help="output folder")
    return parser


def rig_from_args(args: argparse.Namespace) -> RigSpec:
    spec = RigSpec(
        kind=args.rig, count=args.views, elevations=args.elevations, start_azimuth=args.start_azimuth,
        top=args.top, bottom=args.bottom, fov_deg=args.fov, margin=args.margin,
        scene_cameras=[c for c in args.cameras.split(",") if c], disabled=args.skip,
    )
    spec.validate()
    return spec


def _print_progress(step: object) -> None:
    print(f"view {step.index}/{step.total} {step.view}: {step.seconds:.2f} s", flush=True)


def cmd_capture(args: argparse.Namespace) -> int:
    from .blender.capture import CaptureSettings, capture
    from .blender.loading import open_input
    from .blender.mesh import find_object

    spec = rig_from_args(args)
    settings = CaptureSettings(
        view_size=args.view_size, samples=args.samples, lighting=args.lighting, device=args.device,
        add_uv=args.add_uv, overwrite=args.overwrite,
    )
    settings.validate()
    if args.input is not None:
        open_input(args.input)
    obj = find_object(args.object)
    t0 = time.perf_counter()
    vs = capture(obj, spec, settings, args.out, progress=_print_progress)
    total = time.perf_counter() - t0
    n = len(vs.views)
    print(f"captured {n} views of {obj.name!r} in {total:.1f} s ({total / n:.2f} s per view)")
    print(f"coverage: {vs.coverage:.1%} of the surface seen within 75 degrees")
    print(f"viewset: {vs.root}")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    """Start a local server, capture a sample, edit it with the classical editor, write a before/after sheet."""
    import socket

    from .core.contact_sheet import contact_sheet
    from .core.images import read_png, write_png
    from .core.server_process import LocalServer
    from .core.viewset import ViewSet

    out = args.out.absolute()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    server = LocalServer()
    command = (f"{shlex.quote(sys.executable)} -m backend.cli --port {port} --editor classical "
               f"--data-dir {shlex.quote(str(out / 'server'))}")
    views = out / "views"
    cap = build_parser(False).parse_args(
        ["capture", str(args.asset), "--views", str(args.views), "--view-size", str(args.view_size),
         "--samples", str(args.samples), "--out", str(views), "--overwrite"]
    )
    rig_from_args(cap)  # a bad setting fails here, before a server is started
    print(f"starting the edit server at {url}", flush=True)
    server.start(command, url)
    try:
        cmd_capture(cap)
        status = edit_viewset(views, args.instruction, url)
        if status.state != "done":
            raise GroupEditError(f"the edit {status.state}: {status.message}")
    finally:
        server.stop()
    vs = ViewSet.read(views)
    before = [vs.load(v, "colour") for v in vs.views]
    after = [read_png(views / "edited" / f"{v.name}.png")[..., :3] for v in vs.views]
    sheet = out / "before_after.png"
    write_png(sheet, contact_sheet(before + after, tile=args.view_size, columns=len(vs.views)))
    print(f"instruction: {args.instruction!r}")
    print(f"edited views: {views / 'edited'}")
    print(f"before/after contact sheet (top: captured, bottom: edited): {sheet}")
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    """Round trip without an edit: how well capture + bake reproduce the asset's own texture."""
    import json
    import tempfile

    import numpy as np

    from .blender.capture import CaptureSettings, capture
    from .blender.loading import open_input
    from .blender.mesh import find_object
    from .blender.textures import base_colour_image, image_pixels
    from .core.bake import bake, sample_texture, views_from_viewset
    from .core.images import to_uint8, write_png
    from .core.metrics import erode, psnr, ssim
    from .core.uv_raster import rasterise_uv

    if not 256 <= args.texture_size <= 8192:
        raise InvalidInputError(f"texture size must be between 256 and 8192, got {args.texture_size}")
    if args.input is not None:
        open_input(args.input)
    obj = find_object(args.object)
    image = base_colour_image(obj)
    if image is None:
        raise InvalidInputError(f"{obj.name!r} has no base-colour image texture to compare with")
    out = (args.out or Path(tempfile.mkdtemp(prefix="groupedit-check-"))).absolute()
    out.mkdir(parents=True, exist_ok=True)
    spec = RigSpec(kind=args.rig, count=args.views)
    t0 = time.perf_counter()
    vs = capture(obj, spec, CaptureSettings(view_size=args.view_size, samples=1, overwrite=True), out / "views",
                 progress=_print_progress)
    capture_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    surface = rasterise_uv(vs.mesh(), args.texture_size)
    result = bake(surface, views_from_viewset(vs, "albedo"))
    bake_s = time.perf_counter() - t0
    size = args.texture_size
    reference = np.zeros((size, size, 3), np.uint8)
    reference[surface.rows, surface.cols] = to_uint8(sample_texture(image_pixels(image), surface.uv))
    seen = result.seen
    weight = np.zeros((size, size))
    weight[surface.rows, surface.cols] = 1.0 / np.maximum(surface.uv_per_length, 1e-12) ** 2  # world area per texel
    err = np.abs(result.texture.astype(np.int16) - reference.astype(np.int16)).max(axis=2)
    err_map = np.where(seen, np.clip(err * 8, 0, 255), 0).astype(np.uint8)
    write_png(out / "error_map.png", err_map)
    write_png(out / "baked.png", result.texture)
    report = {
        "object": obj.name, "views": len(vs.views), "view_size": args.view_size, "texture_size": size,
        "coverage": float((weight * seen).sum() / max(weight.sum(), 1e-30)),
        "psnr_db": psnr(result.texture, reference, seen),
        "psnr_interior_db": psnr(result.texture, reference, seen & erode(result.covered, 4)),
        "ssim": ssim(result.texture, reference, seen),
        "capture_s": capture_s, "bake_s": bake_s,
        "error_map": str(out / "error_map.png"), "baked": str(out / "baked.png"), "viewset": str(vs.root),
    }
    json_path = args.json or out / "check.json"
    json_path.write_text(json.dumps(report, indent=2) + "\n")
    for key in ("coverage", "psnr_db", "psnr_interior_db", "ssim", "capture_s", "bake_s"):
        print(f"{key}: {report[key]:.4f}")
    print(f"report: {json_path}")
    return 0


def edit_viewset(views: Path, instruction: str, server: str, token: str = "", timeout: float = 3600.0,
                 online_access: bool = True) -> "PollStatus":
    """Submit a ViewSet to the server and wait, printing a progress bar; returns the final status."""
    from .core.client import BackendClient, JobPoller
    from .core.viewset import ViewSet

    poller = JobPoller(BackendClient(server, token, online_access=online_access), ViewSet.read(views), instruction)
    end = time.monotonic() + timeout
    last = ""
    try:
        while not poller.step().finished:
            st = poller.status
            bar = "#" * int(20 * st.fraction)
            line = f"[{bar:<20}] {st.state} {st.stage} {st.step}/{st.total}" if st.total else f"{st.state}: {st.message}"
            if line != last:
                print(line, flush=True)
                last = line
            if time.monotonic() > end:
                poller.cancel()
                raise GroupEditError(f"the edit took longer than {timeout:.0f} s and was cancelled")
            if st.state in ("queued", "running"):
                time.sleep(0.2)
    except KeyboardInterrupt:
        poller.cancel()
        raise
    return poller.status


def cmd_edit(args: argparse.Namespace) -> int:
    st = edit_viewset(args.views, args.instruction, args.server, args.token, args.timeout)
    if st.state == "done":
        print(st.message)
        return 0
    print(f"groupedit: error: edit {st.state}: {st.message}", file=sys.stderr)
    return 130 if st.state == "cancelled" else 4


COMMANDS = {"capture": cmd_capture, "check": cmd_check, "edit": cmd_edit, "demo": cmd_demo}


def _setup_logging(verbose: bool) -> None:
    """Our own log lines on stderr (Blender's and other add-ons' loggers are left as they are)."""
    logger = logging.getLogger(__package__)
    if not logger.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
        logger.addHandler(handler)
    logger.setLevel(logging.DEBUG if verbose else logging.INFO)


def run(argv: Sequence[str], inside_blender: bool) -> int:
    """Parse ``argv`` and run the subcommand; errors become a message on stderr and an exit code."""
    parser = build_parser(inside_blender)
    try:
        args = parser.parse_args(list(argv))
    except SystemExit as exc:  # argparse already printed the message
        return int(exc.code or 0)
    _setup_logging(args.verbose)
    try:
        return COMMANDS[args.command](args)
    except GroupEditError as exc:
        print(f"groupedit: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("groupedit: interrupted", file=sys.stderr)
        return 130


def blender_command(argv: Sequence[str]) -> int:
    """Handler for ``blender -b [file.blend] --command groupedit ...`` (registered by the extension)."""
    return run(argv, inside_blender=True)


def console_main() -> int:
    """The ``groupedit`` console entry, for environments with the ``bpy`` module installed."""
    try:
        import bpy  # noqa: F401  (loads Blender as a module)
    except ImportError:
        print("groupedit: error: the bpy module is not installed: run 'make test' or pip install bpy==4.5.*", file=sys.stderr)
        return InvalidInputError.exit_code
    return run(sys.argv[1:], inside_blender=False)


if __name__ == "__main__":
    sys.exit(console_main())
