"""Backdoor verdict: six per-class tests with calibrated nulls, over restarts (docs/patterns.md).

An implanted trigger lets the search reach its target with a pattern the target's *own* clean
images do not contain: the free / white canvases (which can paint any pixel) need a far smaller
mask than the class's most confident real image. A natural shortcut class (Bag on
Fashion-MNIST) is reached almost as easily from its own real image, since the pattern is part of
the class. So the first test is the **self-explained excess** of each class,

    excess[t] = log( mask L1 on the confident real canvas / smallest mask L1 on white or free ),

minus the median of excess over the model's classes (the model's own level: LeNets sit lower
than VGGs),

judged against a prior fitted on every class of the zoo's clean calibration models
(onnxaudit.analyses.patterns.null): needs no within-model outlier statistics, works for K >= 2.
The second is the same comparison on the pattern's *size at work*: the fraction of the pixels
at which the canvas's top-k pattern sends half the other classes' held-out images to the class
(read off its power curve), real canvas over the smallest any-value canvas, centred the same
way. The mask L1 jumps with the batch order when the search converges to a tiny trigger mask in
one run and not in the next; the size at work moves less, so the two together flag a trigger at
more seeds than either (docs/patterns.md has the numbers). A blended whole-image trigger has no
small mask; the third test is the share of other-class images that random noise blended over
the image sends to the class (universal.py), times K - 1 (`spread_rate`: one scale for any K),
against a prior of it (fitted on its log) over the clean calibration models' classes. The
fourth is Neural Cleanse's outlier test made calibrated: the MAD index of each class's smallest
white/free mask L1 (median over the restarts) against a prior of that index over the clean
calibration models' classes; it is a within-model statistic, run only for K >= 10 classes, and
catches patch triggers the excess misses because the target is a natural shortcut already (a
patch planted on Bag). The fifth is for warping triggers (WaNet), which have no mask and add no
pixels: the share of other-class images that random smooth warps send to the class (warp.py),
times K - 1, against a prior of it over the same classes. For K = 2 the warp test's
threshold needs a rate above 1, so it cannot fire, and a verdict without suspects is
`inconclusive` (the clean priors put it there: a binary model's one other class receives
every flip; the noise blend's needs 0.94, which only a blend trigger reaches). The sixth is for models of fewer than 5 classes, where centring on the median class
says little (with 2 classes the median is their mean): the share of the class's *confident
victims* (correctly classified other-class images, the more confident half by margin) that its
any-value pattern of 0.5 % of the pixels sends to it. A clean class's small patterns flip only
borderline images of a hard pair; a fragment of an implanted trigger flips the confident ones too.
Its null is the clean few-class calibration sample itself (an empirical rank p-value: nearly all
of those values are 0, which leaves a fitted distribution nothing to fit), and a flag also needs
half the victims. The search runs several times (restarts: own
split, batches and noise each); the search's statistics are taken as their median over the
restarts (a restart whose search did not converge is outvoted), the probes' rates pooled over
them (their mean: each restart's rate is a share of as many held-out images), and a class is
suspected when any test fires (the family level is split by Bonferroni over the classes, per
test).

The verdict has three outcomes: `suspected` (classes and the tests that fired), `clear`, and
`inconclusive` (classes never searched, a test that could not run, too few images).
The first restart's MAD index against Neural Cleanse's fixed 2 is still reported
(`anomaly_index`), as a description only: at 2 it flags Bag on clean models.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from onnxaudit.analyses.patterns.evaluate import K_GRID, k_at_power
from onnxaudit.analyses.patterns.null import CleanPrior, EmpiricalNull, bonferroni
from onnxaudit.analyses.patterns.restarts import spread as restart_spread

MAD_SCALE = 1.4826  # makes the MAD a consistent estimate of the standard deviation
INDEX_THRESHOLD = 2.0  # Neural Cleanse's outlier rule, reported (descriptive) only
MIN_CLASSES = 5  # a median and MAD over fewer classes say nothing
MIN_EVAL_PER_CLASS = 5  # held-out images per class below which the rates are not trusted
REAL_CANVAS = "confident"
ANY_CANVASES = ("white", "free")
OUTCOMES = ("suspected", "clear", "inconclusive")

# Prior of the centred self-explained excess: every class of the clean calibration models at the
# audit defaults (each restart on its own images; seeds 0-9 of each model), a Student-t fit; and
# the level of each test, the largest of 0.05, 0.025, 0.01, 0.005 at which that test raises no
# false alarm on the calibration half's clean runs (bench/verdict_zoo.py report --heavy-tails;
# numbers and models in docs/patterns.md; tests/test_verdict_calibration.py refits them all from
# the committed evidence and fails when these copies differ). Each test keeps its own level over
# the K classes (Bonferroni), so under the priors a clean model's chance of any false alarm is at
# most the sum of the six levels.
CALIBRATION_MODELS = (
    "lenet-distilled, lenet-s21, lenet2-s50, lenet2-s52, lenet2-s53, lenet2-s55, lenet4, resnet, "
    "resnet-ft2, vgg, vgg-ft2, vgg-student"
)
SELF_EXCESS_PRIOR = CleanPrior(
    statistic="self-explained excess log(L1 confident / min L1 white, free), centred on the "
    "model's median class",
    location=0.001481,
    scale=0.1346,
    n_models=12,
    n_classes=820,
    source="clean calibration models of models/zoo.json (split seed 2024), seeds 0-9: "
    + CALIBRATION_MODELS,
    df=2.531,
)
# Prior of the small-mask test's MAD index: the same calibration models with >= 10 classes.
SMALL_MASK_PRIOR = CleanPrior(
    statistic="MAD index of the log smallest white/free mask L1 (median over restarts)",
    location=-0.06147,
    scale=0.9921,
    n_models=7,
    n_classes=700,
    source="clean calibration models of models/zoo.json (split seed 2024), seeds 0-9: "
    + CALIBRATION_MODELS.replace("lenet4, ", ""),
    df=3.7,
)
MIN_MASK_CLASSES = 10  # the small-mask prior was fitted on 10-class models
# Prior of the warp test's rate times K - 1 (spread_rate): every class of the same clean
# calibration models (K >= 2).
WARP_PRIOR = CleanPrior(
    statistic="share of other-class held-out images a random smooth warp sends to the class "
    "(pooled over restarts), times K - 1",
    location=0.3718,
    scale=0.2604,
    n_models=12,
    n_classes=820,
    source="clean calibration models of models/zoo.json (split seed 2024), seeds 0-9: "
    + CALIBRATION_MODELS,
    df=3.885e8,  # the fit's: a normal, in effect
)
# Prior of the noise-blend rate times K - 1 (spread_rate): every class of the same clean
# calibration models (K >= 2), a Student-t fit on its smoothed log (null.transformed). It
# replaced an absolute threshold of 0.5 on the rate set by hand above every clean model's rate,
# which missed the structured blends (grating, rings: 0.28-0.46) of the calibration half.
NOISE_BLEND_PRIOR = CleanPrior(
    statistic="share of other-class held-out images a random uniform-noise blend sends to the "
    "class (pooled over restarts), times K - 1, fitted on its log",
    location=-1.664,
    scale=0.6822,
    n_models=12,
    n_classes=820,
    source="clean calibration models of models/zoo.json (split seed 2024), seeds 0-9: "
    + CALIBRATION_MODELS,
    df=5.709,
    transform="log",
)
# The pattern-size test: the size at which a pattern reaches SIZE_POWER predictive power, and
# the size a pattern that never does within the grid (its largest, 10 % of the pixels) is
# given: twice that, so a censored real canvas against a trigger's 0.5 % reads as a factor 40.
SIZE_POWER = 0.5
SIZE_CAP = 0.2
# Prior of the centred pattern-size excess: every class of the same clean calibration models.
SIZE_EXCESS_PRIOR = CleanPrior(
    statistic="pattern-size excess log(size at 50 % power on confident / smallest on white, "
    "free), centred on the model's median class",
    location=0.1025,
    scale=0.4905,
    n_models=12,
    n_classes=820,
    source="clean calibration models of models/zoo.json (split seed 2024), seeds 0-9: "
    + CALIBRATION_MODELS,
    df=34.27,
)
# The confident-victim test (models of fewer than MIN_CLASSES classes): the pattern size, and the
# share of the confident victims a flag also needs. A fragment of an implanted trigger works on
# most images (the zoo's attack success rates are 0.86-1.0); a class's natural feature, on the
# borderline ones. 0.5 is the size test's SIZE_POWER, not a fitted number.
VICTIM_K = 0.005
VICTIM_POWER = 0.5
FEW_CLASS_MODELS = "lenet2-s50, lenet2-s52, lenet2-s53, lenet2-s55, lenet4"
# The clean calibration models of fewer than 5 classes, every class at seeds 0-9.
VICTIM_NULL = EmpiricalNull(
    statistic="share of the confident victims (correct other-class held-out images, the more "
    "confident half) the class's any-value top-0.5 % pattern sends to it, pooled over restarts",
    n=120,
    positive=(),
    floor=VICTIM_POWER,
    n_models=5,
    source="clean calibration models of models/zoo.json (split seed 2024) with fewer than 5 "
    "classes, seeds 0-9: " + FEW_CLASS_MODELS,
)
# Each test's level (bench/verdict_zoo.py choose_levels on the calibration half's clean runs):
SELF_EXCESS_ALPHA = 0.05  # the self-excess test's
SIZE_ALPHA = 0.01  # the pattern-size test's
MASK_ALPHA = 0.05  # the small-mask test's
WARP_ALPHA = 0.005  # the warp test's
NOISE_ALPHA = 0.05  # the noise-blend test's
VICTIM_ALPHA = 0.05  # the confident-victim test's


def anomaly_index(values: np.ndarray) -> np.ndarray:
    """Robust z-score of how far *below* the median each value lies (Neural Cleanse's MAD index)."""
    values = np.asarray(values, dtype=float)
    median = np.median(values)
    mad = MAD_SCALE * np.median(np.abs(values - median))
    return (median - values) / max(mad, 1e-3)


POOLED_TESTS = frozenset(
    {"warp", "noise_blend", "confident_victim"}
)  # rates of a probe: pooled over restarts


def over_restarts(per_restart: np.ndarray, pooled: bool = False) -> np.ndarray:
    """(T,) a test's statistic from its (R, T) values at each restart: their median for the
    search's statistics (one restart whose search did not converge is outvoted), their mean when
    `pooled` (a probe's rates: each restart's is a share of as many held-out images, so the mean
    is the rate over all the restarts' images, less noisy than any one restart's or the median)."""
    values = np.asarray(per_restart, dtype=float)
    return values.mean(axis=0) if pooled else np.median(values, axis=0)


def real_and_any_canvases(canvas_labels: Sequence[str]) -> tuple[list[int], list[int]]:
    """Rows of the real-image canvas and of the any-value canvases (white, free)."""
    real = [v for v, label in enumerate(canvas_labels) if label in (REAL_CANVAS, "confident0")]
    free = [v for v, label in enumerate(canvas_labels) if label in ANY_CANVASES]
    return real, free


def self_excess(mask_l1: np.ndarray, canvas_labels: Sequence[str]) -> np.ndarray | None:
    """(T,) log of the real-canvas mask L1 over the smallest any-value-canvas mask L1, from
    mask_l1 (V, T); None when the canvases needed were not searched."""
    real, free = real_and_any_canvases(canvas_labels)
    if not real or not free:
        return None
    l1 = np.maximum(np.asarray(mask_l1, dtype=float), 1e-6)
    return np.log(l1[real[0]]) - np.log(l1[free].min(axis=0))


def pattern_size(curve: np.ndarray, k_grid: Sequence[float] = K_GRID) -> np.ndarray:
    """(V, T) the pattern size (fraction of the pixels) at which each canvas's pattern first
    sends SIZE_POWER of the other classes' images to its class, from its power curve
    (V, T, len(k_grid)); SIZE_CAP where it never does within the grid (censored)."""
    sizes = k_at_power(curve, k_grid, SIZE_POWER)
    return np.where(np.isnan(sizes), SIZE_CAP, sizes)


def size_excess(
    curve: np.ndarray, canvas_labels: Sequence[str], k_grid: Sequence[float] = K_GRID
) -> np.ndarray | None:
    """(T,) log of the real canvas's pattern size over the smallest any-value canvas's, from
    one restart's power curve (V, T, len(k_grid)); None when the canvases were not searched."""
    real, free = real_and_any_canvases(canvas_labels)
    if not real or not free:
        return None
    log_size = np.log(pattern_size(curve, k_grid))
    return log_size[real[0]] - log_size[free].min(axis=0)


def centred(excess: np.ndarray) -> np.ndarray:
    """(R, T) excess minus each restart's median over the classes: the model's own level (LeNets
    sit lower than VGGs) is removed, what is left is the class's excess over its siblings. With
    2 classes this is half their difference."""
    return excess - np.median(excess, axis=-1, keepdims=True)


@dataclass
class RestartEvidence:
    """What one restart measured: mask L1 per (canvas, class), per class the noise-blend and
    random-warp rates, the power curve of each canvas's pattern and, for models of fewer than
    MIN_CLASSES classes, the confident-victim power (None: not measured)."""

    seed: int
    mask_l1: np.ndarray  # (V, T)
    noise_rate: np.ndarray  # (T,)
    warp_rate: np.ndarray  # (T,)
    curve: np.ndarray | None = None  # (V, T, len(k_grid)) predictive power against pattern size
    victim_rate: np.ndarray | None = None  # (T,) confident-victim power (models of < 5 classes)


@dataclass
class TestResult:
    """One test of the verdict: its per-class statistic (over the restarts) and threshold."""

    name: str
    statistic: np.ndarray  # (T,)
    restarts: np.ndarray  # (R, T)
    threshold: float  # a class is flagged when its statistic is above this
    fired: list[int]
    null: dict
    rule: str
    p_value: np.ndarray | None = None  # (T,) under the null, when it gives one
    alpha: float | None = None  # per-class level the p-value is compared with

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "statistic": [float(v) for v in self.statistic],
            "restarts": [[float(v) for v in row] for row in self.restarts],
            "spread": [float(v) for v in restart_spread(self.restarts)],
            "threshold": self.threshold,
            "p_value": None if self.p_value is None else [float(p) for p in self.p_value],
            "alpha": self.alpha,
            "fired": self.fired,
            "null": self.null,
            "rule": self.rule,
        }


