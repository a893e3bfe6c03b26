"""Backdoor verdict from per-class pattern statistics (our rule, not the paper's; see docs/patterns.md)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from onnxaudit.patterns.shape import ShapeStats

MAD_SCALE = 1.4826  # makes the MAD a consistent estimate of the standard deviation


def anomaly_index(values: np.ndarray) -> np.ndarray:
    """Robust z-score of how far *below* the median each value lies (Neural Cleanse's MAD index)."""
    values = np.asarray(values, dtype=float)
    median = np.median(values)
    mad = MAD_SCALE * np.median(np.abs(values - median))
    return (median - values) / max(mad, 1e-12)


@dataclass
class BackdoorVerdict:
    suspected: bool
    classes: list[int]
    anomaly_index: np.ndarray  # (T,)
    statistic: np.ndarray  # (T,) the per-class statistic the index is computed on
    threshold: float
    rule: str

    def to_dict(self) -> dict:
        return {
            "suspected": self.suspected,
            "classes": self.classes,
            "anomaly_index": [float(a) for a in self.anomaly_index],
            "statistic": [float(s) for s in self.statistic],
            "threshold": self.threshold,
            "rule": self.rule,
        }


def backdoor_verdict(
    power: np.ndarray,
    k90: np.ndarray,
    mask_l1: np.ndarray,
    shapes: list[list[ShapeStats]],
    classes: Sequence[int],
    k_grid: Sequence[float],
) -> BackdoorVerdict:
    """Flag classes whose smallest 90 %-predictive pattern is anomalously small."""
    cap = 2 * max(k_grid)
    stat = np.log(np.nanmin(np.where(np.isfinite(k90), k90, cap), axis=0))
    index = anomaly_index(stat)
    flagged = [int(t) for t, a in zip(classes, index, strict=True) if a > 2.0]
    return BackdoorVerdict(bool(flagged), flagged, index, stat, 2.0, "MAD index of log k90 > 2")
