"""The ``groupedit`` command line, shared by ``blender -b --command groupedit`` and the console entry.

Subcommands:
  capture INPUT --out DIR   render a rig of views of an object into a ViewSet
  demo --out DIR            start a local server, capture a sample, edit it, write a before/after sheet

  check INPUT               capture the unlit base colour, bake it back, compare with the texture (JSON report)
  edit --views DIR         send a ViewSet to the edit server, wait, download the edited views
  bake --views DIR --out F  bake the edited views into the object's texture(s), optionally apply and export
  run INPUT --instruction   capture, edit and bake in one go; writes textures, a .blend and a .glb
  batch ASSET... --out DIR  restyle many assets; resumable; workers capture and bake while the server edits

Exit codes: 0 success, 1 unexpected error, 2 bad arguments or input, 3 a file or folder problem,
4 the edit server is unreachable or failed the job, 5 the bake could not carry the edit, 6 a batch
finished with failed assets, 130 cancelled (see :mod:`.core.errors`).
"""

from __future__ import annotations

import argparse
import json
import logging
import shlex
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from .core.capture.settings import CaptureSettings
from .core.dataset import EDIT_KINDS
from .core.errors import (CaptureCancelled, GroupEditError, InvalidInputError, OutputNotWritableError,
                          ServerRequestError)
from .core.format.viewset import EDITED_DIR
from .core.options import add_arguments, from_arguments
from .core.bake.restyle import TEXTURE_SIZE_RANGE
from .workflows import bake_viewset, edit_viewset, save_outputs, score_viewset, verify_restyle

if TYPE_CHECKING:
    from .core.batch.runner import BatchResult, BatchSettings
    from .core.client.server_process import LocalServer
from .core.capture.rigs import RigSpec


log = logging.getLogger(__name__)
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
    add_arguments(p, RigSpec)  # --rig, --views, --start-azimuth, --top, --bottom, --fov, --margin
    p.add_argument("--elevations", type=_floats, default=RigSpec().elevations,
                   help="ring elevations in degrees, e.g. 30,-15")
    p.add_argument("--cameras", default="", help="with --rig scene: comma-separated camera names (default all)")
    p.add_argument("--skip", type=_ints, default=[], help="comma-separated view indices to leave out")
    add_arguments(p, CaptureSettings)  # --view-size, --samples, --lighting, --device, --add-uv, --uv-map, ...
    p.add_argument("--unwrap", action="store_true",
                   help="add a new Smart UV Project map and bake into it (for overlapping or mirrored UVs; the "
                        "original texture is redrawn on it)")
    p.add_argument("--out", required=True, type=Path, help="output folder for the ViewSet (new or empty)")


def _add_bake_args(p: argparse.ArgumentParser) -> None:
    if not any(a.dest == "object" for a in p._actions):
        p.add_argument("--object", help="object to bake into (default: the ViewSet's object)")
    p.add_argument("--texture-size", type=int, default=1024, help=TEXTURE_SIZE_HELP)
    p.add_argument("--format", choices=["png8", "png16", "exr"], help="texture format (default: from the file "
                   "name: .exr as EXR, else 8-bit PNG)")
    p.add_argument("--edited", default=EDITED_DIR, help=f"subfolder of the ViewSet with the edited views (default "
                   f"{EDITED_DIR})")
    p.add_argument("--keep-lighting", action="store_true", help="the edited views are albedo already: "
                   "do not remove the renders' shading")


TEXTURE_SIZE_HELP = f"texture side in texels, {TEXTURE_SIZE_RANGE[0]} to {TEXTURE_SIZE_RANGE[1]} (default 1024)"
DESCRIPTION_HELP = ('what the result shows, e.g. "red leather jacket": the groupediting model is prompted with it '
                    "(default: derived from the instruction and the object's name; the text used is printed)")


OPTION_HELP = ("an editor option for this job, repeatable, e.g. --option preset=exact --option steps=30 (the "
               "groupediting editor's options are in docs/protocol.md; the server refuses unknown ones)")