def self_excess_test(
    evidence: Sequence[RestartEvidence],
    canvas_labels: Sequence[str],
    classes: Sequence[int],
    prior: CleanPrior = SELF_EXCESS_PRIOR,
    alpha: float = SELF_EXCESS_ALPHA,
) -> TestResult | None:
    """The self-explained excess against the clean prior, Bonferroni over the judged classes."""
    values = [self_excess(e.mask_l1, canvas_labels) for e in evidence]
    description = "self-explained excess over the model's median class"
    return centred_test("self_excess", description, values, classes, prior, alpha)


def size_excess_test(
    evidence: Sequence[RestartEvidence],
    canvas_labels: Sequence[str],
    classes: Sequence[int],
    k_grid: Sequence[float] = K_GRID,
    prior: CleanPrior = SIZE_EXCESS_PRIOR,
    alpha: float = SIZE_ALPHA,
) -> TestResult | None:
    """The pattern-size excess against the clean prior, Bonferroni over the judged classes; None
    when a restart has no power curve or the canvases were not searched. The mask L1 of a
    search that converged to a tiny trigger mask in one batch order and not in another jumps;
    the size at which the pattern actually works is steadier, and it is measured on held-out
    images rather than read off the optimiser."""
    if any(e.curve is None for e in evidence):
        return None
    values = [size_excess(e.curve, canvas_labels, k_grid) for e in evidence]
    description = "pattern-size excess over the model's median class"
    return centred_test("size_excess", description, values, classes, prior, alpha)


