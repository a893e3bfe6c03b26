"""Paper 1 end to end on an ONNX classifier: embeddings, knowledge points, emergence, attacks.

Pipeline (the authors' order): extract sample features f, regional features f^(r) and logits ->
fit the sample embedding g = M f (class directions mu_c) -> per layer, fit the importance
weights w, v and cache region matches -> fit Lambda aligned to g -> count knowledge points.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from onnxaudit.analyses.knowledge.align import procrustes_rotation
from onnxaudit.analyses.knowledge.importance import ImportanceWeights
from onnxaudit.analyses.knowledge.points import LayerKnowledge, count_layer, knowledge_points
from onnxaudit.analyses.knowledge.radial import (
    LinearKappa,
    one_minus_cos,
    radial_posterior,
    strength,
    target_probs,
    unit,
)
from onnxaudit.analyses.knowledge.region import RegionEmbedding
from onnxaudit.analyses.knowledge.sample import (
    SampleEmbedding,
    pca_embedding,
    strength_uncertainty_corr,
)
from onnxaudit.errors import AuditError
from onnxaudit.results.schema import jsonable

Progress = Callable[[str, int, int], None]
GRID = 14
MAX_LAYERS = 4
ATTACK_TYPES = ("1: original -> adversarial", "2: via origin", "3: new", "4: vanished")


@dataclass
class KnowledgeSettings:
    """Every hyper-parameter of the analysis (recorded in result.json)."""

    temperature: float = 4.0
    tau: float = 0.4
    dim: int = 3
    grid: int = GRID
    sample_kappa: LinearKappa = field(default_factory=lambda: LinearKappa(3.0, 10.0))
    region_kappa: LinearKappa = field(default_factory=lambda: LinearKappa(1.0, 1000.0))
    sample_max_iter: int = 200
    weight_decay: float = 5e-4
    partners: int = 16
    kappa_p: float = 5.0
    kappa_match: float = 1000.0 / 512.0
    importance_steps: int = 20
    importance_lr: float = 0.05
    momentum: float = 0.9
    lambda_kl: float = 1.0
    lambda_align: float = 0.1
    region_max_iter: int = 40
    regions_per_sample: int = 48
    procrustes_trim: float = 0.1
    warm_start: int = 3
    attack_eps: float = 0.1
    attack_steps: int = 20

    def to_dict(self) -> dict:
        out = asdict(self)
        out["sample_kappa"] = self.sample_kappa.to_dict()
        out["region_kappa"] = self.region_kappa.to_dict()
        return out


@dataclass
class SampleSummary:
    """The fitted sample embedding and its quality against the PCA baseline."""

    embedding: np.ndarray  # (N, dim) g
    mu: np.ndarray  # (C, dim)
    pi: np.ndarray  # (C,)
    strength_uncertainty_corr: float
    pca_strength_uncertainty_corr: float
    agreement: float  # argmax Q_M == argmax P
    kl: float
    n_iter: int

    def to_dict(self) -> dict:
        return {
            "strength_uncertainty_corr": self.strength_uncertainty_corr,
            "pca_strength_uncertainty_corr": self.pca_strength_uncertainty_corr,
            "agreement_with_model": self.agreement,
            "kl": self.kl,
            "n_iter": self.n_iter,
            "mu": self.mu,
            "pi": self.pi,
            "mean_strength": float(strength(self.embedding).mean()),
        }


@dataclass
class FittedModel:
    """One model's fitted embeddings: reused to place attacked or other models' features."""

    sample: SampleEmbedding
    regions: dict[str, RegionEmbedding]
    layers: list[LayerKnowledge]


@dataclass
class EmergenceResult:
    """Knowledge-point counts per layer across training checkpoints (aligned embeddings)."""

    checkpoints: list[str]
    iterations: list[int | None]
    layers: list[str]
    knowledge_points: np.ndarray  # (checkpoints, layers)
    reliable_knowledge_points: np.ndarray
    reliable_ratio: np.ndarray
    embeddings: list[np.ndarray] = field(repr=False, default_factory=list)  # g per checkpoint
    mus: list[np.ndarray] = field(repr=False, default_factory=list)

    def to_dict(self) -> dict:
        return jsonable(
            {
                "checkpoints": self.checkpoints,
                "iterations": self.iterations,
                "layers": self.layers,
                "knowledge_points": self.knowledge_points,
                "reliable_knowledge_points": self.reliable_knowledge_points,
                "reliable_ratio": self.reliable_ratio,
            }
        )


@dataclass
class AdversarialLayer:
    name: str
    delta_orientation: float  # mean 1 - cos(h_before, h_after)
    delta_strength: float  # mean | ||h_after|| - ||h_before|| |
    attack_types: dict[str, int]
    knowledge_points_after: float

    def to_dict(self) -> dict:
        return jsonable(asdict(self))


@dataclass
class AdversarialResult:
    eps: float
    steps: int
    success_rate: float
    layers: list[AdversarialLayer]

    def to_dict(self) -> dict:
        return {
            "eps": self.eps,
            "steps": self.steps,
            "success_rate": self.success_rate,
            "layers": [layer.to_dict() for layer in self.layers],
        }


@dataclass
class KnowledgeResult:
    """Everything paper 1 measures on one model; `to_dict` is the result.json section."""

    settings: KnowledgeSettings
    seed: int
    classes: list[str]
    labels: np.ndarray
    predictions: np.ndarray
    images: np.ndarray = field(repr=False)
    sample: SampleSummary = field(repr=False)
    layers: list[LayerKnowledge] = field(default_factory=list)
    emergence: EmergenceResult | None = None
    adversarial: AdversarialResult | None = None
    fitted: FittedModel | None = field(default=None, repr=False)

    def to_dict(self) -> dict:
        return jsonable(
            {
                "method": "Li, Wang, Zhang: Visualizing the Emergence of Intermediate Visual "
                "Patterns in DNNs (NeurIPS 2021)",
                "seed": self.seed,
                "settings": self.settings.to_dict(),
                "n_images": int(len(self.labels)),
                "accuracy": float(np.mean(self.predictions == self.labels)),
                "sample_embedding": self.sample.to_dict(),
                "layers": [layer.to_dict() for layer in self.layers],
                "emergence": None if self.emergence is None else self.emergence.to_dict(),
                "adversarial": None if self.adversarial is None else self.adversarial.to_dict(),
            }
        )


def default_layers(info: Any, max_layers: int = MAX_LAYERS) -> list[str]:
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
    pm: Any,
    dataset: Any,
    layers: Sequence[str] | None = None,
    per_class: int | None = 50,
    seed: int = 0,
    checkpoints: Sequence[str | Path] = (),
    attack: bool = False,
    device: str = "auto",
    progress: Progress | None = None,
    settings: KnowledgeSettings | None = None,
    threads: int | None = None,
) -> KnowledgeResult:
    """Paper 1 on a PreparedModel and a Dataset (stratified `per_class` subset, seeded)."""
    settings = settings or KnowledgeSettings()
    report = progress or (lambda stage, done, total: None)
    sub = dataset.subset(per_class, seed)
    x = sub.images(pm.info.input_shape)
    labels = np.asarray(sub.labels, np.int64)
    names = list(layers) if layers else default_layers(pm.info)
    report("knowledge: features", 0, 1)
    feats = _extract(pm, x, names, settings, device, threads)
    report("knowledge: features", 1, 1)
    fitted = fit_model(feats, layer_grids(pm, names, settings.grid), labels, settings, seed, report)
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
        result.emergence = emergence(checkpoints, x, labels, names, settings, seed, device, report)
    if attack:
        result.adversarial = adversarial_analysis(pm, result, device, report, threads)
    return result


def fit_model(
    feats: dict[str, np.ndarray],
    grids: dict[str, tuple[int, int]],
    labels: np.ndarray,
    settings: KnowledgeSettings,
    seed: int,
    progress: Progress | None = None,
    init: np.ndarray | None = None,
    align_to: np.ndarray | None = None,
) -> FittedModel:
    """Fit the sample embedding and every layer's regional embedding on extracted features.

    `grids` maps each analysed layer to its region grid (H', W'); `init` warm-starts M; `align_to` (N, dim) rotates g onto an earlier embedding (Procrustes).
    """
    report = progress or (lambda stage, done, total: None)
    layers = list(grids)
    probs = target_probs(feats["logits"], settings.temperature)
    report("knowledge: sample embedding", 0, 1)
    sample = SampleEmbedding(
        settings.dim,
        settings.sample_kappa,
        settings.weight_decay,
        settings.sample_max_iter,
        seed=seed,
    ).fit(feats["sample_feature"], probs, init=init)
    g = sample.transform(feats["sample_feature"])
    if align_to is not None:
        sample.rotate(procrustes_rotation(g, align_to, settings.procrustes_trim))
        g = sample.transform(feats["sample_feature"])
    report("knowledge: sample embedding", 1, 1)
    regions, counted = {}, []
    for done, name in enumerate(layers):
        report("knowledge: layers", done, len(layers))
        regions[name], importance = fit_layer(feats[name], probs, g, settings, seed)
        h = regions[name].transform(feats[name])
        layer = count_layer(
            name, h, grids[name], sample.mu_, settings.sample_kappa, labels, settings.tau
        )
        layer.fit = {
            "importance_kl": importance.loss_,
            "region_loss": regions[name].loss_,
            "region_n_iter": regions[name].n_iter_,
        }
        counted.append(layer)
    report("knowledge: layers", len(layers), len(layers))
    return FittedModel(sample, regions, counted)


def fit_layer(
    regions: np.ndarray, probs: np.ndarray, g: np.ndarray, settings: KnowledgeSettings, seed: int
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


def emergence(
    checkpoints: Sequence[str | Path],
    x: np.ndarray,
    labels: np.ndarray,
    layers: Sequence[str],
    settings: KnowledgeSettings,
    seed: int = 0,
    device: str = "auto",
    progress: Progress | None = None,
) -> EmergenceResult:
    """Fit every checkpoint in order, warm-started and Procrustes-aligned to the previous one."""
    from onnxaudit.model import prepare_model

    report = progress or (lambda stage, done, total: None)
    history: list[np.ndarray] = []
    previous = None
    rows, embeddings, mus = [], [], []
    for done, path in enumerate(checkpoints):
        report("knowledge: checkpoints", done, len(checkpoints))
        pm = prepare_model(path)
        missing = [name for name in layers if name not in {layer.name for layer in pm.info.layers}]
        if missing:
            raise AuditError(f"checkpoint lacks the analysed layer {missing[0]!r}", path)
        feats = _extract(pm, x, layers, settings, device, None)
        init = np.mean(history[-settings.warm_start :], axis=0) if history else None
        grids = layer_grids(pm, layers, settings.grid)
        fitted = fit_model(feats, grids, labels, settings, seed, init=init, align_to=previous)
        history.append(fitted.sample.components_)
        previous = fitted.sample.transform(feats["sample_feature"])
        embeddings.append(previous)
        mus.append(fitted.sample.mu_)
        rows.append(fitted.layers)
    report("knowledge: checkpoints", len(checkpoints), len(checkpoints))
    table = {
        key: np.array([[getattr(layer, key) for layer in row] for row in rows])
        for key in ("knowledge_points", "reliable_knowledge_points", "reliable_ratio")
    }
    return EmergenceResult(
        checkpoints=[str(p) for p in checkpoints],
        iterations=[_iteration(p) for p in checkpoints],
        layers=list(layers),
        embeddings=embeddings,
        mus=mus,
        **table,
    )


def adversarial_analysis(
    pm: Any,
    result: KnowledgeResult,
    device: str = "auto",
    progress: Progress | None = None,
    threads: int | None = None,
) -> AdversarialResult:
    """Untargeted L-inf PGD on the analysed images; regional features recorded at every step
    and projected with the clean fit's Lambda (same coordinates and strength units)."""
    from onnxaudit.analyses.robustness import pgd
    from onnxaudit.features.extract import FeatureExtractor
    from onnxaudit.features.gradients import CrossEntropy, InputGradient

    report = progress or (lambda stage, done, total: None)
    settings, fitted = result.settings, result.fitted
    names = [layer.name for layer in result.layers]
    fx = FeatureExtractor(pm, names, grid=settings.grid, device=device, threads=threads)
    track: dict[str, list[np.ndarray]] = {name: [] for name in names}
    logits: list[np.ndarray] = []

    def record(step: int, x_adv: np.ndarray) -> None:
        report("knowledge: PGD", step, settings.attack_steps)
        feats = fx.transform(x_adv)
        logits.append(feats["logits"])
        for name in names:
            track[name].append(fitted.regions[name].transform(feats[name]))

    grad = InputGradient(pm.proto, CrossEntropy(), device, threads)
    pgd(
        grad,
        result.images,
        result.labels,
        eps=settings.attack_eps,
        steps=settings.attack_steps,
        seed=result.seed,
        callback=record,
    )
    adv_pred = logits[-1].argmax(1)
    success = (result.predictions == result.labels) & (adv_pred != result.labels)
    mu, kappa = fitted.sample.mu_, settings.sample_kappa
    out = []
    for layer in result.layers:
        h0 = layer.embedding  # clean; the attack's iterate 0 is its random start
        path = np.stack([h0, *track[layer.name]])  # (T + 2, N, R, d)
        h1 = path[-1]
        after_points, _ = knowledge_points(h1, mu, kappa, adv_pred, settings.tau)
        out.append(
            AdversarialLayer(
                name=layer.name,
                delta_orientation=float(np.mean(one_minus_cos(h0, h1))),
                delta_strength=float(np.mean(np.abs(strength(h1) - strength(h0)))),
                attack_types=attack_types(
                    h0[success],
                    path[:, success],
                    mu,
                    kappa,
                    result.labels[success],
                    adv_pred[success],
                ),
                knowledge_points_after=float(after_points.sum(1).mean()),
            )
        )
    return AdversarialResult(
        eps=settings.attack_eps,
        steps=settings.attack_steps,
        success_rate=float(success.mean()),
        layers=out,
    )


