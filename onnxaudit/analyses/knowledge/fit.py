"""Fitting one model's embeddings on its extracted features (the authors' order).

Extract sample features f, regional features f^(r) and logits -> fit the sample embedding g = M f
(class directions mu_c) -> per layer, fit the importance weights w, v and then Lambda aligned to
g -> count knowledge points. Each fit draws from its own spawned seed stream, keyed by the layer's
position, so the layers (one task each on the current executor) give the same numbers wherever
they run; they are put back in layer order.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from contextlib import nullcontext

import numpy as np

from onnxaudit.analyses.knowledge.align import procrustes_rotation
from onnxaudit.analyses.knowledge.importance import ImportanceWeights
from onnxaudit.analyses.knowledge.points import LayerKnowledge, count_layer
from onnxaudit.analyses.knowledge.radial import target_probs
from onnxaudit.analyses.knowledge.region import RegionEmbedding
from onnxaudit.analyses.knowledge.results import FittedModel, KnowledgeSettings
from onnxaudit.analyses.knowledge.sample import SampleEmbedding
from onnxaudit.executors import Task, current, same_numeric_threads, sender_threads
from onnxaudit.model import PreparedModel
from onnxaudit.progress import ProgressFn, silent
from onnxaudit.seeds import Seed, child

FIT_STREAM = 0  # child 0 of the knowledge stream: the fits; child 1: the PGD attack's start


def sample_seed(seed: Seed) -> Seed:
    """The stream of the sample-embedding fit."""
    return child(child(seed, FIT_STREAM), 0)


def layer_seed(seed: Seed, position: int) -> Seed:
    """The stream of the fit of the analysed layer at `position` (the same for every model and
    checkpoint that is compared at that position)."""
    return child(child(seed, FIT_STREAM), 1 + position)


def fit_model(
    feats: dict[str, np.ndarray],
    grids: dict[str, tuple[int, int]],
    labels: np.ndarray,
    settings: KnowledgeSettings,
    seed: Seed,
    progress: ProgressFn = silent,
    init: np.ndarray | None = None,
    align_to: np.ndarray | None = None,
) -> FittedModel:
    """Fit the sample embedding and every layer's regional embedding on extracted features.

    `grids` maps each analysed layer to its region grid (H', W'); `init` warm-starts M;
    `align_to` (N, dim) rotates g onto an earlier embedding (Procrustes).
    """
    layers = list(grids)
    probs = target_probs(feats["logits"], settings.temperature)
    progress("knowledge: sample embedding", 0, 1)
    sample = SampleEmbedding(
        settings.dim,
        settings.sample_kappa,
        settings.weight_decay,
        settings.sample_max_iter,
        seed=sample_seed(seed),
    ).fit(feats["sample_feature"], probs, init=init)
    g = sample.transform(feats["sample_feature"])
    if align_to is not None:
        sample.rotate(procrustes_rotation(g, align_to, settings.procrustes_trim))
        g = sample.transform(feats["sample_feature"])
    progress("knowledge: sample embedding", 1, 1)
    executor = current()
    shared = [executor.share(value) for value in (probs, g, sample.mu_, labels)]
    numeric = sender_threads(executor)
    tasks = [
        Task(
            f"knowledge layer {name}",
            layer_shard,
            (
                feats[name],
                *shared,
                grids[name],
                name,
                settings,
                layer_seed(seed, position),
                numeric,
            ),
        )
        for position, name in enumerate(layers)
    ]
    progress("knowledge: layers", 0, len(layers))
    parts = executor.run(tasks, lambda i, n: progress("knowledge: layers", i, n))
    regions = {name: region for name, (region, _) in zip(layers, parts, strict=True)}
    return FittedModel(sample, regions, [layer for _, layer in parts])


def layer_shard(
    regions: np.ndarray,
    probs: np.ndarray,
    g: np.ndarray,
    mu: np.ndarray,
    labels: np.ndarray,
    grid: tuple[int, int],
    name: str,
    settings: KnowledgeSettings,
    seed: Seed,
    numeric: Mapping[str, int] | None = None,
) -> tuple[RegionEmbedding, LayerKnowledge]:
    """One layer's fits and knowledge points (the unit of work of the distributed fits), under
    the BLAS / OpenMP thread counts `numeric` of the process that sent it (None: as they are)."""
    with nullcontext() if numeric is None else same_numeric_threads(numeric):
        region, importance = fit_layer(regions, probs, g, settings, seed)
        h = region.transform(regions)
        layer = count_layer(name, h, grid, mu, settings.sample_kappa, labels, settings.tau)
    layer.fit = {
        "importance_kl": importance.loss_,
        "region_loss": region.loss_,
        "region_n_iter": region.n_iter_,
    }
    return region, layer


def fit_layer(
    regions: np.ndarray, probs: np.ndarray, g: np.ndarray, settings: KnowledgeSettings, seed: Seed
) -> tuple[RegionEmbedding, ImportanceWeights]:
    """Importance weights, then Lambda aligned to `g`, for one layer's regional features."""
    importance = ImportanceWeights(
        partners=settings.partners,
        kappa_p=settings.kappa_p,
        kappa_match=settings.kappa_match,
        steps=settings.importance_steps,
        lr=settings.importance_lr,
        momentum=settings.momentum,
        weight_decay=settings.weight_decay,
        rematch_top=settings.regions_per_sample,
        seed=seed,
    ).fit(regions, probs)
    embedding = RegionEmbedding(
        settings.dim,
        settings.region_kappa,
        settings.lambda_kl,
        settings.lambda_align,
        settings.weight_decay,
        settings.region_max_iter,
        settings.regions_per_sample,
    ).fit(regions, g, importance)
    return embedding, importance


def layer_grids(pm: PreparedModel, layers: Sequence[str], grid: int) -> dict[str, tuple[int, int]]:
    """The region grid of each layer after the extractor's in-graph pooling."""
    return {
        name: (min(grid, pm.info.layer(name).height), min(grid, pm.info.layer(name).width))
        for name in layers
    }


def extract_features(
    pm: PreparedModel,
    x: np.ndarray,
    layers: Sequence[str],
    grid: int,
    device: str,
    threads: int | None,
    progress: ProgressFn = silent,
) -> dict[str, np.ndarray]:
    """Regional features (N, R, K) per layer, logits, and the sample feature f (in data shards
    on a cluster)."""
    from onnxaudit.features.extract import FeatureExtractor

    has_feature = pm.info.sample_feature_name is not None
    fx = FeatureExtractor(
        pm, layers, grid=grid, sample_feature=has_feature, device=device, threads=threads
    )
    progress("knowledge: features", 0, 1)
    feats = fx.transform_sharded(x, on_done=lambda i, n: progress("knowledge: features", i, n))
    if not has_feature:  # no Gemm head: the deepest analysed map, averaged over regions
        feats["sample_feature"] = feats[layers[-1]].mean(1)
    return feats
