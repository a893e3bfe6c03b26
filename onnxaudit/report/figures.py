"""Figures for the report: matplotlib Figures embedded as base64 PNG, and charts drawn from result dicts.

The charts here read only result@1 dicts, so a report can be re-rendered from result.json alone;
the analyses' own plot modules add the image-level figures (knowledge-point grids, patterns).
Figures are built with `matplotlib.figure.Figure` (no pyplot), so no global state or GUI backend.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

PALETTE = ("#1f6feb", "#d1242f", "#1a7f37", "#9a6700", "#8250df", "#bf3989", "#0a7ea4", "#57606a")
OK, BAD = "#1a7f37", "#d1242f"


@dataclass(frozen=True)
class EmbeddedFigure:
    """A figure ready for the HTML: a title, a caption and a data: URI (never a network URL)."""

    title: str
    src: str
    caption: str = ""


def embed_figure(fig: Figure, title: str, caption: str = "", dpi: int = 100) -> EmbeddedFigure:
    """Render `fig` to PNG and inline it as base64, so report.html stays one self-contained file."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight", metadata={"Software": None})
    encoded = base64.b64encode(buffer.getvalue()).decode("ascii")
    return EmbeddedFigure(title=title, src=f"data:image/png;base64,{encoded}", caption=caption)


def plain(text: Any) -> str:
    """Label text with matplotlib's mathtext disabled: '$' in a class name must not be parsed."""
    return str(text).replace("$", r"\$")


def short_layer(name: str, width: int = 28) -> str:
    """A readable tail of a long ONNX tensor name, e.g. '/features/features.5/Relu_output_0'."""
    name = name.removesuffix("_output_0")
    return name if len(name) <= width else "…" + name[-(width - 1) :]


def model_label(result: Mapping[str, Any]) -> str:
    return str(result.get("model", {}).get("name", "model"))


def knowledge_chart(results: Sequence[Mapping[str, Any]]) -> Figure | None:
    """Knowledge points, reliable points and reliable ratio per analysed layer, one line per model.

    The x axis is the analysed layer's position (shallow to deep), the shared coordinate that
    lets models with different architectures sit in one chart.
    """
    series = [(model_label(r), (r.get("knowledge") or {}).get("layers") or []) for r in results]
    series = [(label, layers) for label, layers in series if layers]
    if not series:
        return None
    fig = Figure(figsize=(11, 3.4), layout="constrained")
    axes = fig.subplots(1, 3)
    panels = (
        ("knowledge_points", "knowledge points / image"),
        ("reliable_knowledge_points", "reliable points / image"),
        ("reliable_ratio", "reliable ratio"),
    )
    for ax, (key, _) in zip(axes, panels, strict=True):
        for i, (name, layers) in enumerate(series):
            values = [np.nan if entry.get(key) is None else entry[key] for entry in layers]
            ax.plot(
                np.arange(1, len(values) + 1),
                values,
                marker="o",
                color=PALETTE[i % len(PALETTE)],
                label=plain(name),
            )
    _style_layer_axes(axes, [label for _, label in panels], ratio_axis=2)
    return fig


def emergence_chart(result: Mapping[str, Any]) -> Figure | None:
    """Knowledge points and reliable ratio per analysed layer across training checkpoints."""
    emergence = (result.get("knowledge") or {}).get("emergence")
    if not emergence or not emergence.get("checkpoints"):
        return None
    iterations = emergence.get("iterations") or []
    known = len(iterations) == len(emergence["checkpoints"]) and all(
        i is not None for i in iterations
    )
    x = np.asarray(iterations if known else range(len(emergence["checkpoints"])), dtype=float)
    fig = Figure(figsize=(11, 3.4), layout="constrained")
    axes = fig.subplots(1, 2)
    panels = (
        ("knowledge_points", "knowledge points / image"),
        ("reliable_ratio", "reliable ratio"),
    )
    for ax, (key, title) in zip(axes, panels, strict=True):
        table = np.asarray(emergence[key], dtype=float)  # (checkpoints, layers); null -> nan
        for j, layer in enumerate(emergence["layers"]):
            ax.plot(x, table[:, j], marker="o", color=PALETTE[j % len(PALETTE)],
                    label=plain(f"{j + 1}: {short_layer(layer)}"))  # fmt: skip
        ax.set_title(title, fontsize=10)
        ax.set_ylabel(title)
        ax.set_xlabel("training iteration" if known else "checkpoint")
        if known:
            ax.set_xscale("symlog", linthresh=max(1.0, float(np.min(x[x > 0], initial=1.0))))
        ax.grid(alpha=0.3)
    axes[1].set_ylim(0, 1.05)
    axes[0].legend(fontsize=9)
    return fig


