import numpy as np
import pytest

from blender_addon.core.errors import InvalidInputError
from blender_addon.core.capture.rigs import RigSpec, build_rig, direction_vector

CUBE = np.array([[x, y, z] for x in (-1, 1) for y in (-2, 2) for z in (-0.5, 0.5)], float) + [100.0, 50.0, -3.0]


@pytest.mark.parametrize("kind,count,expected", [("orbit", 8, 8), ("orbit-poles", 10, 10), ("two-rings", 9, 9), ("sphere", 12, 12)])
def test_view_counts(kind, count, expected):
    views = build_rig(RigSpec(kind=kind, count=count), CUBE, 64, 64)
    assert len(views) == expected
    assert len({v.name for v in views}) == expected


def test_extras_and_disabled_views_keep_names():
    spec = RigSpec(kind="orbit", count=6, top=True, bottom=True, disabled=[1, 7])
    views = build_rig(spec, CUBE, 64, 64)
    names = [v.name for v in views]
    assert len(views) == 6 and "view_001" not in names and "view_007" not in names and "view_006" in names
    assert views[-1].label == "top" and views[-1].elevation_deg == 90.0


def test_orbit_azimuths_are_even_and_start_where_asked():
    d = RigSpec(kind="orbit", count=4, start_azimuth=10.0, elevations=[15.0]).directions()
    assert [round(a, 6) for _, a, _ in d] == [10.0, 100.0, 190.0, 280.0]
    assert all(e == 15.0 for _, _, e in d)


def test_sphere_directions_are_spread():
    dirs = np.array([direction_vector(a, e) for _, a, e in RigSpec(kind="sphere", count=32).directions()])
    assert np.allclose(np.linalg.norm(dirs, axis=1), 1.0)
    assert np.linalg.norm(dirs.mean(axis=0)) < 0.05
    nearest = np.sort(dirs @ dirs.T, axis=1)[:, -2]  # cos of the angle to the nearest other view
    assert nearest.max() < np.cos(np.radians(20))


def test_every_camera_sees_the_whole_object():
    for v in build_rig(RigSpec(kind="sphere", count=10, margin=0.05), CUBE, 96, 96):
        uv, z = v.camera.project(CUBE)
        assert (z > 0).all() and uv.min() >= 96 * 0.05 - 1e-6 and uv.max() <= 96 * 0.95 + 1e-6


def test_spec_round_trips_through_dict():
    spec = RigSpec(kind="two-rings", count=7, disabled=[2], fov_deg=30.0)
    assert RigSpec.from_dict(spec.to_dict()) == spec


@pytest.mark.parametrize(
    "spec,match",
    [(RigSpec(kind="ring"), "unknown rig"), (RigSpec(count=0), "between 1"), (RigSpec(kind="orbit", elevations=[95.0]), "elevations"),
     (RigSpec(fov_deg=0.5), "field of view"), (RigSpec(kind="orbit-poles", count=2), "at least 3")],
)
def test_invalid_specs(spec, match):
    with pytest.raises(InvalidInputError, match=match):
        spec.validate()


def test_all_disabled_is_an_error():
    with pytest.raises(InvalidInputError, match="disabled"):
        build_rig(RigSpec(kind="orbit", count=2, disabled=[0, 1]), CUBE, 32, 32)
