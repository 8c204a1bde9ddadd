"""Edit bakes on ray-cast synthetic scenes: partial edits keep the rest bit-identical, shading is removed,
unseen texels are filled along the surface across UV seams."""

import numpy as np
import pytest

from blender_addon.core.bake.gather import BakeView, bake
from blender_addon.core.bake.edit_bake import EditBakeSettings, bake_edit, edit_delta
from blender_addon.core.errors import InvalidInputError
from blender_addon.core.format.images import linear_to_srgb, srgb_to_linear, to_uint8
from blender_addon.core.bake.uv_raster import rasterise_uv

from .test_bake import FRONT, _view, checker, quad_mesh


def _views_of(mesh, image_fn, eyes, size=128):
    return [_view(mesh, eye, size=size, image_fn=image_fn) for eye in eyes]


EYES = ([0, -4, 0], [1.5, -3.5, 1.0], [-1.5, -3.5, -0.5])


def _blue_left(uv: np.ndarray) -> np.ndarray:
    """The checker with its left half (u < 0.5) recoloured blue."""
    img = checker(uv[:, 0], uv[:, 1])
    left = uv[:, 0] < 0.5
    img[left] = (img[left] * [0.2, 0.4, 1.0]).astype(np.uint8) + [0, 0, 40]
    return img


def _edit_views(originals, edited, delight=True):
    out = []
    for o, e in zip(originals, edited):
        delta = edit_delta(e.image, o.image, o.image, o.mask, EditBakeSettings(delight=delight))
        out.append(BakeView(o.camera, delta, o.position, o.mask, o.uv))
    return out


def test_partial_edit_keeps_the_rest_bit_identical():
    mesh = quad_mesh([(FRONT, (0.0, 0.0, 1.0, 1.0))])
    surface = rasterise_uv(mesh, 64)
    base8 = np.zeros((64, 64, 3), np.uint8)
    base8[surface.rows, surface.cols] = checker(surface.uv[:, 0], surface.uv[:, 1])
    base8[:, :, 1] += np.arange(64, dtype=np.uint8)[None, :]  # texture detail the views never showed
    originals = _views_of(mesh, None, EYES)
    edited = _views_of(mesh, _blue_left, EYES)
    res = bake_edit(surface, _edit_views(originals, edited), base8.astype(np.float32) / 255.0)
    u = (np.arange(64) + 0.5) / 64
    right = u > 0.56
    assert np.array_equal(res.texture[:, right], base8[:, right]), "texels outside the edit changed"
    assert not res.changed[:, right].any()
    left = u < 0.44
    assert res.changed[:, left].all()
    # the edit's change is applied on top of the original texture (its extra detail survives)
    expected = base8[:, left].astype(int)
    assert np.abs(res.texture[:, left, 2].astype(int) - expected[..., 2]).mean() > 20, "the edit was not applied"
    inside_square = res.texture[10:14, 10:14, 1].astype(int)  # within one checker square: only the ramp varies
    assert np.abs(np.diff(inside_square, axis=1) - 1).max() <= 2, "the texture's detail was lost"


def test_unchanged_views_leave_the_texture_untouched():
    mesh = quad_mesh([(FRONT, (0.1, 0.1, 0.9, 0.9))])
    surface = rasterise_uv(mesh, 48)
    rng = np.random.default_rng(1)
    base = rng.integers(0, 256, (48, 48, 3)).astype(np.float32) / 255.0
    views = _views_of(mesh, None, EYES[:2], size=96)
    res = bake_edit(surface, _edit_views(views, views), base)
    assert np.array_equal(res.srgb, base) and not res.changed.any()


