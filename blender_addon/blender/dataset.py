"""``groupedit dataset``: groups of views of assets before and after an edit applied to the asset (docs/training.md).

For each group: the asset opened afresh, an edit planned from the dataset's seed and the group's index
(:func:`~..core.dataset.plan_edit`), a capture *before* (with the edited part as its edit region: the masks), the
edit applied to copies of the part's materials, the same rig captured *after*, both with the colour filter at pixel
centres (every pixel's samples stay on its own surface point, so pixels outside the edited part are the same in
both captures, bit for bit, not blended with the part's). A group whose edit changes under
:data:`~..core.dataset.MIN_VISIBLE_SHARE` of the part's pixels is dropped (recorded in the manifest). A group is
written as ``group_NNNNNN.part`` and renamed when complete; a re-run skips complete groups.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from ..core.capture.rigs import RigSpec
from ..core.capture.settings import CaptureSettings
from ..core.contact_sheet import contact_sheet
from ..core.dataset import FORMAT, MIN_VISIBLE_SHARE, VERSION, EditPlan, plan_edit, visible_share
from ..core.errors import InvalidInputError
from ..core.format.images import srgb_to_linear, write_png
from .capture.data_materials import changed_copies
from .capture.render import capture
from .loading import open_input
from .mesh import find_object

MANIFEST = "manifest.json"


def edited_materials(obj: Any, plan: EditPlan) -> Any:
    """A context in which ``obj``'s slots in ``plan.slots`` have copies of their materials with the edit applied;
    the originals come back after, the copies are removed."""
    return changed_copies(obj, lambda tree, bsdf: _apply(tree, bsdf, plan), plan.slots)


def _unlink(tree: Any, socket: Any) -> None:
    for link in list(socket.links):
        tree.links.remove(link)


def _apply(tree: Any, bsdf: Any, plan: EditPlan) -> None:
    base = next((bsdf.inputs[n] for n in ("Base Color", "Color") if n in bsdf.inputs), None)
    if plan.kind == "finish" and "Metallic" in bsdf.inputs:
        for name, value in (("Metallic", plan.finish[1]), ("Roughness", plan.finish[2])):
            _unlink(tree, bsdf.inputs[name])
            bsdf.inputs[name].default_value = value
        return
    if base is None:
        return
    colour = (*srgb_to_linear(np.asarray(plan.colour[1], np.float32)).tolist(), 1.0)
    if plan.kind == "material":  # a new surface: the texture's bands between the colour and a darker shade of it
        texture = tree.nodes.new(plan.material[1])
        texture.inputs["Scale"].default_value = plan.extra.get("scale", 5.0)
        ramp = tree.nodes.new("ShaderNodeValToRGB")
        ramp.color_ramp.elements[0].color = (*(0.25 * c for c in colour[:3]), 1.0)
        ramp.color_ramp.elements[1].color = colour
        factor = texture.outputs["Fac"] if "Fac" in texture.outputs else texture.outputs["Distance"]
        tree.links.new(factor, ramp.inputs["Fac"])
        _unlink(tree, base)
        tree.links.new(ramp.outputs["Color"], base)
        if "Roughness" in bsdf.inputs:
            _unlink(tree, bsdf.inputs["Roughness"])
            bsdf.inputs["Roughness"].default_value = plan.material[2]
        return
    if plan.kind == "recolour":
        _unlink(tree, base)
        base.default_value = colour
        return
    pattern = tree.nodes.new(plan.pattern[1])  # a pattern: the new colour where its factor is 1, the original elsewhere
    pattern.inputs["Scale"].default_value = plan.extra.get("scale", 8.0)
    mix = tree.nodes.new("ShaderNodeMix")
    mix.data_type = "RGBA"
    factor, a, b = (_enabled(mix.inputs, n) for n in ("Factor", "A", "B"))
    tree.links.new(pattern.outputs["Fac"], factor)
    if base.is_linked:
        tree.links.new(base.links[0].from_socket, a)
    else:
        a.default_value = tuple(base.default_value)
    b.default_value = colour
    tree.links.new(_enabled(mix.outputs, "Result"), base)


def _enabled(sockets: Any, name: str) -> Any:
    """The socket named ``name`` that the node's current data type uses (a Mix node has one per data type)."""
    return next(s for s in sockets if s.name == name and s.enabled)


