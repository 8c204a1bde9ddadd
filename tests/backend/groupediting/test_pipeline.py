import numpy as np
import pytest
import torch

from backend.errors import Cancelled, InvalidInput
from backend.groupediting.coordinates import geometry_token_coordinates
from backend.groupediting.correspondence import ViewGeometry
from backend.groupediting.pipeline import GroupEditingPipeline
from backend.groupediting.recipe import RECIPES, WAN_NEGATIVE_PROMPT
from backend.groupediting.settings import EditSettings

from .tiny import moving_group, synthetic_group, tiny_transformer, tiny_vggt

BUDGET = 2 * 64 * 64
FAST = EditSettings(steps=2, pixel_budget=BUDGET)


def _edit(pipe: GroupEditingPipeline, images, masks, settings: EditSettings = FAST, **kw):
    return pipe(images, masks, "make the chair red", settings=settings, max_sequence_length=16, **kw)


def _with(pipe: GroupEditingPipeline, transformer=None, geometry_encoder=None) -> GroupEditingPipeline:
    return GroupEditingPipeline(pipe.tokenizer, pipe.text_encoder, pipe.vae, transformer or pipe.transformer,
                                geometry_encoder)


def plane_geometry(n: int) -> list[ViewGeometry]:
    """Views of a fronto-parallel plane from cameras shifted sideways: the subject moves 24 px (1.5 tokens) per
    view, enough to survive the floor of Ge-RoPE's integer indexing."""
    geos = []
    K = np.array([[64.0, 0, 32], [0, 64.0, 32], [0, 0, 1]])
    for i in range(n):
        c2w = np.eye(4)
        c2w[0, 3] = -0.75 * i  # camera moves left: the content moves right by 64 * 0.75 / 2 = 24 px
        j, r = np.meshgrid(np.arange(64) + 0.5, np.arange(64) + 0.5)
        pos = np.stack([(j - 32) / 64 * 2 + c2w[0, 3], (r - 32) / 64 * 2, np.full_like(j, 2.0)], -1)
        geos.append(ViewGeometry(pos.astype(np.float32), np.ones((64, 64), bool), K, c2w))
    return geos


def test_fixed_seed_is_deterministic_and_seeds_differ(tiny_pipeline):
    images, masks = synthetic_group(2)
    a = _edit(tiny_pipeline, images, masks, FAST.with_options({"seed": 7}))
    b = _edit(tiny_pipeline, images, masks, FAST.with_options({"seed": 7}))
    c = _edit(tiny_pipeline, images, masks, FAST.with_options({"seed": 8}))
    assert all(np.array_equal(x, y) for x, y in zip(a.images, b.images))
    assert torch.equal(a.latents, b.latents) and not torch.equal(a.latents, c.latents)
    assert a.latents.shape == (1, 16, 2, 8, 8)  # two views, two latent frames


def test_outputs_keep_input_sizes_and_order(tiny_pipeline):
    images, masks = synthetic_group(2)
    images.append(np.full((48, 80, 3), 200, np.uint8))  # a third view of another size
    m = np.zeros((48, 80), bool)
    m[10:30, 20:50] = True
    masks.append(m)
    out = _edit(tiny_pipeline, images, masks, FAST.with_options({"pixel_budget": 3 * 64 * 64}))
    assert [o.shape for o in out.images] == [im.shape for im in images]
    assert all(o.dtype == np.uint8 for o in out.images)
    assert all(h % 16 == 0 and w % 16 == 0 for h, w in out.model_sizes)
    assert np.array_equal(out.images[2][0, 0], images[2][0, 0])


