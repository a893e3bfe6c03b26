"""Image-level figures of a KnowledgeResult (embeddings, knowledge points on images) that need
its arrays; charts that a result.json alone can draw (counts, emergence) live in figures.py.

Built on `matplotlib.figure.Figure` (no pyplot): no backend is chosen, no global state is kept.
"""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib
import numpy as np
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Rectangle

from onnxaudit.analyses.knowledge.compare import COS_BINS, STRENGTH_BINS, ModelComparison
from onnxaudit.analyses.knowledge.results import KnowledgeResult

VIEWS = ((0, 1), (0, 2), (1, 2))
MAX_POINTS = 3000


def _colors(n: int) -> np.ndarray:
    return matplotlib.colormaps["tab10" if n <= 10 else "tab20"](np.arange(n) % 20)


def _scatter_views(
    axes: Sequence, points: np.ndarray, labels: np.ndarray, mu: np.ndarray, names: list[str]
) -> None:
    """Scatter 3-D points in 2-D views, coloured by class, with class directions as arrows."""
    colors = _colors(len(names))
    reach = float(np.quantile(np.linalg.norm(points, axis=-1), 0.95)) or 1.0
    for ax, (a, b) in zip(axes, VIEWS, strict=False):
        ax.scatter(points[:, a], points[:, b], s=4, c=colors[labels], alpha=0.5, linewidths=0)
        for c, direction in enumerate(mu):
            ax.annotate(
                "",
                xy=(direction[a] * reach, direction[b] * reach),
                xytext=(0, 0),
                arrowprops={"arrowstyle": "->", "color": colors[c], "lw": 1.5},
            )
        ax.set_xlabel(f"axis {a + 1}")
        ax.set_ylabel(f"axis {b + 1}")
        ax.set_aspect("equal", adjustable="datalim")


def _legend(fig: Figure, names: list[str]) -> None:
    colors = _colors(len(names))
    handles = [Line2D([], [], marker="o", ls="", color=colors[c]) for c in range(len(names))]
    fig.legend(handles, names, loc="lower center", ncol=min(len(names), 5), fontsize=9)


def plot_sample_embedding(result: KnowledgeResult) -> Figure:
    """The 3-D sample embedding g as three 2-D views, with each class direction mu_c."""
    fig = Figure(figsize=(11, 4.4))
    axes = fig.subplots(1, 3)
    s = result.sample
    _scatter_views(axes, s.embedding, result.labels, s.mu, result.classes)
    fig.suptitle(
        f"sample embedding: strength-uncertainty r = {s.strength_uncertainty_corr:.2f} "
        f"(PCA {s.pca_strength_uncertainty_corr:.2f})"
    )
    _legend(fig, result.classes)
    fig.tight_layout(rect=(0, 0.08, 1, 1))
    return fig


def plot_region_embeddings(result: KnowledgeResult, seed: int = 0) -> Figure:
    """Regional embeddings h of each layer (views 1-2 and 1-3), coloured by the image's class."""
    rows = len(result.layers)
    fig = Figure(figsize=(8, 3.6 * rows))
    axes = fig.subplots(rows, 2, squeeze=False)
    rng = np.random.default_rng(seed)
    for ax_row, layer in zip(axes, result.layers, strict=True):
        h = layer.embedding
        labels = np.repeat(result.labels, h.shape[1])
        flat = h.reshape(-1, h.shape[-1])
        pick = rng.choice(len(flat), min(MAX_POINTS, len(flat)), replace=False)
        _scatter_views(ax_row, flat[pick], labels[pick], result.sample.mu, result.classes)
        ax_row[0].set_title(
            f"{layer.name}: {layer.knowledge_points:.1f} points / image", fontsize=9
        )
    _legend(fig, result.classes)
    fig.tight_layout(rect=(0, 0.04, 1, 1))
    return fig