TRIGGER_PREFIX = "trigger/"


def trigger_key(cls: int, model: int = 0) -> str:
    """The figure-map key of a suspected class's trigger thumbnail; `model` is the position of
    the model in a comparison (0 in an audit)."""
    return f"{TRIGGER_PREFIX}{model}/{cls}"


def _flagged(result: Mapping[str, Any]) -> set[int]:
    """The classes the verdict flags: the only ones any chart draws as suspected."""
    return {
        int(c) for c in ((result.get("patterns") or {}).get("backdoor") or {}).get("classes") or []
    }


def patterns_chart(result: Mapping[str, Any]) -> Figure | None:
    """Predictive power and the descriptive anomaly index per class, with the index's line;
    red: the classes the verdict flags (whichever of its tests fired)."""
    patterns = result.get("patterns") or {}
    classes = patterns.get("classes") or []
    if not classes:
        return None
    flagged = _flagged(result)
    colors = [BAD if c["class"] in flagged else PALETTE[0] for c in classes]
    fig = Figure(figsize=(11, 3.4), layout="constrained")
    power_ax, anomaly_ax = fig.subplots(1, 2)
    _class_bars(power_ax, classes, [_or_nan(c.get("predictive_power")) for c in classes], colors)
    power_ax.set_ylim(0, 1.05)
    power_ax.set_title("predictive power of each class pattern", fontsize=10)
    power_ax.set_ylabel("fraction of other-class images → class")
    anomaly = [_or_nan(c.get("anomaly_index")) for c in classes]
    _class_bars(anomaly_ax, classes, anomaly, colors)
    if np.nanmax(np.abs(anomaly), initial=0.0) > 100:  # a zero MAD makes one index explode
        anomaly_ax.set_yscale("symlog")
    threshold = (patterns.get("backdoor") or {}).get("threshold")
    if isinstance(threshold, (int, float)):
        label = f"descriptive line {threshold:g} (not the verdict's rule)"
        anomaly_ax.axhline(threshold, color=BAD, ls="--", lw=1, label=label)
        anomaly_ax.legend(fontsize=9)
    anomaly_ax.set_title("anomaly index, descriptive (red: flagged by the verdict)", fontsize=10)
    anomaly_ax.set_ylabel("anomaly index (MADs below the median)")
    return fig


def verdict_tests_chart(result: Mapping[str, Any]) -> Figure | None:
    """Each verdict test's statistic per class (over the restarts) against its threshold;
    red: the classes that test fired for."""
    patterns = result.get("patterns") or {}
    classes = patterns.get("classes") or []
    tests = (patterns.get("backdoor") or {}).get("tests") or []
    if not classes or not tests:
        return None
    fig = Figure(figsize=(max(11.0, 3.6 * len(tests)), 3.4), layout="constrained")
    axes = fig.subplots(1, len(tests), squeeze=False)[0]
    for ax, test in zip(axes, tests, strict=True):
        fired = set(test.get("fired") or [])
        colors = [BAD if c["class"] in fired else PALETTE[0] for c in classes]
        values = [_or_nan(v) for v in test["statistic"][: len(classes)]]
        _class_bars(ax, classes[: len(values)], values, colors)
        threshold = test.get("threshold")
        if isinstance(threshold, (int, float)):
            ax.axhline(threshold, color=BAD, ls="--", lw=1, label=f"threshold {threshold:.3g}")
            ax.legend(fontsize=9)
        ax.set_title(plain(f"{test['name']} (red: fired)"), fontsize=10)
        ax.set_ylabel(plain(test["name"]))
    return fig


def _class_bars(ax, classes: Sequence[Mapping[str, Any]], values, colors) -> None:
    """Bars per class, labelled 'index name', on a light grid."""
    x = np.arange(len(classes))
    ax.bar(x, values, color=colors)
    labels = [plain(f"{c['class']} {c.get('name', '')}".strip()) for c in classes]
    ax.set_xticks(x, labels, rotation=45, ha="right", fontsize=9)
    ax.grid(axis="y", alpha=0.3)