def parse_options(items: Sequence[str]) -> dict[str, object]:
    """``["preset=exact", "steps=30", "vggt=true"]`` -> ``{"preset": "exact", "steps": 30, "vggt": True}``
    (numbers become numbers, true/false booleans: the server takes each option in its own JSON type only)."""
    options: dict[str, object] = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise InvalidInputError(f"--option {item!r}: write NAME=VALUE, e.g. --option preset=exact")
        if value.lower() in ("true", "false"):
            options[name.strip()] = value.lower() == "true"
            continue
        for kind in (int, float):
            try:
                options[name.strip()] = kind(value)
                break
            except ValueError:
                continue
        else:
            options[name.strip()] = value
    return options


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
    cap.add_argument("--save-blend", type=Path, help="afterwards, save the scene as captured (an imported asset, a "
                     "UV map the capture added) to this new .blend: bake from it (bake --input)")
    check = sub.add_parser("check", help="capture the unlit base colour, bake it back, compare with the texture")
    check.add_argument("input", nargs="?" if inside_blender else None, type=Path, help="asset or .blend")
    check.add_argument("--object", help="object to check (default: the only, or largest, mesh)")
    add_arguments(check, RigSpec, only=("kind", "count"))
    check.add_argument("--view-size", type=int, default=1024)
    check.add_argument("--texture-size", type=int, default=1024, help=TEXTURE_SIZE_HELP)
    check.add_argument("--oracle", action="store_true", help="also bake a known recolour from lit renders "
                       "(shows what lighting removal costs)")
    check.add_argument("--restyle", action="store_true", help="instead, restyle end to end with a known recolour "
                       "on any kind of base colour (colour attributes, node chains, ...) and compare renders of the "
                       "restyled asset in view space (identity, unlit, oracle, closed loop)")
    check.add_argument("--samples", type=int, default=16, help="colour samples of the --restyle captures")
    check.add_argument("--json", type=Path, help="write the report here (default <out>/check.json)")
    check.add_argument("--out", type=Path, help="folder for the ViewSet, baked texture and error map "
                       "(default: a new temporary folder, kept)")
    edit = sub.add_parser("edit", help="edit a ViewSet's views on the edit server")
    edit.add_argument("--views", type=Path, required=True, help="ViewSet folder (from capture)")
    edit.add_argument("--instruction", required=True, help='what to change, e.g. "make it dark green"')
    edit.add_argument("--description", help=DESCRIPTION_HELP)
    edit.add_argument("--option", action="append", default=[], metavar="NAME=VALUE", help=OPTION_HELP)
    edit.add_argument("--server", default=DEFAULT_SERVER, help=f"server URL (default {DEFAULT_SERVER})")
    edit.add_argument("--token", default="", help="Bearer token of a server started with --token-file")
    edit.add_argument("--timeout", type=float, default=3600.0, help="seconds to wait for the job")
    bake = sub.add_parser("bake", help="bake edited views into the object's texture(s)")
    bake.add_argument("--views", type=Path, required=True, help="ViewSet folder with edited views")
    bake.add_argument("--input", type=Path, help="asset or .blend holding the object (default: the open file)")
    _add_bake_args(bake)
    bake.add_argument("--out", type=Path, required=True, help="texture file (.png or .exr); with several "
                      "materials, one file per material named <stem>_<material>")
    bake.add_argument("--apply", action="store_true", help="hook the texture into copies of the object's materials")
    bake.add_argument("--save-blend", type=Path, help="with --apply: save the scene to this new .blend")
    bake.add_argument("--export", type=Path, help="with --apply: export the restyled object to this .glb")
    bake.add_argument("--verify", action="store_true", help="with --apply: the closed loop (re-render the restyled "
                      "object from the capture's cameras and compare with the edited views; images in <views>/verify)")
    bake.add_argument("--report", type=Path, help="write what the bake did as JSON here (textures, edit-region "
                      "counts, the closed loop with --verify)")
    run = sub.add_parser("run", help="capture, edit and bake an asset in one go")
    run.add_argument("input", nargs="?" if inside_blender else None, type=Path, help="asset or .blend")
    run.add_argument("--instruction", help='what to change, e.g. "make it dark green" (or --edit)')
    run.add_argument("--edit", action="append", default=[], metavar="REGION=INSTRUCTION", dest="edits",
                     help='one edit of one region, repeatable, applied in turn (each captured again, edited, baked '
                          'and applied), e.g. --edit "material:Jacket=red leather" --edit "material:Trousers=dark '
                          'denim"; regions as --region')
    run.add_argument("--description", help=DESCRIPTION_HELP)
    run.add_argument("--option", action="append", default=[], metavar="NAME=VALUE", help=OPTION_HELP)
    run.add_argument("--server", help="edit server URL (default: start a local one for this run)")
    run.add_argument("--editor", default="classical", help="editor of the local server (default classical)")
    run.add_argument("--token", default="", help="Bearer token of a server started with --token-file")
    run.add_argument("--timeout", type=float, default=3600.0, help="seconds to wait for the edit")
    run.add_argument("--no-verify", dest="verify", action="store_false",
                     help="skip the closed loop (re-rendering the restyled asset from the capture's cameras and "
                          "comparing it with the edited views)")
    _add_capture_args(run)
    _add_bake_args(run)
    batch = sub.add_parser("batch", help="restyle many assets: resumable, captures and bakes in parallel workers")
    batch.add_argument("assets", nargs="*", help="asset files, folders (searched recursively) or globs")
    batch.add_argument("--manifest", type=Path, help="JSONL file, one asset per line (docs/batch.md)")
    batch.add_argument("--out", type=Path, required=True, help="batch folder: one subfolder per asset, report.json, "
                       "index.html; run the same command again to resume")
    batch.add_argument("--instruction", help="what to change (default for every asset)")
    batch.add_argument("--description", help=DESCRIPTION_HELP)
    batch.add_argument("--region", help="edit region for every asset (as capture --region)")
    batch.add_argument("--object", help="object to restyle in each asset (default: the only, or largest, mesh)")
    batch.add_argument("--seed", type=int, help="editor noise seed (editors that take one)")
    add_arguments(batch, RigSpec, only=("kind", "count"), unset=True)
    batch.add_argument("--view-size", type=int, help="capture image size (default as capture)")
    batch.add_argument("--samples", type=int, help="capture samples (default as capture)")
    batch.add_argument("--texture-size", type=int, help="bake texture size (default as bake)")
    batch.add_argument("--set", action="append", default=[], metavar="NAME=VALUE", dest="settings",
                       help="any other capture or bake setting for every asset, e.g. --set lighting=STUDIO")
    batch.add_argument("--workers", type=int, default=1, help="Blender processes capturing and baking at once "
                       "(default 1)")
    batch.add_argument("--server", action="append", metavar="URL", help="edit server URL, repeatable: the edits are "
                       "spread over the servers (default: start a local one, data in OUT/server)")
    batch.add_argument("--editor", default="classical", help="editor of the local server (default classical)")
    batch.add_argument("--token", default="", help="Bearer token of a server started with --token-file")
    batch.add_argument("--timeout", type=float, default=3600.0, help="seconds one edit may take")
    batch.add_argument("--retries", type=int, default=2, help="further tries of a stage that crashed or whose "
                       "edit failed (default 2; bad input is not tried again)")
    batch.add_argument("--fail-fast", action="store_true", help="stop at the first failure")
    batch.add_argument("--ray", metavar="ADDRESS", help="run on a Ray cluster: one warm editor per GPU, captures and "
                       "bakes as CPU tasks on any node (files on shared storage); 'auto': the cluster RAY_ADDRESS "
                       "names, else a new local one (pip install groupedit[ray]; docs/batch.md)")
    batch.add_argument("--ray-resource", default="GPU", help="with --ray: the resource each editor takes one of "
                       "(default GPU)")
    batch.add_argument("--editor-config", action="append", default=[], metavar="NAME=VALUE",
                       help="with --ray: a setting of the editor, as the server's flag of that name "
                            "(e.g. model_dir=/models/groupediting)")
    batch.add_argument("--no-verify", dest="verify", action="store_false", help="skip the closed loop")
    export = sub.add_parser("export", help="write a ViewSet for Must3R, nerfstudio or COLMAP with its exact cameras")
    export.add_argument("views", type=Path, help="ViewSet folder")
    export.add_argument("--format", required=True, choices=["must3r", "nerfstudio", "colmap"], dest="export_format")
    export.add_argument("--out", type=Path, required=True, help="a new or empty folder")
    export.add_argument("--edited", nargs="?", const=EDITED_DIR, default=None, metavar="SUBDIR",
                        help=f"export the edited views (default subfolder {EDITED_DIR}) instead of the captured ones")
    export.add_argument("--masks", action="store_true", help="nerfstudio: also the object masks")
    export.add_argument("--depth", action="store_true", help="nerfstudio: also the planar depth (.npy)")
    score = sub.add_parser("score", help="how consistent a group of views is, from the capture's geometry")
    score.add_argument("views", type=Path, help="ViewSet folder")
    score.add_argument("--edited", nargs="?", const=EDITED_DIR, default=None, metavar="SUBDIR",
                       help=f"score the edited views (default subfolder {EDITED_DIR}); the capture's own views are "
                            "scored too, as the ceiling")
    score.add_argument("--json", type=Path, help="write the report here")
    score.add_argument("--images", type=Path, help="write a disagreement image per view pair into this folder")
    dataset = sub.add_parser("dataset", help="paired training data: groups of views before and after an edit "
                             "applied to the asset (docs/training.md)")
    dataset.add_argument("assets", nargs="+", help="asset files, folders or globs")
    dataset.add_argument("--out", type=Path, required=True, help="dataset folder (run again to resume)")
    dataset.add_argument("--groups", type=int, required=True, help="number of groups")
    dataset.add_argument("--views", type=int, default=8, help="views per group, 2 to 16 (default 8)")
    dataset.add_argument("--edits", default=",".join(EDIT_KINDS), help="edit kinds to draw from, comma-separated "
                         f"(default {','.join(EDIT_KINDS)})")
    dataset.add_argument("--seed", type=int, default=0, help="the dataset's seed: the same seed makes the same groups")
    dataset.add_argument("--view-size", type=int, default=256)
    dataset.add_argument("--samples", type=int, default=16)
    demo = sub.add_parser("demo", help="capture, edit and bake a sample asset on a local server; write before/after")
    demo.add_argument("--asset", type=Path, default=SAMPLE_ASSETS / "Suzanne.glb", help="asset to use")
    demo.add_argument("--views", type=int, default=8)
    demo.add_argument("--view-size", type=int, default=256)
    demo.add_argument("--samples", type=int, default=16)
    demo.add_argument("--instruction", default="make it dark green")
    demo.add_argument("--out", type=Path, default=Path("demo_output"), help="output folder")
    return parser