def test_release_sampler_sigmas_text_and_timesteps(tiny_pipeline):
    """Default preset: Euler with sigmas shift*s/(1+(shift-1)s), s = linspace(1, 0, steps+1)[:-1]; the timestep the
    model sees is rounded to bfloat16; the prompt is the release's template of a description of the result."""
    images, masks = synthetic_group(2)
    seen = []
    hook = tiny_pipeline.transformer.register_forward_pre_hook(
        lambda mod, args, kwargs: seen.append(kwargs["timestep"][0].item()), with_kwargs=True)
    try:
        out = _edit(tiny_pipeline, images, masks, FAST.with_options({"steps": 7}))
    finally:
        hook.remove()
    s = np.linspace(1, 0, 8)[:-1]
    sigmas = 5 * s / (1 + 4 * s)
    expected_t = torch.tensor(sigmas * 1000, dtype=torch.float32).to(torch.bfloat16).float().tolist()
    assert seen == expected_t and seen[1] != pytest.approx(sigmas[1] * 1000, abs=1e-3)
    meta = out.metadata
    assert meta["preset"] == "release" and meta["sampler"]["steps"] == 7
    assert meta["sampler"]["sigma_first"] == 1.0 and meta["sampler"]["sigma_last"] == pytest.approx(sigmas[-1])
    assert meta["text"]["prompt"] == "same red chair in two scenes."
    assert meta["text"]["negative_prompt"] == WAN_NEGATIVE_PROMPT
    assert meta["ge_rope"]["flow_source"] == "contours" and meta["geometry_tokens"] == "off"
    assert RECIPES["release"].sampler.sigmas(7).tolist() == pytest.approx(sigmas.tolist(), abs=1e-7)


@pytest.mark.parametrize("steps", [1, 2, 13, 50])
def test_sigmas_follow_the_formula_for_any_step_count(steps):
    s = np.linspace(1, 0, steps + 1)[:-1]
    assert np.allclose(RECIPES["release"].sampler.sigmas(steps), 5 * s / (1 + 4 * s), atol=1e-7)
    from diffusers.schedulers import FlowMatchEulerDiscreteScheduler

    sched = FlowMatchEulerDiscreteScheduler(shift=5.0)
    sched.set_timesteps(sigmas=np.linspace(1, 0, steps + 1, dtype=np.float32)[:-1].tolist())
    assert np.allclose(sched.sigmas[:-1].numpy(), 5 * s / (1 + 4 * s), atol=1e-6) and sched.sigmas[-1] == 0


def test_cancel_between_steps_raises_after_the_right_step(tiny_pipeline):
    images, masks = synthetic_group(2)
    done: list[int] = []
    calls = []
    hook = tiny_pipeline.transformer.register_forward_pre_hook(lambda *a: calls.append(1))
    try:
        with pytest.raises(Cancelled):
            _edit(tiny_pipeline, images, masks, FAST.with_options({"steps": 5}),
                  progress=lambda stage, step, total: done.append(step) if stage == "denoise" else None,
                  cancel=lambda: len(done) >= 2)
    finally:
        hook.remove()
    assert done == [1, 2] and len(calls) == 2


def test_progress_and_preview_callbacks(tiny_pipeline):
    images, masks = synthetic_group(2)
    events, previews = [], []
    _edit(tiny_pipeline, images, masks, FAST.with_options({"steps": 3}), progress=lambda *e: events.append(e),
          preview=lambda step, imgs: previews.append((step, [p.shape for p in imgs])), preview_every=2)
    assert [e for e in events if e[0] == "denoise"] == [("denoise", i, 3) for i in (1, 2, 3)]
    assert events[0][0] == "text" and events[-1] == ("decode", 1, 1)
    assert previews == [(2, [(8, 8, 3)] * 2), (3, [(8, 8, 3)] * 2)]


def test_text_embeddings_are_cached_per_text(tiny_pipeline):
    images, masks = synthetic_group(2)
    tiny_pipeline._text_cache.clear()
    calls = []
    hook = tiny_pipeline.text_encoder.register_forward_pre_hook(lambda *a: calls.append(1))
    try:
        _edit(tiny_pipeline, images, masks, FAST.with_options({"steps": 1}))
        _edit(tiny_pipeline, images, masks, FAST.with_options({"steps": 1, "seed": 3}))
        assert len(calls) == 1
        tiny_pipeline(images, masks, "make the chair blue", settings=FAST, max_sequence_length=16)
        assert len(calls) == 2
    finally:
        hook.remove()


