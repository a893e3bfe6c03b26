"""Prepare a classifier for the analyses: a graph fed RGB [0, 1] NCHW pixels whose only output is
the class scores, and its description. Each step is one module: load, settings, shapes, scores,
passes, describe.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import onnx
from onnx import TensorProto

from onnxaudit.errors import AuditError
from onnxaudit.model import passes
from onnxaudit.model.describe import (
    ModelInfo,
    candidate_layers,
    class_names,
    input_layout,
    sample_feature,
)
from onnxaudit.model.graph import dims, hollow, image_input, with_weights
from onnxaudit.model.load import load_onnx
from onnxaudit.model.scores import use_class_scores
from onnxaudit.model.settings import InputSettings, resolve_settings
from onnxaudit.model.shapes import fix_input, resolve_shapes


@dataclass
class PreparedModel:
    """A classifier rewritten to take NCHW float32 RGB pixels in [0, 1], with its description."""

    path: str
    proto: onnx.ModelProto
    info: ModelInfo
    sha256: str
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None

    def identity(self) -> dict:
        """The model's identification block of result.json."""
        info = self.info
        return {
            "path": self.path,
            "name": Path(self.path).stem,
            "sha256": self.sha256,
            "input": {
                "name": info.input_name,
                "shape": list(info.input_shape),
                "layout": info.layout,
                "dtype": info.dtype,
                "batch": info.batch,
            },
            "num_classes": info.num_classes,
            "classes": info.class_names,
            "logits_reason": info.logits_reason,
            "normalisation": {"mean": self.mean, "std": self.std},
            "preprocessing": info.preprocessing.to_dict(),
        }


def prepare_model(
    path: str | Path,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    *,
    input_shape: Sequence[int] | None = None,
    channel_order: str | None = None,
    input_scale: float | None = None,
    class_names: Sequence[str] | None = None,
) -> PreparedModel:
    """Load, check and canonicalise a classifier so every analysis sees RGB NCHW [0, 1] pixels.

    The model expects `(x * input_scale - mean) / std` in `channel_order` for RGB pixels x in
    [0, 1] (mean/std in the model's units and channel order). A setting left None is read from
    the model's `metadata_props` when present, else defaults to rgb, 1, no normalisation.
    """
    path = Path(path)
    model = load_onnx(path)
    given = {
        "input_shape": input_shape,
        "channel_order": channel_order,
        "input_scale": input_scale,
        "mean": mean,
        "std": std,
        "class_names": class_names,
    }
    settings = resolve_settings(model, given, path)
    proto, info = prepare_graph(model, settings, path)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    return PreparedModel(
        str(path), proto, info, digest, info.preprocessing.mean, info.preprocessing.std
    )


def describe(
    model: onnx.ModelProto, path: str | Path = "model", settings: InputSettings | None = None
) -> ModelInfo:
    """The description of `model` as `prepare_model` would prepare it."""
    return prepare_graph(model, settings or resolve_settings(model, {}, path), path)[1]


def prepare_graph(
    model: onnx.ModelProto, settings: InputSettings, path: str | Path = "model"
) -> tuple[onnx.ModelProto, ModelInfo]:
    """The canonical graph and its description, step by step."""
    original = image_input(model.graph, path)
    declared = dims(original)
    if declared is None or len(declared) != 4:
        raise AuditError(f"expected a 4-D image input, found shape {declared}", path)
    layout = input_layout(model.graph, original.name, declared)
    model, weights = hollow(model)  # IR >= 4 too: the passes add initializers
    model = fix_input(model, layout, settings.input_shape, path)
    model, table = resolve_shapes(model, weights, path)
    model, scores = use_class_scores(model, table, path)
    fixed = dims(image_input(model.graph, path))
    channels, height, width = (fixed[i] for i in ((3, 1, 2) if layout == "NHWC" else (1, 2, 3)))
    settings = settings.for_channels(channels, path)
    proto = passes.canonicalize_input(
        model, layout, settings.mean, settings.std, settings.channel_order, settings.input_scale
    )
    proto = with_weights(proto, weights)
    feature_name, feature_dim = sample_feature(proto.graph, original.name, scores.name, table)
    info = ModelInfo(
        input_name=original.name,
        input_shape=(channels, height, width),
        layout=layout,
        dtype=TensorProto.DataType.Name(original.type.tensor_type.elem_type).lower(),
        logits_name=scores.name,
        num_classes=scores.num_classes,
        sample_feature_name=feature_name,
        sample_feature_dim=feature_dim,
        class_names=class_names(settings, scores.num_classes, path),
        layers=candidate_layers(proto.graph, original.name, table, height),
        fixed_batch=table.fixed_batch,
        logits_reason=scores.reason,
        batch=table.batch,
        preprocessing=settings,
    )
    return proto, info
