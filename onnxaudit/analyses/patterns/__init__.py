"""Paper 2 (Zhao et al.): class-wise patterns in the input space, and a backdoor verdict."""

from onnxaudit.analyses.patterns.analyse import PatternsResult, analyse_patterns, measure
from onnxaudit.analyses.patterns.null import CleanPrior
from onnxaudit.analyses.patterns.search import ClassPatternSearch, top_k_mask
from onnxaudit.analyses.patterns.settings import validate_pattern_settings
from onnxaudit.analyses.patterns.shape import ShapeStats, shape_stats
from onnxaudit.analyses.patterns.universal import NoiseBlendResponse
from onnxaudit.analyses.patterns.verdict import (
    OUTCOMES,
    BackdoorVerdict,
    RestartEvidence,
    TestResult,
    UniversalVerdict,
    anomaly_index,
    backdoor_verdict,
    universal_verdict,
)

__all__ = [
    "OUTCOMES",
    "BackdoorVerdict",
    "CleanPrior",
    "RestartEvidence",
    "TestResult",
    "ClassPatternSearch",
    "NoiseBlendResponse",
    "PatternsResult",
    "ShapeStats",
    "UniversalVerdict",
    "analyse_patterns",
    "anomaly_index",
    "backdoor_verdict",
    "measure",
    "shape_stats",
    "top_k_mask",
    "universal_verdict",
    "validate_pattern_settings",
]
