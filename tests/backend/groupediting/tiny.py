"""Tiny, randomly initialised GroupEditing components and synthetic view groups for the tests.

The configs are the smallest real diffusers / transformers modules (see the model notes): they build in
milliseconds on a CPU and exercise the same code paths as the 1.3B / 14B checkpoints.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from diffusers import AutoencoderKLWan, UniPCMultistepScheduler
from tokenizers import Tokenizer, models, pre_tokenizers, processors
from transformers import PreTrainedTokenizerFast, UMT5Config, UMT5EncoderModel

from backend.groupediting.transformer import GroupEditingTransformer
from backend.groupediting.vggt import AggregatorConfig, VGGTAggregator

TINY_TRANSFORMER = dict(
    patch_size=(1, 2, 2), num_attention_heads=2, attention_head_dim=12, in_channels=16, out_channels=16,
    text_dim=32, freq_dim=256, ffn_dim=32, num_layers=3, cross_attn_norm=True, qk_norm="rms_norm_across_heads",
    rope_max_seq_len=32, vace_layers=[0, 2], vace_in_channels=96,
)
TINY_VAE = dict(base_dim=3, z_dim=16, dim_mult=[1, 1, 1, 1], num_res_blocks=1, temperal_downsample=[False, True, True])
WORDS = ["make", "the", "chair", "red", "blue", "wooden", "same", "in", "four", "scenes", "a", "an", "object", "ugly",
         "blurry", "metal", "green"]


def tiny_transformer(seed: int = 0, **overrides: object) -> GroupEditingTransformer:
    """A tiny GroupEditingTransformer with deterministic random weights."""
    torch.manual_seed(seed)
    return GroupEditingTransformer(**{**TINY_TRANSFORMER, **overrides}).eval()


def tiny_tokenizer() -> PreTrainedTokenizerFast:
    """An offline word-level tokenizer with UMT5's special tokens (pad 0, eos 1, unk 2)."""
    vocab = {"<pad>": 0, "</s>": 1, "<unk>": 2, **{w: i + 3 for i, w in enumerate(WORDS)}}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", 1)])
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="</s>", unk_token="<unk>")


def tiny_text_encoder(seed: int = 0) -> UMT5EncoderModel:
    torch.manual_seed(seed)
    config = UMT5Config(vocab_size=len(WORDS) + 3, d_model=32, d_kv=8, d_ff=32, num_layers=1, num_heads=2,
                        relative_attention_num_buckets=8, relative_attention_max_distance=16, pad_token_id=0,
                        eos_token_id=1, decoder_start_token_id=0)
    return UMT5EncoderModel(config).eval()


def synthetic_group(
    n: int = 2, size: tuple[int, int] = (64, 64), seed: int = 0
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """N smooth random views with a square subject mask that moves a little from view to view."""
    rng = np.random.default_rng(seed)
    h, w = size
    yy, xx = np.mgrid[0:h, 0:w]
    images, masks = [], []
    for i in range(n):
        base = np.stack([xx / w, yy / h, np.full((h, w), 0.5)], -1) * 200 + rng.normal(0, 10, (h, w, 3))
        images.append(np.clip(base, 0, 255).astype(np.uint8))
        m = np.zeros((h, w), bool)
        m[h // 4 + 2 * i : h // 2 + 2 * i, w // 4 : w // 2 + 4] = True
        masks.append(m)
    return images, masks


def moving_group(n: int = 2, size: int = 528, shift: int = 96) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """N views of an asymmetric blob that moves ``shift`` px right per view: big enough for the release's heavy
    Ge-RoPE smoothing (a 21-token Gaussian) to leave whole-token moves on its 33 x 33 grid at 528 px."""
    images, masks = synthetic_group(n, (size, size))
    s = size // 8
    for i, m in enumerate(masks):
        m[:] = False
        m[2 * s : 6 * s, s : 4 * s] = True
        m[2 * s : 3 * s, s : 2 * s] = False  # a notch: the contour has a clear orientation
        masks[i] = np.roll(m, i * shift, axis=1)
    return images, masks


def save_tiny_model_dir(root: Path, max_shard_size: str | None = None) -> Path:
    """A complete tiny diffusers Wan2.1-VACE directory under ``root``: model_index.json, the four components read
    and, as Wan ships it, a UniPC ``scheduler/`` (never read: the sampler is the recipe's).

    ``max_shard_size``: shard the transformer.
    """
    shard = {} if max_shard_size is None else {"max_shard_size": max_shard_size}
    tiny_transformer().save_pretrained(root / "transformer", **shard)
    torch.manual_seed(0)
    AutoencoderKLWan(**TINY_VAE).eval().save_pretrained(root / "vae")
    tiny_text_encoder().save_pretrained(root / "text_encoder")
    tiny_tokenizer().save_pretrained(root / "tokenizer")
    scheduler = UniPCMultistepScheduler(prediction_type="flow_prediction", use_flow_sigmas=True, flow_shift=3.0)
    scheduler.save_pretrained(root / "scheduler")
    (root / "model_index.json").write_text(json.dumps({
        "_class_name": "WanVACEPipeline", "scheduler": ["diffusers", type(scheduler).__name__],
        "text_encoder": ["transformers", "UMT5EncoderModel"], "tokenizer": ["transformers", "PreTrainedTokenizerFast"],
        "transformer": ["diffusers", "WanVACETransformer3DModel"], "vae": ["diffusers", "AutoencoderKLWan"]}))
    return root


#: A VGGT aggregator with the real layout and input size (518 px, 37 x 37 patches, 4 registers) but tiny widths.
TINY_VGGT = AggregatorConfig(embed_dim=32, depth=2, trunk_depth=1, head_dim=16, mlp_hidden=64)


def tiny_vggt(seed: int = 0, config: AggregatorConfig = TINY_VGGT) -> VGGTAggregator:
    """A tiny VGGT aggregator with deterministic random weights (layer scales and tokens random too)."""
    torch.manual_seed(seed)
    model = VGGTAggregator(config)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn_like(p) * 0.2 + (1.0 if p.ndim == 1 and p.shape[0] == config.embed_dim else 0.0))
    return model.eval()


def save_tiny_vggt(path: Path, seed: int = 0, heads: bool = True) -> Path:
    """A VGGT-layout ``model.safetensors``: the tiny aggregator's tensors under ``aggregator.`` and, like the real
    file, tensors of other heads (``camera_head.*``, ``depth_head.*``) that the loader skips."""
    from safetensors.torch import save_file

    tensors = {f"aggregator.{k}": v.contiguous() for k, v in tiny_vggt(seed).state_dict().items()}
    if heads:
        tensors["camera_head.trunk.0.weight"] = torch.randn(8, 64)
        tensors["depth_head.scratch.output_conv2.0.bias"] = torch.randn(4)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(path))
    return path