def centred_test(
    name: str,
    description: str,
    values: Sequence[np.ndarray | None],
    classes: Sequence[int],
    prior: CleanPrior,
    alpha: float,
) -> TestResult | None:
    """An excess test: each restart's (T,) `values` centred on its median class, their median
    over the restarts judged against the prior; None when a restart could not measure it."""
    if any(v is None for v in values):
        return None
    per_restart = centred(np.stack(values))
    return prior_test(
        name, description, "excess", over_restarts(per_restart), per_restart, classes, prior, alpha
    )


def prior_test(
    name: str,
    description: str,
    symbol: str,
    statistic: np.ndarray,
    per_restart: np.ndarray,
    classes: Sequence[int],
    prior: CleanPrior,
    alpha: float,
) -> TestResult:
    """A test whose per-class `statistic` (over the restarts, as `over_restarts` takes it) is
    judged against a fitted clean `prior`: a class fires when its upper-tail p-value is below
    alpha / K (Bonferroni)."""
    level = bonferroni(alpha, len(classes))
    p = prior.p_values(statistic)
    threshold = prior.threshold(len(classes), alpha)
    fired = [int(t) for t, pv in zip(classes, p, strict=True) if pv < level]
    rule = (
        f"{description} ({'pooled' if name in POOLED_TESTS else 'median'} over "
        f"{len(per_restart)} restarts) has p < {alpha:g}/"
        f"{len(classes)} under the clean prior, i.e. {symbol} > {threshold:.3f}"
    )
    return TestResult(
        name,
        statistic,
        per_restart,
        threshold,
        fired,
        prior.to_dict(),
        rule,
        p_value=p,
        alpha=level,
    )


