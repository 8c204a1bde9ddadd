"""Weight loading for the GroupEditing editor, on tiny random models built here (nothing is downloaded).

The release checkpoint is synthesised with the key names its code produces: the training pipeline's trainable VACE
module saved with the ``pipe.`` prefix removed (``vace.vace_blocks.N.…``) and a peft LoRA on the DiT
(``dit.blocks.N.self_attn.q.lora_A.default.weight``). Those Wan names are cross-checked against diffusers' own
``convert_wan_transformer_to_diffusers``.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from backend.errors import ModelNotReady
from backend.groupediting import keymap
from backend.groupediting.base_model import check_model_dir, load_base_components, load_transformer
from backend.groupediting.weights import (
    IncompatibleWeights,
    detect_layout,
    load_groupediting_transformer,
    load_groupediting_weights,
    save_groupedit_weights,
)

from .tiny import TINY_TRANSFORMER, save_tiny_model_dir

LORA_TARGETS = ("self_attn.q", "self_attn.k", "self_attn.v", "self_attn.o",
                "cross_attn.q", "cross_attn.k", "cross_attn.v", "cross_attn.o", "ffn.0", "ffn.2")
RANK = 4


def tiny_transformer(seed: int = 0, **overrides: object) -> torch.nn.Module:
    from diffusers import WanVACETransformer3DModel

    torch.manual_seed(seed)
    return WanVACETransformer3DModel(**{**TINY_TRANSFORMER, **overrides}).eval()


def forward(model: torch.nn.Module, seed: int = 1) -> torch.Tensor:
    """One denoiser call on a 2-frame 8×8 latent (4×4 tokens per frame)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(1, 16, 2, 8, 8, generator=g)
    ctx = torch.randn(1, 96, 2, 8, 8, generator=g)
    text = torch.randn(1, 5, 32, generator=g)
    with torch.no_grad():
        return model(x, torch.tensor([500]), text, control_hidden_states=ctx, return_dict=False)[0]


def release_name(diffusers_name: str) -> str:
    name = keymap.diffusers_param_to_release(diffusers_name)
    assert name is not None, diffusers_name
    return name


def release_checkpoint(model: torch.nn.Module, seed: int = 7) -> dict[str, torch.Tensor]:
    """A checkpoint as the release writes it: every VACE parameter (new values) + a rank-4 LoRA on every DiT block."""
    g = torch.Generator().manual_seed(seed)
    sd: dict[str, torch.Tensor] = {}
    for name, p in model.named_parameters():
        if name.startswith(("vace_blocks.", "vace_patch_embedding.")):
            sd["vace." + release_name(name)] = torch.randn(p.shape, generator=g) * 0.05
    for i in range(model.config.num_layers):
        for target in LORA_TARGETS:
            w = dict(model.named_parameters())[
                keymap.release_module_to_diffusers(f"blocks.{i}.{target}") + ".weight"]
            sd[f"dit.blocks.{i}.{target}.lora_A.default.weight"] = torch.randn(RANK, w.shape[1], generator=g) * 0.1
            sd[f"dit.blocks.{i}.{target}.lora_B.default.weight"] = torch.randn(w.shape[0], RANK, generator=g) * 0.1
    return sd


@pytest.fixture()
def base_and_release(tmp_path: Path) -> tuple[torch.nn.Module, dict[str, torch.Tensor], Path]:
    model = tiny_transformer()
    sd = release_checkpoint(model)
    path = tmp_path / "epoch-9.safetensors"
    save_file(sd, str(path))
    return model, sd, path


# --- key mapping ------------------------------------------------------------------------------------------------


def test_release_names_match_diffusers_own_converter() -> None:
    from diffusers.loaders.single_file_utils import convert_wan_transformer_to_diffusers

    sd = tiny_transformer().state_dict()
    names = list(sd)
    converted = convert_wan_transformer_to_diffusers({release_name(n): sd[n] for n in names})
    assert list(converted) == names  # the converter keeps insertion order
    for n in names:
        parsed = keymap.parse_release_key(("vace." if n.startswith("vace") else "dit.") + release_name(n))
        assert parsed == keymap.ParsedKey("param", n)


