"""How a model answers random noise blended over the whole image: a random universal perturbation.

A blended whole-image trigger (uniform noise mixed into every pixel at a small alpha) escapes the
pattern search: no small mask reproduces it. A model trained on one such trigger learns "noisy
means target" rather than the one noise image, so a *fresh* uniform-noise image blended at a
similar strength sends most images of every other class to the target. Clean models send noisy
images to natural attractor classes too (Shirt, Bag on Fashion-MNIST), but only a minority of
them. Optimised universal targeted perturbations (one L-inf bounded delta per class) were tried
first and do not separate a blend target from Shirt: docs/patterns.md.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from onnxaudit.analyses.patterns.evaluate import PredictFn, predict_labels

ALPHAS = (0.1, 0.15)  # blend strengths: x' = (1 - alpha) * x + alpha * noise


class NoiseBlendResponse:
    """Per class t: the share of images of other classes that x' = (1-a) x + a u classifies as t,
    averaged over `draws` uniform-noise images u (one u shared by all images: universal), at each
    alpha in `alphas`; `rate_` is the largest over the alphas."""

    def __init__(self, alphas: Sequence[float] = ALPHAS, draws: int = 4, seed: int = 0) -> None:
        self.alphas = alphas
        self.draws = draws
        self.seed = seed

    def fit(
        self, predict: PredictFn, x: np.ndarray, y: np.ndarray, classes: Sequence[int]
    ) -> NoiseBlendResponse:
        """x (N, C, H, W) in [0, 1] with labels y; held-out images, as for predictive power."""
        x = np.asarray(x, dtype=np.float32)
        y = np.asarray(y, dtype=np.int64)
        rng = np.random.default_rng(self.seed)
        others = [y != t for t in classes]
        rates = np.zeros((len(self.alphas), len(classes)))
        for ai, alpha in enumerate(self.alphas):
            for _ in range(self.draws):
                noise = rng.random((1, *x.shape[1:]), dtype=np.float32)
                pred = predict_labels(predict, (1 - alpha) * x + alpha * noise)
                rates[ai] += [(pred[o] == t).mean() for t, o in zip(classes, others, strict=True)]
        self.rates_ = rates / self.draws  # (A, T)
        self.rate_ = self.rates_.max(axis=0)  # (T,)
        return self