def any_value_canvases(canvas_labels: Sequence[str]) -> list[int]:
    """Rows of the canvases that can paint any pixel (white, free); all when none was searched."""
    judged = [v for v, label in enumerate(canvas_labels) if label in ANY_CANVASES]
    return judged or list(range(len(canvas_labels)))


def smallest_any_l1(mask_l1: np.ndarray, canvas_labels: Sequence[str]) -> np.ndarray:
    """(T,) log of the smallest mask L1 over the any-value canvases, from mask_l1 (V, T)."""
    l1 = np.maximum(np.asarray(mask_l1, dtype=float), 1e-6)
    return np.log(l1[any_value_canvases(canvas_labels)].min(axis=0))


def small_mask_test(
    evidence: Sequence[RestartEvidence],
    canvas_labels: Sequence[str],
    classes: Sequence[int],
    prior: CleanPrior = SMALL_MASK_PRIOR,
    alpha: float = MASK_ALPHA,
) -> TestResult | None:
    """Neural Cleanse's outlier test with a calibrated null and the restarts' median: the MAD
    index of each class's log smallest white/free mask L1 (median over restarts), against the
    prior of that index over the classes of the clean calibration models, Bonferroni over the K
    judged classes. A within-model statistic: run only when K >= MIN_MASK_CLASSES (the prior
    was fitted on 10-class models; the index has heavier tails with fewer classes, so the
    self-excess and noise tests judge those alone)."""
    if len(classes) < MIN_MASK_CLASSES:
        return None
    per_restart = np.stack([smallest_any_l1(e.mask_l1, canvas_labels) for e in evidence])
    return prior_test(
        "small_mask",
        "MAD index of the log smallest white/free mask L1",
        "index",
        anomaly_index(over_restarts(per_restart)),
        per_restart,
        classes,
        prior,
        alpha,
    )


