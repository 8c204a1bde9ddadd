"""``groupedit-train``: flow-matching fine-tuning of GroupEditing on dataset groups (docs/training.md).

As the release trains it: a LoRA (rank 32 by default, peft) on the main transformer blocks' attention and
feed-forward Linear layers, the whole VACE branch trained, AdamW (lr 1e-4, weight decay 0.01), everything else
frozen. Each step takes one group of a ``groupedit dataset`` folder: the *before* views and the edited part's masks
are the VACE conditioning (as at inference: the same canvas, mask dilation, Ge-RoPE coordinates of the preset), the
*after* views are the target; the text is the group's description in the preset's prompt template. Flow matching:
``x_t = (1 - s) x0 + s e`` with ``s`` drawn uniformly and shifted by the preset's shift, the transformer predicts
``e - x0`` at timestep ``1000 s``, the loss is the mean squared error.

Checkpoints (``OUT/checkpoint-<step>/``: the weights in our format, which the server loads with ``--weights``, and
the optimiser's state) every ``save_every`` steps and at the end; a run started again on the same ``OUT`` resumes
from the newest. Multi-GPU through accelerate (``accelerate launch -m backend.groupediting.train ...``: one process
per GPU, the model wrapped for data parallelism, each process drawing its own groups; the main process writes the
checkpoints); bf16 on CUDA. With ``vggt``, geometry tokens as at inference. Not yet: the release's own data layout.
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from accelerate import Accelerator

from blender_addon.core.format.viewset import ViewSet
from blender_addon.core.options import add_arguments, from_arguments, option

from ..errors import BackendError, InvalidInput
from .conditioning import dilate_mask, encode_views, prepare_frames, vace_context
from .coordinates import geometry_token_coordinates, rope_coordinates
from .pipeline import GroupEditingPipeline, model_canvas, token_side
from .prompt import edit_text
from .settings import EditSettings
from .weights import VACE_PREFIXES, save_groupedit_weights

logger = logging.getLogger(__name__)

#: The main blocks' Linear layers the LoRA adapts (diffusers names; the VACE blocks are trained whole).
LORA_TARGETS = r"blocks\.\d+\.(attn1\.(to_q|to_k|to_v|to_out\.0)|attn2\.(to_q|to_k|to_v|to_out\.0)|ffn\.net\.(0\.proj|2))"
CHECKPOINT = "checkpoint-"
WEIGHTS_FILE = "groupedit.safetensors"


@dataclass
class TrainSettings:
    """How to fine-tune; defaults as the release trains."""

    model_dir: str = option("", "the diffusers Wan2.1-VACE directory (the base)")
    data: list[str] = field(default_factory=list)
    out: str = option("", "folder for checkpoints (run again on it to resume)")
    weights: str | None = option(None, "GroupEditing weights to start from (the release file or ours; default: the "
                                       "base alone)")
    vggt: str | None = option(None, "VGGT-1B's model.safetensors: train with geometry tokens, as inference uses them")
    steps: int = option(1000, "optimiser steps", low=1, high=10_000_000)
    lr: float = option(1e-4, "AdamW learning rate", low=1e-8, high=1.0)
    weight_decay: float = option(0.01, "AdamW weight decay", low=0.0, high=1.0)
    rank: int = option(32, "LoRA rank on the main blocks", low=1, high=1024)
    save_every: int = option(500, "steps between checkpoints", low=1, high=10_000_000)
    seed: int = option(0, "seed of the group order, the noise and the timesteps", low=0, high=2**31 - 1)
    preset: str = option("release", "how the conditioning is made, as at inference (recipe presets)")
    pixel_budget: int | None = option(None, "total pixels of a group at model resolution (default: the preset's)",
                                      low=16 * 16, high=64_000_000)
    gradient_checkpointing: bool = option(True, "recompute activations in the backward pass (less memory)")
    max_sequence_length: int = option(512, "text tokens", low=8, high=4096)


def dataset_groups(folders: list[str]) -> list[tuple[Path, dict[str, Any]]]:
    """Every kept group of the dataset folders: (group folder, its manifest entry)."""
    out = []
    for folder in folders:
        path = Path(folder) / "manifest.json"
        if not path.is_file():
            raise InvalidInput(f"{folder} is not a dataset (no manifest.json): make one with groupedit dataset")
        out += [(Path(folder) / g["id"], g) for g in json.loads(path.read_text())["groups"] if "dropped" not in g]
    if not out:
        raise InvalidInput("the datasets hold no group to train on")
    return out


def lora_tensors(model: torch.nn.Module, alpha: float) -> dict[str, torch.Tensor]:
    """The model's LoRA matrices in our format's names (``<module>.lora_A.weight`` ...) with each module's alpha."""
    out: dict[str, torch.Tensor] = {}
    for name, param in model.named_parameters():
        m = re.fullmatch(r"(.+)\.(lora_A|lora_B)\.[^.]+\.weight", name)
        if m:
            out[f"{m.group(1)}.{m.group(2)}.weight"] = param
            out[f"{m.group(1)}.alpha"] = torch.tensor(float(alpha))
    return out


