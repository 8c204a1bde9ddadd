"""The classical editor: a mask-aware recolour in OKLab that needs no model weights.

For every masked pixel, chroma (a, b) is replaced by the target's and lightness keeps its detail
around the target lightness: ``L' = L_t + (L - mean L) * contrast`` where ``mean L`` is taken over
*all* views' masked pixels, so one surface colour maps to one output colour in every view
(consistent by construction). With a reference image and no colour word, the masked pixels' OKLab
mean and spread are matched to the reference's (a global colour transfer). Pixels outside the mask
are returned bit-identical.

What it cannot do: change shape, add patterns or text, recolour only part of the masked region
(it has no notion of "the shirt" beyond the mask), or reproduce real material reflectance; the
material words only change contrast and highlights.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import InvalidInput
from .base import CancelCheck, EditInput, Editor, Progress, check_cancel
from .instruction import COLOURS, MATERIALS, TONES, parse_instruction

_M1 = np.array([[0.4122214708, 0.5363325363, 0.0514459929], [0.2119034982, 0.6806995451, 0.1073969566],
                [0.0883024619, 0.2817188376, 0.6299787005]])
_M2 = np.array([[0.2104542553, 0.7936177850, -0.0040720468], [1.9779984951, -2.4285922050, 0.4505937099],
                [0.0259040371, 0.7827717662, -0.8086757660]])


def srgb_to_oklab(rgb: np.ndarray) -> np.ndarray:
    """uint8 or [0, 1] float sRGB (..., 3) -> OKLab (..., 3) float64."""
    x = np.asarray(rgb, np.float64)
    if np.issubdtype(np.asarray(rgb).dtype, np.integer):
        x = x / 255.0
    lin = np.where(x <= 0.04045, x / 12.92, ((x + 0.055) / 1.055) ** 2.4)
    return np.cbrt(lin @ _M1.T) @ _M2.T


def oklab_to_srgb(lab: np.ndarray) -> np.ndarray:
    """OKLab (..., 3) -> uint8 sRGB (..., 3), out-of-gamut values clipped."""
    lms = (lab @ np.linalg.inv(_M2).T) ** 3
    lin = np.clip(lms @ np.linalg.inv(_M1).T, 0.0, 1.0)
    x = np.where(lin <= 0.0031308, lin * 12.92, 1.055 * lin ** (1 / 2.4) - 0.055)
    return np.clip(np.rint(x * 255.0), 0, 255).astype(np.uint8)


class ClassicalEditor(Editor):
    name = "classical"

    def edit(self, group: EditInput, instruction: str, options: dict[str, Any], progress: Progress,
             cancel: CancelCheck) -> list[np.ndarray]:
        group.check()
        intent = parse_instruction(instruction)
        if intent.colour is None and group.reference is None:
            raise InvalidInput(
                "the classical editor needs a colour: a name (" + ", ".join(list(COLOURS)[:12]) + ", ...), "
                "a hex value like #2a6f3c, or a reference image; it also understands "
                + ", ".join(list(TONES)[:5]) + " and " + ", ".join(list(MATERIALS)[:5]) + " ..."
            )
        labs = [srgb_to_oklab(img[m]) for img, m in zip(group.images, group.masks)]
        masked = np.concatenate(labs) if labs else np.zeros((0, 3))
        if len(masked) == 0:
            return [img.copy() for img in group.images]
        mean, std = masked.mean(axis=0), masked.std(axis=0) + 1e-6
        if intent.colour is not None:
            target = srgb_to_oklab(np.array(intent.colour, np.uint8))
            target_std = None
        else:
            ref = srgb_to_oklab(group.reference.reshape(-1, 3))
            target, target_std = ref.mean(axis=0), ref.std(axis=0)
        lt = np.clip(target[0] + intent.lightness_shift, 0.05, 0.98)
        out = []
        for i, (img, m, lab) in enumerate(zip(group.images, group.masks, labs)):
            check_cancel(cancel)
            new = np.empty_like(lab)
            if target_std is None:
                detail = (lab[:, 0] - mean[0]) * intent.contrast
                new[:, 0] = lt + detail + intent.highlight * np.maximum(detail, 0.0)
                new[:, 1:] = target[1:] * intent.chroma_factor
            else:  # colour transfer: match mean and spread per channel
                new = (lab - mean) / std * target_std + target
                new[:, 0] += intent.lightness_shift
                new[:, 1:] *= intent.chroma_factor
            edited = img.copy()
            edited[m] = oklab_to_srgb(new)
            out.append(edited)
            progress("edit", i + 1, len(group.images))
        self.send_preview(len(group.images), out)  # one look at the finished edit while the results are written
        return out