def anomaly_heatmap(results: Sequence[Mapping[str, Any]]) -> Figure | None:
    """Models x classes descriptive anomaly indices; the cells the verdict flags are boxed."""
    rows = [r for r in results if (r.get("patterns") or {}).get("classes")]
    if not rows:
        return None
    classes = rows[0]["patterns"]["classes"]
    grid = np.full((len(rows), len(classes)), np.nan)
    boxed = []
    for i, r in enumerate(rows):
        flagged = _flagged(r)
        for j, entry in enumerate(r["patterns"]["classes"][: len(classes)]):
            grid[i, j] = _or_nan(entry.get("anomaly_index"))
            if entry["class"] in flagged:
                boxed.append((i, j))
    fig = Figure(figsize=(11, 0.6 * len(rows) + 1.6), layout="constrained")
    ax = fig.subplots()
    image = ax.imshow(grid, cmap="Reds", aspect="auto")
    for i, j in boxed:
        ax.add_patch(Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, ec=PALETTE[0], lw=3))
    ax.set_yticks(np.arange(len(rows)), [plain(model_label(r)) for r in rows])
    ax.set_xticks(
        np.arange(len(classes)),
        [plain(f"{c['class']} {c.get('name', '')}") for c in classes],
        rotation=45,
        ha="right",
        fontsize=9,
    )
    for (i, j), value in np.ndenumerate(grid):
        if np.isfinite(value):
            ax.text(j, i, f"{value:.2g}", ha="center", va="center", fontsize=9)
    ax.set_xlabel("class (boxed: flagged by the verdict)")
    fig.colorbar(image, ax=ax, label="anomaly index (descriptive)")
    return fig


def robustness_chart(results: Sequence[Mapping[str, Any]]) -> Figure | None:
    """Clean against PGD robust accuracy, one pair of bars per model."""
    rows = [r for r in results if r.get("robustness")]
    if not rows:
        return None
    x = np.arange(len(rows))
    fig = Figure(figsize=(max(4.0, 1.3 * len(rows) + 2), 3.2), layout="constrained")
    ax = fig.subplots()
    clean = [_or_nan(r["robustness"].get("clean_accuracy")) for r in rows]
    robust = [_or_nan(r["robustness"].get("robust_accuracy")) for r in rows]
    for offset, values, label, color in ((-0.2, clean, "clean", PALETTE[0]),
                                         (0.2, robust, "PGD", PALETTE[1])):  # fmt: skip
        bars = ax.bar(x + offset, values, width=0.4, label=label, color=color)
        ax.bar_label(bars, fmt="%.2f", fontsize=9)  # a 0.00 bar is invisible without its label
    ax.set_xticks(x, [plain(model_label(r)) for r in rows], rotation=20, ha="right")
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("accuracy (fraction of images)")
    ax.legend(fontsize=9)
    ax.grid(axis="y", alpha=0.3)
    return fig


def _or_nan(value: Any) -> float:
    """A chart value: missing numbers become NaN (matplotlib leaves a gap)."""
    return np.nan if value is None else float(value)


def shared_space_chart(comparisons: Sequence[Mapping[str, Any]]) -> Figure | None:
    """Knowledge points and reliable ratio of every model recounted in the reference model's
    sample-embedding space, and how far each model's regional features point from the
    reference's (mean 1 - cos), per analysed-layer position."""
    if not comparisons:
        return None
    reference = [
        (comparisons[0]["reference_model"], [r["reference"] for r in comparisons[0]["layers"]])
    ]
    others = [(c["model"], [r["other"] for r in c["layers"]]) for c in comparisons]
    fig = Figure(figsize=(11, 3.4), layout="constrained")
    axes = fig.subplots(1, 3)
    for i, (name, rows) in enumerate(reference + others):
        style = {"marker": "o", "color": PALETTE[i % len(PALETTE)], "label": plain(name)}
        positions = np.arange(1, len(rows) + 1)
        axes[0].plot(positions, [_or_nan(r.get("knowledge_points")) for r in rows], **style)
        axes[1].plot(positions, [_or_nan(r.get("reliable_ratio")) for r in rows], **style)
        if i:
            cos = [_or_nan(r.get("mean_one_minus_cos")) for r in comparisons[i - 1]["layers"]]
            axes[2].plot(positions, cos, **style)
    titles = ("knowledge points / image", "reliable ratio", "mean 1 − cos to the reference")
    _style_layer_axes(axes, titles, ratio_axis=1)
    return fig


def _style_layer_axes(axes, titles, ratio_axis: int) -> None:
    """Shared look of the per-layer charts: x = analysed-layer position, one axis a ratio."""
    for ax, title in zip(axes, titles, strict=True):
        ax.set_title(title, fontsize=10)
        ax.set_ylabel(title)
        ax.set_xlabel("analysed layer (shallow → deep)")
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.grid(alpha=0.3)
    axes[ratio_axis].set_ylim(0, 1.05)
    axes[0].legend(fontsize=9)
