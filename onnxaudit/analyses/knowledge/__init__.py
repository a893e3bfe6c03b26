"""Paper 1 (Li, Wang, Zhang, NeurIPS 2021): knowledge points and their emergence in a classifier."""

from onnxaudit.analyses.knowledge.adversarial import adversarial_analysis
from onnxaudit.analyses.knowledge.analysis import analyse_knowledge, default_layers
from onnxaudit.analyses.knowledge.compare import ModelComparison, compare_models
from onnxaudit.analyses.knowledge.emergence import emergence
from onnxaudit.analyses.knowledge.fit import fit_model
from onnxaudit.analyses.knowledge.importance import ImportanceWeights
from onnxaudit.analyses.knowledge.points import LayerKnowledge, knowledge_points
from onnxaudit.analyses.knowledge.radial import LinearKappa, radial_posterior, target_probs
from onnxaudit.analyses.knowledge.region import RegionEmbedding
from onnxaudit.analyses.knowledge.results import (
    AdversarialResult,
    EmergenceResult,
    KnowledgeResult,
    KnowledgeSettings,
)
from onnxaudit.analyses.knowledge.sample import SampleEmbedding

__all__ = [
    "AdversarialResult",
    "EmergenceResult",
    "ImportanceWeights",
    "KnowledgeResult",
    "KnowledgeSettings",
    "LayerKnowledge",
    "LinearKappa",
    "ModelComparison",
    "RegionEmbedding",
    "SampleEmbedding",
    "adversarial_analysis",
    "analyse_knowledge",
    "compare_models",
    "default_layers",
    "emergence",
    "fit_model",
    "knowledge_points",
    "radial_posterior",
    "target_probs",
]
