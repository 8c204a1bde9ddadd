"""``groupedit-eval``: an editor on held-out dataset groups (``groupedit dataset``), scored against the true edits.

Per group, the editor edits the *before* views (with the group's instruction, description and the edited part's
masks) and its outputs are compared with what only exact data allows: the true edited renders (*after*): PSNR and
SSIM on the object's pixels, PSNR inside the edited part and, against the *before* views, outside it (what the edit
had to leave alone), and the exact cross-view consistency of the outputs (:mod:`blender_addon.core.consistency`).
Learned scores, as the paper's table reports them, need their weights on disk (``--scorers DIR``): ``clip`` (the
outputs against the description: 100 x cosine of CLIP embeddings), ``dino`` (each output against its true edit:
cosine of DINOv2 embeddings) and ``aesthetic`` (the LAION aesthetic predictor on the CLIP image embeddings). Asked for without their weights, the evaluation refuses before it starts.
A table per run (``DIR/eval.json`` and printed), the mean of each column over the groups; groups the editor cannot
edit (the classical editor needs a colour in the instruction) are listed with the reason, outside the means.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys
from pathlib import Path
from typing import Any

import numpy as np

from blender_addon.core.consistency import viewset_consistency
from blender_addon.core.format.viewset import ViewSet
from blender_addon.core.metrics import psnr, ssim

from .editors import get_editor
from .errors import BackendError, InvalidInput
from .viewset_edit import edit_viewset, write_edited

log = logging.getLogger(__name__)

#: Learned scores and the folder under ``--scorers`` their weights are read from.
SCORERS = {"clip": "clip", "dino": "dino", "aesthetic": "aesthetic"}
#: CLIP's and ImageNet's pixel normalisation.
_CLIP_MEAN, _CLIP_STD = (0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711)
_IMAGENET_MEAN, _IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def _pixels(images: list[np.ndarray], size: int, mean: tuple[float, ...], std: tuple[float, ...]) -> Any:
    """N uint8 (H, W, 3) -> a float tensor (N, 3, size, size), resized (bicubic) and normalised."""
    import torch
    from PIL import Image

    arrays = [np.asarray(Image.fromarray(im).resize((size, size), Image.BICUBIC), np.float32) / 255.0
              for im in images]
    x = (np.stack(arrays) - np.asarray(mean, np.float32)) / np.asarray(std, np.float32)
    return torch.from_numpy(x.transpose(0, 3, 1, 2).copy())


class Scorers:
    """The learned scorers found under ``root`` (``clip/``: a CLIPModel with its tokenizer; ``dino/``: a Dinov2Model),
    loaded once, on the CPU."""

    def __init__(self, root: Path | None, wanted: list[str]) -> None:
        self.clip = self.dino = self.aesthetic = None
        for name in wanted:
            if name not in SCORERS:
                raise InvalidInput(f"unknown score {name!r}; learned scores: {', '.join(SCORERS)}")
            folder = (root / SCORERS[name]) if root is not None else None
            present = folder is not None and (folder / "config.json").is_file() if name != "aesthetic" else \
                folder is not None and _head_file(folder) is not None
            if name == "aesthetic" and "clip" not in wanted:
                raise InvalidInput("the aesthetic score reads CLIP image embeddings: ask for clip too (--metrics "
                                   "clip,aesthetic)")
            if not present:
                raise InvalidInput(f"the {name} score needs its weights on disk: put them in "
                                   f"{folder or '<--scorers DIR>/' + SCORERS[name]} (docs/training.md says which), "
                                   f"or leave {name} out of --metrics")
        import torch  # noqa: F401  (only with learned scores)

        if "clip" in wanted:
            from transformers import AutoTokenizer, CLIPModel

            self.clip = CLIPModel.from_pretrained(root / "clip").eval()
            self.clip_tokenizer = AutoTokenizer.from_pretrained(root / "clip")
        if "dino" in wanted:
            from transformers import Dinov2Model

            self.dino = Dinov2Model.from_pretrained(root / "dino").eval()
        self.aesthetic = _linear_head(_head_file(root / "aesthetic")) if "aesthetic" in wanted else None

    def _image_embeddings(self, images: list[np.ndarray]) -> Any:
        import torch

        size = self.clip.config.vision_config.image_size
        with torch.no_grad():
            return _features(self.clip.get_image_features(pixel_values=_pixels(images, size, _CLIP_MEAN, _CLIP_STD)))

    def aesthetic_score(self, images: list[np.ndarray]) -> float:
        """The LAION aesthetic predictor's mean score: its linear layers on the normalised CLIP image embeddings."""
        import torch

        x = torch.nn.functional.normalize(self._image_embeddings(images).float(), dim=-1)
        for weight, bias in self.aesthetic:
            x = x @ weight.T + bias
        return float(x.mean())

    def clip_score(self, images: list[np.ndarray], text: str) -> float:
        import torch

        with torch.no_grad():
            image = self._image_embeddings(images)
            tokens = self.clip_tokenizer([text], padding=True, return_tensors="pt")
            words = _features(self.clip.get_text_features(input_ids=tokens.input_ids,
                                                          attention_mask=tokens.attention_mask))
        image = torch.nn.functional.normalize(image, dim=-1)
        words = torch.nn.functional.normalize(words, dim=-1)
        return float(100.0 * (image @ words.T).mean())

    def dino_score(self, images: list[np.ndarray], targets: list[np.ndarray]) -> float:
        import torch

        size = self.dino.config.image_size
        with torch.no_grad():
            a = self.dino(pixel_values=_pixels(images, size, _IMAGENET_MEAN, _IMAGENET_STD)).pooler_output
            b = self.dino(pixel_values=_pixels(targets, size, _IMAGENET_MEAN, _IMAGENET_STD)).pooler_output
        return float(torch.nn.functional.cosine_similarity(a, b, dim=-1).mean())