def rig_from_args(args: argparse.Namespace) -> RigSpec:
    spec = from_arguments(RigSpec, args, elevations=args.elevations,
                          scene_cameras=[c for c in args.cameras.split(",") if c], disabled=args.skip)
    spec.validate()
    return spec


def _print_progress(step: object) -> None:
    print(f"render {step.index}/{step.total} ({step.stage} of {step.view}): {step.seconds:.2f} s", flush=True)


def cmd_capture(args: argparse.Namespace) -> int:
    from .blender.capture.render import capture
    from .blender.loading import open_input
    from .blender.mesh import add_unwrapped_uv_map, find_object

    spec = rig_from_args(args)
    settings = from_arguments(CaptureSettings, args)
    settings.validate()
    if args.input is not None:
        open_input(args.input)
    obj = find_object(args.object)
    if args.unwrap:
        settings.uv_map = add_unwrapped_uv_map(obj)
        print(f"added UV map {settings.uv_map!r} (Smart UV Project) to {obj.name}")
    t0 = time.perf_counter()
    vs = capture(obj, spec, settings, args.out, progress=_print_progress)
    total = time.perf_counter() - t0
    n = len(vs.views)
    print(f"captured {n} views of {obj.name!r} in {total:.1f} s ({total / n:.2f} s per view)")
    print(f"coverage: {vs.coverage:.1%} of the surface seen within 75 degrees")
    print(f"viewset: {vs.root}")
    if getattr(args, "save_blend", None) is not None:
        import bpy

        if args.save_blend.exists():
            raise OutputNotWritableError(f"{args.save_blend} exists: choose a new file name")
        bpy.ops.wm.save_as_mainfile(filepath=str(args.save_blend.absolute()), copy=True)
        print(f"scene as captured: {args.save_blend}")
    return 0


