"""`ablate explain`: attribution maps of trained runs, and how much of them falls on the face's cues.

Guided Backpropagation, Grad-CAM and Guided Grad-CAM (captum) for the predicted and the true class,
one column per run, so the paper's figures 3 and 4 can be redrawn for any set of variants; and, on
generated faces, whose cue masks are known, how much of
Grad-CAM's energy falls on the cues (the paper's "stays on the eyes behind glasses" as a number).

Models come from each run's `best_model.pt` artifact (weights of the epoch validation chose, plus
the trial's spec), so this reads MLflow only and works against a remote server.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from captum.attr import GuidedBackprop, GuidedGradCam, LayerAttribution, LayerGradCam
from PIL import Image, UnidentifiedImageError
from torch import nn

from ablation.checkpoints import CheckpointError, unpack_model
from ablation.data import ArrayDataset
from ablation.data.pipeline import preprocess
from ablation.data.records import Item, printable
from ablation.models import build_model
from ablation.core import DataSpec, StudySpec
from ablation.tracking import (MODEL_FILE, ModelKept, Tag, check_store, log_explanation, models_of_arm, read_artifact,
                       trial_record)

METHODS = ("guided_backprop", "grad_cam", "guided_grad_cam")
# Grad-CAM's map has the looked-at layer's resolution: at 2x2 or less it can only point at a quadrant;
# from 6x6 up it can tell the eyes from the mouth.
COARSE_MAP, USEFUL_MAP = 2, 6
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")


class ExplainError(ValueError):
    """Bad input to `ablate explain`: a layer, a path, a split that does not exist."""


@dataclass
class TrainedModel:
    run_id: str
    name: str
    model: nn.Module
    layer: nn.Module  # where Grad-CAM looks
    classes: list[str]
    spec: StudySpec  # the trial's, resolved


def load_trained(uri: str, run_id: str, layer: str | None = "layer4") -> TrainedModel:
    """A run's kept weights, as a model in eval mode, with Grad-CAM looking at `layer` (None: at its
    last stage, until `default_layer` chooses one for the images' size)."""
    record = trial_record(uri, run_id)
    if record.tags.get(Tag.MODEL) in (ModelKept.NOT_KEPT, ModelKept.SUPERSEDED):
        kept = models_of_arm(uri, run_id)
        raise ExplainError(f"run {run_id} ({record.name}) kept no weights: the study's keep_models policy "
                           f"keeps {'those of' if kept else 'none of'} its arm's best seeds"
                           + ("; runs of its arm that have them: "
                              + ", ".join(f"{r.run_id} ({r.name})" for r in kept) if kept else
                              "; set keep_models: all (or a number) in the spec to keep more"))
    try:
        packed = unpack_model(read_artifact(uri, run_id, MODEL_FILE), f"run {run_id}'s {MODEL_FILE}")
    except CheckpointError as err:
        raise ExplainError(str(err)) from None
    spec = StudySpec.model_validate_json(packed["spec"])
    model = build_model(spec.model.model_copy(update={"pretrained": None}), num_classes=len(packed["classes"]))
    model.load_state_dict(packed["model"])
    model.eval()
    for module in model.modules():
        if isinstance(module, nn.ReLU):
            # Guided backpropagation hooks every ReLU's output; an in-place ReLU would overwrite it.
            module.inplace = False
    trained = TrainedModel(run_id, record.name, model, model, list(packed["classes"]), spec)
    look_at(trained, layer or _stages(model)[-1])
    return trained


def _stages(model: nn.Module) -> list[str]:
    return [name for name, _ in model.named_children() if name.startswith("layer")]


def look_at(trained: TrainedModel, layer: str) -> None:
    """Point Grad-CAM at the module `layer` of the trained model."""
    modules = dict(trained.model.named_modules())
    if layer not in modules:
        raise ExplainError(f"--layer {layer}: {trained.name} has no such module (its stages: "
                           f"{', '.join(_stages(trained.model))}; a block is e.g. layer4.1)")
    trained.layer = modules[layer]


def default_layer(trained: TrainedModel, size: tuple[int, int]) -> str:
    """The deepest stage whose map at this input size is at least USEFUL_MAP on a side (layer4 at 224 px,
    layer1 at 32 px), so Grad-CAM can tell the eyes from the mouth; else the stage with the finest map."""
    stages = _stages(trained.model)
    sizes = map_sizes(trained.model, stages, size)
    fine = [stage for stage in stages if min(sizes[stage]) >= USEFUL_MAP]
    return fine[-1] if fine else stages[0]