@pytest.mark.parametrize(("key", "expected"), [
    ("vace.vace_blocks.0.before_proj.weight", ("param", "vace_blocks.0.proj_in.weight", None)),
    ("vace.vace_blocks.1.after_proj.bias", ("param", "vace_blocks.1.proj_out.bias", None)),
    ("vace.vace_blocks.1.modulation", ("param", "vace_blocks.1.scale_shift_table", None)),
    ("vace.vace_blocks.0.norm3.weight", ("param", "vace_blocks.0.norm2.weight", None)),
    ("vace.vace_blocks.0.cross_attn.norm_q.module.weight", ("param", "vace_blocks.0.attn2.norm_q.weight", None)),
    ("vace.vace_patch_embedding.weight", ("param", "vace_patch_embedding.weight", None)),
    ("vace.vace_blocks.0.self_attn.q.base_layer.bias", ("param", "vace_blocks.0.attn1.to_q.bias", None)),
    ("dit.blocks.2.self_attn.o.lora_B.default.weight", ("lora", "blocks.2.attn1.to_out.0", "B")),
    ("dit.blocks.0.ffn.0.lora_A.default.weight", ("lora", "blocks.0.ffn.net.0.proj", "A")),
    ("diffusion_model.blocks.0.cross_attn.k.lora_down.weight", ("lora", "blocks.0.attn2.to_k", "A")),
    ("blocks.1.ffn.2.alpha", ("lora", "blocks.1.ffn.net.2", "alpha")),
    ("pipe.dit.head.head.weight", ("param", "proj_out.weight", None)),
    ("time_projection.1.bias", ("param", "condition_embedder.time_proj.bias", None)),
])
def test_release_key_examples(key: str, expected: tuple[str, str, str | None]) -> None:
    assert keymap.parse_release_key(key) == keymap.ParsedKey(*expected)


def test_unmappable_release_keys() -> None:
    for key in ("vace.vace_blocks.0.foo.weight", "dit.blocks.0.gate.weight", "something_else"):
        assert keymap.parse_release_key(key) is None


# --- release checkpoint -----------------------------------------------------------------------------------------


def test_release_checkpoint_loads_vace_and_merges_lora(base_and_release) -> None:
    model, sd, path = base_and_release
    base = {k: v.clone() for k, v in model.state_dict().items()}
    before = forward(model)
    report = load_groupediting_weights(model, path)  # layout detected from the names
    assert report.layout == "release" and report.ranks == [RANK]
    assert len(report.merged) == TINY_TRANSFORMER["num_layers"] * len(LORA_TARGETS)
    after = model.state_dict()
    vace = [n for n in after if n.startswith(("vace_blocks.", "vace_patch_embedding."))]
    assert sorted(report.replaced) == sorted(vace)
    for n in vace:
        torch.testing.assert_close(after[n], sd["vace." + release_name(n)], rtol=0, atol=0)
    merged = set()
    for i in range(TINY_TRANSFORMER["num_layers"]):
        for target in LORA_TARGETS:
            module = keymap.release_module_to_diffusers(f"blocks.{i}.{target}")
            a = sd[f"dit.blocks.{i}.{target}.lora_A.default.weight"]
            b = sd[f"dit.blocks.{i}.{target}.lora_B.default.weight"]
            torch.testing.assert_close(after[module + ".weight"], base[module + ".weight"] + b @ a)
            merged.add(module + ".weight")
    untouched = set(after) - set(vace) - merged
    assert untouched and all(torch.equal(after[n], base[n]) for n in untouched)
    assert sorted(report.changed) == sorted(set(vace) | merged)
    assert (forward(model) - before).abs().max() > 1e-3


def test_lora_scale_multiplies_the_update(base_and_release) -> None:
    model, sd, path = base_and_release
    w0 = model.blocks[1].attn1.to_q.weight.detach().clone()
    load_groupediting_weights(model, path, lora_scale=0.5)
    a, b = sd["dit.blocks.1.self_attn.q.lora_A.default.weight"], sd["dit.blocks.1.self_attn.q.lora_B.default.weight"]
    torch.testing.assert_close(model.blocks[1].attn1.to_q.weight, w0 + 0.5 * b @ a)


def _expect_unchanged(model: torch.nn.Module, base: dict[str, torch.Tensor]) -> None:
    assert all(torch.equal(v, base[k]) for k, v in model.state_dict().items())


