"""The presets: one named object each, differing from the release only where their documentation says."""

import pytest

from backend.groupediting.recipe import DEFAULT_RECIPE, RECIPES, RELEASE_PROMPT, WAN_NEGATIVE_PROMPT, get_recipe


def test_release_is_the_default_and_the_release_recipe():
    r = RECIPES[DEFAULT_RECIPE]
    assert r.name == "release" and (r.flow, r.main, r.vace) == ("contours", "grid", "ge")
    assert (r.blur_kernel, r.blur_sigma) == (21, 11.0)
    assert r.prompt_template == RELEASE_PROMPT == "same {description} in {count} scenes."
    assert r.negative_prompt == WAN_NEGATIVE_PROMPT
    s = r.sampler
    assert (s.steps, s.guidance, s.shift, s.timestep_bf16) == (50, 5.0, 5.0, True)


@pytest.mark.parametrize("name, flow, main, vace", [("exact", "positions", "grid", "ge"),
                                                    ("paper", "positions", "ge_identity", "ge_identity"),
                                                    ("grid", "none", "grid", "grid")])
def test_other_presets_change_only_ge_rope(name, flow, main, vace):
    r, release = get_recipe(name), RECIPES["release"]
    assert (r.flow, r.main, r.vace) == (flow, main, vace)
    assert r.identity == (name == "paper")
    same = ("prompt_template", "negative_prompt", "sampler", "blur_kernel", "blur_sigma")
    assert all(getattr(r, f) == getattr(release, f) for f in same)
    assert r.about and name in RECIPES


def test_unknown_preset():
    with pytest.raises(ValueError, match="release, exact, paper, grid"):
        get_recipe("spiral")
