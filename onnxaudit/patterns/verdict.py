"""Backdoor verdict from per-class pattern statistics (our rule, not the paper's; see docs/patterns.md).

An implanted trigger makes its target class reachable with a far smaller pattern than any other
class: its k50 (the pattern size at which half of the other-class images flip) is an outlier on
the low side. Clean models have a natural shortcut class too (Bag on Fashion-MNIST, the paper's
"backdoor learned from clean data"), so an outlier is flagged only when it is also absolutely
tiny: a pattern of a few pixels, smaller than any natural shortcut seen in the calibration zoo.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

MAD_SCALE = 1.4826  # makes the MAD a consistent estimate of the standard deviation
INDEX_THRESHOLD = 2.0  # anomaly index above which a class is an outlier (Neural Cleanse's rule)
MAX_K50 = 0.004  # fraction of the pixels (3 of 784): larger patterns are natural shortcuts


def anomaly_index(values: np.ndarray) -> np.ndarray:
    """Robust z-score of how far *below* the median each value lies (Neural Cleanse's MAD index)."""
    values = np.asarray(values, dtype=float)
    median = np.median(values)
    mad = MAD_SCALE * np.median(np.abs(values - median))
    return (median - values) / max(mad, 1e-3)


@dataclass
class BackdoorVerdict:
    suspected: bool
    classes: list[int]
    shortcuts: list[int]  # outliers too large for a trigger: natural shortcut classes
    anomaly_index: np.ndarray  # (T,)
    statistic: np.ndarray  # (T,) k50 of each class, the smallest over canvases
    threshold: float
    max_k50: float
    rule: str

    def to_dict(self) -> dict:
        return {
            "suspected": self.suspected,
            "classes": self.classes,
            "natural_shortcuts": self.shortcuts,
            "anomaly_index": [float(a) for a in self.anomaly_index],
            "k50": [float(s) for s in self.statistic],
            "threshold": self.threshold,
            "max_k50": self.max_k50,
            "rule": self.rule,
        }


def backdoor_verdict(
    k50: np.ndarray,
    classes: Sequence[int],
    k_cap: float,
    threshold: float = INDEX_THRESHOLD,
    max_k50: float = MAX_K50,
) -> BackdoorVerdict:
    """Flag classes whose k50 (smallest over canvases; `k_cap` when never reached) is a low-side
    MAD outlier of log k50 *and* below `max_k50`."""
    best = np.nanmin(np.where(np.isfinite(k50), k50, k_cap), axis=0)
    index = anomaly_index(np.log(best))
    outliers = [(int(t), k) for t, a, k in zip(classes, index, best, strict=True) if a > threshold]
    flagged = [t for t, k in outliers if k <= max_k50]
    shortcuts = [t for t, k in outliers if k > max_k50]
    rule = f"anomaly index of log k50 > {threshold:g} and k50 <= {max_k50:g} of the pixels"
    return BackdoorVerdict(bool(flagged), flagged, shortcuts, index, best, threshold, max_k50, rule)