def _rig(seed: int, index: int, views: int) -> RigSpec:
    rng = np.random.default_rng([seed, index, 1])
    return RigSpec(kind="orbit", count=views, elevations=[float(rng.uniform(0.0, 35.0))],
                   start_azimuth=float(rng.uniform(0.0, 360.0)))


def make_group(asset: Path, index: int, seed: int, kinds: list[str], views: int, settings: CaptureSettings,
               out: Path) -> dict[str, Any]:
    """Make group ``index`` into ``out/group_<index>`` (see the module docstring); returns its manifest entry."""
    open_input(asset)
    obj = find_object(None)
    materials = [s.material.name if s.material else "" for s in obj.material_slots]
    plan = plan_edit(seed, index, kinds, materials)
    rig = _rig(seed, index, views)
    final = out / f"group_{index:06d}"
    part = out / (final.name + ".part")
    shutil.rmtree(part, ignore_errors=True)
    region = None if plan.part == "" else "material:" + ",".join(materials[i] for i in plan.slots)
    exact = replace(settings, colour_filter_px=0.01, overwrite=True)
    before = capture(obj, rig, replace(exact, region=region), part / "before")
    with edited_materials(obj, plan):
        after = capture(obj, rig, replace(exact, uv_map=before.uv_map), part / "after")
    masks = [before.load(v, "region" if "region" in v.files else "mask") for v in before.views]
    b = [before.load(v, "colour") for v in before.views]
    a = [after.load(v, "colour") for v in after.views]
    share = visible_share(b, a, masks)
    entry = {"id": final.name, "index": index, "asset": str(asset), "object": obj.name, "seed": seed,
             "rig": rig.to_dict(), "edit": plan.to_dict(), "visible_share": share}
    if share < MIN_VISIBLE_SHARE:
        shutil.rmtree(part, ignore_errors=True)
        return {**entry, "dropped": f"the edit changes {share:.1%} of its part's pixels: invisible from this rig"}
    write_png(part / "sheet.png", contact_sheet(b + a, tile=128, columns=len(b)))
    (part / "edit.json").write_text(json.dumps(entry, indent=2) + "\n")
    shutil.rmtree(final, ignore_errors=True)
    os.replace(part, final)
    return entry


def make_dataset(assets: list[Path], out: Path, groups: int, seed: int, kinds: list[str], views: int,
                 settings: CaptureSettings, say: Callable[[str], None] = print) -> dict[str, Any]:
    """``groups`` groups (asset ``i`` of group ``i`` is ``assets[i % len(assets)]``) into ``out``, skipping groups a
    run before made; the manifest (``out/manifest.json``) is written after every group."""
    out.mkdir(parents=True, exist_ok=True)
    path = out / MANIFEST
    manifest = json.loads(path.read_text()) if path.is_file() else {}
    if manifest and (manifest.get("seed"), manifest.get("edits")) != (seed, kinds):
        raise InvalidInputError(f"{out} holds a dataset made with seed {manifest.get('seed')} and edits "
                                f"{manifest.get('edits')}: use the same ones to resume it, or a new folder")
    entries = {e["index"]: e for e in manifest.get("groups", [])}
    for index in range(groups):
        done = index in entries and ("dropped" in entries[index] or (out / entries[index]["id"]).is_dir())
        if done:
            continue
        entry = make_group(assets[index % len(assets)], index, seed, kinds, views, settings, out)
        entries[index] = entry
        say(f"group {index + 1}/{groups}: {entry['edit']['instruction']!r} on {Path(entry['asset']).name}"
            + (f" (dropped: {entry['dropped']})" if "dropped" in entry else ""))
        doc = {"format": FORMAT, "version": VERSION, "seed": seed, "edits": kinds, "views": views,
               "groups": [entries[i] for i in sorted(entries)]}
        part = out / (MANIFEST + ".part")
        part.write_text(json.dumps(doc, indent=2) + "\n")
        os.replace(part, path)
    return json.loads(path.read_text()) if path.is_file() else {}
