"""Figures of a PatternsResult: patterns on their canvases, mask heat maps, power and anomaly bars."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from onnxaudit.analyses.patterns.analyse import PatternsResult  # noqa: E402


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
    fig, axes = plt.subplots(3, n, figsize=(1.6 * n, 5.2), squeeze=False)
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
            fontsize=7,
            color="red" if suspect else "black",
        )
    for ax, label in zip(axes[:, 0], ("canvas", "pattern", "mask"), strict=True):
        ax.set_ylabel(label, fontsize=8)
    for ax in axes.ravel():
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(f"class-wise patterns, top {result.k:g} of pixels", fontsize=9)
    fig.tight_layout()
    return fig


def plot_power(result: PatternsResult) -> Figure:
    """Predictive power of each class's pattern per canvas, against the clean rate of t."""
    n, n_canvas = len(result.classes), len(result.canvas_labels)
    fig, ax = plt.subplots(figsize=(max(5.0, 0.7 * n + 2), 3.2))
    width = 0.8 / (n_canvas + 1)
    pos = np.arange(n)
    for v, label in enumerate(result.canvas_labels):
        ax.bar(pos + v * width, result.power[v], width, label=label)
    ax.bar(pos + n_canvas * width, result.clean_rate, width, label="clean", color="0.6")
    ax.set_xticks(pos + 0.4 - width / 2, result.class_names, rotation=45, ha="right", fontsize=7)
    ax.set_ylim(0, 1)
    ax.set_ylabel("predicted as the class")
    ax.legend(fontsize=7, ncols=n_canvas + 1)
    ax.set_title(f"predictive power at k = {result.k:g}", fontsize=9)
    fig.tight_layout()
    return fig


def plot_anomaly(result: PatternsResult) -> Figure:
    """Each test's per-class statistic (median over restarts, whiskers: min-max over restarts)
    against its threshold line: classes that fired in red."""
    verdict = result.verdict
    tests = verdict.tests
    x = np.arange(len(result.classes))
    width = max(5.0, 0.5 * len(result.classes) + 2)
    fig, axes = plt.subplots(1, len(tests), figsize=(width * len(tests), 3.0), squeeze=False)
    for ax, test in zip(axes[0], tests, strict=True):
        colors = ["red" if t in test.fired else "0.5" for t in result.classes]
        low = test.statistic - test.restarts.min(axis=0)
        high = test.restarts.max(axis=0) - test.statistic
        ax.bar(x, test.statistic, color=colors, yerr=[low, high], capsize=2)
        ax.axhline(test.threshold, color="red", linestyle="--", linewidth=0.8)
        ax.set_xticks(x, result.class_names, rotation=45, ha="right")
        ax.set_ylabel(test.name.replace("_", " "))
        ax.set_title(f"threshold {test.threshold:.3g}", fontsize=8)
    fig.suptitle(f"backdoor verdict: {verdict.outcome}", fontsize=9)
    fig.tight_layout()
    return fig


FIGURES = {"patterns": plot_patterns, "power": plot_power, "anomaly": plot_anomaly}