def test_clear_errors_for_bad_requests(tiny_pipeline):
    images, masks = synthetic_group(2)
    with pytest.raises(InvalidInput, match="one mask per view"):
        _edit(tiny_pipeline, images, masks[:1])
    with pytest.raises(InvalidInput, match="instruction is empty"):
        tiny_pipeline(images, masks, "  ", settings=FAST)
    with pytest.raises(InvalidInput, match="nothing to edit"):
        _edit(tiny_pipeline, images, [np.zeros_like(m) for m in masks])
    with pytest.raises(InvalidInput, match="uint8"):
        _edit(tiny_pipeline, [im.astype(np.float32) for im in images], masks)
    with pytest.raises(InvalidInput, match="geometry for 1 views"):
        g = ViewGeometry(np.zeros((64, 64, 3), np.float32), masks[0], np.eye(3), np.eye(4))
        _edit(tiny_pipeline, images, masks, FAST.with_options({"preset": "exact"}), geometry=[g])
    with pytest.raises(InvalidInput, match="geometry tokens"):
        _edit(tiny_pipeline, images, masks, geometry_tokens=torch.zeros(1, 7, 8))
    with pytest.raises(InvalidInput, match="steps"):
        FAST.with_options({"steps": 0})


def _vace_coords(pipe: GroupEditingPipeline, *args, **kw) -> tuple[torch.Tensor | None, object]:
    seen = []
    hook = pipe.transformer.register_forward_pre_hook(
        lambda mod, a, k: seen.append((k["rope_coords"], k["vace_rope_coords"])), with_kwargs=True)
    try:
        out = _edit(pipe, *args, **kw)
    finally:
        hook.remove()
    return seen[0], out


@pytest.mark.slow
def test_release_ge_rope_warps_only_the_vace_branch(tiny_pipeline):
    images, masks = moving_group(2, 528, 96)
    big = FAST.with_options({"pixel_budget": 2 * 528 * 528, "steps": 1})
    (main, vace), warped = _vace_coords(tiny_pipeline, images, masks, big)
    (_, plain_vace), plain = _vace_coords(tiny_pipeline, images, masks, big.with_options({"preset": "grid"}))
    assert main is None and plain_vace is None and vace.shape == (1, 2 * 33 * 33, 3)
    assert (vace[0, :, 2] != torch.arange(33.0).repeat(66)).any()
    assert not torch.equal(plain.latents, warped.latents)


@pytest.mark.parametrize("preset", ["exact", "paper"])
def test_exact_ge_rope_changes_the_edit(tiny_pipeline, preset):
    images, masks = synthetic_group(2)
    (main, vace), warped = _vace_coords(tiny_pipeline, images, masks, FAST.with_options({"preset": preset}),
                                        geometry=plane_geometry(2))
    plain = _edit(tiny_pipeline, images, masks, FAST.with_options({"preset": "grid"}))
    assert not torch.equal(plain.latents, warped.latents)
    assert warped.metadata["ge_rope"]["flow_source"] == "positions"
    assert (main is None) == (preset == "exact") and vace is not None


def test_geometry_tokens_reach_the_transformer_with_their_positions(tiny_pipeline):
    """With a VGGT aggregator loaded, every main block's attention gets N*37*37 extra keys at the release's
    positions; both guidance branches see them; they change the edit; a second edit of the same views reuses them."""
    images, masks = synthetic_group(2)
    vggt = tiny_vggt()
    pipe = _with(tiny_pipeline, geometry_encoder=vggt)
    seen = []
    hook = pipe.transformer.register_forward_pre_hook(
        lambda mod, args, kwargs: seen.append((kwargs["geometry_tokens"], kwargs["geometry_coords"],
                                               kwargs["hidden_states"].shape[0])), with_kwargs=True)
    runs = []
    counter = vggt.register_forward_pre_hook(lambda *a: runs.append(1))
    try:
        with_tokens = _edit(pipe, images, masks)
        _edit(pipe, images, masks, FAST.with_options({"seed": 5}))
    finally:
        hook.remove()
        counter.remove()
    tokens, coords, batch = seen[0]
    assert tokens.shape == (1, 2 * 37 * 37, 2 * vggt.config.embed_dim) and batch == 2
    assert torch.equal(coords[0], torch.from_numpy(geometry_token_coordinates(2, (4, 4), 2)))
    assert len(runs) == 1 and with_tokens.metadata["geometry_tokens"] == "vggt"
    without = _edit(tiny_pipeline, images, masks)
    assert not torch.equal(with_tokens.latents, without.latents)
    given = _edit(tiny_pipeline, images, masks, geometry_tokens=tokens)  # the same tokens brought by the job
    assert torch.equal(given.latents, with_tokens.latents) and given.metadata["geometry_tokens"] == "job"


