"""Emergence of knowledge points during training: every checkpoint fitted in training order.

Checkpoints arrive prepared by the caller (with the same model options as the final model), so
a model that needs normalisation gets it on every checkpoint too.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from onnxaudit.analyses.knowledge.fit import extract_features, fit_model, layer_grids
from onnxaudit.analyses.knowledge.results import EmergenceResult, KnowledgeSettings
from onnxaudit.errors import AuditError
from onnxaudit.model import PreparedModel
from onnxaudit.progress import ProgressFn, silent
from onnxaudit.seeds import Seed


def emergence(
    checkpoints: Sequence[PreparedModel],
    x: np.ndarray,
    labels: np.ndarray,
    layers: Sequence[str],
    settings: KnowledgeSettings,
    seed: Seed = 0,
    device: str = "auto",
    progress: ProgressFn = silent,
    threads: int | None = None,
) -> EmergenceResult:
    """Fit every checkpoint in order, warm-started and Procrustes-aligned to the previous one."""
    history: list[np.ndarray] = []
    previous = None
    rows, embeddings, mus = [], [], []
    for done, pm in enumerate(checkpoints):
        progress("knowledge: checkpoints", done, len(checkpoints))
        missing = [name for name in layers if name not in {layer.name for layer in pm.info.layers}]
        if missing:
            raise AuditError(f"checkpoint lacks the analysed layer {missing[0]!r}", pm.path)
        feats = extract_features(pm, x, layers, settings.grid, device, threads)
        init = np.mean(history[-settings.warm_start :], axis=0) if history else None
        grids = layer_grids(pm, layers, settings.grid)
        fitted = fit_model(feats, grids, labels, settings, seed, init=init, align_to=previous)
        history.append(fitted.sample.components_)
        previous = fitted.sample.transform(feats["sample_feature"])
        embeddings.append(previous)
        mus.append(fitted.sample.mu_)
        rows.append(fitted.layers)
    progress("knowledge: checkpoints", len(checkpoints), len(checkpoints))
    table = {
        key: np.array([[getattr(layer, key) for layer in row] for row in rows])
        for key in ("knowledge_points", "reliable_knowledge_points", "reliable_ratio")
    }
    return EmergenceResult(
        checkpoints=[pm.path for pm in checkpoints],
        iterations=[_iteration(pm.path) for pm in checkpoints],
        layers=list(layers),
        embeddings=embeddings,
        mus=mus,
        **table,
    )


def _iteration(path: str | Path) -> int | None:
    """The training iteration in a checkpoint's file name (`vgg-iter00800` -> 800)."""
    match = re.search(r"(\d+)$", Path(path).stem)
    return int(match.group(1)) if match else None