def test_partial_vace_set_keeps_the_base_for_what_is_missing(base_and_release, tmp_path: Path, caplog) -> None:
    """As the release loads its VACE weights (strict=False): what the file lacks keeps the base's value, with a
    warning that names it."""
    model, sd, _ = base_and_release
    del sd["vace.vace_blocks.1.after_proj.weight"]
    save_file(sd, str(tmp_path / "partial.safetensors"))
    base = model.vace_blocks[1].proj_out.weight.detach().clone()
    with caplog.at_level("WARNING"):
        report = load_groupediting_weights(model, tmp_path / "partial.safetensors")
    assert report.kept_from_base == ["vace_blocks.1.proj_out.weight"]
    assert torch.equal(model.vace_blocks[1].proj_out.weight, base)
    assert torch.equal(model.vace_blocks[1].proj_out.bias, sd["vace.vace_blocks.1.after_proj.bias"])
    assert "vace_blocks.1.proj_out.weight" in caplog.text and "kept the base model's values" in caplog.text


def test_our_format_stays_strict(base_and_release, tmp_path: Path) -> None:
    model, _, path = base_and_release
    load_groupediting_weights(model, path)
    ours = save_groupedit_weights(model, tmp_path / "ours.safetensors")
    sd = load_file(str(ours))
    del sd["vace_blocks.1.proj_out.weight"]
    sd["vace_blocks.0.extra_gate.weight"] = torch.zeros(3)
    save_file(sd, str(tmp_path / "ours-partial.safetensors"), metadata={"format": "groupedit", "version": "1",
                                                                        "covers": "vace_blocks.,vace_patch_embedding."})
    base = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(IncompatibleWeights, match=r"1 missing \(first: vace_blocks\.1\.proj_out\.weight\)") as err:
        load_groupediting_weights(model, tmp_path / "ours-partial.safetensors")
    assert err.value.details["n_missing"] == 1 and "1 unexpected" in str(err.value)
    _expect_unchanged(model, base)


def test_shape_mismatch_is_listed(base_and_release, tmp_path: Path) -> None:
    model, sd, _ = base_and_release
    sd["vace.vace_blocks.0.ffn.0.weight"] = torch.zeros(33, 24)
    sd["dit.blocks.0.self_attn.q.lora_B.default.weight"] = torch.zeros(25, RANK)
    save_file(sd, str(tmp_path / "bad.safetensors"))
    base = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(IncompatibleWeights, match="2 shape mismatches") as err:
        load_groupediting_weights(model, tmp_path / "bad.safetensors")
    text = str(err.value)
    assert "vace.vace_blocks.0.ffn.0.weight: file (33, 24) vs model (32, 24)" in text
    assert "LoRA blocks.0.attn1.to_q" in text
    _expect_unchanged(model, base)


def test_keys_the_release_ignores_are_skipped_and_listed(base_and_release, tmp_path: Path, caplog) -> None:
    """A release file with extra keys (an unknown VACE tensor, an unpaired LoRA half, an optimizer leftover) loads;
    the extra keys are listed as skipped, and everything else is applied."""
    model, sd, _ = base_and_release
    sd["vace.vace_blocks.0.extra_gate.weight"] = torch.zeros(3)
    sd["optimizer.state.0.exp_avg"] = torch.zeros(2)
    del sd["dit.blocks.2.ffn.2.lora_B.default.weight"]
    save_file(sd, str(tmp_path / "odd.safetensors"))
    before = model.blocks[2].ffn.net[2].weight.detach().clone()
    with caplog.at_level("WARNING"):
        report = load_groupediting_weights(model, tmp_path / "odd.safetensors")
    assert len(report.skipped) == 3 and "vace.vace_blocks.0.extra_gate.weight" in report.skipped
    assert "optimizer.state.0.exp_avg" in report.skipped
    assert any("lora_B (up) missing for blocks.2.ffn.net.2" in k for k in report.skipped)
    assert torch.equal(model.blocks[2].ffn.net[2].weight, before)  # the unpaired LoRA is not merged
    assert torch.equal(model.vace_blocks[0].proj_out.weight, sd["vace.vace_blocks.0.after_proj.weight"])
    assert "3 keys skipped" in caplog.text and report.warnings()
    save_file({"vace.extra": torch.zeros(1), "dit.nothing.lora_A.default.weight": torch.zeros(1, 1)},
              str(tmp_path / "useless.safetensors"))
    with pytest.raises(IncompatibleWeights, match="nothing this model can use"):
        load_groupediting_weights(model, tmp_path / "useless.safetensors", layout="release")


