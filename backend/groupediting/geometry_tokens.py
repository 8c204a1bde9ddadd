"""Geometry tokens of a group: VGGT aggregator tokens prepared as the release prepares them, or read from its files.

Release preprocessing (``vggt/infer-out-from-video-4frame.py``, "pad" mode), per view:

1. the **original** view with every pixel outside the dilated edit mask set to white;
2. resized (PIL bicubic) so that its longer side is 518 and the other ``round(side * 518 / longer / 14) * 14``;
3. values in [0, 1], padded with white (1.0) to 518 x 518, centred (the odd pixel at the bottom / right).

All N views go through the aggregator as one sequence (bfloat16 autocast on CUDA, float32 on the CPU); the last
layer's tokens (1, N, 5 + 1369, 2048) lose their 5 special tokens per view and are flattened to (1, N*1369, 2048),
the geometry tokens the transformer appends as keys/values (their coordinates are in :mod:`.coordinates`).

The release stores these tokens as ``<name>_aggregated_tokens.npy``, the full last layer (1, 4, 1374, 2048); such
files (or arrays with the special tokens already dropped) are accepted with a job (:func:`backend.viewdata.token_array`).
"""

from __future__ import annotations

import hashlib
import logging
from collections import OrderedDict
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from .vggt import VGGTAggregator

logger = logging.getLogger(__name__)

#: VGGT's input side and patch size in pixels.
VGGT_SIZE = 518
VGGT_PATCH = 14


def vggt_image(image: np.ndarray, keep: np.ndarray, size: int = VGGT_SIZE, patch: int = VGGT_PATCH) -> torch.Tensor:
    """One view as the release feeds VGGT: (3, size, size) float32 in [0, 1] (see the module doc).

    ``image``: uint8 (H, W, 3); ``keep``: bool (H, W), the dilated edit mask (white outside it).
    """
    img = np.array(image, dtype=np.uint8, copy=True)
    img[~np.asarray(keep, bool)] = 255
    h, w = img.shape[:2]
    if w >= h:
        new_w, new_h = size, round(h * (size / w) / patch) * patch
    else:
        new_h, new_w = size, round(w * (size / h) / patch) * patch
    resized = Image.fromarray(img).resize((new_w, new_h), Image.Resampling.BICUBIC)
    x = torch.from_numpy(np.asarray(resized, np.float32) / 255.0).permute(2, 0, 1)
    dh, dw = size - new_h, size - new_w
    return F.pad(x, (dw // 2, dw - dw // 2, dh // 2, dh - dh // 2), value=1.0)


def compute_geometry_tokens(aggregator: VGGTAggregator, images: Sequence[np.ndarray], keep: Sequence[np.ndarray]
                            ) -> torch.Tensor:
    """(1, N*P, 2C) float32 tokens on the CPU (P = 1369 for VGGT-1B) of N views (see the module doc)."""
    config = aggregator.config
    device = next(aggregator.parameters()).device
    batch = torch.stack([vggt_image(im, k, config.img_size, config.patch_size) for im, k in zip(images, keep)])
    cuda = device.type == "cuda"
    with torch.no_grad(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=cuda):
        tokens = aggregator(batch[None].to(device))
    return tokens[:, :, config.special_tokens:].flatten(1, 2).float().cpu()


class TokenCache:
    """A small LRU of geometry tokens keyed by the exact VGGT inputs (views and masks), so that editing the same
    views again (another instruction, seed or preset) does not run VGGT again."""

    def __init__(self, size: int = 4) -> None:
        self.size = size
        self._items: OrderedDict[str, torch.Tensor] = OrderedDict()

    @staticmethod
    def key(images: Sequence[np.ndarray], keep: Sequence[np.ndarray]) -> str:
        digest = hashlib.sha1()
        for im, k in zip(images, keep):
            digest.update(str(np.shape(im)).encode())
            digest.update(np.ascontiguousarray(im).tobytes())
            digest.update(np.packbits(np.asarray(k, bool)).tobytes())
        return digest.hexdigest()

    def get(self, aggregator: VGGTAggregator, images: Sequence[np.ndarray], keep: Sequence[np.ndarray]
            ) -> torch.Tensor:
        """Cached tokens for these inputs, computed on a miss."""
        key = self.key(images, keep)
        if key in self._items:
            self._items.move_to_end(key)
            return self._items[key]
        tokens = compute_geometry_tokens(aggregator, images, keep)
        self._items[key] = tokens
        while len(self._items) > self.size:
            self._items.popitem(last=False)
        return tokens
