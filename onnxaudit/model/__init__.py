"""Stage 1 of the pipeline: load an ONNX classifier, describe it, and rewrite it by graph passes."""

from onnxaudit.model.describe import LayerInfo, ModelInfo, resolve_layers
from onnxaudit.model.load import load_class_names, load_onnx
from onnxaudit.model.prepare import PreparedModel, describe, prepare_model
from onnxaudit.model.settings import InputSettings

__all__ = [
    "InputSettings",
    "LayerInfo",
    "ModelInfo",
    "PreparedModel",
    "describe",
    "load_class_names",
    "load_onnx",
    "prepare_model",
    "resolve_layers",
]
