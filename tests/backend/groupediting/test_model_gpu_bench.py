"""The GPU benchmark script runs end to end in its tiny CPU mode and refuses clearly without CUDA."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest
import torch

SCRIPT = Path(__file__).resolve().parents[3] / "benchmarks" / "model_gpu.py"


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("model_gpu_bench", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_tiny_smoke_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bench = _load()
    modes = ["resident", "group_offload"]
    assert bench.main(["--tiny", "--geometry", "--vggt", "--modes", *modes, "--json", str(tmp_path / "r.json")]) == 0
    out = capsys.readouterr().out
    assert "ratios against the resident tiny 2-view run" in out
    assert all(mode in out for mode in modes) and "leaf_offload" not in out
    assert "VGGT aggregator (tiny)" in out and "Ge-RoPE contour flow (CPU)" in out
    _, geometry = bench.transformer_class()
    assert (tmp_path / "r.json").read_text().count('"geometry": true') == (len(modes) if geometry else 0)
    inputs = bench.make_inputs("tiny", 3, 64, torch.device("cpu"), torch.float32, True)
    assert inputs["geometry_tokens"].shape[1] == 3 * 16  # one VGGT frame per view


def test_full_configs_match_the_released_models() -> None:
    bench = _load()
    with torch.device("meta"):
        sizes = {name: bench.transformer_class()[0](**{**bench.COMMON, **bench.CONFIGS[name]})
                 for name in ("1.3B", "14B")}
    params = {name: sum(p.numel() for p in m.parameters()) / 1e9 for name, m in sizes.items()}
    # transformer + VACE branch: 2.15 B and 17.3 B parameters (the 14B repo's 69 GB of float32 weights)
    assert params["1.3B"] == pytest.approx(2.154, abs=0.01) and params["14B"] == pytest.approx(17.338, abs=0.01)
    assert len(sizes["1.3B"].vace_blocks) == 15 and len(sizes["14B"].vace_blocks) == 8


def test_refuses_without_cuda(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    bench = _load()
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert bench.main([]) == 2
    assert "no CUDA device" in capsys.readouterr().err
