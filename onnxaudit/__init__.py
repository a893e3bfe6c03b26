"""onnxaudit: audits of ONNX image classifiers, from a notebook, a terminal or CI.

import onnxaudit
result = onnxaudit.audit("model.onnx", "data.npz", per_class=20, seed=0, skip=["knowledge"])
result.to_dict()                        # the result.json `onnxaudit audit` writes
onnxaudit.write_report(result, "out/")  # report.html + result.json, atomically
"""

__version__ = "0.1.0"

from onnxaudit.data import Dataset  # noqa: E402
from onnxaudit.errors import AuditError  # noqa: E402
from onnxaudit.model import PreparedModel  # noqa: E402
from onnxaudit.pipeline import audit, compare, load_data, load_model  # noqa: E402
from onnxaudit.report import write_report  # noqa: E402
from onnxaudit.results.run import AuditResult, CompareResult  # noqa: E402
from onnxaudit.settings import ModelOptions, Settings  # noqa: E402

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
