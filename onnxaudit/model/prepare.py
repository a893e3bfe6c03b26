"""Load and describe an ONNX image classifier: its input, logits, sample feature and feature maps.

Nothing here relies on tensor names (exporters differ); everything is read off the graph structure.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto

from onnxaudit.errors import AuditError
from onnxaudit.model import passes as rewrite

FLOAT_TYPES = {TensorProto.FLOAT, TensorProto.FLOAT16, TensorProto.DOUBLE, TensorProto.BFLOAT16}
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


@dataclass(frozen=True)
class LayerInfo:
    """A candidate feature map: a 4-D float tensor with more than one spatial position."""

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

    def layer(self, name: str) -> LayerInfo:
        for layer in self.layers:
            if layer.name == name:
                return layer
        known = ", ".join(layer.name for layer in self.layers[:8])
        raise AuditError(f"unknown layer {name!r}; candidate layers include: {known}")

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class PreparedModel:
    """A classifier rewritten to take NCHW float32 pixels in [0, 1], with its description."""

    path: str
    proto: onnx.ModelProto
    info: ModelInfo
    sha256: str
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None

    def identity(self) -> dict:
        """The model's identification block of result.json."""
        return {
            "path": self.path,
            "name": Path(self.path).stem,
            "sha256": self.sha256,
            "input": {
                "name": self.info.input_name,
                "shape": list(self.info.input_shape),
                "layout": self.info.layout,
                "dtype": self.info.dtype,
            },
            "num_classes": self.info.num_classes,
            "classes": self.info.class_names,
            "normalisation": {"mean": self.mean, "std": self.std},
        }


def load_onnx(path: str | Path) -> onnx.ModelProto:
    """Read an ONNX file with its external data and check it, or raise a one-line AuditError."""
    path = Path(path)
    if not path.exists():
        raise AuditError("no such file", path)
    if not path.is_file():
        raise AuditError("not a file", path)
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:
        raise AuditError(f"not an ONNX model ({type(exc).__name__})", path) from exc
    if not model.graph.node:
        raise AuditError("not an ONNX model (no graph nodes)", path)
    try:
        onnx.load_external_data_for_model(model, str(path.parent))
    except Exception as exc:
        raise AuditError(
            f"cannot read the model's external data: {_first_line(exc)}", path
        ) from exc
    try:
        onnx.checker.check_model(str(path))
    except Exception as exc:
        raise AuditError(f"ONNX checker failed: {_first_line(exc)}", path) from exc
    return model