def test_shading_is_removed_from_lit_edits():
    mesh = quad_mesh([(FRONT, (0.0, 0.0, 1.0, 1.0))])
    surface = rasterise_uv(mesh, 64)

    def lit(albedo_fn):
        def fn(uv: np.ndarray) -> np.ndarray:
            shade = 0.25 + 0.7 * uv[:, 1:2]  # a light from above: dark at the bottom
            return to_uint8(linear_to_srgb(srgb_to_linear(albedo_fn(uv) / 255.0) * shade))
        return fn

    def tinted(uv: np.ndarray) -> np.ndarray:
        return (checker(uv[:, 0], uv[:, 1]) * [0.3, 1.0, 0.6]).astype(np.uint8) + [0, 30, 0]

    eyes = EYES
    lit_views = _views_of(mesh, lit(lambda uv: checker(uv[:, 0], uv[:, 1])), eyes)
    albedo_views = _views_of(mesh, None, eyes)
    edited = _views_of(mesh, lit(tinted), eyes)
    views = []
    for lv, av, ev in zip(lit_views, albedo_views, edited):
        views.append(BakeView(lv.camera, edit_delta(ev.image, lv.image, av.image, lv.mask), lv.position, lv.mask, lv.uv))
    base = np.zeros((64, 64, 3), np.float32)
    base[surface.rows, surface.cols] = checker(surface.uv[:, 0], surface.uv[:, 1]) / 255.0
    res = bake_edit(surface, views, base)
    want = tinted(surface.uv)
    got = res.texture[surface.rows, surface.cols]
    edge = (np.abs(surface.uv * 8 - np.round(surface.uv * 8)) < 0.2).any(axis=1)
    dark = surface.uv[:, 1] < 0.1  # 8-bit shadows quantise coarsely
    err = np.abs(got.astype(int) - want.astype(int)).max(axis=1)[~edge & ~dark]
    assert np.percentile(err, 95) <= 3, np.percentile(err, [50, 95, 99])
    # without shading removal the lighting stays in the texture
    res_lit = bake_edit(surface, _edit_views(lit_views, edited, delight=False), base)
    err_lit = np.abs(res_lit.texture[surface.rows, surface.cols].astype(int) - want.astype(int)).max(axis=1)[~edge & ~dark]
    assert np.percentile(err_lit, 95) > 3 * max(np.percentile(err, 95), 1)


def test_unseen_texels_fill_along_the_surface_across_seams():
    top = np.array([[-1, 0, 1], [1, 0, 1], [1, 2, 1], [-1, 2, 1]], float)  # a lid folded back from FRONT's top edge
    far = FRONT + [10.0, 0.0, 0.0]
    mesh = quad_mesh([
        (FRONT, (0.0, 0.0, 0.3, 0.3)),
        (top, (0.6, 0.62, 0.95, 0.95)),  # never seen: the views look along +Y at the lid's edge
        (far, (0.6, 0.1, 0.95, 0.6)),  # UV neighbour of the lid, far away in 3D
    ])
    surface = rasterise_uv(mesh, 64)

    def colour_by_x(uv: np.ndarray) -> np.ndarray:
        return np.where(uv[:, :1] < 0.5, [[220, 20, 20]], [[20, 20, 220]]).astype(np.uint8)

    views = [_view(mesh, [0, -4, 0], size=96, image_fn=colour_by_x), _view(mesh, [10, -4, 0], size=96, image_fn=colour_by_x)]
    res = bake(surface, views)
    lid = (surface.uv[:, 0] > 0.6) & (surface.uv[:, 1] > 0.62)
    assert not res.seen[surface.rows[lid], surface.cols[lid]].any()
    lid_colour = res.texture[surface.rows[lid], surface.cols[lid]].astype(int)
    assert (lid_colour[:, 0] > 150).mean() > 0.95, "the hidden lid should take the colour of the surface it touches"


def test_edit_inputs_are_checked():
    mesh = quad_mesh([(FRONT, (0.0, 0.0, 1.0, 1.0))])
    v = _view(mesh, [0, -4, 0], size=64)
    with pytest.raises(InvalidInputError, match="does not match"):
        edit_delta(v.image[:32], v.image, v.image, v.mask)
    with pytest.raises(InvalidInputError, match="edit_delta"):
        bake_edit(rasterise_uv(mesh, 16), [v], np.zeros((16, 16, 3), np.float32))
    with pytest.raises(InvalidInputError, match="resample"):
        bake_edit(rasterise_uv(mesh, 16), [v], np.zeros((8, 8, 3), np.float32))


