"""Paper 1 end to end on a prepared classifier: embeddings, knowledge points, emergence, attacks.

The caller chooses the images (the pipeline subsets the data with its own seed stream) and
prepares the checkpoints with the model's own options; this function only analyses.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from onnxaudit.analyses.knowledge.adversarial import adversarial_analysis
from onnxaudit.analyses.knowledge.emergence import emergence
from onnxaudit.analyses.knowledge.fit import extract_features, fit_model, layer_grids
from onnxaudit.analyses.knowledge.radial import target_probs
from onnxaudit.analyses.knowledge.results import KnowledgeResult, KnowledgeSettings, SampleSummary
from onnxaudit.analyses.knowledge.sample import pca_embedding, strength_uncertainty_corr
from onnxaudit.data import Dataset
from onnxaudit.errors import AuditError
from onnxaudit.model import ModelInfo, PreparedModel
from onnxaudit.progress import ProgressFn, silent
from onnxaudit.seeds import Seed

MAX_LAYERS = 4


def default_layers(info: ModelInfo, max_layers: int = MAX_LAYERS) -> list[str]:
    """The last candidate layer of each spatial stage, `max_layers` of them spread first to last."""
    last: dict[tuple[int, int], str] = {}
    for layer in info.layers:
        last.pop((layer.height, layer.width), None)
        last[(layer.height, layer.width)] = layer.name
    names = list(last.values())
    if not names:
        raise AuditError("the model has no 4-D feature maps to analyse")
    if len(names) <= max_layers:
        return names
    picks = np.unique(np.round(np.linspace(0, len(names) - 1, max_layers)).astype(int))
    return [names[i] for i in picks]


def analyse_knowledge(
    pm: PreparedModel,
    dataset: Dataset,
    layers: Sequence[str] | None = None,
    seed: Seed = 0,
    checkpoints: Sequence[PreparedModel] = (),
    attack: bool = False,
    device: str = "auto",
    progress: ProgressFn = silent,
    settings: KnowledgeSettings | None = None,
    threads: int | None = None,
    max_memory: int | None = None,
) -> KnowledgeResult:
    """Paper 1 on every image of `dataset` (subset it first to bound the cost); `max_memory`
    (bytes) sizes the attack's gradient batches."""
    settings = settings or KnowledgeSettings()
    x = dataset.images(pm.info.input_shape)
    labels = np.asarray(dataset.labels, np.int64)
    names = list(layers) if layers else default_layers(pm.info)
    feats = extract_features(pm, x, names, settings.grid, device, threads, progress)
    grids = layer_grids(pm, names, settings.grid)
    fitted = fit_model(feats, grids, labels, settings, seed, progress)
    g = fitted.sample.transform(feats["sample_feature"])
    probs = target_probs(feats["logits"], settings.temperature)
    sample = SampleSummary(
        embedding=g,
        mu=fitted.sample.mu_,
        pi=fitted.sample.pi_,
        strength_uncertainty_corr=strength_uncertainty_corr(g, probs),
        pca_strength_uncertainty_corr=strength_uncertainty_corr(
            pca_embedding(feats["sample_feature"], settings.dim), probs
        ),
        agreement=float(
            np.mean(
                fitted.sample.predict_proba(feats["sample_feature"]).argmax(1) == probs.argmax(1)
            )
        ),
        kl=fitted.sample.loss_,
        n_iter=fitted.sample.n_iter_,
    )
    result = KnowledgeResult(
        settings=settings,
        seed=seed,
        classes=list(pm.info.class_names),
        labels=labels,
        predictions=feats["logits"].argmax(1),
        images=x,
        sample=sample,
        layers=fitted.layers,
        fitted=fitted,
    )
    if checkpoints:
        result.emergence = emergence(
            checkpoints, x, labels, names, settings, seed, device, progress, threads
        )
    if attack:
        result.adversarial = adversarial_analysis(pm, result, device, progress, threads, max_memory)
    return result