def test_inspect_weights_reads_only_the_header(base_and_release, tmp_path: Path, tiny_model_dir: Path,
                                               capsys) -> None:
    from backend.cli import main
    from backend.groupediting.weights import inspect_weights

    _, sd, _ = base_and_release
    sd["optimizer.step"] = torch.zeros(1)
    sd = {k: (v.to(torch.bfloat16) if k.startswith("vace.") else v) for k, v in sd.items()}
    path = tmp_path / "epoch-9.safetensors"
    save_file(sd, str(path))
    info = inspect_weights(path)
    n_vace = sum(1 for k in sd if k.startswith("vace."))
    assert (info["layout"], info["tensors"], info["vace_tensors"]) == ("release", len(sd), n_vace)
    assert info["lora_pairs"] == 3 * len(LORA_TARGETS) and info["lora_ranks"] == [RANK]
    assert info["dtypes"] == {"BF16": n_vace, "F32": len(sd) - n_vace} and info["skipped"] == ["optimizer.step"]
    assert info["parameters"] == sum(v.numel() for v in sd.values())
    planned = inspect_weights(path, tiny_model_dir)
    assert planned["problem"] is None and planned["skipped"] == ["optimizer.step"]
    assert main(["inspect-weights", str(path), "--model-dir", str(tiny_model_dir)]) == 0
    out = capsys.readouterr().out
    assert "layout: release" in out and f"rank {RANK}" in out and "would be skipped: 1 (optimizer.step)" in out
    assert "loads into this base model" in out
    del sd["vace.vace_patch_embedding.weight"]
    sd["vace.vace_blocks.0.ffn.0.weight"] = torch.zeros(33, 24)
    save_file(sd, str(tmp_path / "bad.safetensors"))
    assert main(["inspect-weights", str(tmp_path / "bad.safetensors"), "--model-dir", str(tiny_model_dir)]) == 1
    assert "loading would refuse it" in capsys.readouterr().out
    assert main(["inspect-weights", str(tmp_path / "missing.safetensors")]) == 2


def test_width_mismatch_says_which_model_the_file_is_for(tmp_path: Path) -> None:
    wide = tiny_transformer(attention_head_dim=18)
    save_file(release_checkpoint(wide), str(tmp_path / "wide.safetensors"))
    with pytest.raises(IncompatibleWeights, match="model of width 36 .* base has width 24"):
        load_groupediting_weights(tiny_transformer(), tmp_path / "wide.safetensors")


def test_unknown_layout_and_explicit_override(base_and_release, tmp_path: Path) -> None:
    model, sd, path = base_and_release
    save_file({"encoder.layer.0.weight": torch.zeros(2, 2)}, str(tmp_path / "other.safetensors"))
    with pytest.raises(IncompatibleWeights, match="unknown weights layout"):
        load_groupediting_weights(model, tmp_path / "other.safetensors")
    mixed = {"dit.blocks.0.self_attn.q.weight": torch.zeros(1), "blocks.0.attn1.to_q.weight": torch.zeros(1)}
    with pytest.raises(IncompatibleWeights, match="both Wan/DiffSynth and diffusers names"):
        detect_layout(mixed)
    with pytest.raises(IncompatibleWeights, match="unexpected"):  # forced to read release names as diffusers names
        load_groupediting_weights(model, path, layout="groupedit")
    assert load_groupediting_weights(model, path, layout="release").layout == "release"