def _head_file(folder: Path) -> Path | None:
    """The aesthetic predictor's weights in ``folder``: ``*.safetensors`` or ``*.pth`` (the LAION files)."""
    found = sorted(folder.glob("*.safetensors")) + sorted(folder.glob("*.pth")) if folder.is_dir() else []
    return found[0] if found else None


def _linear_head(path: Path) -> list[tuple[Any, Any]]:
    """The (weight, bias) pairs of the LAION aesthetic predictor, in order: its linear model (``weight``/``bias``) or
    its MLP (``layers.N.weight``/``layers.N.bias``; the released MLP has no activations, dropout aside)."""
    import torch

    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        state = load_file(str(path))
    else:
        state = torch.load(path, map_location="cpu", weights_only=True)
    names = sorted({k.rsplit(".", 1)[0] for k in state if k.endswith(".weight")},
                   key=lambda n: [int(t) if t.isdigit() else t for t in n.split(".")])
    if not names:
        raise InvalidInput(f"{path} holds no linear layers (weight/bias): not an aesthetic predictor")
    prefix = lambda n: f"{n}." if n else ""  # noqa: E731
    return [(state[f"{prefix(n)}weight"].float(), state.get(f"{prefix(n)}bias", torch.zeros(1)).float())
            for n in names]


def _features(out: Any) -> Any:
    """The projected embeddings from what ``get_image_features`` / ``get_text_features`` return (a tensor, or an
    output whose ``pooler_output`` holds them, depending on the transformers version)."""
    return out.pooler_output if hasattr(out, "pooler_output") else out


def _pooled_psnr(a: list[np.ndarray], b: list[np.ndarray], masks: list[np.ndarray]) -> float:
    x, y = (np.concatenate([im[..., :3][m] for im, m in zip(images, masks)]) for images in (a, b))
    return psnr(x, y, np.ones(len(x), bool))


