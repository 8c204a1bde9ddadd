import numpy as np
import pytest

from backend.editors import EditInput, get_editor
from backend.editors.classical import oklab_to_srgb, srgb_to_oklab
from backend.editors.instruction import parse_instruction
from backend.errors import Cancelled, InvalidInput


def _group(n=3, size=(40, 50), seed=0):
    rng = np.random.default_rng(seed)
    images, masks = [], []
    for i in range(n):
        h, w = size
        yy, xx = np.mgrid[0:h, 0:w]
        shade = (0.3 + 0.7 * xx / w)[..., None]  # a lighting gradient: the detail to keep
        base = np.array([90, 160, 60]) * shade + rng.normal(0, 3, (h, w, 3))
        images.append(np.clip(base, 0, 255).astype(np.uint8))
        m = np.zeros((h, w), bool)
        m[5 + i : 30 + i, 10:40] = True
        masks.append(m)
    return EditInput(images, masks)


def _noop(*a):
    return None


def hue_deg(rgb):
    lab = srgb_to_oklab(rgb)
    return np.degrees(np.arctan2(lab[..., 2], lab[..., 1])) % 360


@pytest.mark.parametrize(
    "text,colour,used",
    [("make the shirt red", (200, 30, 30), ("red",)), ("#2a6f3c please", (0x2A, 0x6F, 0x3C), ()),
     ("dark blue", (30, 70, 200), ("blue", "dark")), ("turn the red cup blue", (30, 70, 200), ("blue",)),
     ("make it #F00", (255, 0, 0), ())],
)
def test_parse_instruction(text, colour, used):
    intent = parse_instruction(text)
    assert intent.colour == colour
    assert set(used) <= set(intent.words)


def test_oklab_round_trip():
    rgb = np.random.default_rng(1).integers(0, 256, (1000, 3), dtype=np.uint8)
    assert np.abs(oklab_to_srgb(srgb_to_oklab(rgb)).astype(int) - rgb).max() <= 1


def test_recolour_hits_the_hue_keeps_detail_and_leaves_the_rest():
    group = _group()
    out = get_editor("classical").edit(group, "make it red", {}, _noop, lambda: False)
    target_hue = hue_deg(np.array([200, 30, 30], np.uint8))
    for img, m, res in zip(group.images, group.masks, out):
        assert res.shape == img.shape and res.dtype == np.uint8
        assert np.array_equal(res[~m], img[~m]), "outside the mask: bit-identical"
        d = np.abs((hue_deg(res[m]) - target_hue + 180) % 360 - 180)
        assert np.median(d) < 10
        l_in, l_out = srgb_to_oklab(img[m])[:, 0], srgb_to_oklab(res[m])[:, 0]
        assert np.corrcoef(l_in, l_out)[0, 1] > 0.95, "shading and texture detail survive"


def test_consistent_across_views_by_construction():
    group = _group()
    same = np.array([120, 130, 90], np.uint8)
    for img, m in zip(group.images, group.masks):
        img[m.nonzero()[0][0], m.nonzero()[1][0]] = same
    out = get_editor("classical").edit(group, "dark blue", {}, _noop, lambda: False)
    firsts = [res[m.nonzero()[0][0], m.nonzero()[1][0]] for res, m in zip(out, group.masks)]
    assert all(np.array_equal(f, firsts[0]) for f in firsts)


def test_dark_is_darker_than_light():
    group = _group()
    ed = get_editor("classical")
    dark = ed.edit(group, "dark green", {}, _noop, lambda: False)
    light = ed.edit(group, "light green", {}, _noop, lambda: False)
    m = group.masks[0]
    assert srgb_to_oklab(dark[0][m])[:, 0].mean() + 0.1 < srgb_to_oklab(light[0][m])[:, 0].mean()


def test_reference_colour_transfer():
    group = _group()
    ref = np.zeros((8, 8, 3), np.uint8)
    ref[:] = (40, 60, 200)
    out = get_editor("classical").edit(EditInput(group.images, group.masks, reference=ref), "match this", {}, _noop, lambda: False)
    m = group.masks[1]
    d = np.abs((hue_deg(out[1][m]) - hue_deg(ref[0, 0]) + 180) % 360 - 180)
    assert np.median(d) < 15


def test_errors_and_cancel():
    group = _group()
    with pytest.raises(InvalidInput, match="needs a colour"):
        get_editor("classical").edit(group, "make it nicer", {}, _noop, lambda: False)
    with pytest.raises(InvalidInput, match="available: classical, groupediting, identity"):
        get_editor("magic")
    with pytest.raises(InvalidInput, match="2 masks"):
        EditInput(group.images, group.masks[:2]).check()
    steps = []
    with pytest.raises(Cancelled):
        get_editor("classical").edit(group, "red", {}, lambda *a: steps.append(a), lambda: len(steps) >= 1)
    assert steps == [("edit", 1, 3)]


def test_identity_returns_copies():
    group = _group()
    out = get_editor("identity").edit(group, "", {}, _noop, lambda: False)
    assert all(np.array_equal(a, b) and a is not b for a, b in zip(out, group.images))