def _metal_scene(n: int, seed: int):
    """Pixels lit as a mix of diffuse and rough metal: colour(x) = rest + diffuse x + metal g_p(x) per channel,
    g_p convex (multiple scattering) and a little different per pixel (view angle), shared by its channels."""
    rng = np.random.default_rng(seed)
    bend = rng.uniform(-0.1, 0.1, (n, 1)).astype(np.float32)
    diffuse = rng.uniform(0.0, 0.6, (n, 1)).astype(np.float32) * np.ones((1, 3), np.float32)
    metal = rng.uniform(0.3, 1.2, (n, 1)).astype(np.float32) * np.ones((1, 3), np.float32)
    g = lambda x: 0.3 * x + 0.7 * x**2 + bend * x * (1 - x)  # noqa: E731
    colour = lambda x: 0.01 + diffuse * x + metal * g(x)  # noqa: E731
    return rng, diffuse, metal, g, colour


def test_a_metal_response_is_fitted_and_inverted():
    """The capture's curve, fitted on the metal's reflectance points and bent through each pixel's own,
    recovers the new base colour from the change of colour alone; a straight line would not."""
    from blender_addon.core.bake.edit_bake import ResponseCurve

    rng, diffuse, metal, g, colour = _metal_scene(4000, 3)
    albedo = rng.uniform(0.05, 0.95, (4000, 3)).astype(np.float32)
    new = rng.uniform(0.05, 0.95, (4000, 3)).astype(np.float32)
    curve = ResponseCurve.fit(albedo.ravel(), g(albedo).ravel())
    total = diffuse + metal
    got = curve.solve((colour(new) - colour(albedo)) / total, albedo, g(albedo), diffuse / total)
    assert np.abs(got - new).max() < 0.02
    straight = np.clip(albedo + (colour(new) - colour(albedo)) / total, 0, 1)
    assert np.abs(straight - new).mean() > 5 * np.abs(got - new).mean(), "a linear response would do as well"
    # purely diffuse pixels are solved exactly, whatever the curve
    exact = curve.solve((new - albedo) * 0.5 / 0.5, albedo, np.full_like(albedo, np.nan), np.ones_like(albedo))
    assert np.array_equal(exact, np.clip(albedo + (new - albedo), 0, 1))


def test_a_metals_fresnel_edge_is_taken_out_before_solving():
    """Smooth metals (Schlick: g(x) = x + (1 - x) s, s the pixel's edge, up to 0.6 at grazing angles) on dark and
    mid base colours: with the edge (g(0) = s, the ``metal_edge`` pass) taken out, what is left rises exactly as
    the base colour and the new colour comes back from the change of colour; without it, it does not."""
    from blender_addon.core.bake.edit_bake import ResponseCurve, ViewLighting
    from blender_addon.core.bake.restyle import without_edge

    rng = np.random.default_rng(11)
    n = 4000
    edge = (rng.uniform(0.0, 0.6, (n, 1)) * np.ones((1, 3))).astype(np.float32)
    light = (rng.uniform(0.3, 1.5, (n, 1)) * np.ones((1, 3))).astype(np.float32)
    albedo = rng.uniform(0.005, 0.5, (n, 3)).astype(np.float32)
    new = np.clip(albedo[:, [1, 2, 0]] * 0.7 + 0.2, 0, 1).astype(np.float32)
    g = lambda x: x + (1 - x) * edge  # noqa: E731
    lighting = ViewLighting(light * g(albedo), np.zeros_like(albedo), light, g(albedo))
    change = light * (g(new) - g(albedo))

    def solved(lit: ViewLighting) -> np.ndarray:
        xs, rs = albedo.ravel(), lit.metal_reflectance.ravel()
        curve = ResponseCurve.fit(xs[np.isfinite(rs)], rs[np.isfinite(rs)])
        return curve.solve(change / lit.metal_light, albedo, lit.metal_reflectance, np.zeros_like(albedo))

    assert np.abs(solved(without_edge(lighting, edge)) - new).max() < 0.01
    assert np.abs(solved(lighting) - new).mean() > 0.03, "the edge did not matter here"
    unknown = without_edge(lighting, np.full_like(edge, np.nan))  # captures without the pass: as before
    assert np.array_equal(unknown.metal_light, lighting.metal_light)