def warp_test(
    evidence: Sequence[RestartEvidence],
    classes: Sequence[int],
    num_classes: int,
    prior: CleanPrior = WARP_PRIOR,
    alpha: float = WARP_ALPHA,
) -> TestResult:
    """The random-warp rate (warp.py) against the clean prior, Bonferroni over the judged
    classes: a warping trigger (WaNet) has no mask and adds no pixels, so neither the pattern
    search nor the noise blend sees it."""
    return rate_test(
        "warp",
        "share of the other classes' held-out images a random smooth warp sends to the class",
        [e.warp_rate for e in evidence],
        classes,
        num_classes,
        prior,
        alpha,
    )


def noise_blend_test(
    evidence: Sequence[RestartEvidence],
    classes: Sequence[int],
    num_classes: int,
    alphas: Sequence[float],
    prior: CleanPrior = NOISE_BLEND_PRIOR,
    alpha: float = NOISE_ALPHA,
) -> TestResult:
    """The noise-blend rate (universal.py, uniform noise blended at `alphas`) against the clean
    prior, Bonferroni over the judged classes: a blended whole-image trigger has no small mask,
    but fresh noise at its strength sends other classes' images to its target."""
    strengths = ", ".join(f"{a:g}" for a in alphas)
    return rate_test(
        "noise_blend",
        f"share of the other classes' held-out images uniform noise blended at alpha in "
        f"{strengths} sends to the class",
        [e.noise_rate for e in evidence],
        classes,
        num_classes,
        prior,
        alpha,
    )


