"""Fixtures: tiny GroupEditing components saved with ``save_pretrained``, loaded back with ``from_pretrained``."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from diffusers import AutoencoderKLWan
from transformers import PreTrainedTokenizerFast, UMT5EncoderModel

from backend.groupediting.pipeline import GroupEditingPipeline
from backend.groupediting.transformer import GroupEditingTransformer

from .tiny import save_tiny_model_dir

# The tiny models do a few MFLOP per call: thread hand-offs cost more than they save, and on a busy machine
# several intra-op threads per test make the whole folder many times slower.
torch.set_num_threads(1)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder with transformer/, vae/, text_encoder/, tokenizer/ (and scheduler/) saved by ``save_pretrained``."""
    return save_tiny_model_dir(tmp_path_factory.mktemp("groupediting_tiny"))


@pytest.fixture(scope="session")
def tiny_pipeline(tiny_model_dir: Path) -> GroupEditingPipeline:
    """The tiny pipeline, every component loaded back from disk."""
    return GroupEditingPipeline(
        tokenizer=PreTrainedTokenizerFast.from_pretrained(tiny_model_dir / "tokenizer"),
        text_encoder=UMT5EncoderModel.from_pretrained(tiny_model_dir / "text_encoder"),
        vae=AutoencoderKLWan.from_pretrained(tiny_model_dir / "vae"),
        transformer=GroupEditingTransformer.from_pretrained(tiny_model_dir / "transformer"),
    )