def _local_server(data_dir: Path, editor: str) -> tuple[LocalServer, str, str]:
    """A local edit server on a free port: (server, url, start command)."""
    import socket

    from .core.client.server_process import LocalServer

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    command = (f"{shlex.quote(sys.executable)} -m backend.cli --port {port} --editor {shlex.quote(editor)} "
               f"--data-dir {shlex.quote(str(data_dir))}")
    return LocalServer(), url, command


def cmd_bake(args: argparse.Namespace) -> int:
    from .blender.loading import open_input

    from .core.format.viewset import VERIFY_DIR, ViewSet

    if (args.save_blend or args.export or args.verify) and not args.apply:
        raise InvalidInputError("--save-blend, --export and --verify need --apply")
    if args.input is not None:
        open_input(args.input)
    files = bake_viewset(args.views, args.out, args.object, args.texture_size, args.format, args.edited,
                         not args.keep_lighting, args.apply)
    for f in files:
        print(f"texture: {f}")
    record: dict[str, object] = {"textures": [str(f) for f in files]}
    if args.apply:
        import bpy

        vs = ViewSet.read(args.views)
        obj_name = args.object or vs.object_name
        if args.verify:
            report = verify_restyle(vs, bpy.context.scene.objects[obj_name], vs.root / VERIFY_DIR, args.edited)
            record["closed_loop"] = report.to_dict()
        save_outputs(args.save_blend, args.export, obj_name)
    if args.report is not None:
        args.report.parent.mkdir(parents=True, exist_ok=True)
        args.report.write_text(json.dumps(record, indent=2, ensure_ascii=False) + "\n")
    return 0


