"""The pseudo-video: N views as N latent frames, and the VACE context that tells the model what to keep.

* Views are stacked along time, ``(1, 3, N, H, W)``, all the same size (the pipeline pads smaller ones).
* ``AutoencoderKLWan`` is causal in time and compresses 4 frames into one; a group of independent views must not be
  mixed, so each view is encoded as its own single-frame video (a batch of N one-frame videos) and the N
  resulting latent frames are concatenated along time: N views -> N latent frames, ``(1, z, N, H/8, W/8)``.
* Edit region (as the public release prepares it): the mask is dilated (5 px by default, OpenCV's ellipse kernel),
  the dilated region of the image is filled with grey 127, and the dilated mask is the VACE mask.
* VACE context per frame (standard VACE): ``inactive = video * (1 - m)`` and ``reactive = video * m`` encoded to
  latents (z channels each) plus the mask pixel-unshuffled 8 x 8 (64 channels): ``2 z + 64 = 96`` channels with
  ``z = 16``. Unlike diffusers' ``WanVACEPipeline`` the mask is *not* resized in time (one mask per view).

Pixel values entering the VAE are in [-1, 1] (uint8 ``x`` -> ``x / 127.5 - 1``); latents are normalised with the
VAE config's ``latents_mean`` / ``latents_std``.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from diffusers import AutoencoderKLWan

from ..errors import InvalidInput

#: Grey value the release paints into the edited region (uint8).
FILL_GREY = 127
#: Spatial VAE factor of Wan2.1.
VAE_SCALE = 8


def dilate_mask(mask: np.ndarray, radius: int = 5) -> np.ndarray:
    """Dilate a bool (H, W) mask as the release does: OpenCV's ``MORPH_ELLIPSE`` kernel of side ``2 radius + 1``
    (a little fuller than the Euclidean disk at the sides), zero outside the image (0: unchanged)."""
    mask = np.asarray(mask, bool)
    if radius <= 0 or not mask.any():
        return mask.copy()
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))
    return cv2.dilate(mask.astype(np.uint8), kernel, borderType=cv2.BORDER_CONSTANT, borderValue=0) > 0


def prepare_frames(
    images: Sequence[np.ndarray], masks: Sequence[np.ndarray], dilation: int = 5, fill: int = FILL_GREY
) -> tuple[torch.Tensor, torch.Tensor]:
    """The VACE "video" and mask of a group of same-size views.

    Args:
        images: N uint8 (H, W, 3) views, all the same size (H, W multiples of 16).
        masks: N bool (H, W), True where the edit applies.
        dilation: mask dilation in pixels.
        fill: uint8 grey painted into the dilated edit region.

    Returns:
        ``video`` (1, 3, N, H, W) float32 in [-1, 1], edit region grey; ``mask`` (1, 1, N, H, W) float32 in {0, 1}
        (the dilated mask).
    """
    if not images or len(images) != len(masks):
        raise InvalidInput(f"need one mask per view, got {len(images)} images and {len(masks)} masks")
    size = images[0].shape[:2]
    frames, ms = [], []
    for i, (im, m) in enumerate(zip(images, masks)):
        if im.shape[:2] != size or m.shape != size:
            raise InvalidInput(f"view {i}: all views must share one size {size}, got {im.shape[:2]} / {m.shape}")
        d = dilate_mask(m, dilation)
        filled = np.where(d[..., None], np.uint8(fill), im)
        frames.append(torch.from_numpy(filled.astype(np.float32) / 127.5 - 1.0).permute(2, 0, 1))
        ms.append(torch.from_numpy(d.astype(np.float32))[None])
    return torch.stack(frames, dim=1)[None], torch.stack(ms, dim=1)[None]


def _latent_stats(vae: AutoencoderKLWan, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    z = vae.config.z_dim
    mean = torch.tensor(vae.config.latents_mean, dtype=torch.float32, device=device).view(1, z, 1, 1, 1)
    std = torch.tensor(vae.config.latents_std, dtype=torch.float32, device=device).view(1, z, 1, 1, 1)
    return mean, std


def encode_views(vae: AutoencoderKLWan, video: torch.Tensor) -> torch.Tensor:
    """Encode each frame of ``video`` (1, 3, N, H, W) as its own one-frame video.

    Returns normalised latents (1, z, N, H/8, W/8) float32 (the distribution's mode, as diffusers' VACE pipeline).
    """
    if video.ndim != 5 or video.shape[0] != 1:
        raise ValueError(f"video must be (1, 3, N, H, W), got {tuple(video.shape)}")
    device = video.device
    frames = video[0].transpose(0, 1).unsqueeze(2).to(vae.dtype)  # (N, 3, 1, H, W)
    latents = vae.encode(frames).latent_dist.mode().float()  # (N, z, 1, h, w)
    mean, std = _latent_stats(vae, device)
    latents = (latents.to(device) - mean) / std
    return latents.squeeze(2).transpose(0, 1).unsqueeze(0)  # (1, z, N, h, w)


def decode_views(vae: AutoencoderKLWan, latents: torch.Tensor) -> torch.Tensor:
    """Decode normalised latents (1, z, N, h, w) frame by frame; returns (1, 3, N, 8h, 8w) float32 in [-1, 1]."""
    mean, std = _latent_stats(vae, latents.device)
    z = latents.float() * std + mean
    frames = z[0].transpose(0, 1).unsqueeze(2).to(vae.dtype)  # (N, z, 1, h, w)
    video = vae.decode(frames, return_dict=False)[0].float().clamp(-1.0, 1.0)  # (N, 3, 1, H, W)
    return video.squeeze(2).transpose(0, 1).unsqueeze(0)


def unshuffle_mask(mask: torch.Tensor, factor: int = VAE_SCALE) -> torch.Tensor:
    """Pixel-unshuffle a mask (1, 1, N, H, W) to (1, factor², N, H/factor, W/factor), per frame.

    Channel ``k = a * factor + b`` holds pixel ``(factor * i + a, factor * j + b)``, the order of diffusers'
    ``WanVACEPipeline.prepare_masks`` (there followed by a temporal resize that is skipped here).
    """
    _, _, n, h, w = mask.shape
    if h % factor or w % factor:
        raise ValueError(f"mask size {h}x{w} is not a multiple of {factor}")
    m = mask[0, 0].view(n, h // factor, factor, w // factor, factor)
    return m.permute(2, 4, 0, 1, 3).flatten(0, 1).unsqueeze(0)


def vace_context(vae: AutoencoderKLWan, video: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """VACE context (1, 2z + 64, N, h, w) of a pseudo-video; also returns the inactive latents (1, z, N, h, w).

    ``video`` (1, 3, N, H, W) in [-1, 1] (edit region already grey), ``mask`` (1, 1, N, H, W) in {0, 1}.
    """
    m = (mask > 0.5).to(video.dtype)
    n = video.shape[2]
    both = encode_views(vae, torch.cat([video * (1.0 - m), video * m], dim=2))  # one batch of 2N one-frame videos
    inactive, reactive = both[:, :, :n], both[:, :, n:]
    context = torch.cat([inactive, reactive, unshuffle_mask(m)], dim=1)
    return context, inactive


def fit_latent_rgb(latents: torch.Tensor, video: torch.Tensor) -> torch.Tensor:
    """Least-squares linear map from latents to RGB, for cheap previews.

    ``latents`` (1, z, N, h, w) and the ``video`` (1, 3, N, 8h, 8w) they encode; returns (z + 1, 3) float32 weights
    (the last row a bias) such that ``[latent, 1] @ W`` approximates the 8 x 8 mean colour in [-1, 1].
    """
    z, n, h, w = latents.shape[1:]
    target = F.avg_pool2d(video[0].transpose(0, 1).float(), VAE_SCALE)  # (N, 3, h, w)
    x = latents[0].permute(1, 2, 3, 0).reshape(-1, z).float()
    y = target.permute(0, 2, 3, 1).reshape(-1, 3)
    x = torch.cat([x, torch.ones_like(x[:, :1])], dim=1)
    reg = 1e-3 * torch.eye(z + 1, device=x.device)
    return torch.linalg.solve(x.T @ x + reg, x.T @ y)


def latent_preview(latents: torch.Tensor, weights: torch.Tensor) -> list[np.ndarray]:
    """Preview images of latents (1, z, N, h, w) with a :func:`fit_latent_rgb` map: N uint8 (h, w, 3)."""
    z = latents.shape[1]
    x = latents[0].permute(1, 2, 3, 0).float()  # (N, h, w, z)
    rgb = x @ weights[:z].to(x.device) + weights[z].to(x.device)
    rgb = ((rgb.clamp(-1, 1) + 1.0) * 127.5).round().to(torch.uint8).cpu().numpy()
    return list(rgb)


def to_uint8(video: torch.Tensor) -> list[np.ndarray]:
    """(1, 3, N, H, W) in [-1, 1] -> N uint8 (H, W, 3)."""
    frames = ((video[0].float().clamp(-1, 1) + 1.0) * 127.5).round().to(torch.uint8)
    return [f.permute(1, 2, 0).cpu().numpy() for f in frames.transpose(0, 1)]


def paste_back(original: np.ndarray, edited: np.ndarray, mask: np.ndarray, dilation: int, feather: int) -> np.ndarray:
    """The edit inside the dilated mask, the original beyond a feather band around it.

    ``original`` / ``edited``: uint8 (H, W, 3); ``mask``: bool (H, W) edit region; ``dilation``: disk radius in
    pixels; ``feather``: band width in pixels. A pixel at distance ``d`` (Euclidean, pixels) from the dilated mask
    takes ``w = 1 - d / (feather + 1)`` of the edit for ``d <= feather`` (rounded to uint8); pixels farther away
    are the original's, bit for bit; ``feather = 0`` is a hard edge.
    """
    inside = dilate_mask(np.asarray(mask, bool), dilation)
    if feather <= 0 or not inside.any():
        return np.where(inside[..., None], edited, original)
    distance = cv2.distanceTransform((~inside).astype(np.uint8), cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
    weight = np.where(distance <= feather, 1.0 - distance / (feather + 1.0), 0.0)[..., None]
    blended = np.rint(weight * edited.astype(np.float32) + (1.0 - weight) * original.astype(np.float32))
    return np.where(weight > 0, blended.astype(np.uint8), original)
