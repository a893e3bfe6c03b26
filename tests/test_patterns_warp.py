"""The random-warp probe (onnxaudit/analyses/patterns/warp.py) on models with known answers, and
the bench's re-measurement of it against analyse_patterns' own."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from onnxaudit.analyses.patterns.warp import WarpResponse, random_flow, warp

REPO = Path(__file__).resolve().parents[1]
H = 16


def ramps(labels: np.ndarray) -> np.ndarray:
    """(N, 1, H, H) images whose level is the label and which rise linearly down the rows."""
    rows = np.arange(H, dtype=np.float32)[:, None] / H
    return np.stack([np.broadcast_to(0.1 * c + 0.3 * rows, (H, H)) for c in labels])[:, None]


def warp_detector(target: int | None):
    """A 'model' that reads the class from the level and (unless `target` is None, a clean
    model) answers `target` when an image is no longer a clean vertical ramp: a warping
    backdoor with a known answer."""

    def predict(x: np.ndarray) -> np.ndarray:
        flat = x.reshape(len(x), H, H)
        rows = np.arange(H, dtype=np.float32)[:, None] / H
        level = (flat - 0.3 * rows).mean(axis=(1, 2))
        warped = np.abs(flat - flat.mean(axis=2, keepdims=True)).max(axis=(1, 2)) > 1e-3
        labels = np.clip(np.round(level / 0.1), 0, 4).astype(int)
        if target is not None:
            labels[warped] = target
        return np.eye(5)[labels]

    return predict


def test_a_zero_flow_is_the_identity_and_the_flow_has_the_stated_size():
    x = np.random.default_rng(0).random((3, 2, H, H), dtype=np.float32)
    np.testing.assert_allclose(warp(x, np.zeros((2, H, H), np.float32)), x, atol=1e-6)
    flow = random_flow(np.random.default_rng(1), H, H, strength=1 / 8)
    assert flow.shape == (2, H, H)
    assert abs(np.abs(flow).mean() - H / 8) < 0.5 * H / 8  # bicubic upsampling smooths a little


def test_a_warping_backdoor_receives_every_warped_image_and_a_clean_model_none():
    y = np.repeat(np.arange(5), 6)
    x = ramps(y)
    backdoored = WarpResponse(seed=3).fit(warp_detector(2), x, y, range(5))
    assert backdoored.rate_[2] == 1.0 and (np.delete(backdoored.rate_, 2) == 0).all()
    clean = WarpResponse(seed=3).fit(warp_detector(None), x, y, range(5))
    assert clean.rate_.max() <= 0.2  # a warp may move a level to its neighbour, rarely
    again = WarpResponse(seed=3).fit(warp_detector(2), x, y, range(5))
    np.testing.assert_array_equal(again.rates_, backdoored.rates_)  # seeded