def plot_knowledge_grid(result: KnowledgeResult, per_class: int = 1) -> Figure:
    """Images (columns) per layer (rows): knowledge-point regions outlined, the rest darkened."""
    picks = np.concatenate(
        [np.flatnonzero(result.labels == c)[:per_class] for c in np.unique(result.labels)]
    )
    rows, cols = len(result.layers), len(picks)
    width = min(11.0, 1.3 * cols + 1)  # at most the page: 9 pt text stays >= 11 px
    cell = (width - 1) / cols
    fig = Figure(figsize=(width, (cell + 0.1) * rows + 0.8))
    axes = fig.subplots(rows, cols, squeeze=False)
    for ax_row, layer in zip(axes, result.layers, strict=True):
        for ax, i in zip(ax_row, picks, strict=True):
            image = np.moveaxis(result.images[i], 0, -1)
            image = image[..., 0] if image.shape[-1] == 1 else image
            height, width = image.shape[:2]
            mask = layer.maps[i]
            cell_h, cell_w = height / mask.shape[0], width / mask.shape[1]
            shade = np.kron(mask, np.ones((int(np.ceil(cell_h)), int(np.ceil(cell_w)))))
            shade = np.where(shade[:height, :width] > 0, 1.0, 0.5)
            shown = image * (shade if image.ndim == 2 else shade[..., None])
            ax.imshow(shown, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
            for y, x in zip(*np.nonzero(mask), strict=True):
                reliable = layer.reliable_maps[i, y, x]
                ax.add_patch(
                    Rectangle(
                        (x * cell_w - 0.5, y * cell_h - 0.5),
                        cell_w,
                        cell_h,
                        fill=False,
                        lw=0.6,
                        color="red" if reliable else "orange",
                    )
                )
            ax.set_xticks([])
            ax.set_yticks([])
        ax_row[0].set_ylabel(layer.name, fontsize=9)
    for ax, i in zip(axes[0], picks, strict=True):
        ax.set_title(result.classes[result.labels[i]], fontsize=9)
    fig.suptitle("knowledge points (red: reliable, orange: other class); rest darkened", fontsize=9)
    fig.tight_layout()
    return fig


def plot_adversarial(result: KnowledgeResult) -> Figure | None:
    """How far PGD moves regional features per layer: mean 1 - cos and mean |strength change|."""
    adv = result.adversarial
    if adv is None:
        return None
    names = [layer.name for layer in adv.layers]
    fig = Figure(figsize=(6, 3.8))
    ax = fig.subplots()
    pos = np.arange(len(names))
    ax.plot(pos, [layer.delta_orientation for layer in adv.layers], marker="o", label="orientation")
    ax.plot(pos, [layer.delta_strength for layer in adv.layers], marker="s", label="strength")
    ax.set_xticks(pos, names, rotation=20, fontsize=9)
    ax.set_ylabel("mean change under PGD")
    ax.set_title(f"PGD eps {adv.eps}, {adv.steps} steps, success {adv.success_rate:.0%}")
    ax.legend()
    fig.tight_layout()
    return fig


def plot_comparison(comparison: ModelComparison) -> Figure:
    """Per layer: histograms of 1 - cos and of the strength difference, other vs reference."""
    rows = [row for row in comparison.layers if row.cos_hist is not None]
    fig = Figure(figsize=(9, 2.6 * max(1, len(rows))))
    axes = fig.subplots(max(1, len(rows)), 2, squeeze=False)
    for ax_row, row in zip(axes, rows, strict=False):
        for ax, bins, counts, label in (
            (ax_row[0], COS_BINS, row.cos_hist, "1 - cos(h_other, h_ref)"),
            (ax_row[1], STRENGTH_BINS, row.strength_hist, "||h_other|| - ||h_ref||"),
        ):
            ax.bar(bins[:-1], counts, width=np.diff(bins), align="edge")
            ax.set_yscale("log")
            ax.set_xlabel(label, fontsize=9)
        ax_row[0].set_ylabel(row.other.name, fontsize=9)
    fig.suptitle(f"{comparison.model} in {comparison.reference_model}'s embedding", fontsize=9)
    fig.tight_layout()
    return fig