@dataclass
class Images:
    pixels: np.ndarray  # uint8 (N, H, W, 3), as the model sees them before normalization
    labels: list[int | None]  # the true class, where known
    names: list[str]
    masks: np.ndarray | None = None  # uint8 (N, H, W), 1 on the class cues (generated faces)
    occluded: np.ndarray | None = None  # bool (N,)
    skipped: tuple[str, ...] = ()  # files that could not be read

    def tensors(self) -> torch.Tensor:
        dataset = ArrayDataset(self.pixels, np.zeros(len(self.pixels), dtype=np.int64))
        return torch.stack([dataset[i][0] for i in range(len(dataset))])


def images_from_split(data: DataSpec, split: str, n: int) -> Images:
    """The first `n` images of a split of the data a run trained on; generated faces bring their cue masks."""
    if data.dataset == "synthetic":
        from ablation.data import synthetic

        arrays = synthetic.load(split, n_per_class=data.per_class(split), image_size=data.image_size, seed=data.seed)
        picked = slice(0, n)  # generated classes interleave, so any prefix covers them evenly
        return Images(arrays.images[picked], [int(label) for label in arrays.labels[picked]],
                      [f"{split}[{i}]" for i in range(len(arrays.labels[picked]))], arrays.masks[picked],
                      arrays.occluded[picked])
    from ablation.data import build_splits

    dataset = getattr(build_splits(data), split)
    picked = range(min(n, len(dataset)))
    return Images(np.stack([np.asarray(dataset.images[i]) for i in picked]),
                  [int(dataset.labels[i]) for i in picked], [f"{split}[{i}]" for i in picked])


def images_from_path(path: Path, size: int, classes: list[str], n: int) -> Images:
    """Image files (one, or a folder's, sorted; a parent folder named after a class gives the true
    class), square-cropped and resized as training data is. Unreadable files are skipped and listed."""
    if not path.exists():
        raise ExplainError(f"--images {path}: no such file or folder")
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    pixels, labels, names, skipped = [], [], [], []
    for file in files:
        if len(pixels) == n:
            break
        try:
            pixels.append(preprocess(Item(str(file), label=0, split="test"), size))
        except (OSError, UnidentifiedImageError, ValueError, Image.DecompressionBombError) as err:
            skipped.append(f"{printable(str(file))}: {type(err).__name__}")
            continue
        folder = file.parent.name.lower()
        labels.append(classes.index(folder) if folder in classes else None)
        names.append(printable(file.name))  # drawn in its figure: matplotlib refuses a name that is not UTF-8
    if not pixels:
        raise ExplainError(f"--images {path}: no readable image (looked for {', '.join(IMAGE_SUFFIXES)})")
    return Images(np.stack(pixels), labels, names, skipped=tuple(skipped))


def map_sizes(model: nn.Module, names: Sequence[str], size: tuple[int, int]) -> dict[str, tuple[int, int]]:
    """The (height, width) of each named module's output for an input of `size`: one forward pass, hooked."""
    modules = dict(model.named_modules())
    found: dict[str, tuple[int, int]] = {}
    hooks = [modules[name].register_forward_hook(
        lambda module, inputs, output, name=name: found.__setitem__(name, tuple(output.shape[-2:]))) for name in names]
    try:
        with torch.no_grad():
            model(torch.zeros(1, 3, *size))
    finally:
        for hook in hooks:
            hook.remove()
    return found


def coarse_layer_warning(trained: TrainedModel, layer: str, size: tuple[int, int]) -> str | None:
    """Why `layer`'s Grad-CAM says little at this input size, and which stage says more; None if it is fine."""
    stages = _stages(trained.model)
    sizes = map_sizes(trained.model, [layer, *stages], size)
    if layer not in sizes or max(sizes[layer]) > COARSE_MAP:  # (a module forward never calls has no map)
        return None
    height, width = sizes[layer]
    fine = [stage for stage in stages if min(sizes[stage]) >= USEFUL_MAP]
    better = (f"--layer {fine[-1]} gives {sizes[fine[-1]][0]}x{sizes[fine[-1]][1]}" if fine else
              f"no stage gives {USEFUL_MAP}x{USEFUL_MAP} at this size (train at a larger data.image_size)")
    return (f"--layer {layer}: its map is {height}x{width} at {size[0]}x{size[1]} px, too coarse for Grad-CAM "
            f"to show which part of the face counts; {better}")