def describe(model: onnx.ModelProto, path: str | Path = "model") -> ModelInfo:
    """Find input, logits, sample feature and candidate layers from the graph structure."""
    try:
        inferred = onnx.shape_inference.infer_shapes(model)
    except Exception as exc:
        raise AuditError(f"shape inference failed: {_first_line(exc)}", path) from exc
    graph = inferred.graph
    inputs = rewrite._graph_inputs(graph)
    if len(inputs) != 1:
        raise AuditError(f"expected one image input, found {len(inputs)}", path)
    image = inputs[0]
    dims = _dims(image)
    if dims is None or len(dims) != 4:
        raise AuditError(f"expected a 4-D image input, found shape {dims}", path)
    layout = _input_layout(graph, image.name, dims)
    n, c, h, w = (dims[i] for i in rewrite.NCHW_FROM_NHWC) if layout == "NHWC" else dims
    if not all(isinstance(d, int) and d > 0 for d in (c, h, w)):
        raise AuditError(f"the input's channel and spatial sizes must be fixed, found {dims}", path)
    if not graph.output:
        raise AuditError("the model has no output", path)
    logits = graph.output[0]
    logit_dims = _dims(logits)
    if not logit_dims or not isinstance(logit_dims[-1], int):
        raise AuditError("cannot read the number of classes from the first output", path)
    num_classes = logit_dims[-1]

    shapes = {vi.name: _dims(vi) for vi in (*graph.value_info, *graph.output)}
    types = {vi.name: vi.type.tensor_type.elem_type for vi in (*graph.value_info, *graph.output)}
    unknown = [
        out
        for node in graph.node
        for out in node.output
        if out and not _static(shapes.get(out)) and node.op_type not in RESTATING_OPS
    ]
    if unknown:
        probed = _probe(model, image, dims, unknown, path)
        shapes.update({name: list(arr.shape) for name, arr in probed.items()})
        types.update({name: _ELEM_TYPES.get(arr.dtype, 0) for name, arr in probed.items()})
    layouts = _propagate_layouts(graph, image.name, layout)
    layers = []
    for node in graph.node:
        if node.op_type in RESTATING_OPS:
            continue
        for out in node.output:
            shape = shapes.get(out)
            if not shape or len(shape) != 4 or types.get(out) not in FLOAT_TYPES:
                continue
            lay = layouts.get(out, "NCHW")
            _, ch, hh, ww = (shape[i] for i in rewrite.NCHW_FROM_NHWC) if lay == "NHWC" else shape
            if not all(isinstance(d, int) for d in (ch, hh, ww)) or hh * ww < 2:
                continue
            layers.append(LayerInfo(out, node.op_type, ch, hh, ww, h / hh, lay))

    feature_name, feature_dim = _sample_feature(graph, logits.name, shapes)
    return ModelInfo(
        input_name=image.name,
        input_shape=(c, h, w),
        layout=layout,
        dtype=TensorProto.DataType.Name(image.type.tensor_type.elem_type).lower(),
        logits_name=logits.name,
        num_classes=num_classes,
        sample_feature_name=feature_name,
        sample_feature_dim=feature_dim,
        class_names=_class_names(model, num_classes),
        layers=layers,
        fixed_batch=n if isinstance(n, int) else None,
    )


def prepare_model(
    path: str | Path,
    mean: tuple[float, ...] | None = None,
    std: tuple[float, ...] | None = None,
) -> PreparedModel:
    """Load, check and canonicalise a classifier so every analysis sees NCHW [0, 1] pixels.

    Without `mean`/`std`, the normalisation stored in the model's `preprocessing` metadata is used.
    """
    path = Path(path)
    model = load_onnx(path)
    info = describe(model, path)
    if mean is None and std is None:
        mean, std = _metadata_normalisation(model)
    for values, what in ((mean, "mean"), (std, "std")):
        if values is not None and len(values) not in (1, info.input_shape[0]):
            raise AuditError(
                f"--{what} has {len(values)} values but the model takes {info.input_shape[0]} channels",
                path,
            )
    if std is not None and any(s == 0 for s in std):
        raise AuditError("--std values must be non-zero", path)
    mean = _per_channel(mean, info.input_shape[0])
    std = _per_channel(std, info.input_shape[0])
    proto = rewrite.canonicalize_input(model, info.layout, mean, std)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    return PreparedModel(str(path), proto, info, digest, mean, std)


_ELEM_TYPES = {
    np.dtype(np.float32): TensorProto.FLOAT,
    np.dtype(np.float16): TensorProto.FLOAT16,
    np.dtype(np.float64): TensorProto.DOUBLE,
}


def _static(shape: list | None) -> bool:
    return shape is not None and all(isinstance(d, int) for d in shape[1:])


def _probe(
    model: onnx.ModelProto, image: onnx.ValueInfoProto, dims: list, names: list[str], path
) -> dict[str, np.ndarray]:
    """Shapes that inference could not reach, read off one run on a zero batch."""
    from onnxaudit.features.runtime import create_session

    exposed = rewrite._copy(model)
    exposed.graph.output.extend(onnx.ValueInfoProto(name=name) for name in names)
    batch = [d if isinstance(d, int) else 1 for d in dims]
    dtype = onnx.helper.tensor_dtype_to_np_dtype(image.type.tensor_type.elem_type)
    try:
        session = create_session(exposed, device="cpu")
        values = session.run(names, {image.name: np.zeros(batch, dtype)})
    except Exception as exc:
        raise AuditError(f"cannot probe the feature map shapes: {_first_line(exc)}", path) from exc
    return dict(zip(names, values, strict=True))


