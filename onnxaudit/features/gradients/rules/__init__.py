"""Per-op backward rules, one module per op family; importing this package fills `RULES`.

Adding an op: a `@rule("Op", inputs=...)` function in the family's module that maps output
gradients to input gradients with standard ONNX ops, plus a `Case` in
tests/test_gradients_rules.py (the coverage test fails until the new rule has one).
"""

from onnxaudit.features.gradients.rules import (  # noqa: F401  (each module registers its rules)
    arithmetic,
    conv,
    elementwise,
    matmul,
    norm,
    pool,
    reduce,
    resize,
    structure,
)
from onnxaudit.features.gradients.rules.registry import RULES, BackwardRule, rule

__all__ = ["RULES", "BackwardRule", "rule"]