def evaluate_group(editor: Any, root: Path, entry: dict[str, Any], scorers: Scorers | None, out: Path | None
                   ) -> dict[str, Any]:
    """Edit one group's before views and score the result (see the module docstring)."""
    before, after = ViewSet.read(root / "before"), ViewSet.read(root / "after")
    edit = entry["edit"]
    result = edit_viewset(editor, before, edit["instruction"], {}, edit["description"])
    outputs = result.images
    if out is not None:
        write_edited(before, result, {"instruction": edit["instruction"], "description": edit["description"],
                                      "editor": editor.name, "result": result.metadata}, out / entry["id"])
    objects = [before.load(v, "mask") for v in before.views]
    parts = [before.load(v, "region") if "region" in v.files else m for v, m in zip(before.views, objects)]
    truth = [after.load(v, "colour")[..., :3] for v in after.views]
    original = [before.load(v, "colour")[..., :3] for v in before.views]
    rest = [m & ~p for m, p in zip(objects, parts)]
    row = {"id": entry["id"], "kind": edit["kind"], "instruction": edit["instruction"],
           "psnr_db": _pooled_psnr(outputs, truth, objects),
           "ssim": float(np.mean([ssim(o, t, m) for o, t, m in zip(outputs, truth, objects)])),
           "part_psnr_db": _pooled_psnr(outputs, truth, parts),
           "outside_psnr_db": _pooled_psnr(outputs, original, rest) if any(r.any() for r in rest) else math.nan,
           "consistency_db": viewset_consistency(before, outputs)[0].consistency_db}
    if scorers is not None and scorers.clip is not None:
        row["clip_score"] = scorers.clip_score(outputs, edit["description"])
    if scorers is not None and scorers.dino is not None:
        row["dino_score"] = scorers.dino_score(outputs, truth)
    if scorers is not None and scorers.aesthetic is not None:
        row["aesthetic"] = scorers.aesthetic_score(outputs)
    return row


def evaluate(data: Path, editor: Any, scorers: Scorers | None, out: Path | None, limit: int | None = None
             ) -> dict[str, Any]:
    """Every kept group of the dataset at ``data`` (the first ``limit``): rows and their means."""
    manifest_path = data / "manifest.json"
    if not manifest_path.is_file():
        raise InvalidInput(f"{data} is not a dataset (no manifest.json): make one with groupedit dataset")
    groups = [g for g in json.loads(manifest_path.read_text())["groups"] if "dropped" not in g][:limit]
    if not groups:
        raise InvalidInput(f"{data} has no group to evaluate")
    rows, failed = [], []
    for g in groups:
        try:
            rows.append(evaluate_group(editor, data / g["id"], g, scorers, out))
        except InvalidInput as exc:  # the editor cannot make this edit (the classical one: no colour in the text)
            failed.append({"id": g["id"], "kind": g["edit"]["kind"], "instruction": g["edit"]["instruction"],
                           "error": str(exc)})
    columns = [k for k in rows[0] if k not in ("id", "kind", "instruction")] if rows else []
    means = {k: float(np.nanmean([r[k] for r in rows])) if not all(np.isnan(r[k]) for r in rows) else math.nan
             for k in columns}
    return {"editor": editor.name, "groups": len(rows), "failed": failed, "mean": means, "rows": rows}


def table(report: dict[str, Any]) -> list[str]:
    """The report as text lines: one row per group and the mean."""
    columns = list(report["mean"])
    lines = [f"{'group':<14}{'kind':<10}" + "".join(f"{c:>16}" for c in columns)]
    for r in report["rows"]:
        lines.append(f"{r['id']:<14}{r['kind']:<10}" + "".join(f"{r[c]:>16.3f}" for c in columns))
    lines.append(f"{'mean':<24}" + "".join(f"{report['mean'][c]:>16.3f}" for c in columns))
    lines += [f"{f['id']:<14}{f['kind']:<10}not edited: {f['error'][:100]}" for f in report["failed"]]
    return lines


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="groupedit-eval", description=__doc__.splitlines()[0])
    p.add_argument("data", type=Path, help="a dataset folder (groupedit dataset)")
    p.add_argument("--editor", default="classical", help="the editor to evaluate (default classical)")
    p.add_argument("--editor-config", action="append", default=[], metavar="NAME=VALUE",
                   help="a setting of the editor, as the server's flag of that name (e.g. model_dir=/models/ge)")
    p.add_argument("--metrics", default="", help="learned scores to add, comma-separated: clip, dino, aesthetic")
    p.add_argument("--scorers", type=Path, help="folder holding the learned scorers' weights (clip/, dino/, "
                   "aesthetic/)")
    p.add_argument("--limit", type=int, help="evaluate the first N groups only")
    p.add_argument("--out", type=Path, help="write the edited views and eval.json here")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    try:
        wanted = [m.strip() for m in args.metrics.split(",") if m.strip()]
        scorers = Scorers(args.scorers, wanted) if wanted else None
        config = dict(item.split("=", 1) for item in args.editor_config)
        report = evaluate(args.data, get_editor(args.editor, **config), scorers, args.out, args.limit)
    except (BackendError, ValueError) as exc:
        print(f"groupedit-eval: error: {exc}", file=sys.stderr)
        return 2
    for line in table(report):
        print(line)
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "eval.json").write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
