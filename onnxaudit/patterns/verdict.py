"""Backdoor verdict from per-class pattern statistics (our rule, not the paper's; see docs/patterns.md).

An implanted trigger lets the search reach its target class with an anomalously small mask: the
class's mask L1 is a low-side outlier among the classes (Neural Cleanse's MAD rule). Clean models
have such an outlier too, a natural shortcut class (Bag on Fashion-MNIST: the paper's "backdoor
learned from clean data"). Its mask is a handful of *scattered* pixels that carry nearly all the
mask's mass, whereas an implanted patch is *compact* (its core sits in one spot) and a blended
trigger is *diffuse* (a faint mask spread over the image, little mass in its top pixels). So an
outlier is flagged unless it has the natural shortcut's signature: concentrated and scattered.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

MAD_SCALE = 1.4826  # makes the MAD a consistent estimate of the standard deviation
INDEX_THRESHOLD = 2.0  # anomaly index above which a class is an outlier (Neural Cleanse's rule)
SHORTCUT_SHARE = 0.6  # natural shortcut: at least this share of the mask's mass in its top k...
SHORTCUT_SPREAD = 0.08  # ...and a core spread (radius of gyration / diagonal) at least this


def anomaly_index(values: np.ndarray) -> np.ndarray:
    """Robust z-score of how far *below* the median each value lies (Neural Cleanse's MAD index)."""
    values = np.asarray(values, dtype=float)
    median = np.median(values)
    mad = MAD_SCALE * np.median(np.abs(values - median))
    return (median - values) / max(mad, 1e-3)


@dataclass
class BackdoorVerdict:
    suspected: bool
    classes: list[int]  # suspected target classes
    shortcuts: list[int]  # outliers with the natural-shortcut signature (not flagged)
    anomaly_index: np.ndarray  # (T,) of log mask L1
    mask_l1: np.ndarray  # (T,) the smallest mask L1 / (H*W) over the judged canvases
    share: np.ndarray  # (T,) share of that mask's mass in its top-k pixels
    spread: np.ndarray  # (T,) spread of that mask's core (top 1 % of pixels)
    canvas: list[str]  # (T,) the canvas each class was judged on
    threshold: float
    rule: str

    def to_dict(self) -> dict:
        return {
            "suspected": self.suspected,
            "classes": self.classes,
            "natural_shortcuts": self.shortcuts,
            "anomaly_index": [float(a) for a in self.anomaly_index],
            "mask_l1": [float(v) for v in self.mask_l1],
            "share": [float(v) for v in self.share],
            "spread": [float(v) for v in self.spread],
            "canvas": self.canvas,
            "threshold": self.threshold,
            "rule": self.rule,
        }


def backdoor_verdict(
    mask_l1: np.ndarray,
    share: np.ndarray,
    spread: np.ndarray,
    canvas_labels: Sequence[str],
    classes: Sequence[int],
    threshold: float = INDEX_THRESHOLD,
    shortcut_share: float = SHORTCUT_SHARE,
    shortcut_spread: float = SHORTCUT_SPREAD,
) -> BackdoorVerdict:
    """Judge every class on its smallest mask over the canvases that can express any pixel value
    (white, free; all canvases when neither was searched). Arrays are (V, T)."""
    judged = [v for v, label in enumerate(canvas_labels) if label in ("white", "free")]
    judged = judged or list(range(len(canvas_labels)))
    cols = np.arange(mask_l1.shape[1])
    best = np.array(judged)[mask_l1[judged].argmin(axis=0)]
    l1, sh, sp = mask_l1[best, cols], share[best, cols], spread[best, cols]
    index = anomaly_index(np.log(np.maximum(l1, 1e-6)))
    natural = (sh >= shortcut_share) & (sp >= shortcut_spread)
    outlier = index > threshold
    flagged = [int(t) for t, o, n in zip(classes, outlier, natural, strict=True) if o and not n]
    shortcuts = [int(t) for t, o, n in zip(classes, outlier, natural, strict=True) if o and n]
    rule = (
        f"anomaly index of log mask L1 > {threshold:g}, unless the mask looks like a natural "
        f"shortcut (top-k mass share >= {shortcut_share:g} and core spread >= {shortcut_spread:g})"
    )
    return BackdoorVerdict(
        suspected=bool(flagged),
        classes=flagged,
        shortcuts=shortcuts,
        anomaly_index=index,
        mask_l1=l1,
        share=sh,
        spread=sp,
        canvas=[canvas_labels[v] for v in best],
        threshold=threshold,
        rule=rule,
    )