def _per_channel(values, channels: int) -> tuple[float, ...] | None:
    if values is None:
        return None
    values = tuple(float(v) for v in values)
    return values * channels if len(values) == 1 else values


def _first_line(exc: Exception) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _dims(value_info: onnx.ValueInfoProto) -> list | None:
    tensor_type = value_info.type.tensor_type
    if not tensor_type.HasField("shape"):
        return None
    return [
        d.dim_value if d.HasField("dim_value") else (d.dim_param or None)
        for d in tensor_type.shape.dim
    ]


def _input_layout(graph: onnx.GraphProto, name: str, dims: list) -> str:
    """NHWC when the first consumer transposes the input to NCHW or the last axis holds the channels."""
    for node in graph.node:
        if name in node.input:
            if node.op_type == "Transpose":
                perm = next((list(a.ints) for a in node.attribute if a.name == "perm"), None)
                if perm == list(rewrite.NCHW_FROM_NHWC):
                    return "NHWC"
            if node.op_type in NCHW_OPS:
                return "NCHW"
            break
    channels_first = dims[1] in (1, 3, 4)
    channels_last = dims[3] in (1, 3, 4)
    return "NHWC" if channels_last and not channels_first else "NCHW"


def _propagate_layouts(graph: onnx.GraphProto, input_name: str, layout: str) -> dict[str, str]:
    """The memory layout of every 4-D tensor, following Transposes and NCHW-only ops."""
    layouts = {input_name: layout}
    for node in graph.node:
        if node.op_type in NCHW_OPS:
            lay = "NCHW"
        elif node.op_type == "Transpose":
            perm = next((list(a.ints) for a in node.attribute if a.name == "perm"), None)
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


def _sample_feature(
    graph: onnx.GraphProto, logits: str, shapes: dict
) -> tuple[str | None, int | None]:
    """The data input of the last Gemm/MatMul on the path to the logits."""
    initializers = {t.name for t in graph.initializer}
    constants = {o for n in graph.node if n.op_type == "Constant" for o in n.output}
    producers = {out: node for node in graph.node for out in node.output}
    upstream, stack = set(), [logits]
    while stack:
        tensor = stack.pop()
        if tensor in upstream or tensor not in producers:
            continue
        upstream.add(tensor)
        stack.extend(producers[tensor].input)
    for node in reversed(graph.node):
        if node.op_type in ("Gemm", "MatMul") and node.output[0] in upstream:
            data = [i for i in node.input[:2] if i not in initializers and i not in constants]
            if len(data) == 1:
                shape = shapes.get(data[0])
                dim = (
                    int(np.prod(shape[1:]))
                    if shape and all(isinstance(d, int) for d in shape[1:])
                    else None
                )
                return data[0], dim
    return None, None


def _metadata(model: onnx.ModelProto) -> dict[str, str]:
    return {p.key: p.value for p in model.metadata_props}


def _class_names(model: onnx.ModelProto, num_classes: int) -> list[str]:
    raw = _metadata(model).get("classes")
    try:
        names = json.loads(raw) if raw else None
    except json.JSONDecodeError:
        names = None
    if isinstance(names, list) and len(names) == num_classes:
        return [str(n) for n in names]
    return [str(i) for i in range(num_classes)]


def _metadata_normalisation(model: onnx.ModelProto):
    raw = _metadata(model).get("preprocessing")
    try:
        prep = json.loads(raw) if raw else {}
    except json.JSONDecodeError:
        prep = {}
    if not isinstance(prep, dict):
        return None, None
    return prep.get("mean"), prep.get("std")