def attributions(trained: TrainedModel, x: torch.Tensor, target: torch.Tensor) -> dict[str, torch.Tensor]:
    """Each method's map for `target`, at the input's resolution: (N, H, W), Grad-CAM non-negative."""
    model, layer = trained.model, trained.layer
    size = tuple(x.shape[-2:])
    with torch.enable_grad(), warnings.catch_warnings():
        # captum's guided methods warn, each call, "Setting backward hooks on ReLU activations" (a UserWarning):
        # that is how they work, and they remove the hooks when done.
        warnings.filterwarnings("ignore", message="Setting backward hooks on ReLU", category=UserWarning)
        guided = GuidedBackprop(model).attribute(x.clone().requires_grad_(), target=target)
        cam = LayerGradCam(model, layer).attribute(x.clone().requires_grad_(), target=target, relu_attributions=True)
        guided_cam = GuidedGradCam(model, layer).attribute(x.clone().requires_grad_(), target=target,
                                                           interpolate_mode="bilinear")
    cam = LayerAttribution.interpolate(cam, size, interpolate_mode="bilinear").clamp(min=0)
    return {"guided_backprop": guided.detach().abs().sum(1), "grad_cam": cam.detach()[:, 0],
            "guided_grad_cam": guided_cam.detach().abs().sum(1)}


@dataclass
class Explained:
    trained: TrainedModel
    predicted: torch.Tensor  # (N,)
    confidence: torch.Tensor  # (N,) softmax of the predicted class
    maps: dict[str, dict[str, torch.Tensor]]  # "predicted"/"true" -> method -> (N, H, W)


def explain(trained: TrainedModel, images: Images) -> Explained:
    x = images.tensors()
    with torch.no_grad():
        probabilities = trained.model(x).softmax(1)
    confidence, predicted = probabilities.max(1)
    true = torch.tensor([label if label is not None else int(p) for label, p in zip(images.labels, predicted)])
    maps = {"predicted": attributions(trained, x, predicted)}
    maps["true"] = maps["predicted"] if torch.equal(true, predicted) else attributions(trained, x, true)
    return Explained(trained, predicted, confidence, maps)


def score(explained: Explained, images: Images) -> dict[str, float]:
    """Against the cue masks, for the true class's Grad-CAM: the share of its energy on the cues and the
    pointing game (its peak on a cue), over all images and over occluded and unoccluded ones."""
    if images.masks is None:
        raise ExplainError("--score needs images with cue masks: generated faces (--from-split on a synthetic run)")
    cam = explained.maps["true"]["grad_cam"].numpy()
    masks = images.masks.astype(bool)
    energy = (cam * masks).sum((1, 2)) / np.maximum(cam.sum((1, 2)), 1e-12)
    flat = cam.reshape(len(cam), -1).argmax(1)
    hits = masks.reshape(len(masks), -1)[np.arange(len(masks)), flat]
    groups = {"all": np.ones(len(cam), dtype=bool), "occluded": images.occluded,
              "unoccluded": ~images.occluded}
    out = {}
    for group, chosen in groups.items():
        if chosen.any():
            out[f"cue_energy_{group}"] = float(energy[chosen].mean())
            out[f"pointing_game_{group}"] = float(hits[chosen].mean())
            out[f"images_{group}"] = int(chosen.sum())
            # What a map spread evenly would score: the cues' share of the image.
            out[f"cue_area_{group}"] = float(masks[chosen].mean())
    return out


@dataclass
class Explanation:
    """What `explain_runs` made: each run's maps of the same images, the figures, and the cue scores."""

    explained: list[Explained]
    images: Images
    figures: list[Path]
    scores: dict[str, dict[str, float]]  # run id -> `score`'s figures; empty unless scored
    layer: str  # where Grad-CAM looked
    warnings: list[str] = field(default_factory=list)  # what the user should know: skipped files, a coarse layer


def explain_runs(uri: str, run_ids: list[str], *, out: Path, images: Path | None = None, split: str | None = None,
                 n: int = 8, layer: str | None = None, scoring: bool = False,
                 status: Callable[[str], AbstractContextManager] = nullcontext) -> Explanation:
    """The maps of trained runs on the same images (from `images`, else the first `n` of a `split` of the
    first run's data), one figure per image in `out`. With `scoring`, each run's Grad-CAM is scored
    against the cue masks (generated faces only), logged to its run and written to `out`/scores.json.
    Grad-CAM looks at `layer`, by default the deepest stage whose map is fine enough at the images' size.
    `status(message)` wraps the slow part, to say what is going on."""
    check_store(uri, writing=False)
    trained = [load_trained(uri, run_id, layer) for run_id in run_ids]
    first = trained[0]
    if images is not None:
        shown = images_from_path(images, first.spec.data.image_size, first.classes, n)
    else:
        shown = images_from_split(first.spec.data, split, n)
    size = shown.pixels.shape[1:3]
    if layer is None:
        layer = default_layer(first, size)
        for t in trained:
            look_at(t, layer)
    said = [f"skipped {name}" for name in shown.skipped]
    said += dict.fromkeys(w for t in trained if (w := coarse_layer_warning(t, layer, size)) is not None)
    with status(f"attributing {len(shown.names)} images x {len(trained)} runs"):
        explained = [explain(t, shown) for t in trained]
    scores = {e.trained.run_id: score(e, shown) for e in explained} if scoring else {}
    figures = render(explained, shown, out)
    for run_id, found in scores.items():
        log_explanation(uri, run_id, found, layer=layer, images=len(shown.names))
    if scores:
        named = {e.trained.name: scores[e.trained.run_id] for e in explained}
        (out / "scores.json").write_text(json.dumps(named, indent=1))
    return Explanation(explained, shown, figures, scores, layer, said)


