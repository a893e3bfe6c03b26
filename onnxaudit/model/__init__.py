"""Stage 1 of the pipeline: load an ONNX classifier, describe it, and rewrite it by graph passes."""

from onnxaudit.model.prepare import (
    LayerInfo,
    ModelInfo,
    PreparedModel,
    describe,
    load_onnx,
    prepare_model,
)

__all__ = ["LayerInfo", "ModelInfo", "PreparedModel", "describe", "load_onnx", "prepare_model"]
