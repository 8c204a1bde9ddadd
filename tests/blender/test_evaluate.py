"""``groupedit-eval`` end to end on a small dataset made here: exact scores against the true edits, learned scores
with tiny random scorers built and saved by the test, and a clear refusal without scorer weights."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from blender_addon.core.capture.settings import CaptureSettings
from blender_addon.core.format.viewset import ViewSet
from blender_addon.core.metrics import psnr


@pytest.fixture
def dataset(empty_scene, tmp_path):
    import bpy

    from blender_addon.blender.dataset import make_dataset
    from tests.corpus import two_part_figure

    two_part_figure()
    bpy.ops.wm.save_as_mainfile(filepath=str(tmp_path / "figure.blend"), copy=True)
    out = tmp_path / "data"
    make_dataset([tmp_path / "figure.blend"], out, 3, 5, ["recolour"], 3, CaptureSettings(view_size=64, samples=4),
                 say=lambda line: None)
    return out


def _tiny_scorers(root):
    """A tiny random CLIP (with an offline word-level tokenizer) and a tiny random DINOv2, saved as on disk."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import (CLIPConfig, CLIPModel, Dinov2Config, Dinov2Model, PreTrainedTokenizerFast)

    words = ["<pad>", "<unk>", "<s>", "</s>", "the", "jacket", "trousers", "now", ","] + \
        ["red", "green", "blue", "dark", "navy", "yellow", "orange", "purple", "teal", "pink", "brown", "white",
         "black", "light"]
    tok = Tokenizer(models.WordLevel(vocab={w: i for i, w in enumerate(words)}, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", unk_token="<unk>")
    config = CLIPConfig(text_config={"vocab_size": len(words), "hidden_size": 16, "intermediate_size": 32,
                                     "num_hidden_layers": 1, "num_attention_heads": 2, "max_position_embeddings": 32,
                                     "bos_token_id": 2, "eos_token_id": 3, "pad_token_id": 0},
                        vision_config={"hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 1,
                                       "num_attention_heads": 2, "image_size": 32, "patch_size": 8},
                        projection_dim=8)
    CLIPModel(config).save_pretrained(root / "clip")
    tokenizer.save_pretrained(root / "clip")
    Dinov2Model(Dinov2Config(hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32,
                             image_size=32, patch_size=8)).save_pretrained(root / "dino")


def test_the_evaluation_scores_against_the_true_edits(dataset, tmp_path):
    from backend.editors import get_editor
    from backend.evaluate import Scorers, evaluate, main

    identity = evaluate(dataset, get_editor("identity"), None, None)
    assert identity["groups"] == 3 and not identity["failed"]
    for row in identity["rows"]:  # an editor that changes nothing scores the before views against the after views
        before, after = ViewSet.read(dataset / row["id"] / "before"), ViewSet.read(dataset / row["id"] / "after")
        masks = [before.load(v, "mask") for v in before.views]
        x, y = (np.concatenate([vs.load(v, "colour")[..., :3][m] for v, m in zip(vs.views, masks)])
                for vs in (before, after))
        assert row["psnr_db"] == pytest.approx(psnr(x, y, np.ones(len(x), bool)))
        assert math.isinf(row["outside_psnr_db"])
    classical = evaluate(dataset, get_editor("classical"), None, tmp_path / "out")
    assert classical["mean"]["part_psnr_db"] > identity["mean"]["part_psnr_db"], (classical["mean"], identity["mean"])
    assert (tmp_path / "out" / classical["rows"][0]["id"] / "edited" / "view_000.png").is_file()

    _tiny_scorers(tmp_path / "scorers")
    import torch
    from safetensors.torch import save_file

    (tmp_path / "scorers" / "aesthetic").mkdir()
    # LAION's MLP layout (no activations): layers.0, .2 on the CLIP projection (8 wide here)
    save_file({"layers.0.weight": torch.randn(4, 8), "layers.0.bias": torch.randn(4),
               "layers.2.weight": torch.randn(1, 4), "layers.2.bias": torch.randn(1)},
              str(tmp_path / "scorers" / "aesthetic" / "model.safetensors"))
    scored = evaluate(dataset, get_editor("classical"),
                      Scorers(tmp_path / "scorers", ["clip", "dino", "aesthetic"]), None)
    assert all(np.isfinite(r["clip_score"]) and -1.0 <= r["dino_score"] <= 1.0 and np.isfinite(r["aesthetic"])
               for r in scored["rows"])

    assert main([str(dataset), "--metrics", "clip", "--scorers", str(tmp_path / "nothing")]) == 2
    assert main([str(dataset), "--out", str(tmp_path / "cli")]) == 0
    report = json.loads((tmp_path / "cli" / "eval.json").read_text())
    assert report["editor"] == "classical" and set(report["mean"]) >= {"psnr_db", "ssim", "consistency_db"}


def test_without_scorer_weights_the_evaluation_refuses_before_it_starts(tmp_path, capsys):
    from backend.evaluate import main

    assert main([str(tmp_path), "--metrics", "dino", "--scorers", str(tmp_path)]) == 2
    assert "the dino score needs its weights on disk" in capsys.readouterr().err
    assert main([str(tmp_path), "--metrics", "aesthetic", "--scorers", str(tmp_path)]) == 2
    assert "ask for clip too" in capsys.readouterr().err