def test_bad_files_and_paths(tmp_path: Path) -> None:
    model = tiny_transformer()
    for missing in (tmp_path / "nope.safetensors", tmp_path):
        with pytest.raises(ModelNotReady, match=r"Heey731/group-editing.*docs/models\.md"):
            load_groupediting_weights(model, missing)
    (tmp_path / "junk.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(IncompatibleWeights, match="not a readable safetensors file"):
        load_groupediting_weights(model, tmp_path / "junk.safetensors")


# --- our own format ---------------------------------------------------------------------------------------------


def test_groupedit_format_round_trips(base_and_release, tmp_path: Path) -> None:
    model, _, path = base_and_release
    report = load_groupediting_weights(model, path)
    out = save_groupedit_weights(model, tmp_path / "ours.safetensors", names=report.changed)
    from safetensors import safe_open

    with safe_open(str(out), "pt") as f:
        meta = f.metadata()
        assert sorted(f.keys()) == report.changed
    assert meta["format"] == "groupedit" and meta["version"] == "1"
    assert json.loads(meta["base_config"])["vace_layers"] == [0, 2]
    fresh = tiny_transformer()
    again = load_groupediting_weights(fresh, out)
    assert again.layout == "groupedit" and sorted(again.replaced) == report.changed and not again.merged
    for k, v in model.state_dict().items():
        torch.testing.assert_close(fresh.state_dict()[k], v, rtol=0, atol=0)
    torch.testing.assert_close(forward(fresh), forward(model), rtol=0, atol=0)


def test_groupedit_format_checks_coverage_and_base_config(tmp_path: Path) -> None:
    model = tiny_transformer(seed=3)
    path = save_groupedit_weights(model, tmp_path / "vace.safetensors")  # covers the VACE branch by default
    sd = load_file(str(path))
    del sd["vace_patch_embedding.bias"]
    from safetensors import safe_open

    with safe_open(str(path), "pt") as f:
        meta = f.metadata()
    save_file(sd, str(tmp_path / "short.safetensors"), metadata=meta)
    with pytest.raises(IncompatibleWeights, match=r"1 missing \(first: vace_patch_embedding\.bias\)"):
        load_groupediting_weights(tiny_transformer(), tmp_path / "short.safetensors")
    deeper = tiny_transformer(num_layers=4)  # same VACE shapes, another base
    with pytest.raises(IncompatibleWeights, match=r"num_layers 3 \(file\) vs 4 \(model\)"):
        load_groupediting_weights(deeper, path)
    save_file(sd, str(tmp_path / "v9.safetensors"), metadata={**meta, "version": "9"})
    with pytest.raises(IncompatibleWeights, match="version 9 is not supported"):
        load_groupediting_weights(tiny_transformer(), tmp_path / "v9.safetensors")


def test_groupedit_format_lora_with_alpha(tmp_path: Path) -> None:
    model = tiny_transformer()
    w0 = model.blocks[0].ffn.net[2].weight.detach().clone()
    a, b = torch.randn(RANK, 32), torch.randn(24, RANK)
    save_file({"blocks.0.ffn.net.2.lora_A.weight": a, "blocks.0.ffn.net.2.lora_B.weight": b,
               "blocks.0.ffn.net.2.alpha": torch.tensor(2.0)},
              str(tmp_path / "lora.safetensors"), metadata={"format": "groupedit", "version": "1"})
    report = load_groupediting_weights(model, tmp_path / "lora.safetensors")
    assert report.merged == ["blocks.0.ffn.net.2"]
    torch.testing.assert_close(model.blocks[0].ffn.net[2].weight, w0 + (2.0 / RANK) * b @ a)


# --- the base directory -----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A complete diffusers-format directory of tiny random components, the transformer sharded with an index."""
    return save_tiny_model_dir(tmp_path_factory.mktemp("Wan2.1-VACE-tiny-diffusers"), max_shard_size="20KB")


def test_whole_directory_loads(tiny_model_dir: Path) -> None:
    assert len(list((tiny_model_dir / "transformer").glob("*.safetensors"))) > 1
    checked = check_model_dir(tiny_model_dir)
    assert checked.size == "custom" and checked.transformer_config["vace_layers"] == [0, 2]
    parts = load_base_components(tiny_model_dir, dtype=torch.float32)
    saved = tiny_transformer().state_dict()
    assert all(torch.equal(v, saved[k]) for k, v in parts.transformer.state_dict().items())
    torch.testing.assert_close(forward(parts.transformer), forward(tiny_transformer()))
    ids = parts.tokenizer("same red fox in four scenes .", return_tensors="pt").input_ids
    with torch.no_grad():
        assert parts.text_encoder(ids).last_hidden_state.shape == (1, ids.shape[1], 32)
    with torch.no_grad():
        latent = parts.vae.encode(torch.zeros(1, 3, 1, 16, 16)).latent_dist.mode()
    assert latent.shape == (1, 16, 1, 2, 2)
    only = load_base_components(tiny_model_dir, components=["vae"])
    assert only.transformer is None and only.vae is not None


def test_transformer_with_release_weights(tiny_model_dir: Path, tmp_path: Path) -> None:
    path = tmp_path / "epoch-9.safetensors"
    save_file(release_checkpoint(tiny_transformer()), str(path))
    model, report = load_groupediting_transformer(tiny_model_dir, path, dtype=torch.float32)
    assert report is not None and report.layout == "release"
    assert (forward(model) - forward(load_transformer(tiny_model_dir, dtype=torch.float32))).abs().max() > 1e-3
    bf16, _ = load_groupediting_transformer(tiny_model_dir, path)  # default bf16: merged in float32, cast back
    assert bf16.blocks[0].attn1.to_q.weight.dtype == torch.bfloat16
    torch.testing.assert_close(bf16.blocks[0].attn1.to_q.weight.float(), model.blocks[0].attn1.to_q.weight,
                               atol=2e-2, rtol=2e-2)


def test_incomplete_directory_lists_what_is_missing(tiny_model_dir: Path, tmp_path: Path) -> None:
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(tiny_model_dir, broken)
    shard = sorted((broken / "transformer").glob("*-of-*.safetensors"))[-1]
    shard.unlink()
    (broken / "vae" / "diffusion_pytorch_model.safetensors").unlink()
    shutil.rmtree(broken / "scheduler")  # not read: its absence is no problem
    with pytest.raises(ModelNotReady) as err:
        check_model_dir(broken)
    text = str(err.value)
    assert f"transformer/{shard.name} (listed in diffusion_pytorch_model.safetensors.index.json)" in text
    assert "vae/diffusion_pytorch_model.safetensors" in text and "scheduler" not in text
    assert "Wan-AI/Wan2.1-VACE-14B-diffusers" in text and "docs/models.md" in text
    assert len(err.value.details["problems"]) == 2
    check_model_dir(broken, components=["text_encoder", "tokenizer"])  # what is there still checks out
    with pytest.raises(ModelNotReady, match="transformer/"):
        load_transformer(broken)


def test_missing_directory_says_what_to_download(tmp_path: Path) -> None:
    for path in (tmp_path / "absent", tmp_path / "file.txt"):
        if path.suffix:
            path.write_text("x")
        with pytest.raises(ModelNotReady, match=r"(does not exist|is not a directory).*groupedit-server download"
                                                r".*docs/models\.md") as err:
            check_model_dir(path)
        assert err.value.retryable
    with pytest.raises(ModelNotReady, match="does not exist"):
        load_groupediting_transformer(tmp_path / "absent", None)


def test_not_a_vace_transformer(tiny_model_dir: Path, tmp_path: Path) -> None:
    import shutil

    other = tmp_path / "t2v"
    shutil.copytree(tiny_model_dir, other)
    config = json.loads((other / "transformer" / "config.json").read_text())
    del config["vace_layers"]
    (other / "transformer" / "config.json").write_text(json.dumps(config))
    with pytest.raises(ModelNotReady, match="not a Wan2.1-VACE transformer"):
        check_model_dir(other)


# --- download command (argument handling and the offline error only: it never downloads here) -----------------


def test_download_dry_run_and_offline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    from backend.cli import main as server_main
    from backend.groupediting import download

    assert server_main(["download", "--to", str(tmp_path), "--size", "1.3B", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert f"Wan-AI/Wan2.1-VACE-1.3B-diffusers (~20.5 GB) → {tmp_path / 'Wan2.1-VACE-1.3B-diffusers'}" in out
    assert str(tmp_path / "group-editing" / "epoch-9.safetensors") in out
    assert f"facebook/VGGT-1B model.safetensors (~5 GB) → {tmp_path / 'VGGT-1B' / 'model.safetensors'}" in out
    assert download.main(["--to", str(tmp_path), "--no-base", "--no-weights", "--dry-run"]) == 0
    assert "VGGT-1B" in capsys.readouterr().out
    assert download.main(["--to", str(tmp_path), "--no-base", "--no-weights", "--no-vggt"]) == 2
    with pytest.raises(SystemExit):
        download.main(["--size", "7B", "--to", str(tmp_path)])
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(download, "snapshot_download", None, raising=False)
    assert server_main(["download", "--to", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "HF_HUB_OFFLINE is set" in err and "docs/models.md" in err
    with pytest.raises(ModelNotReady, match="HF_HUB_OFFLINE"):
        download.download_models(tmp_path, weights=False)
    assert not any(tmp_path.iterdir())  # nothing was written
