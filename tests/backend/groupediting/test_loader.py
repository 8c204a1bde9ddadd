"""Loader settings, the GPU memory estimate and check, and the server's groupediting flags (no GPU needed)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from diffusers import AutoencoderKLWan

from backend.cli import build_parser, editor_config
from backend.errors import BackendError, InvalidInput, ModelNotReady, OutOfMemory
from backend.editors.groupediting_editor import GroupEditingEditor
from backend.groupediting.loader import (
    ACTIVATION_MARGIN,
    GIB,
    check_load_settings,
    check_vram,
    estimate_vram,
    resolved_dtype,
)
from backend.groupediting.settings import LoadSettings
from backend.groupediting.settings import EditSettings

from .tiny import TINY_VAE, save_tiny_model_dir, save_tiny_vggt, tiny_text_encoder, tiny_transformer, tiny_vggt


def test_estimate_counts_parameters_per_offload_mode(tiny_model_dir: Path) -> None:
    bf16 = estimate_vram(tiny_model_dir, torch.bfloat16, "none")
    fp32 = estimate_vram(tiny_model_dir, torch.float32, "none")
    count = {name: sum(p.numel() for p in m.parameters()) for name, m in [
        ("transformer", tiny_transformer()), ("encoder", tiny_text_encoder()), ("vae", AutoencoderKLWan(**TINY_VAE))]}
    assert bf16["none"] == 2 * (count["transformer"] + count["encoder"]) + 4 * count["vae"] + ACTIVATION_MARGIN
    assert fp32["none"] > bf16["none"] > bf16["model"] > bf16["group"] >= bf16["sequential"] > 0
    with pytest.raises(InvalidInput):
        estimate_vram(tiny_model_dir, torch.bfloat16, "everything")


def test_estimate_includes_the_vggt_aggregator(tiny_model_dir: Path, tmp_path: Path) -> None:
    vggt = save_tiny_vggt(tmp_path / "vggt" / "model.safetensors")
    aggregator = sum(p.numel() for p in tiny_vggt().parameters())
    plain = estimate_vram(tiny_model_dir, torch.bfloat16, "none")
    with_vggt = estimate_vram(tiny_model_dir, torch.bfloat16, "none", vggt.parent)
    assert with_vggt["none"] - plain["none"] == 4 * aggregator  # float32 weights, as the release runs it


def test_check_vram_names_the_mode_that_fits() -> None:
    needed = {"none": 50 * int(GIB), "model": 40 * int(GIB), "group": 13 * int(GIB), "sequential": 4 * int(GIB)}
    check_vram(needed, "none", 60 * int(GIB), "GPU")
    with pytest.raises(OutOfMemory, match=r"about 50 GiB with --offload none but 20.0 GiB are free.*--offload group"):
        check_vram(needed, "none", 20 * int(GIB), "GPU")
    with pytest.raises(OutOfMemory, match="1.3B base model"):
        check_vram(needed, "model", 2 * int(GIB), "GPU")


def test_settings_errors_say_which_flag_to_change(tmp_path: Path) -> None:
    for settings, message in [
        (LoadSettings(str(tmp_path), dtype="int8"), "dtype must be one of bf16"),
        (LoadSettings(str(tmp_path), offload="disk"), "offload must be one of none"),
        (LoadSettings(str(tmp_path), device="cpu", offload="model"), "needs a CUDA GPU"),
    ]:
        with pytest.raises(InvalidInput, match=message):
            check_load_settings(settings)
    assert resolved_dtype(LoadSettings(str(tmp_path), device="cpu")) == torch.float32
    with pytest.raises(InvalidInput, match="option dtype='int8'"):
        GroupEditingEditor(model_dir=tmp_path, dtype="int8")
    with pytest.raises(ModelNotReady, match="docs/models.md"):
        GroupEditingEditor(model_dir=tmp_path / "missing", device="cpu")
    with pytest.raises(ModelNotReady, match="--model-dir"):
        GroupEditingEditor()


def test_edit_settings_options_are_checked_and_resolved_from_the_preset() -> None:
    s = EditSettings(steps=2).with_options({"steps": 4, "guidance": 3.5, "seed": 7.0, "shift": None})
    assert (s.steps, s.guidance, s.seed, s.shift) == (4, 3.5, 7, None)
    r = EditSettings().resolved()
    assert (r.preset, r.steps, r.guidance, r.shift, r.flow_sigma) == ("release", 50, 5.0, 5.0, 1.0)
    assert EditSettings().with_options({"preset": "exact", "flow_sigma": 2}).resolved().flow_sigma == 2.0
    for bad, name in (({"steps": 0}, "steps"), ({"steps": 2.5}, "whole"), ({"guidance": "a lot"}, "guidance"), ({"guidance": "3.5"}, "guidance"),
                      ({"flow_sigma": -1}, "flow_sigma"), ({"seed": True}, "seed"), ({"guidance": float("nan")},
                      "finite"), ({"preset": "spiral"}, "release, exact"), ({"feather": 100}, "feather"),
                      ({"negative_prompt": 3}, "text"), ({"reference_view": 1}, "unknown option")):
        with pytest.raises(InvalidInput, match=name):
            EditSettings().with_options(bad)


def test_cli_flags_become_the_editor_config(tmp_path: Path) -> None:
    args = build_parser().parse_args([
        "--editor", "groupediting", "--model-dir", str(tmp_path), "--weights", str(tmp_path / "w.safetensors"),
        "--dtype", "bf16", "--offload", "group", "--device", "cuda", "--steps", "30", "--guidance", "4",
        "--no-vram-check", "--preset", "paper", "--vggt", str(tmp_path / "vggt"), "--feather", "2"])
    assert editor_config(args) == {
        "model_dir": str(tmp_path), "weights": str(tmp_path / "w.safetensors"), "dtype": "bf16", "offload": "group",
        "device": "cuda", "steps": 30, "guidance": 4.0, "vram_check": False, "preset": "paper",
        "vggt": str(tmp_path / "vggt"), "feather": 2}
    assert all(isinstance(v, (str, int, float, bool)) for v in editor_config(args).values())
    with pytest.raises(InvalidInput, match="steps"):
        editor_config(build_parser().parse_args(["--editor", "groupediting", "--model-dir", "x", "--steps", "0"]))
    assert editor_config(build_parser().parse_args([])) == {}
    with pytest.raises(BackendError, match="--model-dir, --steps only apply to --editor groupediting"):
        editor_config(build_parser().parse_args(["--model-dir", "x", "--steps", "3"]))
    with pytest.raises(BackendError, match="needs --model-dir"):
        editor_config(build_parser().parse_args(["--editor", "groupediting"]))


def test_preset_dtype_and_vggt_reach_the_loaded_model(tmp_path: Path) -> None:
    model_dir = save_tiny_model_dir(tmp_path / "model")
    editor = GroupEditingEditor(model_dir=model_dir, device="cpu", dtype="bf16", preset="paper", steps=1)
    info = editor.info()
    assert (info["preset"], info["dtype"], info["weights"], info["geometry_tokens"]) == (
        "paper", "bfloat16", None, "off")
    assert info["defaults"]["steps"] == 1 and set(info["presets"]) == {"release", "exact", "paper", "grid"}
    assert editor.pipeline.transformer.dtype == torch.bfloat16 and editor.pipeline.vae.dtype == torch.float32
    with pytest.raises(ModelNotReady, match="weights .* do not exist"):
        GroupEditingEditor(model_dir=model_dir, weights=tmp_path / "none.safetensors", device="cpu")


def test_vggt_flag_loads_the_aggregator_and_health_says_so(tmp_path: Path) -> None:
    model_dir = save_tiny_model_dir(tmp_path / "model")
    vggt = save_tiny_vggt(tmp_path / "vggt" / "model.safetensors")
    editor = GroupEditingEditor(model_dir=model_dir, vggt=vggt.parent, device="cpu", steps=1)
    assert editor.info()["geometry_tokens"] == "vggt" and editor.pipeline.geometry_encoder is not None
    with pytest.raises(ModelNotReady, match="--vggt .* does not exist"):
        GroupEditingEditor(model_dir=model_dir, vggt=tmp_path / "nowhere", device="cpu")


def test_skipped_release_keys_show_in_health(tmp_path: Path) -> None:
    from safetensors.torch import save_file

    from .test_weights import release_checkpoint

    model_dir = save_tiny_model_dir(tmp_path / "model")
    sd = release_checkpoint(tiny_transformer())
    sd["vace.vace_blocks.0.extra_gate.weight"] = torch.zeros(3)
    save_file(sd, str(tmp_path / "epoch-9.safetensors"))
    info = GroupEditingEditor(model_dir=model_dir, weights=tmp_path / "epoch-9.safetensors", device="cpu").info()
    assert len(info["weights_warnings"]) == 1
    assert "1 key skipped" in info["weights_warnings"][0] and "extra_gate" in info["weights_warnings"][0]
