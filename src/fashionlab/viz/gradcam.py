"""Grad-CAM (Selvaraju et al., 2017): where in the image the evidence for a class lies.

CAM = ReLU(sum_k w_k A_k), w_k = spatial mean of d(class logit)/d(A_k), with A the output of a
conv layer (default: the last nn.Conv2d, found generically), upsampled to the image and scaled
to [0, 1]. Gradients come from `torch.autograd.grad` on the layer output, so parameters' .grad
are never touched and frozen (requires_grad=False) models work too. A model with no Conv2d
(an MLP) has no spatial map: the functions return None.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

import matplotlib
import numpy as np
import torch
import torch.nn.functional as F
from matplotlib.figure import Figure
from torch import nn

from fashionlab.errors import ConfigError
from fashionlab.viz._common import (
    as_images,
    as_labels,
    class_names_for,
    hide_ticks,
    new_figure,
    save_png,
)
from fashionlab.viz.hooks import (
    Normalize,
    eval_mode,
    find_layers,
    model_device,
    resolve_layers,
    to_model_input,
)


class GradCAMResult(NamedTuple):
    cams: np.ndarray  # float32 (N, H, W) in [0, 1], same size as the images
    classes: np.ndarray  # int64 (N,): the class each map explains (default: the predicted one)
    probabilities: np.ndarray  # float32 (N,): softmax probability of that class
    class_probabilities: np.ndarray  # float32 (N, C): softmax over every class (for a top-k)
    layer: str  # name of the layer the maps come from


def compute_gradcam(
    model: nn.Module,
    images: Any,
    normalize: Normalize,
    target_layer: str | None = None,
    target_classes: Sequence[int] | None = None,
) -> GradCAMResult | None:
    """Grad-CAM maps for uint8 images (N, H, W) or one image (H, W).

    `target_layer`: a module name from `named_modules()` whose output is (N, C, h, w); default
    the last nn.Conv2d. `target_classes`: one class per image; default the predicted class.
    Returns None when no layer is given and the model has no Conv2d.
    """
    if target_layer is None:
        convs = find_layers(model, nn.Conv2d)
        if not convs:
            return None
        layer_name, layer = convs[-1]
    else:
        [(layer_name, layer)] = resolve_layers(model, [target_layer])
    imgs = as_images(images)
    if len(imgs) == 0:
        raise ConfigError("compute_gradcam got no images")
    captured: dict[str, torch.Tensor] = {}

    def hook(_module: nn.Module, _inputs: Any, output: Any) -> Any:
        if not isinstance(output, torch.Tensor):
            raise ConfigError(f"layer {layer_name!r} does not output a tensor")
        captured["act"] = output
        # hand the rest of the network a copy: an in-place op downstream (ReLU(inplace=True))
        # then cannot alter the tensor we differentiate with respect to
        return output.clone()

    # inference_mode(False) + enable_grad: work even when the caller (a web handler) runs
    # under torch.inference_mode() or no_grad(); requires_grad on the input builds the graph
    # even for a frozen model.
    with torch.inference_mode(False), torch.enable_grad(), eval_mode(model):
        x = to_model_input(imgs, normalize).to(model_device(model)).clone().requires_grad_(True)
        handle = layer.register_forward_hook(hook)
        try:
            logits = model(x)
        finally:
            handle.remove()
        act = captured.get("act")
        if act is None or act.ndim != 4:
            shape = None if act is None else tuple(act.shape)
            raise ConfigError(f"layer {layer_name!r} output {shape} is not feature maps (N,C,h,w)")
        if target_classes is None:
            classes = logits.argmax(dim=1)
        else:
            classes = torch.as_tensor(list(target_classes), dtype=torch.long, device=logits.device)
            if classes.shape != (len(imgs),):
                raise ConfigError(f"need one target class per image, got {len(classes)}")
            if int(classes.min()) < 0 or int(classes.max()) >= logits.shape[1]:
                raise ConfigError(f"target classes must be in 0..{logits.shape[1] - 1}")
        # in eval mode images do not interact, so the gradient of the summed scores gives each
        # image its own gradient in one backward pass
        score = logits.gather(1, classes[:, None]).sum()
        # allow_unused: a layer whose output never reaches the logits gets an all-zero map
        (grads,) = torch.autograd.grad(score, act, allow_unused=True)
        if grads is None:
            grads = torch.zeros_like(act)
        weights = grads.mean(dim=(2, 3), keepdim=True)
        cam = F.relu((weights * act).sum(dim=1, keepdim=True))
        cam = F.interpolate(cam, size=imgs.shape[1:], mode="bilinear", align_corners=False)[:, 0]
        peak = cam.flatten(1).max(dim=1).values.clamp_min(1e-12)[:, None, None]
        cam = (cam / peak).clamp(0.0, 1.0)  # an all-zero map stays zero
        all_probs = logits.detach().float().softmax(dim=1)
    return GradCAMResult(
        cams=cam.detach().float().cpu().numpy(),
        classes=classes.detach().cpu().numpy().astype(np.int64),
        probabilities=all_probs.gather(1, classes[:, None])[:, 0].cpu().numpy(),
        class_probabilities=all_probs.cpu().numpy(),
        layer=layer_name,
    )


def gradcam(
    model: nn.Module,
    image: Any,
    normalize: Normalize,
    target_layer: str | None = None,
    target_class: int | None = None,
) -> np.ndarray | None:
    """The raw Grad-CAM map (H, W) float32 in [0, 1] of one uint8 image (H, W); None for a
    model without Conv2d. For the web page, which draws its own overlay."""
    result = compute_gradcam(
        model,
        as_images(image)[:1],
        normalize,
        target_layer,
        None if target_class is None else [target_class],
    )
    return None if result is None else result.cams[0]


def overlay_heatmap(image: Any, cam: Any, alpha: float = 0.45, cmap: str = "jet") -> np.ndarray:
    """RGB uint8 (H, W, 3): the grayscale image blended with the colour-mapped CAM."""
    gray = as_images(image)[0].astype(np.float32) / 255.0
    heat = np.asarray(cam, dtype=np.float32)
    if heat.shape != gray.shape:
        raise ConfigError(f"CAM shape {heat.shape} does not match image shape {gray.shape}")
    colours = matplotlib.colormaps[cmap](np.clip(heat, 0.0, 1.0))[..., :3]
    blended = (1.0 - alpha) * gray[..., None] + alpha * colours
    return (np.clip(blended, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def plot_gradcam(
    model: nn.Module,
    images: Any,
    normalize: Normalize,
    path: str | os.PathLike | None = None,
    class_names: Sequence[str] | None = None,
    labels: Any = None,
    target_layer: str | None = None,
    max_images: int = 8,
) -> Path | Figure | None:
    """Images (top row) and their Grad-CAM overlays for the predicted class (bottom row),
    titled with the prediction and its probability (and the true class if `labels` given).
    Returns None (no file) for a model without Conv2d."""
    imgs = as_images(images)[:max_images]
    result = compute_gradcam(model, imgs, normalize, target_layer)
    if result is None:
        return None
    names = class_names_for(class_names, result.class_probabilities.shape[1])
    if labels is not None:
        true = as_labels(labels, name="labels")[: len(imgs)]
        if len(true) != len(imgs) or true.min() < 0 or true.max() >= len(names):
            raise ConfigError(f"labels must give a class in 0..{len(names) - 1} for each image")
    fig = new_figure(1.6 * len(imgs), 3.6)
    axes = fig.subplots(2, len(imgs), squeeze=False)
    for k in range(len(imgs)):
        top, bottom = axes[0, k], axes[1, k]
        hide_ticks(top)
        hide_ticks(bottom)
        top.imshow(imgs[k], cmap="gray", vmin=0, vmax=255)
        title = f"pred: {names[result.classes[k]]}\n({result.probabilities[k]:.2f})"
        if labels is not None:
            title = f"true: {names[true[k]]}\n" + title
        top.set_title(title, fontsize=7)
        bottom.imshow(overlay_heatmap(imgs[k], result.cams[k]))
    fig.suptitle(f"Grad-CAM on {result.layer}")
    return save_png(fig, path)
