"""How a model answers random noise blended over the whole image: a random universal perturbation.

A blended whole-image trigger (uniform noise mixed into every pixel at a small alpha) escapes the
pattern search: no small mask reproduces it. A model trained on one such trigger learns "noisy
means target" rather than the one noise image, so a *fresh* uniform-noise image blended at a
similar strength sends most images of every other class to the target. Clean models send noisy
images to natural attractor classes too (Shirt, Bag on Fashion-MNIST), but only a minority of
them. Optimised universal targeted perturbations (one L-inf bounded delta per class) were tried
first and do not separate a blend target from Shirt: docs/patterns.md.

`UniversalResponse` is the measurement both universal probes share (the random warps of warp.py
are the other): one random transform for all images, the share of each class's arrivals.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from onnxaudit.analyses.patterns.evaluate import PredictFn, predict_labels

ALPHAS = (0.1, 0.15)  # blend strengths: x' = (1 - alpha) * x + alpha * noise
# Random transforms drawn per level. One draw moves every image at once, so the rate's spread
# between runs is mostly the luck of the draws: at 4 (until 2026-12-03) the verdict's warp test
# missed the calibration backdoor resnet-patch-white4-mid at 3 seeds in 10, at 12 at 1
# (docs/patterns.md, "Probe draws").
DRAWS = 12


class UniversalResponse:
    """Per class t: the share of images of other classes that one random transform, shared by
    all images (universal), sends to t, averaged over `draws` draws at each of the transform's
    levels; `rates_` is (levels, T) and `rate_` the largest over the levels. Subclasses say
    what the levels are and how one draw transforms the images."""

    draws: int
    seed: int

    def levels(self) -> Sequence[float]:
        raise NotImplementedError

    def transformed(self, x: np.ndarray, level: float, rng: np.random.Generator) -> np.ndarray:
        raise NotImplementedError

    def stream(self) -> np.random.Generator:
        return np.random.default_rng(self.seed)

    def fit(
        self, predict: PredictFn, x: np.ndarray, y: np.ndarray, classes: Sequence[int]
    ) -> UniversalResponse:
        """x (N, C, H, W) in [0, 1] with labels y; held-out images, as for predictive power."""
        x = np.asarray(x, dtype=np.float32)
        y = np.asarray(y, dtype=np.int64)
        rng = self.stream()
        others = [y != t for t in classes]
        levels = self.levels()
        rates = np.zeros((len(levels), len(classes)))
        for li, level in enumerate(levels):
            for _ in range(self.draws):
                pred = predict_labels(predict, self.transformed(x, level, rng))
                rates[li] += [(pred[o] == t).mean() for t, o in zip(classes, others, strict=True)]
        self.rates_ = rates / self.draws
        self.rate_ = self.rates_.max(axis=0)  # (T,)
        return self


class NoiseBlendResponse(UniversalResponse):
    """The noise blend: x' = (1 - a) x + a u, one uniform-noise image u per draw, at each alpha
    a in `alphas`."""

    def __init__(self, alphas: Sequence[float] = ALPHAS, draws: int = DRAWS, seed: int = 0) -> None:
        self.alphas = alphas
        self.draws = draws
        self.seed = seed

    def levels(self) -> Sequence[float]:
        return self.alphas

    def transformed(self, x: np.ndarray, level: float, rng: np.random.Generator) -> np.ndarray:
        noise = rng.random((1, *x.shape[1:]), dtype=np.float32)
        return (1 - level) * x + level * noise
