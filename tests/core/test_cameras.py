import numpy as np
import pytest

from blender_addon.core.format.cameras import Camera, Intrinsics, blender_intrinsics, framing_distance, look_at
from blender_addon.core.errors import InvalidInputError


def test_look_at_points_forward_and_keeps_up():
    pose = look_at(np.array([0.0, -5.0, 0.0]), np.zeros(3))
    cam = Camera(Intrinsics.from_fov(40, 64, 64), pose)
    assert np.allclose(cam.forward, [0, 1, 0])
    # world +Z is image up, i.e. camera -Y (OpenCV)
    assert np.allclose(pose[:3, 1], [0, 0, -1])
    uv, z = cam.project(np.zeros((1, 3)))
    assert np.allclose(uv, [[32, 32]]) and np.isclose(z[0], 5.0)


def test_top_and_bottom_views_are_well_defined():
    for eye in ([0, 0, 5.0], [0, 0, -5.0]):
        pose = look_at(np.array(eye), np.zeros(3))
        assert np.allclose(pose[:3, :3] @ pose[:3, :3].T, np.eye(3))


def test_opengl_pose_is_flipped_y_and_z():
    pose = look_at(np.array([1.0, -4.0, 2.0]), np.zeros(3))
    cam = Camera(Intrinsics.from_fov(50, 32, 32), pose)
    gl = cam.camera_to_world_opengl
    assert np.allclose(gl[:3, 2], -cam.forward)  # Blender cameras look down their -Z
    assert np.allclose(gl[:3, 3], cam.centre)


def test_project_matches_pixel_rays():
    cam = Camera(Intrinsics(60.0, 60.0, 31.0, 25.0, 64, 48), look_at(np.array([2.0, -3.0, 1.0]), np.zeros(3)))
    rays = cam.pixel_rays()
    pts = cam.centre + 4.0 * rays
    uv, _ = cam.project(pts)
    j, i = np.meshgrid(np.arange(64) + 0.5, np.arange(48) + 0.5)
    assert np.abs(uv - np.stack([j, i], -1)).max() < 1e-9


@pytest.mark.parametrize(
    "fit,w,h,expected_fx",
    [("AUTO", 200, 100, 50 / 36 * 200), ("AUTO", 100, 200, 50 / 36 * 200), ("HORIZONTAL", 100, 200, 50 / 36 * 100),
     ("VERTICAL", 200, 100, 50 / 24 * 100)],
)
def test_blender_intrinsics_sensor_fit(fit, w, h, expected_fx):
    k = blender_intrinsics(50, 36, 24, fit, w, h)
    assert np.isclose(k.fx, expected_fx) and k.cx == w / 2 and k.cy == h / 2


def test_blender_shift_moves_principal_point():
    k = blender_intrinsics(50, 36, 24, "AUTO", 200, 100, shift_x=0.1, shift_y=0.1)
    assert np.isclose(k.cx, 100 - 20) and np.isclose(k.cy, 50 + 20)


def test_framing_fits_every_point_with_margin():
    rng = np.random.default_rng(1)
    pts = rng.normal(size=(500, 3)) * [3.0, 1.0, 0.5] + [10.0, -4.0, 2.0]
    k = Intrinsics.from_fov(35, 160, 90)
    centre = 0.5 * (pts.min(0) + pts.max(0))
    pose = look_at(centre + np.array([0.3, -1.0, 0.4]), centre)
    pose[:3, 3] = centre
    d = framing_distance(pts, pose, k, margin=0.1)
    pose[:3, 3] = centre - pose[:3, 2] * d
    uv, z = Camera(k, pose).project(pts)
    assert (z > 0).all()
    assert uv[:, 0].min() >= 0.1 * 160 - 1e-6 and uv[:, 0].max() <= 0.9 * 160 + 1e-6
    assert uv[:, 1].min() >= 0.1 * 90 - 1e-6 and uv[:, 1].max() <= 0.9 * 90 + 1e-6
    # tight: some point touches the margin
    edge = np.maximum.reduce([0.1 * 160 - uv[:, 0], uv[:, 0] - 0.9 * 160, 0.1 * 90 - uv[:, 1], uv[:, 1] - 0.9 * 90])
    assert edge.max() > -1e-6


def test_bad_inputs_raise_clear_errors():
    with pytest.raises(InvalidInputError, match="rigid"):
        Camera(Intrinsics.from_fov(40, 8, 8), np.diag([2.0, 2.0, 2.0, 1.0]))
    with pytest.raises(InvalidInputError, match="field of view"):
        Intrinsics.from_fov(0.0, 8, 8)
    with pytest.raises(InvalidInputError, match="positive"):
        Intrinsics(1, 1, 0, 0, 0, 8)
