"""Describe a prepared classifier: input, class scores, sample feature and candidate feature maps.

Nothing here relies on tensor names (exporters differ); everything is read off the graph structure.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

import numpy as np
import onnx

from onnxaudit.errors import AuditError
from onnxaudit.model.graph import (
    FLOAT_TYPES,
    NCHW_FROM_NHWC,
    attribute,
    dependents,
    producers,
)
from onnxaudit.model.settings import InputSettings
from onnxaudit.model.shapes import ShapeTable

# Standard ops that read and write NCHW whatever the surrounding graph does.
NCHW_OPS = {
    "Conv",
    "ConvTranspose",
    "BatchNormalization",
    "InstanceNormalization",
    "MaxPool",
    "AveragePool",
    "LpPool",
    "GlobalAveragePool",
    "GlobalMaxPool",
    "LRN",
    "Resize",
    "Upsample",
    "DepthToSpace",
    "SpaceToDepth",
}
# Ops whose output only restates its input: listed feature maps skip them.
RESTATING_OPS = {"Transpose", "Identity", "Reshape", "Cast", "Dropout", "Squeeze", "Unsqueeze"}
# Ops that move, pad, scale or resize pixels without computing features: applied to the image
# (and to nothing else computed), their results are copies of the input, not feature maps.
PIXEL_OPS = RESTATING_OPS | {
    "Pad",
    "Slice",
    "Split",
    "Concat",
    "Flatten",
    "Gather",
    "Sub",
    "Div",
    "Mul",
    "Add",
    "Resize",
    "Upsample",
    "Clip",
}


@dataclass(frozen=True)
class LayerInfo:
    """A candidate feature map: a 4-D float activation with more than one spatial position."""

    name: str
    op_type: str
    channels: int
    height: int
    width: int
    stride: float
    layout: str = "NCHW"


@dataclass(frozen=True)
class ModelInfo:
    """What the analyses need to know about a classifier, in canonical NCHW terms."""

    input_name: str
    input_shape: tuple[int, int, int]
    layout: str
    dtype: str
    logits_name: str
    num_classes: int
    sample_feature_name: str | None
    sample_feature_dim: int | None
    class_names: list[str]
    layers: list[LayerInfo] = field(default_factory=list)
    fixed_batch: int | None = None
    logits_reason: str = "the model's output"
    batch: str = "dynamic"
    preprocessing: InputSettings = field(default_factory=InputSettings)

    def layer(self, name: str) -> LayerInfo:
        for layer in self.layers:
            if layer.name == name:
                return layer
        known = ", ".join(layer.name for layer in self.layers[:8])
        raise AuditError(f"unknown layer {name!r}; candidate layers include: {known}")

    def to_dict(self) -> dict:
        """The description as JSON-ready data; layers carry their index in `layers`."""
        data = asdict(self)
        data["layers"] = [{"index": i, **layer} for i, layer in enumerate(data["layers"])]
        return data


def resolve_layers(info: ModelInfo, specs: Sequence[str]) -> list[str]:
    """Layer names from names or index numbers of the `layers` table ('all': every layer)."""
    specs = [s.strip() for s in specs if s.strip()]
    if specs == ["all"]:
        return [layer.name for layer in info.layers]
    names = {layer.name for layer in info.layers}
    resolved = []
    for spec in specs:
        if spec not in names and spec.lstrip("-").isdigit():
            index = int(spec)
            if not 0 <= index < len(info.layers):
                raise AuditError(
                    f"layer number {index} is out of range: the model has {len(info.layers)} "
                    f"candidate layers (0 to {len(info.layers) - 1})"
                )
            spec = info.layers[index].name
        resolved.append(info.layer(spec).name)
    return resolved


def input_layout(graph: onnx.GraphProto, name: str, dims: list) -> str:
    """NHWC when the first consumer transposes the input to NCHW or the last axis holds the channels."""
    for node in graph.node:
        if name in node.input:
            if node.op_type == "Transpose" and attribute(node, "perm") == list(NCHW_FROM_NHWC):
                return "NHWC"
            if node.op_type in NCHW_OPS:
                return "NCHW"
            break
    channels_first = dims[1] in (1, 3, 4)
    channels_last = dims[3] in (1, 3, 4)
    return "NHWC" if channels_last and not channels_first else "NCHW"


def propagate_layouts(graph: onnx.GraphProto, input_name: str, layout: str) -> dict[str, str]:
    """The memory layout of every 4-D tensor, following Transposes and NCHW-only ops."""
    layouts = {input_name: layout}
    for node in graph.node:
        if node.op_type in NCHW_OPS:
            lay = "NCHW"
        elif node.op_type == "Transpose":
            perm = attribute(node, "perm")
            source = layouts.get(node.input[0])
            if source is None or perm is None or len(perm) != 4:
                continue
            lay = "".join(source[i] for i in perm)
        else:
            lay = next((layouts[i] for i in node.input if i in layouts), None)
            if lay is None:
                continue
        for out in node.output:
            layouts[out] = lay
    return layouts


def pixel_copies(graph: onnx.GraphProto, image: str) -> set[str]:
    """Tensors that only move, pad or rescale the image's pixels (the image included)."""
    varied = dependents(graph, image)
    copies = {image}
    for node in graph.node:
        data = [i for i in node.input if i in varied]
        if node.op_type in PIXEL_OPS and data and all(i in copies for i in data):
            copies.update(o for o in node.output if o)
    return copies


