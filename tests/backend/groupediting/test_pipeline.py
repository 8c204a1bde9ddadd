import numpy as np
import pytest
import torch
from diffusers import UniPCMultistepScheduler

from backend.errors import Cancelled, InvalidInput
from backend.groupediting.correspondence import ViewGeometry
from backend.groupediting.pipeline import GroupEditingPipeline

from .tiny import synthetic_group, tiny_transformer

BUDGET = 2 * 64 * 64
FAST = dict(num_inference_steps=2, max_sequence_length=16, pixel_budget=BUDGET)


def _edit(pipe: GroupEditingPipeline, images, masks, **kw):
    return pipe(images, masks, "make the chair red", "ugly blurry", **{**FAST, **kw})


def test_fixed_seed_is_deterministic_and_seeds_differ(tiny_pipeline):
    images, masks = synthetic_group(2)
    a = _edit(tiny_pipeline, images, masks, seed=7, keep_unmasked=False)
    b = _edit(tiny_pipeline, images, masks, seed=7, keep_unmasked=False)
    c = _edit(tiny_pipeline, images, masks, seed=8, keep_unmasked=False)
    assert all(np.array_equal(x, y) for x, y in zip(a.images, b.images))
    assert torch.equal(a.latents, b.latents) and not torch.equal(a.latents, c.latents)
    assert a.latents.shape == (1, 16, 2, 8, 8)  # two views, two latent frames


def test_outputs_keep_input_sizes_and_order(tiny_pipeline):
    images, masks = synthetic_group(2)
    images.append(np.full((48, 80, 3), 200, np.uint8))  # a third view of another size
    m = np.zeros((48, 80), bool)
    m[10:30, 20:50] = True
    masks.append(m)
    out = _edit(tiny_pipeline, images, masks, pixel_budget=3 * 64 * 64)
    assert [o.shape for o in out.images] == [im.shape for im in images]
    assert all(o.dtype == np.uint8 for o in out.images)
    assert all(h % 16 == 0 and w % 16 == 0 for h, w in out.model_sizes)
    # Outside the dilated mask the input is kept exactly; the constant third view stays recognisable.
    assert np.array_equal(out.images[2][0, 0], images[2][0, 0])


def test_cancel_between_steps_raises_after_the_right_step(tiny_pipeline):
    images, masks = synthetic_group(2)
    done: list[int] = []
    calls = []
    hook = tiny_pipeline.transformer.register_forward_pre_hook(lambda *a: calls.append(1))
    try:
        with pytest.raises(Cancelled):
            _edit(tiny_pipeline, images, masks, num_inference_steps=5,
                  progress=lambda stage, step, total: done.append(step) if stage == "denoise" else None,
                  cancel=lambda: len(done) >= 2)
    finally:
        hook.remove()
    assert done == [1, 2] and len(calls) == 2


def test_progress_and_preview_callbacks(tiny_pipeline):
    images, masks = synthetic_group(2)
    events, previews = [], []
    _edit(tiny_pipeline, images, masks, num_inference_steps=3, progress=lambda *e: events.append(e),
          preview=lambda step, imgs: previews.append((step, [p.shape for p in imgs])), preview_every=2)
    assert [e for e in events if e[0] == "denoise"] == [("denoise", i, 3) for i in (1, 2, 3)]
    assert events[0][0] == "text" and events[-1] == ("decode", 1, 1)
    assert previews == [(2, [(8, 8, 3)] * 2), (3, [(8, 8, 3)] * 2)]


def test_text_embeddings_are_cached_per_instruction(tiny_pipeline):
    images, masks = synthetic_group(2)
    tiny_pipeline._text_cache.clear()
    calls = []
    hook = tiny_pipeline.text_encoder.register_forward_pre_hook(lambda *a: calls.append(1))
    try:
        _edit(tiny_pipeline, images, masks, num_inference_steps=1)
        _edit(tiny_pipeline, images, masks, num_inference_steps=1, seed=3)
        assert len(calls) == 1
        tiny_pipeline(images, masks, "make the chair blue", **{**FAST, "num_inference_steps": 1})
        assert len(calls) == 2
    finally:
        hook.remove()


def test_clear_errors_for_bad_requests(tiny_pipeline):
    images, masks = synthetic_group(2)
    with pytest.raises(InvalidInput, match="one mask per view"):
        _edit(tiny_pipeline, images, masks[:1])
    with pytest.raises(InvalidInput, match="instruction is empty"):
        tiny_pipeline(images, masks, "  ", **FAST)
    with pytest.raises(InvalidInput, match="nothing to edit"):
        _edit(tiny_pipeline, images, [np.zeros_like(m) for m in masks])
    with pytest.raises(InvalidInput, match="uint8"):
        _edit(tiny_pipeline, [im.astype(np.float32) for im in images], masks)
    with pytest.raises(InvalidInput, match="geometry for 1 views"):
        g = ViewGeometry(np.zeros((64, 64, 3), np.float32), masks[0], np.eye(3), np.eye(4))
        _edit(tiny_pipeline, images, masks, geometry=[g])
    with pytest.raises(InvalidInput, match="steps"):
        _edit(tiny_pipeline, images, masks, num_inference_steps=0)