def _normalized(a: np.ndarray) -> np.ndarray:
    low, high = np.percentile(a, 1), np.percentile(a, 99.5)
    return np.clip((a - low) / max(high - low, 1e-12), 0, 1)


def _rows(explained: list[Explained], label: int | None, i: int) -> list[tuple[str, str, str]]:
    """Image i's rows of maps: (which class's maps, method, what the row is of). One row per method when every
    run predicts the true class, or the true class is unknown: the maps of both would be the same."""
    if label is None or all(int(e.predicted[i]) == label for e in explained):
        return [("predicted", method, "predicted class" if label is None else "predicted = true class")
                for method in METHODS]
    return [(which, method, f"{which} class") for which in ("predicted", "true") for method in METHODS]


def render(explained: list[Explained], images: Images, out: Path) -> list[Path]:
    """One PNG per image: a column per run, its prediction on the input on top, then the three maps for the
    predicted class and, where a run mistook the image, for the true one; each row with its colour bar."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize

    out.mkdir(parents=True, exist_ok=True)
    classes = explained[0].trained.classes
    written = []
    for i, name in enumerate(images.names):
        pixels, label = images.pixels[i], images.labels[i]
        rows = _rows(explained, label, i)
        # The last, narrow column holds each row's colour bar, so the maps stay under their input.
        figure, axes = plt.subplots(len(rows) + 1, len(explained) + 2, squeeze=False, layout="constrained",
                                    width_ratios=[1] * (len(explained) + 1) + [0.08],
                                    figsize=(1.9 * (len(explained) + 1) + 0.7, 1.75 * (len(rows) + 1)))
        for ax in [*axes[:, :-1].flat, axes[0, -1]]:
            ax.axis("off")
        axes[0, 0].text(0.5, 0.5, f"{name}\ntrue class:\n{classes[label] if label is not None else 'unknown'}",
                        ha="center", va="center", fontsize=8, transform=axes[0, 0].transAxes)
        for r, (_, method, of) in enumerate(rows, 1):
            axes[r, 0].text(0.5, 0.5, f"{method.replace('_', ' ')}\n({of})", ha="center", va="center", fontsize=8,
                            transform=axes[r, 0].transAxes)
            colours = ScalarMappable(Normalize(0, 1), cmap="jet" if method == "grad_cam" else "gray")
            bar = figure.colorbar(colours, cax=axes[r, -1], ticks=[0, 1])
            bar.ax.set_yticklabels(["low", "high"], fontsize=6)
        for c, e in enumerate(explained, 1):
            axes[0, c].imshow(pixels)
            axes[0, c].set_title(f"{e.trained.name}\npred: {classes[int(e.predicted[i])]} "
                                 f"({float(e.confidence[i]):.2f})", fontsize=7)
            for r, (which, method, _) in enumerate(rows, 1):
                if which == "true" and int(e.predicted[i]) == label:
                    axes[r, c].text(0.5, 0.5, "predicted\nthe true class:\nmaps above", ha="center", va="center",
                                    fontsize=7, color="0.4", transform=axes[r, c].transAxes)
                    continue
                heat = _normalized(e.maps[which][method][i].numpy())
                if method == "grad_cam":
                    axes[r, c].imshow(pixels)
                    axes[r, c].imshow(heat, cmap="jet", alpha=0.45, vmin=0, vmax=1)
                else:
                    axes[r, c].imshow(heat, cmap="gray", vmin=0, vmax=1)
        figure.supxlabel("each map scaled from its own 1st to its 99.5th percentile", fontsize=6)
        path = out / f"explain_{i:02d}.png"
        figure.savefig(path, dpi=110)
        plt.close(figure)
        written.append(path)
    return written
