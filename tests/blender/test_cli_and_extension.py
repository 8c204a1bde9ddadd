"""The headless command line and the installable extension, each in its own Blender process."""

from __future__ import annotations

import json
import shutil
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
ASSETS = ROOT / "assets"

pytestmark = pytest.mark.slow  # Blender in subprocesses: the full tier


def _groupedit(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    """Run the console entry (same code path as ``blender --command groupedit``)."""
    exe = Path(sys.executable).with_name("groupedit")
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "blender_addon.cli"]
    return subprocess.run(cmd + list(args), cwd=cwd, capture_output=True, text=True, timeout=600)


def test_cli_capture_prints_progress_and_writes_a_viewset(tmp_path):
    r = _groupedit("capture", str(ASSETS / "Avocado.glb"), "--views", "3", "--rig", "orbit", "--view-size", "64",
                   "--samples", "1", "--out", str(tmp_path / "vs"), cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert [line for line in r.stdout.splitlines() if line.startswith("render ")][-1].startswith("render 6/6 (data of view_002)")
    assert "per view" in r.stdout and "coverage" in r.stdout
    manifest = json.loads((tmp_path / "vs" / "manifest.json").read_text())
    assert manifest["object"]["name"] == "Avocado" and len(manifest["views"]) == 3


def test_cli_capture_into_a_new_unwrapped_uv_map(tmp_path):
    r = _groupedit("capture", str(ASSETS / "Suzanne.glb"), "--views", "2", "--rig", "orbit", "--view-size", "64",
                   "--samples", "1", "--unwrap", "--out", str(tmp_path / "vs"), cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "added UV map 'GroupEdit_UV'" in r.stdout
    assert json.loads((tmp_path / "vs" / "manifest.json").read_text())["object"]["uv_map"] == "GroupEdit_UV"
    # the new map lives in that session's scene only: a bake on a fresh import says so
    (tmp_path / "vs" / "edited").mkdir()
    for png in (tmp_path / "vs" / "colour").glob("*.png"):
        shutil.copy(png, tmp_path / "vs" / "edited" / png.name)
    r = _groupedit("bake", "--views", str(tmp_path / "vs"), "--input", str(ASSETS / "Suzanne.glb"),
                   "--out", str(tmp_path / "t.png"), cwd=tmp_path)
    assert r.returncode == 2 and "'GroupEdit_UV', which 'Suzanne' does not have here" in r.stderr, r.stderr
    assert not (tmp_path / "t.png").exists()


@pytest.mark.parametrize(
    "args,code,message",
    [
        (["--object", "Chair"], 2, "no object named 'Chair'"),
        (["--views", "0"], 2, "view count"),
        (["--rig", "scene"], 2, "needs cameras"),
        (["--uv-map", "Lightmap"], 2, "no UV map 'Lightmap' (it has: UVMap)"),
    ],
)
def test_cli_errors_have_codes_and_messages(tmp_path, args, code, message):
    r = _groupedit("capture", str(ASSETS / "Suzanne.glb"), *args, "--view-size", "64", "--out", str(tmp_path / "o"),
                   cwd=tmp_path)
    assert r.returncode == code and message in r.stderr, (r.returncode, r.stderr)
    assert not (tmp_path / "o").exists()


def test_cli_missing_input_and_unwritable_output(tmp_path):
    r = _groupedit("capture", str(tmp_path / "nope.glb"), "--out", str(tmp_path / "o"), cwd=tmp_path)
    assert r.returncode == 3 and "does not exist" in r.stderr
    (tmp_path / "blocker").write_text("")
    r = _groupedit("capture", str(ASSETS / "Suzanne.glb"), "--view-size", "64", "--out", str(tmp_path / "blocker" / "o"),
                   cwd=tmp_path)
    assert r.returncode == 3 and "groupedit: error" in r.stderr


@pytest.fixture(scope="module")
def extension_zip(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    r = subprocess.run([sys.executable, str(ROOT / "tools" / "build_extension.py"), "--out", str(out)],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    return Path(r.stdout.strip().splitlines()[-1])


def test_extension_installs_enables_and_captures(tmp_path, extension_zip):
    """Install the zip into an isolated user folder, enable it, run the operator and the CLI handler."""
    script = textwrap.dedent(f"""
        import sys, json, bpy
        bpy.ops.extensions.package_install_files(filepath={str(extension_zip)!r}, repo="user_default", enable_on_install=True)
        import addon_utils
        mod = "bl_ext.user_default.groupedit"
        assert mod in {{m.module for m in bpy.context.preferences.addons}}, "not enabled"
        assert hasattr(bpy.types.Scene, "groupedit") and hasattr(bpy.ops.groupedit, "capture_views")
        for o in list(bpy.data.objects):  # the startup scene's cube, camera and light
            bpy.data.objects.remove(o)
        bpy.ops.import_scene.gltf(filepath={str(ASSETS / "Suzanne.glb")!r})
        obj = bpy.context.scene.objects["Suzanne"]
        bpy.context.view_layer.objects.active = obj
        s = bpy.context.scene.groupedit
        s.rig, s.views, s.view_size, s.samples, s.output_dir = "orbit", 2, 64, 1, {str(tmp_path / "captures")!r}
        assert bpy.ops.groupedit.add_uv_map() == {{"FINISHED"}} and s.uv_map == "GroupEdit_UV"
        assert obj.data.uv_layers["UVMap"].active_render  # what renders is unchanged
        assert bpy.ops.groupedit.capture_views() == {{"FINISHED"}}
        uv_map = json.load(open(s.last_folder + "/manifest.json"))["object"]["uv_map"]
        print("RESULT", json.dumps({{"views": s.last_views, "coverage": s.last_coverage, "folder": s.last_folder,
                                     "uv_map": uv_map}}))
        # the panels draw (headless Blender never draws them: call draw with a layout that records calls)
        class Layout:
            def __init__(self, log):
                self.log = log
            def __getattr__(self, name):
                def call(*args, **kwargs):
                    what = args[1] if name.startswith("prop") and len(args) > 1 else args[0] if args else ""
                    self.log.append((name, what or kwargs.get("text", "")))
                    return Layout(self.log)
                return call
        panels = sys.modules[mod + ".ui.panels"]
        drawn = {{}}
        for uv_warning in ("", "Suzanne_BaseColor: 3.0% of the texels are shared"):
            s.uv_warning = uv_warning
            for cls in (panels.GROUPEDIT_PT_capture, panels.GROUPEDIT_PT_edit, panels.GROUPEDIT_PT_texture):
                log = []
                cls.draw(type("Panel", (), {{"layout": Layout(log)}})(), bpy.context)
                drawn[cls.__name__ + ("+warning" if uv_warning else "")] = [a for kind, a in log if kind == "operator"]
        # the edit region: its controls, its overlay (a draw handler: the scene is not changed) and a capture of it
        s.region_kind, s.region_materials = "MATERIAL", obj.material_slots[0].material.name
        log = []
        panels.GROUPEDIT_PT_capture.draw(type("Panel", (), {{"layout": Layout(log)}})(), bpy.context)
        drawn["region"] = [a for kind, a in log if kind in ("operator", "prop")]
        assert bpy.ops.groupedit.show_region() == {{"FINISHED"}}
        overlay = sys.modules[mod + ".ui.region_overlay"]
        drawn["overlay"] = [overlay.showing(), len(overlay._state["triangles"]), len(obj.data.polygons)]
        assert bpy.ops.groupedit.show_region() == {{"FINISHED"}} and not overlay.showing()
        assert bpy.ops.groupedit.capture_views() == {{"FINISHED"}}
        drawn["region_capture"] = json.load(open(s.last_folder + "/manifest.json"))["capture"]["region"]
        print("DRAWN", json.dumps(drawn))
        handler = sys.modules[mod + ".cli"].blender_command
        code = handler(["capture", "--rig", "orbit", "--views", "2", "--view-size", "64", "--samples", "1",
                        "--out", {str(tmp_path / "cli")!r}])
        print("CLI", code)
    """)
    env = dict(os.environ, BLENDER_USER_RESOURCES=str(tmp_path / "user"))
    r = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-4000:]
    result = json.loads(next(line for line in r.stdout.splitlines() if line.startswith("RESULT"))[7:])
    assert result["views"] == 2 and result["coverage"] > 0.3 and result["uv_map"] == "GroupEdit_UV"
    assert (Path(result["folder"]) / "manifest.json").is_file()
    assert Path(result["folder"]).parent == tmp_path / "captures"
    assert "CLI 0" in r.stdout and (tmp_path / "cli" / "manifest.json").is_file()
    drawn = json.loads(next(line for line in r.stdout.splitlines() if line.startswith("DRAWN"))[6:])
    assert "groupedit.add_uv_map" in drawn["GROUPEDIT_PT_capture"] and "groupedit.capture_views" in drawn["GROUPEDIT_PT_capture"]
    assert "groupedit.apply_texture" in drawn["GROUPEDIT_PT_texture"]
    assert "groupedit.add_uv_map" not in drawn["GROUPEDIT_PT_texture"]
    assert "groupedit.add_uv_map" in drawn["GROUPEDIT_PT_texture+warning"]
    assert {"region_kind", "region_materials", "groupedit.show_region"} <= set(drawn["region"])
    showing, corners, faces = drawn["overlay"]
    assert showing and corners >= 3 * faces  # every face of the one material, as triangles
    assert drawn["region_capture"].startswith("material:")
    assert (tmp_path / "user" / "extensions" / "user_default" / "groupedit" / "blender_manifest.toml").is_file()


def test_extension_edit_operator_against_the_real_server(tmp_path, extension_zip):
    """Headless path of Edit views: capture with the operator, edit on a real classical server, files land."""
    from tests.backend.server import Server

    server = Server(tmp_path / "server", "classical").start()
    try:
        script = textwrap.dedent(f"""
            import bpy, json
            bpy.ops.extensions.package_install_files(filepath={str(extension_zip)!r}, repo="user_default", enable_on_install=True)
            prefs = bpy.context.preferences.addons["bl_ext.user_default.groupedit"].preferences
            prefs.server_url = {server.url!r}
            for o in list(bpy.data.objects):
                bpy.data.objects.remove(o)
            bpy.ops.import_scene.gltf(filepath={str(ASSETS / "Avocado.glb")!r})
            bpy.context.view_layer.objects.active = bpy.context.scene.objects["Avocado"]
            s = bpy.context.scene.groupedit
            s.rig, s.views, s.view_size, s.samples, s.output_dir = "orbit", 2, 64, 1, {str(tmp_path / "captures")!r}
            assert bpy.ops.groupedit.capture_views() == {{"FINISHED"}}
            s.instruction = "make it #2a6f3c"
            s.description = "dark green avocado"
            assert bpy.ops.groupedit.edit_views() == {{"FINISHED"}}, s.edit_status
            original = bpy.context.scene.objects["Avocado"].material_slots[0].material.name
            s.texture_size = "512"
            assert bpy.ops.groupedit.apply_texture() == {{"FINISHED"}}
            restyled = bpy.context.scene.objects["Avocado"].material_slots[0].material.name
            assert bpy.ops.groupedit.switch_materials() == {{"FINISHED"}}
            switched = bpy.context.scene.objects["Avocado"].material_slots[0].material.name
            no_region = s.region_status
            # again on an edit region: the upper faces only
            obj = bpy.context.scene.objects["Avocado"]
            top = sum(v.co.z for v in obj.data.vertices) / len(obj.data.vertices)
            for poly in obj.data.polygons:
                poly.select = poly.center.z > top
            s.region_kind = "FACES"
            assert bpy.ops.groupedit.capture_views() == {{"FINISHED"}}
            assert bpy.ops.groupedit.edit_views() == {{"FINISHED"}}, s.edit_status
            assert bpy.ops.groupedit.apply_texture() == {{"FINISHED"}}
            print("RESULT", json.dumps({{"folder": s.last_folder, "status": s.edit_status, "original": original,
                                         "restyled": restyled, "switched": switched, "uv_warning": s.uv_warning,
                                         "loop": s.loop_status, "no_region": no_region,
                                         "region": s.region_status}}))
            prefs.server_url = "http://127.0.0.1:9"  # nothing listens there
            try:
                bpy.ops.groupedit.edit_views()
            except RuntimeError as exc:  # an operator's ERROR report raises in background mode
                print("DEAD", exc)
        """)
        env = dict(os.environ, BLENDER_USER_RESOURCES=str(tmp_path / "user"))
        r = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=600)
        assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-4000:]
        result = json.loads(next(line for line in r.stdout.splitlines() if line.startswith("RESULT"))[7:])
        edited = sorted((Path(result["folder"]) / "edited").glob("*.png"))
        assert [p.name for p in edited] == ["view_000.png", "view_001.png"]
        assert "2 edited views" in result["status"] and "consistency" in result["status"]
        record = json.loads((Path(result["folder"]) / "edited" / "edit.json").read_text())
        assert record["description"] == "dark green avocado" and record["instruction"] == "make it #2a6f3c"
        staged = next((tmp_path / "server" / "jobs").glob("*/inputs/text.json"))
        assert json.loads(staged.read_text()) == {"description": "dark green avocado", "subject": "Avocado"}
        assert result["restyled"] == result["original"] + "_GroupEdit" and result["switched"] == result["original"]
        assert result["uv_warning"] == ""  # the avocado's islands do not overlap
        assert result["loop"].startswith("Closed loop: ") and " dB " in result["loop"]
        assert result["no_region"] == "" and result["region"].startswith("Region: ")
        assert " 0 outside" in result["region"] and not result["region"].startswith("Region: 0 texels"), result
        assert len(list((Path(result["folder"]) / "verify").glob("*_error.png"))) == 2
        dead = next(line for line in r.stdout.splitlines() if line.startswith("DEAD"))
        assert "backend not running" in dead
    finally:
        server.kill()


def test_demo_runs_the_whole_flow(tmp_path):
    r = _groupedit("demo", "--views", "3", "--view-size", "64", "--samples", "1", "--out", str(tmp_path / "demo"),
                   cwd=tmp_path)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    assert "before/after contact sheet" in r.stdout
    assert (tmp_path / "demo" / "before_after.png").is_file()
    assert len(list((tmp_path / "demo" / "views" / "edited").glob("*.png"))) == 3
    assert (tmp_path / "demo" / "Suzanne_restyled.glb").stat().st_size > 10_000
    assert (tmp_path / "demo" / "Suzanne_restyled.blend").is_file()
    assert "restyled asset:" in r.stdout
    # the closed loop: the restyled asset re-rendered from the capture's cameras against the edited views
    run = json.loads((tmp_path / "demo" / "run.json").read_text())
    loop = run["closed_loop"]
    assert [v["name"] for v in loop["views"]] == ["view_000", "view_001", "view_002"]
    assert 15.0 < loop["psnr_db"] < 100.0 and "closed loop" in r.stdout
    assert len(list((tmp_path / "demo" / "verify").glob("*_error.png"))) == 3
    # the server the demo started is gone
    import requests

    url = next(line.split(" at ")[1] for line in r.stdout.splitlines() if line.startswith("starting the edit server"))
    with pytest.raises(requests.ConnectionError):
        requests.get(url + "/v1/health", timeout=2)


def test_closed_loop_of_an_identity_edit_is_exact_and_no_verify_skips_it(tmp_path):
    """An editor that changes nothing: the restyled asset re-renders as captured (the re-render is the capture's own
    colour render, by construction; the restyled copy reads the texture as written back, 8-bit)."""
    common = ["--instruction", "keep it", "--editor", "identity", "--views", "3", "--rig", "orbit", "--view-size",
              "64", "--samples", "2"]
    r = _groupedit("run", str(ASSETS / "Avocado.glb"), *common, "--out", str(tmp_path / "a"), cwd=tmp_path)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    loop = json.loads((tmp_path / "a" / "run.json").read_text())["closed_loop"]
    assert all(v["psnr_db"] > 45 and v["off_share"] == 0.0 for v in loop["views"]), loop
    r = _groupedit("run", str(ASSETS / "Avocado.glb"), *common, "--no-verify", "--out", str(tmp_path / "b"),
                   cwd=tmp_path)
    assert r.returncode == 0 and "closed_loop" not in json.loads((tmp_path / "b" / "run.json").read_text())


def test_run_with_unwrap_saves_the_new_uv_map_and_uses_it(tmp_path):
    r = _groupedit("run", str(ASSETS / "Suzanne.glb"), "--instruction", "make it dark green", "--unwrap",
                   "--views", "2", "--rig", "orbit", "--view-size", "64", "--samples", "1", "--out", str(tmp_path / "r"),
                   cwd=tmp_path)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    script = textwrap.dedent(f"""
        import bpy, json
        bpy.ops.wm.open_mainfile(filepath={str(tmp_path / "r" / "Suzanne_restyled.blend")!r})
        obj = bpy.data.objects["Suzanne"]
        mat = obj.material_slots[0].material
        tex = next(n for n in mat.node_tree.nodes if n.bl_idname == "ShaderNodeTexImage" and n.outputs["Color"].is_linked)
        src = tex.inputs["Vector"].links[0].from_node if tex.inputs["Vector"].is_linked else None
        print("RESULT", json.dumps({{"maps": [m.name for m in obj.data.uv_layers], "material": mat.name,
                                     "reads": src.uv_map if src is not None else None}}))
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    result = json.loads(next(line for line in out.stdout.splitlines() if line.startswith("RESULT"))[7:])
    assert "GroupEdit_UV" in result["maps"] and result["material"].endswith("_GroupEdit")
    assert result["reads"] == "GroupEdit_UV"


@pytest.mark.parametrize("asset", ["Avocado.glb", "Suzanne.glb"])
def test_check_round_trip_report(tmp_path, asset):
    """groupedit check at a small setting: the identity round trip reproduces the asset's texture."""
    r = _groupedit("check", str(ASSETS / asset), "--views", "6", "--view-size", "256", "--texture-size", "512",
                   "--json", str(tmp_path / "report.json"), "--out", str(tmp_path / "out"), cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    report = json.loads((tmp_path / "report.json").read_text())
    for key in ("coverage", "psnr_db", "psnr_interior_db", "ssim", "capture_s", "bake_s", "views", "texture_size",
                "view_size"):
        assert key in report
    assert report["views"] == 6 and report["texture_size"] == 512 and report["view_size"] == 256
    assert report["coverage"] > 0.85
    assert report["psnr_db"] > 38 and report["psnr_interior_db"] >= report["psnr_db"] - 1
    assert report["ssim"] > 0.9
    from blender_addon.core.format.images import read_png

    baked = read_png(tmp_path / "out" / "baked.png")
    assert baked.shape[:2] == (512, 512)
    assert (tmp_path / "out" / "error_map.png").is_file()


def test_cli_bake_writes_textures_and_says_what_is_missing(tmp_path):
    r = _groupedit("capture", str(ASSETS / "Suzanne.glb"), "--views", "3", "--rig", "orbit", "--view-size", "64",
                   "--samples", "1", "--out", str(tmp_path / "vs"), cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    r = _groupedit("bake", "--views", str(tmp_path / "vs"), "--out", str(tmp_path / "t.png"), cwd=tmp_path)
    assert r.returncode == 3 and "edit the views first" in r.stderr
    (tmp_path / "vs" / "edited").mkdir()
    from blender_addon.core.format.images import read_png, write_png

    for png in (tmp_path / "vs" / "colour").glob("*.png"):
        img = read_png(png)[..., :3].copy()
        img[..., 0] = 255 - img[..., 0]
        write_png(tmp_path / "vs" / "edited" / png.name, img)
    r = _groupedit("bake", "--views", str(tmp_path / "vs"), "--input", str(ASSETS / "Suzanne.glb"), "--texture-size",
                   "512", "--format", "png16", "--out", str(tmp_path / "t.png"), cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    tex = read_png(tmp_path / "t.png")
    assert tex.shape == (512, 512, 3) and tex.dtype == np.uint16
    r = _groupedit("bake", "--views", str(tmp_path / "vs"), "--out", str(tmp_path / "u.png"), "--save-blend",
                   str(tmp_path / "x.blend"), cwd=tmp_path)
    assert r.returncode == 2 and "--apply" in r.stderr
