"""The image-level figures of a PatternsResult: each class's pattern on its canvas and its mask,
and the recovered trigger of each suspected class.

Power and anomaly charts are drawn from result.json by figures.py. Built on
`matplotlib.figure.Figure` (no pyplot): no backend is chosen, no global state is kept.
"""

from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure

from onnxaudit.analyses.patterns.analyse import PatternsResult
from onnxaudit.report.figures import plain


def _canvas_index(result: PatternsResult, canvas: str | None, ti: int) -> int:
    """The named canvas, or the one with the highest predictive power for class index ti."""
    if canvas is None:
        return int(result.power[:, ti].argmax())
    return result.canvas_labels.index(canvas)


def _image(chw: np.ndarray) -> np.ndarray:
    return chw[0] if chw.shape[0] == 1 else np.moveaxis(chw, 0, -1)


def plot_patterns(result: PatternsResult, canvas: str | None = None) -> Figure:
    """Per class: the canvas with the pattern pixels outlined in red, the pattern alone on grey,
    and the continuous mask. `canvas` None picks each class's most predictive canvas."""
    n = len(result.classes)
    width = min(11.0, 1.1 * n + 0.8)  # at most the page: 9 pt text stays >= 11 px
    fig = Figure(figsize=(width, 3 * (width - 0.8) / n + 1.4))
    axes = fig.subplots(3, n, squeeze=False)
    for ti in range(n):
        v = _canvas_index(result, canvas, ti)
        canv = result.canvases[v, ti]
        binary = result.binary_masks[v, ti]
        shown = np.where(binary[None] > 0.5, canv, 0.5)
        cmap = "gray" if canv.shape[0] == 1 else None
        axes[0, ti].imshow(_image(canv), cmap=cmap, vmin=0, vmax=1)
        axes[0, ti].contour(binary, levels=[0.5], colors="red", linewidths=0.6)
        axes[1, ti].imshow(_image(shown), cmap=cmap, vmin=0, vmax=1)
        axes[2, ti].imshow(result.masks[v, ti], cmap="magma", vmin=0, vmax=1)
        suspect = result.classes[ti] in result.verdict.classes
        axes[0, ti].set_title(
            f"{result.class_names[ti]}\n{result.canvas_labels[v]} pp {result.power[v, ti]:.2f}",
            fontsize=9,
            color="red" if suspect else "black",
        )
    for ax, label in zip(axes[:, 0], ("canvas", "pattern", "mask"), strict=True):
        ax.set_ylabel(label, fontsize=9)
    for ax in axes.ravel():
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(f"class-wise patterns, top {result.k:g} of pixels", fontsize=9)
    fig.tight_layout()
    return fig


def plot_trigger(result: PatternsResult, ti: int) -> Figure:
    """The recovered trigger of class index ti, as the verdict judged it (restart 0, the
    canvas of its smallest white/free mask): the pattern (that canvas), the continuous mask,
    and pattern x mask, what the search pastes over other classes' images."""
    v = result.canvas_labels.index(result.verdict.canvas[ti])
    pattern, mask = result.canvases[v, ti], result.masks[v, ti]
    cmap = "gray" if pattern.shape[0] == 1 else None
    fig = Figure(figsize=(4.2, 1.75))
    axes = fig.subplots(1, 3)
    panels = (
        (_image(pattern), cmap, f"pattern ({result.canvas_labels[v]})"),
        (mask, "magma", f"mask (L1 {result.mask_l1[v, ti]:.3f})"),
        (_image(pattern * mask[None]), cmap, "pattern × mask"),
    )
    for ax, (image, colours, title) in zip(axes, panels, strict=True):
        ax.imshow(image, cmap=colours, vmin=0, vmax=1)
        ax.set_title(title, fontsize=8)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(plain(f"{result.classes[ti]} {result.class_names[ti]}"), fontsize=9, color="red")
    fig.tight_layout()
    return fig
