"""Shape statistics of binary pattern masks: implanted triggers are few, compact, filled blobs;
natural patterns are scattered outlines; adversarially trained models give simpler shapes."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from scipy import ndimage

EIGHT = np.ones((3, 3), dtype=bool)


@dataclass(frozen=True)
class ShapeStats:
    """Geometry of one binary mask (H, W)."""

    pixels: int
    components: int  # 8-connected blobs
    largest_fraction: float  # share of the pixels in the largest blob
    bbox_fill: float  # pixels / area of the bounding box of all pixels
    compactness: float  # 4*pi*area / perimeter^2 (1 for a disc, ~0.785 for a square)
    spread: float  # radius of gyration / image diagonal
    centroid: tuple[float, float]  # (row, col) in [0, 1] image coordinates

    def to_dict(self) -> dict:
        return asdict(self)


def shape_stats(mask: np.ndarray) -> ShapeStats:
    """Statistics of the pixels where `mask` > 0.5."""
    on = np.asarray(mask) > 0.5
    h, w = on.shape
    pixels = int(on.sum())
    if pixels == 0:
        return ShapeStats(0, 0, 0.0, 0.0, 0.0, 0.0, (float("nan"), float("nan")))
    labels, n = ndimage.label(on, structure=EIGHT)
    sizes = np.bincount(labels.ravel())[1:]
    rows, cols = np.nonzero(on)
    bbox = (rows.max() - rows.min() + 1) * (cols.max() - cols.min() + 1)
    # perimeter: pixel edges between an on pixel and an off pixel (or the image border)
    padded = np.pad(on, 1)
    perimeter = sum(
        int((padded & ~np.roll(padded, shift, axis)).sum()) for axis in (0, 1) for shift in (1, -1)
    )
    gyration = np.sqrt(((rows - rows.mean()) ** 2 + (cols - cols.mean()) ** 2).mean())
    return ShapeStats(
        pixels=pixels,
        components=int(n),
        largest_fraction=float(sizes.max() / pixels),
        bbox_fill=float(pixels / bbox),
        compactness=float(4 * np.pi * pixels / perimeter**2),
        spread=float(gyration / np.hypot(h, w)),
        centroid=(float((rows.mean() + 0.5) / h), float((cols.mean() + 0.5) / w)),
    )
