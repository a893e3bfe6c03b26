"""Nulls for per-class backdoor statistics that do not need many classes.

A within-model outlier test (a median and MAD over the classes) says nothing for a 2- or
4-class model, and on Fashion-MNIST it flags the naturally easy class Bag. The statistics of
the verdict are therefore *self-normalised* per class (each class against its own clean
evidence, onnxaudit.analyses.patterns.verdict) and judged against a prior: their distribution
over every class of the clean models of the zoo's calibration half, shipped here as numbers
(docs/patterns.md says how they were measured). A class is flagged when its upper-tail p-value
under the prior is below alpha / K (Bonferroni over the K judged classes).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
from scipy import stats

from onnxaudit.errors import AuditError

FAMILY_ALPHA = 0.05  # chance of any false alarm on a clean model, under the prior


@dataclass(frozen=True)
class CleanPrior:
    """Normal fit of a per-class statistic over the classes of clean calibration models."""

    statistic: str
    location: float
    scale: float
    n_models: int
    n_classes: int
    source: str

    def p_values(self, values: np.ndarray) -> np.ndarray:
        """Upper-tail p-value of each value: how often a clean class scores at least this."""
        z = (np.asarray(values, dtype=float) - self.location) / self.scale
        return stats.norm.sf(z)

    def threshold(self, n_classes: int, alpha: float = FAMILY_ALPHA) -> float:
        """The statistic above which a class is flagged among `n_classes` judged classes."""
        return float(self.location + self.scale * stats.norm.isf(bonferroni(alpha, n_classes)))

    def to_dict(self) -> dict:
        return {"kind": "prior from clean calibration models (normal fit)", **asdict(self)}


def bonferroni(alpha: float, n_tests: int) -> float:
    """Per-class significance level that keeps the family-wise error at `alpha`."""
    if n_tests < 1:
        raise AuditError("no classes to judge")
    return alpha / n_tests


def fit_prior(
    values: Sequence[float], n_models: int, statistic: str, source: str, min_scale: float = 0.05
) -> CleanPrior:
    """Fit the prior (mean, sample standard deviation) to the per-class values of clean models."""
    values = np.asarray(values, dtype=float)
    if len(values) < 3:
        raise AuditError("a prior needs the statistics of at least 3 clean classes")
    scale = max(float(values.std(ddof=1)), min_scale)
    return CleanPrior(statistic, float(values.mean()), scale, n_models, len(values), source)
