"""Fine-tuning on a tiny dataset (written here with numpy): the loss goes down, checkpoints resume, and the saved
weights load in the server's loader and change what the model makes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from backend.groupediting.pipeline import GroupEditingPipeline
from backend.groupediting.settings import EditSettings
from backend.groupediting.train import CHECKPOINT, WEIGHTS_FILE, Trainer, TrainSettings
from backend.groupediting.transformer import GroupEditingTransformer
from backend.groupediting.weights import load_groupediting_weights
from blender_addon.core.format.cameras import Camera, Intrinsics, look_at
from blender_addon.core.format.viewset import View, ViewSet, write_view_files

SIZE = 64


def _viewset(root: Path, images: list[np.ndarray], mask: np.ndarray) -> None:
    views = []
    for i, image in enumerate(images):
        cam = Camera(Intrinsics.from_fov(40, SIZE, SIZE), look_at(np.array([3.0 * np.sin(i), -3.0 * np.cos(i), 1.0]),
                                                                  np.zeros(3)))
        files = write_view_files(root, f"view_{i:03d}", {"colour": image, "mask": mask})
        views.append(View(f"view_{i:03d}", cam, files, 0.0, 20.0, "ring0"))
    ViewSet(root=root, object_name="Thing", views=views, uv_map="UVMap").write_manifest()


def _dataset(root: Path) -> Path:
    """Two groups of two views: a gradient, and the same with a square made red (the edit)."""
    yy, xx = np.mgrid[0:SIZE, 0:SIZE]
    mask = np.zeros((SIZE, SIZE), bool)
    mask[16:48, 16:48] = True
    groups = []
    for g in range(2):
        before = [np.clip(np.stack([xx * 3 + 20 * i, yy * 3, np.full_like(xx, 90 + 40 * g)], -1), 0, 255)
                  .astype(np.uint8) for i in range(2)]
        after = [im.copy() for im in before]
        for im in after:
            im[mask] = (200, 30, 30)
        gid = f"group_{g:06d}"
        _viewset(root / gid / "before", before, mask)
        _viewset(root / gid / "after", after, mask)
        groups.append({"id": gid, "index": g, "object": "Thing",
                       "edit": {"kind": "recolour", "instruction": "make the square red",
                                "description": "the square, now red"}})
    (root / "manifest.json").write_text(json.dumps({"format": "groupedit.dataset", "version": 1, "groups": groups}))
    return root


def _settings(tmp_path: Path, data: Path, steps: int, **kw) -> TrainSettings:
    return TrainSettings(model_dir="", data=[str(data)], out=str(tmp_path / "run"), steps=steps, lr=1e-3, rank=4,
                         save_every=20, pixel_budget=2 * SIZE * SIZE, gradient_checkpointing=False,
                         max_sequence_length=16, **kw)


def _fresh(tiny_model_dir: Path, tiny_pipeline: GroupEditingPipeline) -> GroupEditingPipeline:
    return GroupEditingPipeline(tiny_pipeline.tokenizer, tiny_pipeline.text_encoder, tiny_pipeline.vae,
                                GroupEditingTransformer.from_pretrained(tiny_model_dir / "transformer"))


def test_training_lowers_the_loss_resumes_and_its_weights_change_the_model(tiny_model_dir, tiny_pipeline, tmp_path):
    data = _dataset(tmp_path / "data")
    trainer = Trainer(_fresh(tiny_model_dir, tiny_pipeline), _settings(tmp_path, data, 30))
    group = trainer.groups[0]
    inputs = trainer.inputs(*group)
    noise = torch.randn(inputs["x0"].shape, generator=torch.Generator().manual_seed(1))

    def fixed_loss() -> float:
        with torch.no_grad():
            return float(np.mean([float(trainer.loss(inputs, s, noise)) for s in (0.2, 0.5, 0.8)]))

    before = fixed_loss()
    losses = trainer.train(say=lambda line: None)
    after = fixed_loss()
    assert len(losses) == 30 and after < 0.8 * before, (before, after)
    assert {p.name for p in (tmp_path / "run").iterdir()} == {f"{CHECKPOINT}20", f"{CHECKPOINT}30"}

    resumed = Trainer(_fresh(tiny_model_dir, tiny_pipeline), _settings(tmp_path, data, 34))
    assert resumed.resume(tmp_path / "run") and resumed.step_done == 30
    with torch.no_grad():  # the trained weights came back: the same loss as at the end of the first run
        assert float(np.mean([float(resumed.loss(inputs, s, noise)) for s in (0.2, 0.5, 0.8)])) == pytest.approx(after)
    assert len(resumed.train(say=lambda line: None)) == 4 and resumed.step_done == 34

    # the server's loader reads the checkpoint into a plain transformer: LoRA merged, VACE replaced, output changed
    weights = tmp_path / "run" / f"{CHECKPOINT}30" / WEIGHTS_FILE
    model = GroupEditingTransformer.from_pretrained(tiny_model_dir / "transformer")
    report = load_groupediting_weights(model, weights)
    assert report.layout == "groupedit" and report.merged and any(n.startswith("vace_") for n in report.replaced)
    images = [np.asarray(ViewSet.read(group[0] / "before").load(v, "colour")) for v in
              ViewSet.read(group[0] / "before").views]
    masks = [np.zeros((SIZE, SIZE), bool) for _ in images]
    for m in masks:
        m[16:48, 16:48] = True
    fast = EditSettings(steps=2, pixel_budget=2 * SIZE * SIZE)
    base = tiny_pipeline(images, masks, "make the square red", settings=fast, max_sequence_length=16)
    tuned = GroupEditingPipeline(tiny_pipeline.tokenizer, tiny_pipeline.text_encoder, tiny_pipeline.vae, model)(
        images, masks, "make the square red", settings=fast, max_sequence_length=16)
    assert any(not np.array_equal(a, b) for a, b in zip(base.images, tuned.images))


def test_training_refuses_a_folder_that_is_no_dataset(tiny_model_dir, tiny_pipeline, tmp_path):
    from backend.errors import InvalidInput

    with pytest.raises(InvalidInput, match="not a dataset"):
        Trainer(_fresh(tiny_model_dir, tiny_pipeline), _settings(tmp_path, tmp_path, 1))


def test_the_command_line_loads_the_model_dir_and_writes_checkpoints(tiny_model_dir, tmp_path, capsys):
    from backend.groupediting.train import main

    data = _dataset(tmp_path / "data")
    code = main([str(data), "--model-dir", str(tiny_model_dir), "--out", str(tmp_path / "cli"), "--steps", "3",
                 "--rank", "2", "--save-every", "2", "--pixel-budget", str(2 * SIZE * SIZE),
                 "--max-sequence-length", "16", "--no-gradient-checkpointing"])
    assert code == 0 and "trained 3 steps" in capsys.readouterr().out
    assert (tmp_path / "cli" / f"{CHECKPOINT}3" / WEIGHTS_FILE).is_file()
    assert main([str(data), "--out", str(tmp_path / "x")]) == 2


def test_training_with_geometry_tokens_feeds_them_as_inference_does(tiny_model_dir, tmp_path, capsys):
    from backend.groupediting.loader import load_pipeline
    from backend.groupediting.settings import LoadSettings

    from .tiny import save_tiny_vggt

    data = _dataset(tmp_path / "data")
    vggt = save_tiny_vggt(tmp_path / "vggt" / "model.safetensors")
    pipe, _ = load_pipeline(LoadSettings(model_dir=str(tiny_model_dir), vggt=str(vggt), dtype="fp32", device="cpu",
                                         vram_check=False))
    trainer = Trainer(pipe, _settings(tmp_path, data, 2))
    inputs = trainer.inputs(*trainer.groups[0])
    n = len(ViewSet.read(trainer.groups[0][0] / "before").views)
    assert inputs["tokens"] is not None and inputs["tokens"].shape[-2] == n * 37 * 37
    with torch.no_grad():
        with_tokens = float(trainer.loss(inputs, 0.5, torch.zeros_like(inputs["x0"])))
        without = float(trainer.loss({**inputs, "tokens": None, "token_coords": None}, 0.5,
                                     torch.zeros_like(inputs["x0"])))
    assert with_tokens != without, "the tokens reach the model"
    assert len(trainer.train(say=lambda line: None)) == 2
