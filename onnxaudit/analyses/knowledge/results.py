"""The knowledge analysis's settings and results: plain dataclasses whose `to_dict` is JSON."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

from onnxaudit.analyses.knowledge.points import LayerKnowledge
from onnxaudit.analyses.knowledge.radial import LinearKappa, strength
from onnxaudit.analyses.knowledge.region import RegionEmbedding
from onnxaudit.analyses.knowledge.sample import SampleEmbedding
from onnxaudit.results.schema import jsonable
from onnxaudit.seeds import Seed, record

GRID = 14


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
    seed: Seed
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
                "seed": record(self.seed),
                "settings": self.settings.to_dict(),
                "n_images": int(len(self.labels)),
                "accuracy": float(np.mean(self.predictions == self.labels)),
                "sample_embedding": self.sample.to_dict(),
                "layers": [layer.to_dict() for layer in self.layers],
                "emergence": None if self.emergence is None else self.emergence.to_dict(),
                "adversarial": None if self.adversarial is None else self.adversarial.to_dict(),
            }
        )
