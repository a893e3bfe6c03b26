"""Backdoor verdict from per-class pattern statistics (our rule, not the paper's; see docs/patterns.md).

An implanted trigger lets the search reach its target class with an anomalously small mask: the
class's mask L1 is a low-side outlier among the classes (Neural Cleanse's MAD rule). Clean models
have such an outlier too, a natural shortcut class (Bag on Fashion-MNIST: the paper's "backdoor
learned from clean data"). Its pattern is a handful of *scattered* pixels that work when pasted
as they are, whereas an implanted patch is *compact* (its core sits in one spot) and a blended
trigger works only as a faint overlay (its soft mask is tiny, its hard top-k pattern weak). So an
outlier is flagged unless it has the natural shortcut's signature: scattered and predictive, or
its mask is not small in absolute terms (adversarially trained models have uniformly large masks,
where the smallest one is no trigger). A blended whole-image trigger has no small mask at all; it
is caught by a second rule on the response to random noise blended over the image
(onnxaudit.analyses.patterns.universal): a class that receives most noisy images of the other classes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

MAD_SCALE = 1.4826  # makes the MAD a consistent estimate of the standard deviation
INDEX_THRESHOLD = 2.0  # anomaly index above which a class is an outlier (Neural Cleanse's rule)
SHORTCUT_SPREAD = 0.08  # natural shortcut: a core spread (gyration radius / diagonal) >= this...
SHORTCUT_POWER = 0.6  # ...and a top-k pattern that flips at least this share of other images
MAX_MASK_L1 = 0.05  # a trigger's mask covers at most this fraction of the image (L1 / (H*W))
MIN_CLASSES = 5  # a median and MAD over fewer classes say nothing
MIN_NOISE_RATE = 0.5  # a blend target receives at least this share of noisy other-class images


def anomaly_index(values: np.ndarray) -> np.ndarray:
    """Robust z-score of how far *below* the median each value lies (Neural Cleanse's MAD index)."""
    values = np.asarray(values, dtype=float)
    median = np.median(values)
    mad = MAD_SCALE * np.median(np.abs(values - median))
    return (median - values) / max(mad, 1e-3)


@dataclass
class UniversalVerdict:
    """The noise-blend rule: classes that random whole-image noise sends most images to."""

    classes: list[int]  # flagged by this rule
    rate: np.ndarray  # (T,) share of noisy other-class images classified as t
    anomaly_index: np.ndarray  # (T,) how far *above* the median each rate lies
    alphas: list[float]
    rule: str

    def to_dict(self) -> dict:
        return {
            "classes": self.classes,
            "rate": [float(v) for v in self.rate],
            "anomaly_index": [float(a) for a in self.anomaly_index],
            "alphas": self.alphas,
            "rule": self.rule,
        }


def universal_verdict(
    rate: np.ndarray,
    classes: Sequence[int],
    alphas: Sequence[float],
    threshold: float = INDEX_THRESHOLD,
    min_rate: float = MIN_NOISE_RATE,
) -> UniversalVerdict:
    """Flag t when its noise rate is a high outlier (index > threshold) and a majority (>= min_rate):
    clean models' noise attractors (Shirt, Bag) are outliers too, but receive <= 0.25."""
    rate = np.asarray(rate, dtype=float)
    index = -anomaly_index(rate)
    outlier = index > threshold if len(classes) >= MIN_CLASSES else np.zeros(len(classes), bool)
    flagged = [
        int(t) for t, o, r in zip(classes, outlier, rate, strict=True) if o and r >= min_rate
    ]
    rule = (
        f"(needs >= {MIN_CLASSES} classes) uniform noise blended at alpha in "
        f"{', '.join(f'{a:g}' for a in alphas)} sends >= {min_rate:g} of the other classes' "
        f"held-out images to the class, and its anomaly index of that rate > {threshold:g}"
    )
    return UniversalVerdict(flagged, rate, index, [float(a) for a in alphas], rule)


@dataclass
class BackdoorVerdict:
    suspected: bool
    classes: list[int]  # suspected target classes
    shortcuts: list[int]  # outliers with the natural-shortcut signature (not flagged)
    anomaly_index: np.ndarray  # (T,) of log mask L1
    mask_l1: np.ndarray  # (T,) the smallest mask L1 / (H*W) over the judged canvases
    power: np.ndarray  # (T,) predictive power of that canvas's top-k pattern
    spread: np.ndarray  # (T,) spread of that mask's core (top 1 % of pixels)
    canvas: list[str]  # (T,) the canvas each class was judged on
    threshold: float
    rule: str
    universal: UniversalVerdict | None = None  # the noise-blend rule, when measured

    def to_dict(self) -> dict:
        return {
            "suspected": self.suspected,
            "classes": self.classes,
            "natural_shortcuts": self.shortcuts,
            "anomaly_index": [float(a) for a in self.anomaly_index],
            "mask_l1": [float(v) for v in self.mask_l1],
            "power": [float(v) for v in self.power],
            "spread": [float(v) for v in self.spread],
            "canvas": self.canvas,
            "threshold": self.threshold,
            "rule": self.rule,
            "universal": None if self.universal is None else self.universal.to_dict(),
        }


def backdoor_verdict(
    mask_l1: np.ndarray,
    power: np.ndarray,
    spread: np.ndarray,
    canvas_labels: Sequence[str],
    classes: Sequence[int],
    threshold: float = INDEX_THRESHOLD,
    shortcut_spread: float = SHORTCUT_SPREAD,
    shortcut_power: float = SHORTCUT_POWER,
    max_mask_l1: float = MAX_MASK_L1,
    universal: UniversalVerdict | None = None,
) -> BackdoorVerdict:
    """Judge every class on its smallest mask over the canvases that can express any pixel value
    (white, free; all canvases when neither was searched). Arrays are (V, T). Classes flagged by
    the `universal` (noise-blend) verdict are suspected too."""
    judged = [v for v, label in enumerate(canvas_labels) if label in ("white", "free")]
    judged = judged or list(range(len(canvas_labels)))
    cols = np.arange(mask_l1.shape[1])
    best = np.array(judged)[mask_l1[judged].argmin(axis=0)]
    l1, pp, sp = mask_l1[best, cols], power[best, cols], spread[best, cols]
    index = anomaly_index(np.log(np.maximum(l1, 1e-6)))
    natural = (sp >= shortcut_spread) & (pp >= shortcut_power)
    outlier = index > threshold if len(classes) >= MIN_CLASSES else np.zeros(len(classes), bool)
    small = l1 <= max_mask_l1
    flagged = [
        int(t)
        for t, o, n, m in zip(classes, outlier, natural, small, strict=True)
        if o and m and not n
    ]
    if universal is not None:
        flagged = sorted(set(flagged) | set(universal.classes))
    shortcuts = [
        int(t)
        for t, o, n in zip(classes, outlier, natural, strict=True)
        if o and n and int(t) not in flagged
    ]
    rule = (
        f"(needs >= {MIN_CLASSES} searched classes) anomaly index of log mask L1 > {threshold:g} "
        f"and mask L1 <= {max_mask_l1:g}, unless the mask looks like a natural "
        f"shortcut (core spread >= {shortcut_spread:g} and predictive power >= {shortcut_power:g})"
    )
    if universal is not None:
        rule += f"; or {universal.rule}"
    return BackdoorVerdict(
        suspected=bool(flagged),
        classes=flagged,
        shortcuts=shortcuts,
        anomaly_index=index,
        mask_l1=l1,
        power=pp,
        spread=sp,
        canvas=[canvas_labels[v] for v in best],
        threshold=threshold,
        rule=rule,
        universal=universal,
    )