def attack_types(
    h0: np.ndarray,
    path: np.ndarray,
    mu: np.ndarray,
    kappa: LinearKappa,
    original: np.ndarray,
    adversarial: np.ndarray,
) -> dict[str, int]:
    """Counts of the authors' four regional behaviours (their thresholds, in strength units).

    h0 (n, R, d) clean features; path (T+1, n, R, d) along the attack; classes per sample.
    """
    rows = np.arange(len(h0))[:, None]
    l0, l_end, l_min = strength(h0), strength(path[-1]), strength(path).min(0)
    was_original = (
        (unit(h0) @ unit(mu).T)[rows, np.arange(h0.shape[1]), original[:, None]] > 0.9
    ) & (l0 > 1.0)
    post = radial_posterior(path[-1], mu, kappa)
    now_adversarial = np.take_along_axis(post, adversarial[:, None, None], axis=2)[..., 0] > 0.5
    counts = (
        was_original & (l_min > 1.2) & now_adversarial,
        was_original & (l_min < 1.0) & now_adversarial,
        (l0 < 0.5) & now_adversarial,
        was_original & (l_end < 1.0),
    )
    return {name: int(c.sum()) for name, c in zip(ATTACK_TYPES, counts, strict=True)}


def layer_grids(pm: Any, layers: Sequence[str], grid: int) -> dict[str, tuple[int, int]]:
    """The region grid of each layer after the extractor's in-graph pooling."""
    return {
        name: (min(grid, pm.info.layer(name).height), min(grid, pm.info.layer(name).width))
        for name in layers
    }


def _extract(pm, x, layers, settings, device, threads) -> dict[str, np.ndarray]:
    """Regional features (N, R, K) per layer, logits, and the sample feature f."""
    from onnxaudit.features.extract import FeatureExtractor

    info = pm.info
    has_feature = info.sample_feature_name is not None
    fx = FeatureExtractor(
        pm, layers, grid=settings.grid, sample_feature=has_feature, device=device, threads=threads
    )
    feats = fx.transform(x)
    if not has_feature:  # no Gemm head: the deepest analysed map, averaged over regions
        feats["sample_feature"] = feats[layers[-1]].mean(1)
    return feats


def _iteration(path: str | Path) -> int | None:
    match = re.search(r"(\d+)$", Path(path).stem)
    return int(match.group(1)) if match else None