class Trainer:
    """Fine-tunes ``pipe``'s transformer (see the module docstring)."""

    def __init__(self, pipe: GroupEditingPipeline, settings: TrainSettings) -> None:
        from peft import LoraConfig

        self.pipe, self.s = pipe, settings
        self.groups = dataset_groups(settings.data)
        budget = {} if settings.pixel_budget is None else {"pixel_budget": settings.pixel_budget}
        self.edit = EditSettings(preset=settings.preset, **budget).resolved()
        self.device = next(pipe.transformer.parameters()).device
        for module in (pipe.text_encoder, pipe.vae, pipe.transformer):
            module.requires_grad_(False)
        transformer = pipe.transformer
        transformer.add_adapter(LoraConfig(r=settings.rank, lora_alpha=settings.rank, target_modules=LORA_TARGETS,
                                           init_lora_weights=True))
        for name, param in transformer.named_parameters():
            if name.startswith(VACE_PREFIXES) or ".lora_" in name:
                param.requires_grad_(True)
        if settings.gradient_checkpointing and hasattr(transformer, "enable_gradient_checkpointing"):
            transformer.enable_gradient_checkpointing()
        self.trainable = [p for p in transformer.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(self.trainable, lr=settings.lr, weight_decay=settings.weight_decay)
        # one process per GPU under `accelerate launch` (the model wrapped for data parallelism), else this one
        self.accelerator = Accelerator(cpu=self.device.type == "cpu")
        self.model, self.optimizer = self.accelerator.prepare(transformer, optimizer)
        self.step_done = 0
        rank = self.accelerator.process_index  # each process draws its own groups, noise and timesteps
        self.rng = np.random.default_rng([settings.seed, rank])
        self.generator = torch.Generator("cpu").manual_seed(settings.seed * 1009 + rank)

    # ---------------------------------------------------------------------------------------------- a step
    def inputs(self, root: Path, entry: dict[str, Any]) -> dict[str, Any]:
        """One group's tensors: the target latents ``x0``, the VACE ``context``, the ``prompt`` embedding and the
        Ge-RoPE coordinates of both branches (``main``, ``vace``)."""
        before, after = ViewSet.read(root / "before"), ViewSet.read(root / "after")
        images = [before.load(v, "colour")[..., :3] for v in before.views]
        targets = [after.load(v, "colour")[..., :3] for v in after.views]
        masks = [before.load(v, "region" if "region" in v.files else "mask") for v in before.views]
        s = self.edit
        layout, model_images, model_masks = model_canvas(images, masks, s.pixel_budget)
        _, model_targets, _ = model_canvas(targets, masks, s.pixel_budget)
        video, vmask = prepare_frames(model_images, model_masks, dilation=s.mask_dilation)
        target, _ = prepare_frames(model_targets, model_masks, dilation=s.mask_dilation)
        dilated = [f.numpy() > 0.5 for f in vmask[0, 0]]
        dtype = self.pipe.transformer.dtype
        with torch.no_grad():
            context, _ = vace_context(self.pipe.vae, video.to(self.device), vmask.to(self.device))
            x0 = encode_views(self.pipe.vae, target.to(self.device))
            text = edit_text(s.recipe, entry["edit"]["instruction"], len(images), entry["edit"]["description"],
                             entry.get("object"))
            prompt, _ = self.pipe.encode_prompt(text.prompt, None, self.s.max_sequence_length, self.device, dtype)
        coords = rope_coordinates(s.recipe, layout, dilated, None, s.flow_sigma)
        as_tensor = (lambda c: None if c is None else torch.from_numpy(c)[None].to(self.device))  # noqa: E731
        tokens = token_coords = None
        if self.pipe.geometry_encoder is not None:  # geometry tokens as at inference: VGGT on the original views
            keep = [dilate_mask(np.asarray(m, bool), int(round(s.mask_dilation * im.shape[0] / z[0])))
                    for m, im, z in zip(masks, images, layout.sizes)]
            with torch.no_grad():
                tokens = self.pipe.token_cache.get(self.pipe.geometry_encoder, images, keep).to(self.device)
            n = len(images)
            token_coords = as_tensor(geometry_token_coordinates(n, layout.grid, n, token_side(tokens, n)))
        return {"x0": x0, "context": context.to(dtype), "prompt": prompt, "main": as_tensor(coords.main),
                "vace": as_tensor(coords.vace), "tokens": tokens, "token_coords": token_coords}

    def loss(self, inputs: dict[str, Any], sigma: float | None = None, noise: torch.Tensor | None = None
             ) -> torch.Tensor:
        """The flow-matching loss of one group (:meth:`inputs`) at noise level ``sigma`` with ``noise`` (default:
        drawn: sigma uniform, shifted by the preset's shift)."""
        x0 = inputs["x0"]
        if sigma is None:
            shift = float(self.edit.shift)
            u = float(torch.rand((), generator=self.generator))
            sigma = shift * u / (1.0 + (shift - 1.0) * u)
        if noise is None:
            noise = torch.randn(x0.shape, generator=self.generator).to(x0.device)
        noisy = (1.0 - sigma) * x0 + sigma * noise
        dtype = self.pipe.transformer.dtype
        scales = torch.full((len(self.pipe.transformer.config.vace_layers),), float(self.edit.conditioning_scale),
                            device=self.device, dtype=dtype)
        timestep = torch.tensor([1000.0 * sigma], device=self.device)
        if self.edit.recipe.sampler.timestep_bf16:  # the release casts the timestep to bf16 (training too)
            timestep = timestep.to(torch.bfloat16).float()
        pred = self.model(
            hidden_states=noisy.to(dtype), timestep=timestep, encoder_hidden_states=inputs["prompt"],
            control_hidden_states=inputs["context"], control_hidden_states_scale=scales, rope_coords=inputs["main"],
            vace_rope_coords=inputs["vace"], geometry_tokens=inputs.get("tokens"),
            geometry_coords=inputs.get("token_coords"), return_dict=False)[0].float()
        return torch.nn.functional.mse_loss(pred, noise - x0)

    def step(self) -> float:
        root, entry = self.groups[int(self.rng.integers(len(self.groups)))]
        self.model.train()
        loss = self.loss(self.inputs(root, entry))
        self.optimizer.zero_grad(set_to_none=True)
        self.accelerator.backward(loss)
        self.accelerator.clip_grad_norm_(self.trainable, 1.0)
        self.optimizer.step()
        self.step_done += 1
        return float(loss.detach())

    # ---------------------------------------------------------------------------------------------- checkpoints
    def save(self, folder: Path) -> Path:
        """Write a checkpoint (the weights in our format and the optimiser's state) into ``folder`` whole (the main
        process writes; the others wait)."""
        self.accelerator.wait_for_everyone()
        if not self.accelerator.is_main_process:
            return folder / WEIGHTS_FILE
        part = folder.with_name(folder.name + ".part")
        part.mkdir(parents=True, exist_ok=True)
        save_groupedit_weights(self.pipe.transformer, part / WEIGHTS_FILE, covers=VACE_PREFIXES,
                               loras=lora_tensors(self.pipe.transformer, self.s.rank),
                               extra_metadata={"trained_steps": str(self.step_done), "preset": self.s.preset})
        torch.save({"optimizer": self.optimizer.state_dict(), "step": self.step_done,
                    "trainable": [p.detach().cpu() for p in self.trainable],
                    "rng": self.rng.bit_generator.state, "generator": self.generator.get_state()},
                   part / "state.pt")
        if folder.exists():
            import shutil

            shutil.rmtree(folder)
        part.rename(folder)
        return folder / WEIGHTS_FILE

    def resume(self, out: Path) -> bool:
        """Continue from the newest checkpoint in ``out``; False when there is none."""
        found = sorted((p for p in out.glob(CHECKPOINT + "*") if (p / "state.pt").is_file()),
                       key=lambda p: int(p.name[len(CHECKPOINT):]))
        if not found:
            return False
        state = torch.load(found[-1] / "state.pt", weights_only=False)
        with torch.no_grad():
            for p, saved in zip(self.trainable, state["trainable"]):
                p.copy_(saved.to(p.device, p.dtype))
        self.optimizer.load_state_dict(state["optimizer"])
        self.step_done = int(state["step"])
        self.rng.bit_generator.state = state["rng"]
        self.generator.set_state(state["generator"])
        logger.info("resumed from %s (step %d)", found[-1], self.step_done)
        return True

    def train(self, say: Any = print) -> list[float]:
        out = Path(self.s.out)
        out.mkdir(parents=True, exist_ok=True)
        self.resume(out)
        losses = []
        while self.step_done < self.s.steps:
            losses.append(self.step())
            if self.step_done % max(1, self.s.steps // 20) == 0:
                say(f"step {self.step_done}/{self.s.steps}: loss {losses[-1]:.4f}")
            if self.step_done % self.s.save_every == 0 or self.step_done == self.s.steps:
                path = self.save(out / f"{CHECKPOINT}{self.step_done}")
                say(f"checkpoint: {path}")
        return losses


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="groupedit-train", description=__doc__.splitlines()[0])
    p.add_argument("data", nargs="+", help="dataset folders (groupedit dataset)")
    add_arguments(p, TrainSettings)
    p.add_argument("--dtype", choices=["fp32", "bf16"], help="default: bf16 on CUDA, fp32 on the CPU")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO)
    settings = from_arguments(TrainSettings, args, data=args.data)
    if not settings.model_dir or not settings.out:
        print("groupedit-train: error: give --model-dir (the base) and --out (the checkpoints)", file=sys.stderr)
        return 2
    try:
        from .loader import load_pipeline
        from .settings import LoadSettings

        device = "cuda" if torch.cuda.is_available() else "cpu"
        dtype = args.dtype or ("bf16" if device == "cuda" else "fp32")
        pipe, _ = load_pipeline(LoadSettings(model_dir=settings.model_dir, weights=settings.weights, dtype=dtype,
                                             device=device, vram_check=False, vggt=settings.vggt))
        losses = Trainer(pipe, settings).train()
    except BackendError as exc:
        print(f"groupedit-train: error: {exc}", file=sys.stderr)
        return 2
    if losses:
        print(f"trained {len(losses)} steps: loss {np.mean(losses[:5]):.4f} at the start, "
              f"{np.mean(losses[-5:]):.4f} at the end")
    return 0


if __name__ == "__main__":
    sys.exit(main())

