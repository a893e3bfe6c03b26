"""How a model answers random smooth warps of the whole image: a probe for warping triggers.

A warping trigger (WaNet, Nguyen & Tran 2021) is one fixed smooth displacement field: it adds no
pixels and has no mask, so neither the pattern search nor the noise blend can express it. A model
poisoned with one such field, and not also trained to ignore other warps (WaNet's "noise mode"),
learns "smoothly warped means target" rather than the one field: a *fresh* random field of the
same family sends many images of every other class to the target. Clean models send warped
images to natural attractor classes too, but few of them.

The fields follow WaNet's construction: a k x k grid of uniform(-1, 1) control displacements,
normalised to mean |.| 1, upsampled bicubically to the image and scaled to `strength` (a fraction
of the image side, so the probe means the same at 28 and at 224 pixels); each pixel is resampled
bilinearly at its displaced position, clamped to the image.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import ndimage

from onnxaudit.analyses.patterns.universal import DRAWS, UniversalResponse

GRID = 4  # control points per side: WaNet's k
STRENGTHS = (1 / 56, 1 / 28, 1 / 14)  # mean displacement, fraction of the side (0.5-2 px at 28)


def random_flow(
    rng: np.random.Generator, h: int, w: int, strength: float, grid: int = GRID
) -> np.ndarray:
    """(2, H, W) a smooth displacement field in pixels, mean |.| about strength * max(H, W)."""
    ctrl = rng.uniform(-1.0, 1.0, (2, grid, grid))
    ctrl /= np.abs(ctrl).mean()
    flow = np.stack([ndimage.zoom(c, (h / grid, w / grid), order=3) for c in ctrl])
    return (strength * max(h, w) * flow[:, :h, :w]).astype(np.float32)


def warp(x: np.ndarray, flow: np.ndarray) -> np.ndarray:
    """x (N, C, H, W) resampled bilinearly at (row + flow[0], col + flow[1]), clamped."""
    h, w = x.shape[-2:]
    rows, cols = np.indices((h, w), dtype=np.float32)
    coords = np.stack([np.clip(rows + flow[0], 0, h - 1), np.clip(cols + flow[1], 0, w - 1)])
    flat = x.reshape(-1, h, w)
    out = np.stack([ndimage.map_coordinates(img, coords, order=1) for img in flat])
    return out.reshape(x.shape).astype(np.float32)


class WarpResponse(UniversalResponse):
    """Random smooth warps (one field per draw, shared by all images) at each strength in
    `strengths`; the rate of t is the largest over the strengths."""

    def __init__(
        self, strengths: Sequence[float] = STRENGTHS, draws: int = DRAWS, seed: int = 0
    ) -> None:
        self.strengths = strengths
        self.draws = draws
        self.seed = seed

    def levels(self) -> Sequence[float]:
        return self.strengths

    def stream(self) -> np.random.Generator:
        return np.random.default_rng([self.seed, 1])  # not the noise blend's stream

    def transformed(self, x: np.ndarray, level: float, rng: np.random.Generator) -> np.ndarray:
        return warp(x, random_flow(rng, *x.shape[-2:], level))
