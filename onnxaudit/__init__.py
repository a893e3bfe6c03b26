"""onnxaudit: audits of ONNX image classifiers, from a notebook, a terminal or CI.

    import onnxaudit
    result = onnxaudit.audit("model.onnx", "data.npz", per_class=20, seed=0, skip=["knowledge"])
    result.to_dict()                        # the result.json `onnxaudit audit` writes
    onnxaudit.write_report(result, "out/")  # report.html + result.json, atomically

The names below are imported on first use, so `import onnxaudit` (and the CLI's start) stays
fast: onnxruntime, scipy, scikit-learn and matplotlib load only when an audit needs them.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

__version__ = "0.1.0"

_EXPORTS = {
    "AuditError": "onnxaudit.errors",
    "AuditResult": "onnxaudit.results.run",
    "CompareResult": "onnxaudit.results.run",
    "Dataset": "onnxaudit.data",
    "ModelOptions": "onnxaudit.settings",
    "PreparedModel": "onnxaudit.model",
    "Settings": "onnxaudit.settings",
    "audit": "onnxaudit.pipeline",
    "compare": "onnxaudit.pipeline",
    "load_data": "onnxaudit.pipeline",
    "load_model": "onnxaudit.pipeline",
    "write_report": "onnxaudit.report",
}
__all__ = [
    "AuditError",
    "AuditResult",
    "CompareResult",
    "Dataset",
    "ModelOptions",
    "PreparedModel",
    "Settings",
    "__version__",
    "audit",
    "compare",
    "load_data",
    "load_model",
    "write_report",
]

if TYPE_CHECKING:
    from onnxaudit.data import Dataset
    from onnxaudit.errors import AuditError
    from onnxaudit.model import PreparedModel
    from onnxaudit.pipeline import audit, compare, load_data, load_model
    from onnxaudit.report import write_report
    from onnxaudit.results.run import AuditResult, CompareResult
    from onnxaudit.settings import ModelOptions, Settings


def __getattr__(name: str) -> object:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'onnxaudit' has no attribute {name!r}")