def run_edits(args: argparse.Namespace) -> list[tuple[str | None, str]]:
    """The run's edits, in order: ``(region, instruction)`` from each ``--edit REGION=INSTRUCTION``, or the one
    ``--instruction`` (on ``--region``, if given)."""
    from .core.capture.region import RegionSpec

    if args.edits and args.instruction:
        raise InvalidInputError("give either --instruction (with --region) or --edit REGION=INSTRUCTION, not both")
    if not args.edits:
        if not args.instruction:
            raise InvalidInputError('say what to change: --instruction "make it dark green" (or --edit '
                                    'REGION=INSTRUCTION)')
        return [(args.region, args.instruction)]
    edits = []
    for item in args.edits:
        region, sep, instruction = item.partition("=")
        if not sep or not instruction.strip():
            raise InvalidInputError(f'--edit {item!r}: write REGION=INSTRUCTION, e.g. --edit "material:Jacket=red '
                                    'leather"')
        spec = RegionSpec.parse(region)
        edits.append((None if spec.whole_object else str(spec), instruction.strip()))
    return edits


def run_pipeline(args: argparse.Namespace, out: Path) -> Path:
    """capture -> edit -> bake -> apply -> closed loop -> .blend + .glb into ``out``, and ``out/run.json``
    (what was done and the closed loop's numbers); returns the (last) ViewSet folder.

    With several edits (``--edit``), each one in turn: its own capture (``views_1``, ``views_2``, ...) of the object
    as the earlier edits left it, its edit, bake and apply; ``run.json`` lists them under ``edits``."""
    from .blender.loading import open_input
    from .blender.mesh import find_object

    edits = run_edits(args)
    rig_from_args(args)  # a bad setting fails here, before a server is started
    server = None
    url = args.server
    if url is None:
        server, url, command = _local_server(out / "server", args.editor)
        print(f"starting the edit server at {url}", flush=True)
        server.start(command, url, die_with_parent=True)
    records: list[dict[str, object]] = []
    try:
        if args.input is not None:
            open_input(args.input)
        for n, (region, instruction) in enumerate(edits, start=1):
            views = out / ("views" if len(edits) == 1 else f"views_{n}")
            if len(edits) > 1:
                print(f"edit {n}/{len(edits)}: {instruction!r} on {region or 'the whole object'}", flush=True)
            records.append(_run_one(args, views, region, instruction, url))
    finally:
        if server is not None:
            server.stop()
    obj_name = find_object(args.object).name
    record: dict[str, object] = records[0] if len(records) == 1 else {"edits": records}
    (out / "run.json").write_text(json.dumps(record, indent=2, ensure_ascii=False) + "\n")
    stem = (args.input.stem if args.input is not None else obj_name) + "_restyled"
    for path in (out / f"{stem}.blend", out / f"{stem}.glb"):
        if path.exists() and args.overwrite:
            path.unlink()
    save_outputs(out / f"{stem}.blend", out / f"{stem}.glb", obj_name)
    return views


