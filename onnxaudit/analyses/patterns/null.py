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
TRANSFORMS = ("none", "logit", "log")
RATE_EPS = 0.01  # rates of exactly 0 (most classes of a LeNet) would have log-odds of -inf
# The same smoothing for a rate times K - 1 (verdict.spread_rate): 0.01 of a rate on the scale of
# the 10-class models it was chosen for (times 9). On the calibration half it also found the
# most (docs/patterns.md: 57 of 70 runs against 54 at 0.03 and 46 at 0.01, no false alarm).
LOG_EPS = 0.09


def transformed(values: np.ndarray, transform: str) -> np.ndarray:
    """The values on the scale the prior is fitted on: as they are, a rate's smoothed
    log-odds log((r + eps) / (1 + eps - r)) (a rate in [0, 1] is far from normal near 0), or
    the smoothed log(v + eps) of a non-negative value without an upper bound."""
    values = np.asarray(values, dtype=float)
    if transform == "logit":
        return np.log((values + RATE_EPS) / (1.0 + RATE_EPS - values))
    if transform == "log":
        return np.log(values + LOG_EPS)
    if transform != "none":
        raise AuditError(f"unknown prior transform {transform!r}; choose from {TRANSFORMS}")
    return values


def untransformed(value: float, transform: str) -> float:
    """The inverse of `transformed`: a threshold back on the statistic's own scale."""
    if transform == "logit":
        odds = float(np.exp(value))
        return (odds * (1.0 + RATE_EPS) - RATE_EPS) / (1.0 + odds)
    if transform == "log":
        return float(np.exp(value)) - LOG_EPS
    return float(transformed(value, transform))


@dataclass(frozen=True)
class CleanPrior:
    """Student-t fit (location, scale, degrees of freedom `df`) of a per-class statistic over the
    classes of clean calibration models: heavier tails than a normal, since a few natural
    shortcut classes (Bag) sit far out; df = inf is the normal. `transform` is the scale the
    fit is on (`logit` for rates); p-values take and thresholds give the statistic itself."""

    statistic: str
    location: float
    scale: float
    n_models: int
    n_classes: int
    source: str
    df: float = float("inf")
    transform: str = "none"

    def _dist(self) -> stats.rv_continuous:
        if np.isinf(self.df):
            return stats.norm(self.location, self.scale)
        return stats.t(self.df, self.location, self.scale)

    def p_values(self, values: np.ndarray) -> np.ndarray:
        """Upper-tail p-value of each value: how often a clean class scores at least this."""
        return self._dist().sf(transformed(values, self.transform))

    def threshold(self, n_classes: int, alpha: float = FAMILY_ALPHA) -> float:
        """The statistic above which a class is flagged among `n_classes` judged classes."""
        return untransformed(self._dist().isf(bonferroni(alpha, n_classes)), self.transform)

    def to_dict(self) -> dict:
        kind = "normal" if np.isinf(self.df) else "Student-t"
        return {
            "kind": f"prior from clean calibration models ({kind} fit)",
            **asdict(self),
            "df": None if np.isinf(self.df) else self.df,
        }


def bonferroni(alpha: float, n_tests: int) -> float:
    """Per-class significance level that keeps the family-wise error at `alpha`."""
    if n_tests < 1:
        raise AuditError("no classes to judge")
    return alpha / n_tests


def fit_prior(
    values: Sequence[float],
    n_models: int,
    statistic: str,
    source: str,
    heavy_tails: bool = False,
    min_scale: float = 0.05,
    transform: str = "none",
) -> CleanPrior:
    """Fit the prior to the per-class values of clean models (on the `transform` scale): mean
    and sample standard deviation (normal), or a maximum-likelihood Student-t when
    `heavy_tails`."""
    values = transformed(values, transform)
    if len(values) < 3:
        raise AuditError("a prior needs the statistics of at least 3 clean classes")
    if heavy_tails:
        df, loc, scale = stats.t.fit(values)
        scale = max(float(scale), min_scale)
        return CleanPrior(
            statistic, float(loc), scale, n_models, len(values), source, df, transform
        )
    scale = max(float(values.std(ddof=1)), min_scale)
    return CleanPrior(
        statistic, float(values.mean()), scale, n_models, len(values), source, transform=transform
    )


@dataclass(frozen=True)
class EmpiricalNull:
    """The clean calibration sample of a non-negative per-class statistic, kept as it is: `n`
    values, of which the non-zero ones are `positive` (descending; the rest are 0). For a
    statistic whose clean values are nearly all 0 a fitted distribution has no scale to fit;
    the empirical upper-tail p-value (1 + #{clean >= s}) / (n + 1) needs none (a rank test: a
    clean class is as likely to score s as any of the n). `floor` is the effect a flag also
    needs (the smallest p-value a sample of n gives is 1 / (n + 1), at any s above all of it)."""

    statistic: str
    n: int
    positive: tuple[float, ...]
    floor: float
    n_models: int
    source: str

    def exceeding(self, value: float) -> int:
        """How many of the clean values are at least `value`."""
        if value <= 0:
            return self.n
        return sum(v >= value for v in self.positive)

    def p_values(self, values: np.ndarray) -> np.ndarray:
        return np.array([(1 + self.exceeding(float(v))) / (self.n + 1) for v in values])

    def threshold(self, n_classes: int, alpha: float = FAMILY_ALPHA) -> float:
        """The statistic at or above which a class is flagged among `n_classes` (the floor, or
        just above the clean value whose rank the level allows); inf when the sample is too
        small for the level."""
        allowed = int(np.floor(bonferroni(alpha, n_classes) * (self.n + 1) + 1e-9)) - 1
        if allowed < 0:
            return float("inf")
        ranked = (*self.positive, *(0.0,) * (self.n - len(self.positive)))
        above = ranked[allowed] if allowed < len(ranked) else 0.0
        return max(self.floor, float(np.nextafter(above, np.inf)))

    def to_dict(self) -> dict:
        return {"kind": "empirical null of clean calibration models", **asdict(self)}


def fit_empirical(
    values: Sequence[float], n_models: int, statistic: str, source: str, floor: float
) -> EmpiricalNull:
    """The empirical null of non-negative per-class values of clean models."""
    values = np.asarray(values, dtype=float)
    if len(values) < 3 or (values < 0).any():
        raise AuditError("an empirical null needs at least 3 non-negative clean values")
    positive = tuple(round(float(v), 4) for v in sorted(values[values > 0], reverse=True))
    return EmpiricalNull(statistic, len(values), positive, floor, n_models, source)