def _plane_geometry(n: int) -> list[ViewGeometry]:
    """Views of a fronto-parallel plane from cameras shifted sideways: the subject moves 4 px per view."""
    geos = []
    K = np.array([[64.0, 0, 32], [0, 64.0, 32], [0, 0, 1]])
    for i in range(n):
        c2w = np.eye(4)
        c2w[0, 3] = -0.125 * i  # camera moves left: the content moves right by 64 * 0.125 / 2 = 4 px
        j, r = np.meshgrid(np.arange(64) + 0.5, np.arange(64) + 0.5)
        pos = np.stack([(j - 32) / 64 * 2 + c2w[0, 3], (r - 32) / 64 * 2, np.full_like(j, 2.0)], -1)
        geos.append(ViewGeometry(pos.astype(np.float32), np.ones((64, 64), bool), K, c2w))
    return geos


@pytest.mark.parametrize("preset", ["release", "paper"])
def test_geometry_and_geometry_tokens_change_the_edit(tiny_pipeline, preset):
    images, masks = synthetic_group(2)
    pipe = GroupEditingPipeline(tiny_pipeline.tokenizer, tiny_pipeline.text_encoder, tiny_pipeline.vae,
                                tiny_pipeline.scheduler, tiny_transformer(rope_preset=preset))
    plain = _edit(pipe, images, masks, keep_unmasked=False)
    warped = _edit(pipe, images, masks, geometry=_plane_geometry(2), flow_sigma=1.0, keep_unmasked=False)
    assert not torch.equal(plain.latents, warped.latents)
    tokens = torch.randn(1, 2 * 9, 40, generator=torch.Generator().manual_seed(0))
    coords = torch.rand(1, 18, 3, generator=torch.Generator().manual_seed(1)) * 4
    with_tokens = _edit(pipe, images, masks, geometry_tokens=tokens, geometry_coords=coords, keep_unmasked=False)
    assert not torch.equal(plain.latents, with_tokens.latents)


def test_unipc_scheduler_and_shift(tiny_pipeline):
    images, masks = synthetic_group(2)
    unipc = UniPCMultistepScheduler(prediction_type="flow_prediction", use_flow_sigmas=True, flow_shift=3.0)
    pipe = GroupEditingPipeline(tiny_pipeline.tokenizer, tiny_pipeline.text_encoder, tiny_pipeline.vae, unipc,
                                tiny_pipeline.transformer)
    a = _edit(pipe, images, masks, shift=5.0)
    b = _edit(pipe, images, masks, shift=1.0)
    assert not torch.equal(a.latents, b.latents)
    assert pipe.scheduler.config.flow_shift == 3.0  # the pipeline's own scheduler is never modified


def test_guidance_off_runs_one_branch(tiny_pipeline):
    images, masks = synthetic_group(2)
    seen = []
    hook = tiny_pipeline.transformer.register_forward_pre_hook(
        lambda mod, args, kwargs: seen.append(kwargs["hidden_states"].shape[0]), with_kwargs=True)
    try:
        _edit(tiny_pipeline, images, masks, guidance_scale=1.0, num_inference_steps=2)
        _edit(tiny_pipeline, images, masks, guidance_scale=5.0, num_inference_steps=1)
    finally:
        hook.remove()
    assert seen == [1, 1, 2]


def test_bfloat16_transformer_loaded_with_torch_dtype(tiny_pipeline, tiny_model_dir):
    from backend.groupediting.transformer import GroupEditingTransformer

    model = GroupEditingTransformer.from_pretrained(tiny_model_dir / "transformer", torch_dtype=torch.bfloat16)
    assert model.dtype == torch.bfloat16 and model.blocks[0].scale_shift_table.dtype == torch.float32
    pipe = GroupEditingPipeline(tiny_pipeline.tokenizer, tiny_pipeline.text_encoder, tiny_pipeline.vae,
                                tiny_pipeline.scheduler, model)
    images, masks = synthetic_group(2)
    out = _edit(pipe, images, masks, geometry=_plane_geometry(2), keep_unmasked=False)
    assert [o.shape for o in out.images] == [im.shape for im in images]
    assert torch.isfinite(out.latents).all()


def test_configure_passes_options_through(tiny_model_dir, tiny_pipeline):
    from backend.groupediting.transformer import GroupEditingTransformer

    images, masks = synthetic_group(2)
    before = _edit(tiny_pipeline, images, masks)
    model = GroupEditingTransformer.from_pretrained(tiny_model_dir / "transformer")
    pipe = GroupEditingPipeline(tiny_pipeline.tokenizer, tiny_pipeline.text_encoder, tiny_pipeline.vae,
                                tiny_pipeline.scheduler, model)
    pipe.configure(attention_backend="native", vae_slicing=True)
    try:
        after = _edit(pipe, images, masks)
    finally:
        tiny_pipeline.vae.disable_slicing()
    assert torch.allclose(before.latents, after.latents, atol=1e-5)
    with pytest.raises(InvalidInput, match="offload"):
        pipe.configure(offload="everything")
