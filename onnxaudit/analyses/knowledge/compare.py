"""Place a second model (a student, an attacked or retrained one) in the first model's coordinates.

The other model keeps its own similarity target and importance weights, but its Lambda is aligned
to the FIRST model's sample embedding g and read with the first model's class directions mu_c, so
channel counts may differ and the counts and feature changes are comparable region by region.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from onnxaudit.analyses.knowledge.analysis import default_layers
from onnxaudit.analyses.knowledge.fit import extract_features, fit_layer, layer_grids, layer_seed
from onnxaudit.analyses.knowledge.points import LayerKnowledge, count_layer
from onnxaudit.analyses.knowledge.radial import one_minus_cos as radial_one_minus_cos
from onnxaudit.analyses.knowledge.radial import strength, target_probs
from onnxaudit.analyses.knowledge.results import KnowledgeResult
from onnxaudit.model import PreparedModel
from onnxaudit.progress import ProgressFn, silent
from onnxaudit.results.schema import jsonable

COS_BINS = np.linspace(0.0, 2.0, 41)
STRENGTH_BINS = np.linspace(-3.0, 3.0, 61)


@dataclass
class LayerComparison:
    """One analysed-layer position of both models; histograms only when the grids agree."""

    reference: LayerKnowledge
    other: LayerKnowledge
    cos_hist: np.ndarray | None = None  # 1 - cos(h_other, h_ref) over COS_BINS (non-zero pairs)
    strength_hist: np.ndarray | None = None  # counts of ||h_other|| - ||h_ref|| (STRENGTH_BINS)
    mean_one_minus_cos: float | None = None
    mean_strength_difference: float | None = None

    def to_dict(self) -> dict:
        return {
            "reference_layer": self.reference.name,
            "layer": self.other.name,
            "reference": _counts(self.reference),
            "other": _counts(self.other),
            "mean_one_minus_cos": self.mean_one_minus_cos,
            "mean_strength_difference": self.mean_strength_difference,
            "cos_hist": None
            if self.cos_hist is None
            else {"bins": COS_BINS, "counts": self.cos_hist},
            "strength_hist": None
            if self.strength_hist is None
            else {"bins": STRENGTH_BINS, "counts": self.strength_hist},
        }


@dataclass
class ModelComparison:
    model: str
    reference_model: str
    layers: list[LayerComparison] = field(default_factory=list)

    def to_dict(self) -> dict:
        return jsonable(
            {
                "model": self.model,
                "reference_model": self.reference_model,
                "layers": [layer.to_dict() for layer in self.layers],
            }
        )


def compare_models(
    reference: KnowledgeResult,
    other: PreparedModel,
    layers: Sequence[str] | None = None,
    device: str = "auto",
    progress: ProgressFn = silent,
    threads: int | None = None,
    reference_name: str = "reference",
    images: np.ndarray | None = None,
) -> ModelComparison:
    """Knowledge points of `other` (a PreparedModel) on the reference's images, in its space.

    Layers pair by position with the reference's analysed layers (default: `other`'s own
    default choice), so architectures with different names or widths can be compared.
    `images` are the reference's images at `other`'s input size when the sizes differ (the same
    images, in the same order); by default the reference's own.
    """
    settings = reference.settings
    names = list(layers) if layers else default_layers(other.info)
    pairs = list(zip(reference.layers, names, strict=False))
    feats = extract_features(
        other,
        reference.images if images is None else images,
        [n for _, n in pairs],
        settings.grid,
        device,
        threads,
    )
    grids = layer_grids(other, [n for _, n in pairs], settings.grid)
    probs = target_probs(feats["logits"], settings.temperature)
    g, mu = reference.sample.embedding, reference.sample.mu
    out = []
    for done, (ref_layer, name) in enumerate(pairs):
        progress("knowledge: compare", done, len(pairs))
        embedding, _ = fit_layer(feats[name], probs, g, settings, layer_seed(reference.seed, done))
        h = embedding.transform(feats[name])
        counted = count_layer(
            name, h, grids[name], mu, settings.sample_kappa, reference.labels, settings.tau
        )
        row = LayerComparison(ref_layer, counted)
        if ref_layer.embedding is not None and ref_layer.embedding.shape == h.shape:
            one_minus_cos = radial_one_minus_cos(h, ref_layer.embedding)
            diff = (strength(h) - strength(ref_layer.embedding)).ravel()
            row.cos_hist = _histogram(one_minus_cos, COS_BINS)
            row.strength_hist = _histogram(diff, STRENGTH_BINS)
            row.mean_one_minus_cos = float(one_minus_cos.mean())
            row.mean_strength_difference = float(diff.mean())
        out.append(row)
    progress("knowledge: compare", len(pairs), len(pairs))
    return ModelComparison(Path(other.path).stem, reference_name, out)


def _histogram(values: np.ndarray, bins: np.ndarray) -> np.ndarray:
    """Counts with out-of-range values folded into the end bins."""
    return np.histogram(np.clip(values, bins[0], bins[-1]), bins)[0]


def _counts(layer: LayerKnowledge) -> dict:
    return {
        "knowledge_points": layer.knowledge_points,
        "reliable_knowledge_points": layer.reliable_knowledge_points,
        "reliable_ratio": layer.reliable_ratio,
    }
