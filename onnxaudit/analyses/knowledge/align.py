"""Rotations that put one 3-D embedding into another's coordinates (emergence across checkpoints)."""

from __future__ import annotations

import numpy as np

from onnxaudit.analyses.knowledge.radial import unit


def kabsch(source: np.ndarray, target: np.ndarray) -> np.ndarray:
    """The proper rotation R minimising sum ||R s_i - t_i||^2 (orthogonal Procrustes, det = +1)."""
    u, _, vt = np.linalg.svd(target.T @ source)
    d = np.ones(len(u))
    d[-1] = np.sign(np.linalg.det(u @ vt)) or 1.0
    return (u * d) @ vt


def procrustes_rotation(source: np.ndarray, target: np.ndarray, trim: float = 0.1) -> np.ndarray:
    """The authors' two-pass alignment: on raw points, then on unit points without outliers.

    The second pass drops the `trim` fraction of points farthest apart after the first rotation,
    so a few samples that changed class between checkpoints do not tilt the whole embedding.
    """
    first = kabsch(source, target)
    src, tgt = unit(source @ first.T), unit(target)
    dist = np.linalg.norm(src - tgt, axis=1)
    keep = dist <= np.quantile(dist, 1.0 - trim) if trim > 0 else np.ones(len(dist), bool)
    return kabsch(src[keep], tgt[keep]) @ first