def test_paste_back_is_feathered_then_bit_identical(tiny_pipeline):
    images, masks = synthetic_group(2)
    hard = _edit(tiny_pipeline, images, masks, FAST.with_options({"feather": 0}))
    soft = _edit(tiny_pipeline, images, masks, FAST.with_options({"feather": 6}))
    from backend.groupediting.conditioning import dilate_mask

    for i, (im, m) in enumerate(zip(images, masks)):
        inside = dilate_mask(m, 5)
        pts = np.argwhere(inside)
        yy, xx = np.mgrid[: m.shape[0], : m.shape[1]]
        d = np.sqrt(((yy[..., None] - pts[:, 0]) ** 2 + (xx[..., None] - pts[:, 1]) ** 2).min(-1))
        assert np.array_equal(hard.images[i][~inside], im[~inside])
        assert np.array_equal(soft.images[i][d > 6.001], im[d > 6.001])  # beyond the band: the original, bit for bit
        assert np.array_equal(soft.images[i][inside], hard.images[i][inside])
        band = (d > 0) & (d <= 6)
        assert (soft.images[i][band] != im[band]).any()  # the edit reaches into the band


def test_bfloat16_transformer_loaded_with_torch_dtype(tiny_pipeline, tiny_model_dir):
    from backend.groupediting.transformer import GroupEditingTransformer

    model = GroupEditingTransformer.from_pretrained(tiny_model_dir / "transformer", torch_dtype=torch.bfloat16)
    assert model.dtype == torch.bfloat16 and model.blocks[0].scale_shift_table.dtype == torch.float32
    images, masks = synthetic_group(2)
    out = _edit(_with(tiny_pipeline, model), images, masks, FAST.with_options({"preset": "exact"}),
                geometry=plane_geometry(2))
    assert [o.shape for o in out.images] == [im.shape for im in images]
    assert torch.isfinite(out.latents).all()


def test_configure_passes_options_through(tiny_model_dir, tiny_pipeline):
    from backend.groupediting.transformer import GroupEditingTransformer

    images, masks = synthetic_group(2)
    before = _edit(tiny_pipeline, images, masks)
    pipe = _with(tiny_pipeline, GroupEditingTransformer.from_pretrained(tiny_model_dir / "transformer"))
    pipe.configure(attention_backend="native", vae_slicing=True)
    try:
        after = _edit(pipe, images, masks)
    finally:
        tiny_pipeline.vae.disable_slicing()
    assert torch.allclose(before.latents, after.latents, atol=1e-5)
    with pytest.raises(InvalidInput, match="offload"):
        pipe.configure(offload="everything")


def test_guidance_off_runs_one_branch(tiny_pipeline):
    images, masks = synthetic_group(2)
    seen = []
    hook = tiny_pipeline.transformer.register_forward_pre_hook(
        lambda mod, args, kwargs: seen.append(kwargs["hidden_states"].shape[0]), with_kwargs=True)
    try:
        _edit(tiny_pipeline, images, masks, FAST.with_options({"guidance": 1.0}))
        _edit(tiny_pipeline, images, masks, FAST.with_options({"steps": 1}))
    finally:
        hook.remove()
    assert seen == [1, 1, 2]


def test_tiny_transformer_is_the_stock_config():
    assert "rope_preset" not in tiny_transformer().config