def _run_one(args: argparse.Namespace, views: Path, region: str | None, instruction: str, url: str
             ) -> dict[str, object]:
    """One edit of a run: capture (the open scene) into ``views`` with ``region``, edit, bake and apply, verify."""
    from .blender.mesh import find_object

    cap = argparse.Namespace(**vars(args))
    cap.out, cap.input, cap.region = views, None, region
    cmd_capture(cap)
    status = edit_viewset(views, instruction, url, args.token, args.timeout, description=args.description,
                          options=parse_options(args.option))
    print(status.message, flush=True)
    if status.state == "cancelled":
        raise CaptureCancelled(f"the edit was cancelled: {status.message}")
    if status.state != "done":
        raise ServerRequestError(f"the edit {status.state}: {status.message}", "failed")
    scored = score_viewset(views, args.edited)
    print(f"consistency of the edit: {scored['consistency_db']:.1f} dB (the capture's own views: "
          f"{scored['capture_consistency_db']:.1f} dB)", flush=True)
    obj_name = find_object(args.object).name
    fmt = args.format or "png8"
    bake_viewset(views, views.parent / "textures" / f"{views.name}.png", obj_name, args.texture_size, fmt,
                 args.edited, not args.keep_lighting, apply=True)
    record: dict[str, object] = {"instruction": instruction, "views": str(views), "edit": status.result,
                                 **{k: scored[k] for k in ("consistency_db", "capture_consistency_db", "texel_spread",
                                                           "capture_texel_spread")}}
    if region:
        record["region"] = region
    if args.verify:
        import bpy

        from .core.format.viewset import ViewSet

        report = verify_restyle(ViewSet.read(views), bpy.context.scene.objects[obj_name], views.parent /
                                ("verify" if views.name == "views" else f"verify_{views.name}"), args.edited)
        record["closed_loop"] = report.to_dict()
    return record


def cmd_run(args: argparse.Namespace) -> int:
    run_pipeline(args, args.out.absolute())
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    """Capture, edit (classical editor on a local server) and bake a sample; write the restyled asset and a sheet."""
    from .core.contact_sheet import contact_sheet
    from .core.format.images import read_png, write_png
    from .core.format.viewset import ViewSet

    out = args.out.absolute()
    run_args = build_parser(False).parse_args(
        ["run", str(args.asset), "--instruction", args.instruction, "--views", str(args.views),
         "--view-size", str(args.view_size), "--samples", str(args.samples), "--texture-size", "1024",
         "--out", str(out), "--overwrite"])
    views = run_pipeline(run_args, out)
    vs = ViewSet.read(views)
    before = [vs.load(v, "colour") for v in vs.views]
    after = [read_png(views / EDITED_DIR / f"{v.name}.png")[..., :3] for v in vs.views]
    sheet = out / "before_after.png"
    write_png(sheet, contact_sheet(before + after, tile=args.view_size, columns=len(vs.views)))
    print(f"instruction: {args.instruction!r}")
    print(f"edited views: {views / 'edited'}")
    print(f"before/after contact sheet (top: captured, bottom: edited): {sheet}")
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    """Round trip without an edit: how well capture + bake reproduce the asset's own texture."""
    import tempfile

    from .blender.check import run_check, run_restyle_check
    from .blender.loading import open_input
    from .blender.mesh import find_object

    if args.input is not None:
        open_input(args.input)
    obj = find_object(args.object)
    out = (args.out or Path(tempfile.mkdtemp(prefix="groupedit-check-"))).absolute()
    out.mkdir(parents=True, exist_ok=True)
    if args.restyle:
        report = run_restyle_check(obj, from_arguments(RigSpec, args), args.view_size, args.texture_size, out,
                                   args.samples, progress=_print_progress)
        keys = ["identity_psnr_db", "unlit_psnr_db", "oracle_psnr_db", "oracle_drop_db", "loop_psnr_db",
                "changed_share", "seconds"]
    else:
        report = run_check(obj, from_arguments(RigSpec, args), args.view_size, args.texture_size, out,
                           oracle=args.oracle, progress=_print_progress)
        keys = ["coverage", "psnr_db", "psnr_interior_db", "ssim", "capture_s", "load_s", "bake_s"]
        keys += ["oracle_psnr_db", "oracle_drop_db"] if args.oracle else []
    json_path = args.json or out / "check.json"
    json_path.write_text(json.dumps(report, indent=2) + "\n")
    for key in keys:
        print(f"{key}: {report[key]:.4f}")
    print(f"report: {json_path}")
    return 0


def cmd_edit(args: argparse.Namespace) -> int:
    st = edit_viewset(args.views, args.instruction, args.server, args.token, args.timeout,
                      description=args.description, options=parse_options(args.option))
    if st.state == "done":
        print(st.message)
        return 0
    print(f"groupedit: error: edit {st.state}: {st.message}", file=sys.stderr)
    return 130 if st.state == "cancelled" else 4


