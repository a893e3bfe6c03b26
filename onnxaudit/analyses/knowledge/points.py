"""Knowledge points: regional features discriminative enough for classification (paper 1, Sec. 3.4)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from onnxaudit.analyses.knowledge.radial import LinearKappa, radial_posterior


@dataclass
class LayerKnowledge:
    """Knowledge-point counts of one layer; maps are (N, H', W') booleans for image grids."""

    name: str
    grid: tuple[int, int]
    knowledge_points: float
    reliable_knowledge_points: float
    reliable_ratio: float
    per_class: list[dict] = field(default_factory=list)
    maps: np.ndarray | None = field(default=None, repr=False)
    reliable_maps: np.ndarray | None = field(default=None, repr=False)
    embedding: np.ndarray | None = field(default=None, repr=False)  # (N, R, d) regional h
    fit: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "grid": list(self.grid),
            "regions": int(self.grid[0] * self.grid[1]),
            "knowledge_points": self.knowledge_points,
            "reliable_knowledge_points": self.reliable_knowledge_points,
            "reliable_ratio": self.reliable_ratio,
            "per_class": self.per_class,
            "fit": self.fit,
        }


def knowledge_points(
    h: np.ndarray,
    mu: np.ndarray,
    kappa: LinearKappa,
    labels: np.ndarray,
    tau: float = 0.4,
) -> tuple[np.ndarray, np.ndarray]:
    """(is_point, is_reliable), each (N, R): max_c p(c | h) > tau, and that class is the label."""
    post = radial_posterior(h, mu, kappa)
    is_point = post.max(-1) > tau
    return is_point, is_point & (post.argmax(-1) == np.asarray(labels)[:, None])


def count_layer(
    name: str,
    h: np.ndarray,
    grid: tuple[int, int],
    mu: np.ndarray,
    kappa: LinearKappa,
    labels: np.ndarray,
    tau: float = 0.4,
    num_classes: int | None = None,
) -> LayerKnowledge:
    """Per-image mean counts, reliable counts and the reliable ratio of one layer."""
    is_point, reliable = knowledge_points(h, mu, kappa, labels, tau)
    labels = np.asarray(labels)
    per_class = []
    for c in range(num_classes if num_classes is not None else len(mu)):
        rows = labels == c
        if rows.any():
            per_class.append(
                {
                    "class": c,
                    "knowledge_points": float(is_point[rows].sum(1).mean()),
                    "reliable_knowledge_points": float(reliable[rows].sum(1).mean()),
                }
            )
    total = int(is_point.sum())
    return LayerKnowledge(
        name=name,
        grid=tuple(int(g) for g in grid),
        knowledge_points=float(is_point.sum(1).mean()),
        reliable_knowledge_points=float(reliable.sum(1).mean()),
        reliable_ratio=float(reliable.sum() / total) if total else 0.0,
        per_class=per_class,
        maps=is_point.reshape(len(h), *grid),
        reliable_maps=reliable.reshape(len(h), *grid),
        embedding=h,
    )