def test_a_neutral_light_takes_the_metal_light_from_the_bright_channels():
    """Per-channel metal light that is off in a pixel's dark channels (as Cycles' glossy light pass is for rough
    metals) comes back as the pixel's one true light under a neutral light; grey pixels keep their mean."""
    from blender_addon.core.bake.edit_bake import ViewLighting
    from blender_addon.core.bake.restyle import neutral_metal_light

    rng = np.random.default_rng(4)
    light = rng.uniform(0.5, 2.0, (6, 6, 1)).astype(np.float32)
    albedo = rng.uniform(0.02, 0.9, (6, 6, 3)).astype(np.float32)
    albedo[..., 1] = 0.9  # one bright channel per pixel
    measured = light * (1.0 + 0.5 * (albedo < 0.1))  # up to 50 % off where a channel is dark
    zeros = np.zeros_like(albedo)
    got = neutral_metal_light(ViewLighting(zeros, zeros, measured, zeros), albedo).metal_light
    assert np.abs(got - light).max() < 0.05 * light.max() < np.abs(measured - light).max()
    grey = np.full_like(albedo, 0.5)
    assert np.allclose(neutral_metal_light(ViewLighting(zeros, zeros, measured, zeros), grey).metal_light,
                       measured.mean(axis=-1, keepdims=True))


def test_the_glossy_estimates_offset_is_measured_and_taken_out_of_the_metal_light():
    """Metal pixels under a neutral light whose glossy colour pass over-estimates the reflectance by a constant
    (the light pass reads L (1 - offset / g)): the offset comes back from the channels' disagreement, despite a few
    pixels whose passes disagree wildly, and the corrected light is the pixel's one light in every channel."""
    from blender_addon.core.bake.edit_bake import ViewLighting
    from blender_addon.core.bake.restyle import metal_offset, with_metal_offset

    rng = np.random.default_rng(7)
    n, offset = 20000, 0.001
    light = rng.uniform(0.5, 2.0, (n, 1))
    g = 0.01 + 0.99 * rng.uniform(0.0, 1.0, (n, 3)) ** 2  # the estimate, from a Fresnel edge of 0.01 up
    measured = light * (1.0 - offset / g) * rng.normal(1.0, 0.002, (n, 3))  # a little render noise
    measured[:200] *= rng.uniform(0.3, 3.0, (200, 3))  # and some pixels whose passes disagree wildly
    got = metal_offset(g, measured)
    assert abs(got - offset) < 0.1 * offset, got
    assert metal_offset(g, light * np.ones((1, 3))) == 0.0  # the light pass exact: nothing to take out
    assert metal_offset(np.zeros((0, 3)), np.zeros((0, 3))) == 0.0
    zeros = np.zeros((n, 3), np.float32)
    fixed = with_metal_offset(ViewLighting(zeros, zeros, measured.astype(np.float32), g.astype(np.float32)), got)
    clean = slice(200, None)
    assert np.abs(fixed.metal_light[clean] / light[clean] - 1.0).max() < 0.03
    assert np.abs(measured[clean] / light[clean] - 1.0).max() > 0.05  # what the dark channels read before
    # the metal's colour is the corrected light times what it reflects, g - offset: as the passes said
    assert np.allclose(fixed.metal_light * (g - got), measured * g, rtol=1e-4)


def test_each_pixel_curve_passes_through_its_channels_own_points():
    """Per-pixel curves that no single bend of the shared curve describes (a straight line mixed with a
    cubic, in a different share per pixel): no change of colour gives back each channel's own base colour,
    and the pixel's points recover a new one better than the shared curve alone."""
    from blender_addon.core.bake.edit_bake import ResponseCurve

    rng = np.random.default_rng(5)
    n = 4000
    share = rng.uniform(0.0, 0.8, (n, 1)).astype(np.float32)

    def response(x: np.ndarray) -> np.ndarray:
        return (1 - share) * x + share * x**3

    albedo = rng.uniform(0.05, 0.95, (n, 3)).astype(np.float32)
    new = np.clip(albedo[:, [1, 2, 0]] * 0.7 + 0.2, 0, 1).astype(np.float32)
    curve = ResponseCurve.fit(albedo.ravel(), response(albedo).ravel())
    metal_only = np.zeros_like(albedo)
    at_points = curve.solve(np.zeros_like(albedo), albedo, response(albedo), metal_only)
    assert np.percentile(np.abs(at_points - albedo), 99) < 1e-4
    change = response(new) - response(albedo)
    err = np.abs(curve.solve(change, albedo, response(albedo), metal_only) - new).mean()
    shared = np.abs(curve.solve(change, albedo, np.full_like(albedo, np.nan), metal_only) - new).mean()
    assert err < 0.5 * shared, (err, shared)