def _worker_command(inside_blender: bool) -> list[str]:
    """How a batch worker runs ``groupedit``: this Blender in the background, or this Python's bpy module."""
    if inside_blender:
        import bpy

        return [bpy.app.binary_path, "-b", "--command", "groupedit"]
    exe = Path(sys.executable).with_name("groupedit")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "blender_addon.cli"]


def _batch_options(args: argparse.Namespace) -> dict[str, object]:
    """Capture and bake settings for every asset: the explicit flags given and each ``--set NAME=VALUE``, checked
    against the capture and bake commands' flags."""
    options: dict[str, object] = {k: v for k, v in (("rig", args.kind), ("views", args.count),
                                                    ("view_size", args.view_size), ("samples", args.samples),
                                                    ("texture_size", args.texture_size)) if v is not None}
    for item in args.settings:
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise InvalidInputError(f"--set {item!r}: write NAME=VALUE, e.g. --set lighting=STUDIO")
        options[name.strip().replace("-", "_")] = True if value.lower() == "true" else value
    return options


def check_batch_options(options: dict[str, object], where: str) -> None:
    """Every option names a flag of ``groupedit capture`` (or, for the bake's settings, of ``groupedit bake``) other
    than the ones a batch sets itself."""
    from .core.batch.runner import BAKE_OPTIONS

    parser = build_parser(False)
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    capture = {f for a in sub.choices["capture"]._actions for f in a.option_strings}
    capture -= {"--out", "--object", "--region", "--overwrite", "-h", "--help"}
    for name in options:
        if name not in BAKE_OPTIONS and "--" + name.replace("_", "-") not in capture:
            raise InvalidInputError(f"{where}: {name!r} is not a capture or bake setting a batch can set; see "
                                    "groupedit capture --help (and texture_size, format, keep_lighting for the bake)")


def cmd_batch(args: argparse.Namespace) -> int:
    """Restyle many assets (docs/batch.md): 0 when every asset is done, 6 when some failed, 130 when interrupted."""
    from .core.batch.manifest import batch_items
    from .core.batch.runner import BatchRunner

    if args.workers < 1 or args.retries < 0:
        raise InvalidInputError("--workers must be at least 1 and --retries at least 0")
    defaults = {"instruction": args.instruction, "description": args.description, "region": args.region,
                "object": args.object, "seed": args.seed, "options": _batch_options(args)}
    items = batch_items(args.assets, args.manifest, defaults)
    for item in items:
        check_batch_options(item.options, item.asset.name)
    out = args.out.absolute()
    out.mkdir(parents=True, exist_ok=True)
    worker = _worker_command(getattr(args, "inside_blender", False))
    if args.ray:
        return _batch_result(out, _ray_batch(args, items, out, worker))
    server, urls = None, args.server
    if urls is None:
        server, url, command = _local_server(out / "server", args.editor)
        print(f"starting the edit server at {url}", flush=True)
        for wait in range(30):  # a batch killed moments ago: its server is still finishing (it stops with it)
            try:
                server.start(command, url, die_with_parent=True)
                urls = [url]
                break
            except InvalidInputError as exc:
                if "uses the data folder" not in str(exc) or wait == 29:
                    raise
                if wait == 0:
                    print("waiting for the earlier batch's server to stop", flush=True)
                time.sleep(1.0)
    try:
        result = BatchRunner(items, _batch_settings(args, out, urls, worker)).run()
    finally:
        if server is not None:
            server.stop()
    return _batch_result(out, result)


def _batch_settings(args: argparse.Namespace, out: Path, urls: list[str], command: list[str]) -> BatchSettings:
    from .core.batch.runner import BatchSettings

    return BatchSettings(out, urls, command, args.workers, args.retries, args.fail_fast, args.token, args.timeout,
                         args.verify, progress=lambda line: print(line, flush=True))


def _ray_batch(args: argparse.Namespace, items: list, out: Path, command: list[str]) -> BatchResult:
    """The batch on a Ray cluster (:mod:`backend.ray_batch`): editors as actors, captures and bakes as tasks."""
    try:
        from backend import ray_batch
    except ImportError as exc:
        raise InvalidInputError(f"--ray needs Ray and the edit server's package: pip install 'groupedit[ray]' "
                                f"({exc})") from exc
    from .core.batch.runner import BatchRunner

    from backend.errors import BackendError

    ray_batch.connect(args.ray)
    try:
        edits = ray_batch.RayEdits(args.editor, parse_options(args.editor_config), args.ray_resource)
    except BackendError as exc:  # the server side's errors: an unknown editor, a cluster without the resource
        raise InvalidInputError(str(exc)) from exc
    print(f"Ray: {len(edits.actors)} editor(s) ({args.editor}) on {args.ray_resource!r}", flush=True)
    return BatchRunner(items, _batch_settings(args, out, [], command), ray_batch.RayStages(command), edits).run()


