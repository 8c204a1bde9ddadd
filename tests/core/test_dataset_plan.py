"""The dataset's plans: deterministic from (seed, index), parts named from materials, text from templates, and the
visibility filter."""

import numpy as np
import pytest

from blender_addon.core.dataset import EDIT_KINDS, parse_kinds, plan_edit, visible_share
from blender_addon.core.errors import InvalidInputError


def test_plans_follow_the_seed_and_name_the_part():
    materials = ["Jacket_Leather.001", "Trousers", ""]
    plans = [plan_edit(7, i, list(EDIT_KINDS), materials) for i in range(40)]
    again = [plan_edit(7, i, list(EDIT_KINDS), materials) for i in range(40)]
    assert [p.to_dict() for p in plans] == [p.to_dict() for p in again]
    assert [p.to_dict() for p in plans] != [plan_edit(8, i, list(EDIT_KINDS), materials).to_dict() for i in range(40)]
    assert {p.kind for p in plans} == set(EDIT_KINDS) and {p.part for p in plans} == {"jacket leather", "trousers"}
    for p in plans:
        instruction, description = p.text()
        assert p.part in instruction and p.part in description
        if p.kind == "recolour":
            assert p.colour[0] in instruction
    whole = plan_edit(0, 0, ["recolour"], ["Body"])
    assert whole.slots == [0] and whole.part == "" and whole.text()[0].startswith("make it ")


def test_edit_kinds_are_checked():
    assert parse_kinds("recolour, pattern") == ["recolour", "pattern"]
    with pytest.raises(InvalidInputError, match="unknown edit kind.*sculpt"):
        parse_kinds("recolour,sculpt")


def test_visible_share_counts_changed_pixels_of_the_part():
    before = [np.zeros((4, 4, 3), np.uint8)] * 2
    after = [before[0].copy(), before[1].copy()]
    after[0][:2] = 10  # 8 pixels changed, 4 of them in the mask
    masks = [np.zeros((4, 4), bool), np.zeros((4, 4), bool)]
    masks[0][1:3] = True
    masks[1][:, :1] = True
    assert visible_share(before, after, masks) == 4 / 12
    assert visible_share(before, before, masks) == 0.0