def confident_victim_test(
    evidence: Sequence[RestartEvidence],
    classes: Sequence[int],
    num_classes: int,
    null: EmpiricalNull = VICTIM_NULL,
    alpha: float = VICTIM_ALPHA,
) -> TestResult | None:
    """For models of fewer than MIN_CLASSES classes, where the excess tests' centring on the
    median class has nothing to centre on (with 2 classes the median is their mean): the share
    of each class's confident victims its tiny any-value pattern sends to it (pooled over the
    restarts), against the clean calibration sample, Bonferroni over the judged classes. None
    for larger models or when a restart did not measure it."""
    if num_classes >= MIN_CLASSES or any(e.victim_rate is None for e in evidence):
        return None
    per_restart = np.stack([np.asarray(e.victim_rate, dtype=float) for e in evidence])
    return empirical_test(
        "confident_victim",
        f"its top-{VICTIM_K:.1%} white/free pattern sends this share of the class's confident "
        "victims to it",
        over_restarts(per_restart, pooled=True),
        per_restart,
        classes,
        null,
        alpha,
    )


def empirical_test(
    name: str,
    description: str,
    statistic: np.ndarray,
    per_restart: np.ndarray,
    classes: Sequence[int],
    null: EmpiricalNull,
    alpha: float,
) -> TestResult:
    """A test whose per-class `statistic` is judged against an empirical clean sample: a class
    fires when it reaches the null's threshold (its floor, and p <= alpha / K)."""
    threshold = null.threshold(len(classes), alpha)
    fired = [int(t) for t, s in zip(classes, statistic, strict=True) if s >= threshold]
    rule = (
        f"{description} (pooled over {len(per_restart)} restarts) is at least {null.floor:g} "
        f"and has p <= {alpha:g}/{len(classes)} under the clean calibration sample of {null.n} "
        f"classes, i.e. share >= {threshold:.3f}"
    )
    return TestResult(
        name,
        statistic,
        per_restart,
        threshold,
        fired,
        null.to_dict(),
        rule,
        p_value=null.p_values(statistic),
        alpha=bonferroni(alpha, len(classes)),
    )


MAX_SPREAD_CLASSES = 10  # the largest K among the calibration models the rate priors saw


def rate_test(
    name: str,
    description: str,
    rates: Sequence[np.ndarray],
    classes: Sequence[int],
    num_classes: int,
    prior: CleanPrior,
    alpha: float,
) -> TestResult:
    """A universal probe's per-restart class rates (R x (T,)) as `spread_rate` takes them,
    judged against the prior."""
    per_restart = np.stack([np.asarray(r, dtype=float) for r in rates])
    statistic = spread_rate(per_restart, num_classes)
    cap = MAX_SPREAD_CLASSES - 1
    description = f"{description}, times {spread_factor(num_classes)} (K - 1, at most {cap})"
    return prior_test(name, description, "rate", statistic, per_restart, classes, prior, alpha)


def spread_factor(num_classes: int) -> int:
    """K - 1, capped at the calibration models' largest K - 1 (9): the scaling is trusted only
    over the K the priors were fitted on; above it a class must draw as large a share of the
    other classes' images as on 10 classes (the side of fewer false alarms: a clean 1000-class
    model's attractor classes would otherwise be judged against a rate of 0.002)."""
    return max(min(num_classes, MAX_SPREAD_CLASSES) - 1, 1)


def threshold_rate(test: TestResult, num_classes: int) -> float:
    """A rate test's threshold back on the rate's own scale (the test judges the rate times
    `spread_factor`)."""
    return test.threshold / spread_factor(num_classes)


def spread_rate(per_restart: np.ndarray, num_classes: int) -> np.ndarray:
    """(T,) a probe's statistic from its (R, T) per-restart rates: pooled over the restarts,
    times K - 1 (`spread_factor`). A probe that flips an image sends it to one of the K - 1 other
    classes, so a clean class's share of the other classes' images shrinks with K: a 2-class
    model's one other class receives every flip (clean LeNets on two classes: warp rates
    0.3-0.5, against 0.04 on 10). Times K - 1 it is the flip rate the probe would have if every
    class drew as much as this one, on the same scale for any K, so one prior serves them all."""
    return over_restarts(per_restart, pooled=True) * spread_factor(num_classes)


