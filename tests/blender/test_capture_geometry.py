"""The captured passes agree with the stored cameras and with the asset's own texture."""

import numpy as np
import pytest

from blender_addon.core.bake.gather import sample_texture
from blender_addon.core.format.viewset import ViewSet
from blender_addon.core.format.images import linear_to_srgb, to_uint8

ASSETS = ["Avocado.glb", "Suzanne.glb"]


@pytest.mark.parametrize("name", ASSETS)
def test_every_masked_pixel_reprojects_onto_itself(captured, name):
    vs, _ = captured[name]
    vs = ViewSet.read(vs.root)  # through the files, as another tool would
    for v in vs.views:
        mask = vs.load(v, "mask")
        assert mask.sum() > 0.05 * mask.size, f"{v.name}: object covers too little of the frame"
        pos = vs.load(v, "position")[mask]
        uv, z = v.camera.project(pos)
        rows, cols = np.nonzero(mask)
        err = np.abs(uv - np.stack([cols + 0.5, rows + 0.5], axis=-1)).max()
        assert err < 0.5, f"{v.name}: reprojection error {err:.3f} px"
        assert np.allclose(vs.load(v, "depth")[mask], z, atol=1e-4 * z.max())
        n = vs.load(v, "normal")[mask]
        assert np.allclose(np.linalg.norm(n, axis=1), 1.0, atol=1e-3)
        # shading normals face the camera on (almost) every visible pixel
        facing = np.einsum("nd,nd->n", n, v.camera.centre - pos) > 0
        assert facing.mean() > 0.97


@pytest.mark.parametrize("name", ASSETS)
def test_albedo_is_the_texture_at_the_uv(captured, name):
    """Albedo (sRGB 8-bit) equals the base-colour texture sampled bilinearly at the UV pass.

    Tolerance: 8-bit rounding plus the difference between interpolating in linear (Cycles) and in
    sRGB-encoded values (here): a mean error under 1 level and 99 % of pixels within 3 levels.
    """
    vs, texture = captured[name]
    errors = []
    for v in vs.views:
        mask = vs.load(v, "mask")
        uv = vs.load(v, "uv")[mask]
        albedo = vs.load(v, "albedo")[mask].astype(np.float64)
        expected = sample_texture(texture[::-1], uv.astype(np.float64)) * 255.0  # fixture: bottom row first
        errors.append(np.abs(albedo - expected).max(axis=1))
    err = np.concatenate(errors)
    assert err.mean() < 1.0, f"mean albedo error {err.mean():.2f} levels"
    assert np.percentile(err, 99) <= 3.0, f"99th percentile {np.percentile(err, 99):.2f} levels"


@pytest.mark.parametrize("name", ASSETS)
def test_manifest_describes_the_capture(captured, name):
    vs, _ = captured[name]
    back = ViewSet.read(vs.root)
    assert back.object_name == name.split(".")[0]
    assert back.uv_map and back.rig["kind"] == "orbit-poles" and len(back.views) == 6
    assert 0.8 < back.coverage <= 1.0
    for v in back.views:
        assert set(v.files) == {"colour", "albedo", "mask", "depth", "normal", "uv", "position", "albedo_filtered",
                                "albedo_linear", "colour_linear", "diffuse_response", "metal_light",
                                "metal_reflectance", "metal_edge"}
        # the albedo through the colour render's filter: the same unlit colours, blurred only across edges
        mask = back.load(v, "mask")
        diff = np.abs(back.load(v, "albedo_filtered").astype(int) - back.load(v, "albedo"))[mask]
        assert np.median(diff) <= 2 and diff.max() > 0
        # ... and before its 8-bit encoding
        albedo_linear = back.load(v, "albedo_linear").astype(np.float32)
        assert np.abs(to_uint8(linear_to_srgb(albedo_linear)).astype(int) - back.load(v, "albedo_filtered")).max() <= 1
        # the light passes: the colour in linear light, and the part of it the base colour scales (both files have
        # metallic 1 and no metallic texture: their metal's reflection, no diffuse)
        linear = back.load(v, "colour_linear").astype(np.float32)
        assert np.abs(to_uint8(linear_to_srgb(linear)).astype(int) - back.load(v, "colour"))[mask].max() <= 1
        part = np.nan_to_num(back.load(v, "metal_light") * back.load(v, "metal_reflectance"))
        assert not back.load(v, "diffuse_response")[mask].any()
        assert (part[mask] <= linear[mask] + 0.01).mean() > 0.99
        assert 0.5 < part[mask].sum() / linear[mask].sum() <= 1.0
        # what the metal reflects at base colour 0 is at most what it reflects at its own
        edge, reflectance = (back.load(v, p)[mask].astype(np.float32) for p in ("metal_edge", "metal_reflectance"))
        assert np.isfinite(edge).all() and (edge <= reflectance + 0.02).mean() > 0.99
        assert (v.camera.intrinsics.width, v.camera.intrinsics.height) == (128, 128)
    mesh = back.mesh()
    assert mesh.uvs.shape == (len(mesh.triangles), 3, 2)
    assert not (vs.root / ".capture_tmp").exists()