def test_the_light_passes_remove_shading_exactly_even_where_the_render_clipped():
    """A diffuse view whose bright half clipped in 8 bits: the linear colour stands in for the clipped lit pixels,
    and a channel clipped before and after the edit never gets darker."""
    from blender_addon.core.bake.edit_bake import ViewLighting

    h, w = 8, 16
    albedo = np.full((h, w, 3), 0.5, np.float32)
    albedo[:, :, 0] = 0.9
    shade = np.ones((h, w, 1), np.float32) * np.where(np.arange(w) < 8, 0.8, 2.0)[None, :, None]
    new = albedo.copy()
    new[:, :, 1] = 0.2  # green down, red and blue kept
    lit_linear, edited_linear = albedo * shade, new * shade
    to8 = lambda x: to_uint8(linear_to_srgb(np.clip(x, 0, 1)))  # noqa: E731
    nan = np.full((h, w, 3), np.nan, np.float32)
    lighting = ViewLighting(lit_linear, np.broadcast_to(shade, (h, w, 3)).copy(), np.zeros((h, w, 3), np.float32), nan)
    mask = np.ones((h, w), bool)
    delta = edit_delta(to8(edited_linear), to8(lit_linear), to8(albedo), mask, None, lighting)
    assert (delta[..., 3] == 1).all()
    got = delta[..., :3] + delta[..., 4:]
    assert np.abs(got[..., 1] - 0.2).max() < 0.01, "green is solved on both halves, clipped or not"
    assert np.abs(got[:, 8:, 0] - srgb_to_linear(to8(albedo)[:, 8:, 0] / 255.0)).max() < 1e-6, \
        "red clipped before and after: unchanged, not darkened"
    assert np.abs(got[:, :8, 2] - 0.5).max() < 0.01


def test_noise_the_views_disagree_on_stays_out_of_the_texture(monkeypatch):
    """Each view's edit carries its own noise (as renders and editors do): the bake keeps the colour mapping the views
    agree on and drops most of the noise (against keeping every texel's mean of the views as it is)."""
    import blender_addon.core.bake.edit_bake as edit_bake

    mesh = quad_mesh([(FRONT, (0.0, 0.0, 1.0, 1.0))])
    surface = rasterise_uv(mesh, 64)
    rng = np.random.default_rng(8)

    def recoloured(uv: np.ndarray) -> np.ndarray:
        return (checker(uv[:, 0], uv[:, 1])[:, [1, 2, 0]] * 0.6 + 40).astype(np.uint8)

    originals = _views_of(mesh, None, EYES)
    edited = []
    for v in _views_of(mesh, recoloured, EYES):
        noisy = v.image.astype(np.int16) + rng.integers(-8, 9, v.image.shape)
        edited.append(BakeView(v.camera, np.clip(noisy, 0, 255).astype(np.uint8), v.position, v.mask, v.uv))
    base = np.zeros((64, 64, 3), np.float32)
    base[surface.rows, surface.cols] = checker(surface.uv[:, 0], surface.uv[:, 1]) / 255.0
    want = srgb_to_linear(recoloured(surface.uv) / 255.0)
    inner = (np.abs(surface.uv * 8 - np.round(surface.uv * 8)) > 0.15).all(axis=1)  # off the checker's edges

    def error() -> float:
        res = bake_edit(surface, _edit_views(originals, edited, delight=False), base)
        got = srgb_to_linear(res.srgb[surface.rows, surface.cols])
        return float(np.sqrt(np.mean((got - want)[inner] ** 2)))

    filtered = error()
    monkeypatch.setattr(edit_bake, "residual_noise", lambda *args, **kwargs: None)
    unfiltered = error()
    assert filtered < 0.6 * unfiltered, (filtered, unfiltered)  # measured: 0.0017 against 0.0057 linear rms
