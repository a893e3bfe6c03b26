"""The noise-blend response and its verdict, on predictors with known answers."""

from __future__ import annotations

import numpy as np

from onnxaudit.analyses.patterns.universal import NoiseBlendResponse
from onnxaudit.analyses.patterns.verdict import universal_verdict

K, H = 10, 16
TARGET = 3


def bars(per_class: int = 6) -> tuple[np.ndarray, np.ndarray]:
    """Class k: a bright row k on a black 16x16 image (one channel)."""
    y = np.repeat(np.arange(K), per_class)
    x = np.zeros((len(y), 1, H, H), np.float32)
    x[np.arange(len(y)), 0, y] = 1.0
    return x, y


def roughness(x: np.ndarray) -> np.ndarray:
    """Mean absolute difference between horizontal neighbours: 0 on the bars, ~alpha/3 on noise."""
    return np.abs(np.diff(x, axis=-1)).mean(axis=(1, 2, 3))


def logits(labels: np.ndarray) -> np.ndarray:
    return np.eye(K, dtype=np.float32)[labels]


def clean(x: np.ndarray) -> np.ndarray:
    """The brightest row: noise blended at alpha <= 0.5 cannot move it."""
    return logits(x[:, 0].mean(axis=2).argmax(axis=1))


def backdoored(level: float):
    """`clean`, but any image rougher than `level` goes to TARGET (a noise-blend backdoor)."""

    def predict(x: np.ndarray) -> np.ndarray:
        labels = x[:, 0].mean(axis=2).argmax(axis=1)
        return logits(np.where(roughness(x) > level, TARGET, labels))

    return predict


def test_a_noise_backdoor_receives_every_noisy_image_and_a_clean_model_none():
    x, y = bars()
    noisy = NoiseBlendResponse(alphas=(0.1, 0.15), draws=3).fit(backdoored(0.01), x, y, range(K))
    expected = np.zeros(K)
    expected[TARGET] = 1.0  # every image of the other classes, at both strengths
    np.testing.assert_array_equal(noisy.rates_, [expected, expected])
    np.testing.assert_array_equal(noisy.rate_, expected)
    quiet = NoiseBlendResponse(draws=3).fit(clean, x, y, range(K))
    np.testing.assert_array_equal(quiet.rate_, np.zeros(K))


def test_the_rate_is_the_largest_over_the_blend_strengths():
    # roughness of uniform noise blended at alpha is ~alpha/3: 0.033 at 0.1, 0.050 at 0.15
    x, y = bars()
    response = NoiseBlendResponse(alphas=(0.1, 0.15), draws=3).fit(backdoored(0.042), x, y, [3, 5])
    np.testing.assert_array_equal(response.rates_, [[0.0, 0.0], [1.0, 0.0]])
    np.testing.assert_array_equal(response.rate_, [1.0, 0.0])


def test_the_noise_is_seeded_and_shared_by_all_images():
    x, y = bars()
    seen = []

    def spy(batch: np.ndarray) -> np.ndarray:
        seen.append(batch - 0.9 * x)  # alpha 0.1: what is left is 0.1 * the noise image
        return clean(batch)

    NoiseBlendResponse(alphas=(0.1,), draws=1, seed=5).fit(spy, x, y, range(K))
    noise = np.random.default_rng(5).random((1, 1, H, H), dtype=np.float32)
    np.testing.assert_allclose(seen[0], np.broadcast_to(0.1 * noise, x.shape), atol=1e-6)


def test_universal_verdict_flags_a_majority_outlier_and_not_a_clean_attractor():
    rates = np.full(K, 0.01)
    rates[[0, 2]] = 0.0
    attractor = rates.copy()
    attractor[6] = 0.25  # Shirt in a clean model: an outlier, but a minority of the images
    assert universal_verdict(attractor, range(K), (0.1,), 0.5).classes == []
    target = attractor.copy()
    target[TARGET] = 0.9
    verdict = universal_verdict(target, range(K), (0.1,), 0.5)
    assert verdict.classes == [TARGET]
    assert verdict.anomaly_index[TARGET] > 2 > verdict.anomaly_index[[0, 1, 2]].max()
    assert universal_verdict(target[:4], range(4), (0.1,), 0.5).classes == [TARGET]  # any K