def candidate_layers(
    graph: onnx.GraphProto, image: str, table: ShapeTable, input_height: int
) -> list[LayerInfo]:
    """4-D float activations computed from the image (not weights, not copies of the image)."""
    varied = dependents(graph, image)
    copies = pixel_copies(graph, image)
    layouts = propagate_layouts(graph, image, "NCHW")
    layers = []
    for node in graph.node:
        if node.op_type in RESTATING_OPS:
            continue
        for out in node.output:
            if out not in varied or out in copies or table.types.get(out) not in FLOAT_TYPES:
                continue
            shape = table.dims.get(out)
            if not shape or len(shape) != 4:
                continue
            layout = layouts.get(out, "NCHW")
            order = NCHW_FROM_NHWC if layout == "NHWC" else (0, 1, 2, 3)
            _, channels, height, width = (shape[i] for i in order)
            if not all(isinstance(d, int) for d in (channels, height, width)):
                continue
            if height * width >= 2:
                stride = input_height / height
                layers.append(LayerInfo(out, node.op_type, channels, height, width, stride, layout))
    return layers


def sample_feature(
    graph: onnx.GraphProto, image: str, logits: str, table: ShapeTable
) -> tuple[str | None, int | None]:
    """The data input of the last linear classifier on the path to the logits.

    A Gemm/MatMul, or a Conv applied to a 1x1 map (fully-convolutional heads such as DenseNet's).
    """
    varied = dependents(graph, image)
    upstream = _upstream(graph, logits)
    for node in reversed(graph.node):
        if node.output[0] not in upstream:
            continue
        data = [i for i in node.input[:2] if i in varied]
        if len(data) != 1:
            continue
        shape = table.dims.get(data[0])
        static = bool(shape) and all(isinstance(d, int) for d in shape[1:])
        one_by_one = node.op_type == "Conv" and static and len(shape) == 4 and shape[2:] == [1, 1]
        if node.op_type in ("Gemm", "MatMul") or one_by_one:
            return data[0], int(np.prod(shape[1:])) if static else None
    return None, None


def _upstream(graph: onnx.GraphProto, tensor: str) -> set[str]:
    """Every computed tensor that `tensor` depends on, itself included."""
    made_by = producers(graph)
    upstream, stack = set(), [tensor]
    while stack:
        name = stack.pop()
        if name in upstream or name not in made_by:
            continue
        upstream.add(name)
        stack.extend(i for i in made_by[name].input if i)
    return upstream


def class_names(settings: InputSettings, num_classes: int, path: object = None) -> list[str]:
    """The given names (checked against K); metadata names of the wrong count are ignored."""
    names = settings.class_names
    if names is not None and len(names) == num_classes:
        return list(names)
    if names is not None and settings.sources.get("class_names") == "argument":
        raise AuditError(
            f"{len(names)} class names given but the model has {num_classes} classes", path
        )
    return [str(i) for i in range(num_classes)]  # absent, or stale metadata