def _batch_result(out: Path, result: BatchResult) -> int:
    from .core.batch.report import INDEX_FILE, write_report

    report = write_report(result, out)
    t = report["totals"]
    for a in report["assets"]:
        if a["status"] == "failed":
            e = a["error"]
            print(f"failed: {a['id']}: {e['stage']} ({e['category']}): {e['reason']}")
    print(f"{t['done']} done, {t['failed']} failed, {t['skipped']} skipped (done earlier), {t['unfinished']} "
          f"unfinished; report: {out / INDEX_FILE}")
    if result.interrupted:
        return 130
    return 6 if t["failed"] or t["unfinished"] else 0


def cmd_export(args: argparse.Namespace) -> int:
    from .core.export.colmap import export_colmap
    from .core.export.must3r import export_must3r
    from .core.export.nerfstudio import export_nerfstudio
    from .core.export.views import export_images, prepare_out
    from .core.format.viewset import ViewSet

    vs = ViewSet.read(args.views)
    if (args.masks or args.depth) and args.export_format != "nerfstudio":
        raise InvalidInputError("--masks and --depth are for --format nerfstudio")
    images = export_images(vs, args.edited)
    out = args.out.absolute()
    prepare_out(out)
    if args.export_format == "colmap":
        export_colmap(vs, images, out)
    elif args.export_format == "nerfstudio":
        export_nerfstudio(vs, images, out, args.masks, args.depth)
    else:
        export_must3r(vs, images, out)
    print(f"{args.export_format}: {len(images)} {'edited' if args.edited else 'captured'} views in {out}")
    return 0


def cmd_score(args: argparse.Namespace) -> int:
    from .core.consistency import DISAGREEMENT_GAIN
    from .core.format.images import write_png

    scored = score_viewset(args.views, args.edited)
    report = scored["report"]
    for line in report.lines():
        print(line)
    print(f"capture's own views: {scored['capture_consistency_db']:.1f} dB (the ceiling of an edit)")
    print(f"texel spread: {scored['texel_spread']:.2f} levels (the capture's own: {scored['capture_texel_spread']:.2f})")
    if args.images is not None and scored["images"]:
        args.images.mkdir(parents=True, exist_ok=True)
        names = scored["names"]
        for (i, j), image in scored["images"].items():
            write_png(args.images / f"{names[i]}~{names[j]}.png", image)
        print(f"disagreement images (x{DISAGREEMENT_GAIN}, in the first view's frame): {args.images}")
    if args.json is not None:
        args.json.write_text(json.dumps({"consistency_db": scored["consistency_db"],
                                         "capture_consistency_db": scored["capture_consistency_db"],
                                         "texel_spread": scored["texel_spread"],
                                         "capture_texel_spread": scored["capture_texel_spread"],
                                         "edited": args.edited, **report.to_dict()}, indent=2) + "\n")
    return 0


def cmd_dataset(args: argparse.Namespace) -> int:
    from .blender.dataset import make_dataset
    from .core.batch.manifest import expand_assets
    from .core.dataset import parse_kinds

    if not 2 <= args.views <= 16 or args.groups < 1:
        raise InvalidInputError("--views must be 2 to 16 and --groups at least 1")
    settings = CaptureSettings(view_size=args.view_size, samples=args.samples)
    settings.validate()
    manifest = make_dataset(expand_assets(args.assets), args.out.absolute(), args.groups, args.seed,
                            parse_kinds(args.edits), args.views, settings)
    kept = [g for g in manifest.get("groups", []) if "dropped" not in g]
    print(f"{len(kept)} groups kept, {len(manifest.get('groups', [])) - len(kept)} dropped (edit not visible); "
          f"manifest: {args.out / 'manifest.json'}")
    return 0


COMMANDS = {"capture": cmd_capture, "dataset": cmd_dataset, "export": cmd_export, "score": cmd_score, "check": cmd_check, "edit": cmd_edit, "bake": cmd_bake, "run": cmd_run,
            "batch": cmd_batch, "demo": cmd_demo}


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
    args.inside_blender = inside_blender
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