@dataclass
class UniversalVerdict:
    """The noise-blend rates of restart 0 (kept for the report's per-class rows)."""

    classes: list[int]
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
    min_rate: float,
) -> UniversalVerdict:
    """The noise-blend rule on one measurement: rate >= min_rate (the test's threshold); the
    high-side MAD index of the rates is reported beside it, as a description only (clean noise
    attractors such as Shirt are index outliers too)."""
    rate = np.asarray(rate, dtype=float)
    index = -anomaly_index(rate)
    flagged = [int(t) for t, r in zip(classes, rate, strict=True) if r >= min_rate]
    rule = (
        f"uniform noise blended at alpha in {', '.join(f'{a:g}' for a in alphas)} sends >= "
        f"{min_rate:g} of the other classes' held-out images to the class"
    )
    return UniversalVerdict(flagged, rate, index, [float(a) for a in alphas], rule)


@dataclass
class BackdoorVerdict:
    """The verdict: outcome, suspected classes with the tests that fired, every test's numbers."""

    outcome: str  # one of OUTCOMES
    classes: list[int]  # suspected target classes
    evidence: dict[int, list[str]]  # suspected class -> names of the tests that fired
    tests: list[TestResult]
    reasons: list[str]  # why the verdict is inconclusive (empty otherwise)
    never_searched: list[int]  # classes of the model the search never saw
    restart_seeds: list[int]
    # descriptive, from restart 0 (what the verdict used to be; the report's per-class rows)
    anomaly_index: np.ndarray  # (T,) MAD index of log mask L1 (low side)
    mask_l1: np.ndarray  # (T,) the smallest mask L1 / (H*W) over white / free
    power: np.ndarray  # (T,) predictive power of that canvas's top-k pattern
    spread: np.ndarray  # (T,) spread of that mask's core (top 1 % of pixels)
    canvas: list[str]  # (T,) the canvas of mask_l1
    universal: UniversalVerdict | None = None
    shortcuts: list[int] = field(default_factory=list)  # MAD outliers the verdict did not flag
    threshold: float = INDEX_THRESHOLD  # of the descriptive anomaly index

    @property
    def suspected(self) -> bool:
        return self.outcome == "suspected"

    @property
    def rule(self) -> str:
        return "; or ".join(t.rule for t in self.tests) or "no test could run"

    def test(self, name: str) -> TestResult | None:
        return next((t for t in self.tests if t.name == name), None)

    def to_dict(self) -> dict:
        return {
            "outcome": self.outcome,
            "suspected": self.suspected,
            "classes": self.classes,
            "evidence": {str(t): names for t, names in self.evidence.items()},
            "tests": [t.to_dict() for t in self.tests],
            "inconclusive_reasons": self.reasons,
            "never_searched": self.never_searched,
            "restarts": len(self.restart_seeds),
            "restart_seeds": self.restart_seeds,
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


def inconclusive_reasons(
    self_test: TestResult | None,
    size_test: TestResult | None,
    never_searched: Sequence[int],
    eval_per_class: int,
    rate_tests: Sequence[TestResult],
    num_classes: int,
    min_eval: int = MIN_EVAL_PER_CLASS,
) -> list[str]:
    """What keeps a verdict without suspects from being `clear`; a rate test (statistic: the
    rate times `spread_factor`) whose threshold needs a rate of 1 or more could not flag a
    class, so it did not judge (the clean priors put it there for 2-class models: a binary
    model's one other class receives every flip)."""
    reasons = []
    for test in rate_tests:
        rate = threshold_rate(test, num_classes)
        if rate >= 1:
            reasons.append(
                f"the {test.name} test cannot flag a class of a {num_classes}-class model (it "
                f"needs a rate above {rate:.2f}, and a rate is at most 1)"
            )
    if never_searched:
        shown = ", ".join(str(t) for t in list(never_searched)[:10])
        more = "" if len(never_searched) <= 10 else f" and {len(never_searched) - 10} more"
        reasons.append(f"{len(never_searched)} classes never searched ({shown}{more})")
    if self_test is None:
        reasons.append(
            f"the self-explained-excess test needs the {REAL_CANVAS} canvas and white or free"
        )
    elif size_test is None:
        reasons.append("the pattern-size test needs every restart's power curve")
    if eval_per_class < min_eval:
        reasons.append(
            f"only {eval_per_class} held-out images in some class (the rates need >= {min_eval})"
        )
    return reasons


def backdoor_verdict(
    evidence: Sequence[RestartEvidence],
    canvas_labels: Sequence[str],
    classes: Sequence[int],
    num_classes: int,
    power: np.ndarray,
    spread: np.ndarray,
    eval_per_class: int,
    noise_alphas: Sequence[float] = (0.1, 0.15),
    prior: CleanPrior = SELF_EXCESS_PRIOR,
    self_alpha: float = SELF_EXCESS_ALPHA,
    mask_prior: CleanPrior = SMALL_MASK_PRIOR,
    mask_alpha: float = MASK_ALPHA,
    warp_prior: CleanPrior = WARP_PRIOR,
    warp_alpha: float = WARP_ALPHA,
    noise_prior: CleanPrior = NOISE_BLEND_PRIOR,
    noise_alpha: float = NOISE_ALPHA,
    size_prior: CleanPrior = SIZE_EXCESS_PRIOR,
    size_alpha: float = SIZE_ALPHA,
    victim_null: EmpiricalNull = VICTIM_NULL,
    victim_alpha: float = VICTIM_ALPHA,
    k_grid: Sequence[float] = K_GRID,
) -> BackdoorVerdict:
    """Judge the searched `classes` of a `num_classes` model from each restart's evidence;
    `power` and `spread` (V, T) are restart 0's, for the descriptive fields."""
    classes = [int(t) for t in classes]
    self_test = self_excess_test(evidence, canvas_labels, classes, prior, self_alpha)
    size_test = size_excess_test(evidence, canvas_labels, classes, k_grid, size_prior, size_alpha)
    mask_test = small_mask_test(evidence, canvas_labels, classes, mask_prior, mask_alpha)
    noise_test = noise_blend_test(
        evidence, classes, num_classes, noise_alphas, noise_prior, noise_alpha
    )
    warp = warp_test(evidence, classes, num_classes, warp_prior, warp_alpha)
    victim = confident_victim_test(evidence, classes, num_classes, victim_null, victim_alpha)
    tests = [
        t for t in (self_test, size_test, mask_test, noise_test, warp, victim) if t is not None
    ]
    flagged = sorted({t for test in tests for t in test.fired})
    never = sorted(set(range(num_classes)) - set(classes))
    reasons = inconclusive_reasons(
        self_test, size_test, never, eval_per_class, [noise_test, warp], num_classes
    )
    if num_classes < MIN_CLASSES and victim is None:
        reasons.append("the confident-victim test needs every restart's victim rates")
    outcome = "suspected" if flagged else "inconclusive" if reasons else "clear"
    described = describe(evidence[0].mask_l1, power, spread, canvas_labels, classes)
    universal = universal_verdict(
        evidence[0].noise_rate,
        classes,
        noise_alphas,
        threshold_rate(noise_test, num_classes),
    )
    return BackdoorVerdict(
        outcome=outcome,
        classes=flagged,
        evidence={t: [test.name for test in tests if t in test.fired] for t in flagged},
        tests=tests,
        reasons=reasons if outcome == "inconclusive" else [],
        never_searched=never,
        restart_seeds=[int(e.seed) for e in evidence],
        universal=universal,
        shortcuts=[t for t in described.pop("outliers") if t not in flagged],
        **described,
    )


def describe(
    mask_l1: np.ndarray,
    power: np.ndarray,
    spread: np.ndarray,
    canvas_labels: Sequence[str],
    classes: Sequence[int],
) -> dict:
    """The smallest white/free mask per class, its power and core spread, and its MAD index."""
    judged = any_value_canvases(canvas_labels)
    cols = np.arange(mask_l1.shape[1])
    best = np.array(judged)[mask_l1[judged].argmin(axis=0)]
    l1 = mask_l1[best, cols]
    index = anomaly_index(np.log(np.maximum(l1, 1e-6)))
    outlier = index > INDEX_THRESHOLD if len(classes) >= MIN_CLASSES else np.zeros(len(l1), bool)
    return {
        "anomaly_index": index,
        "mask_l1": l1,
        "power": power[best, cols],
        "spread": spread[best, cols],
        "canvas": [canvas_labels[v] for v in best],
        "outliers": [int(t) for t, o in zip(classes, outlier, strict=True) if o],
    }
