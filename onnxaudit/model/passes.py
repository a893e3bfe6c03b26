"""Explicit ONNX graph passes: each takes a model and returns a new one, leaving the input untouched.

The passes never change the numbers of the original outputs: they only add nodes whose results are
new graph outputs, or prepend nodes in front of the original input.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from onnxaudit.errors import AuditError
from onnxaudit.model.graph import NCHW_FROM_NHWC, copy_model, graph_inputs, skeleton, unique_name

__all__ = ["NCHW_FROM_NHWC", "adaptive_pool_matrix", "canonicalize_input", "expose_tensors"]


def _constant(graph: onnx.GraphProto, stem: str, value: np.ndarray) -> str:
    name = unique_name(graph, stem)
    graph.initializer.append(numpy_helper.from_array(value, name))
    return name


def canonicalize_input(
    model: onnx.ModelProto,
    layout: str,
    mean: tuple[float, ...] | None = None,
    std: tuple[float, ...] | None = None,
    channel_order: str = "rgb",
    input_scale: float = 1.0,
) -> onnx.ModelProto:
    """Make the model take NCHW float32 RGB pixels in [0, 1].

    Prepends, in this order, the RGB -> BGR reorder, the `x * input_scale`, the `(x - mean) / std`
    normalisation (mean/std in the model's channel order and units), the NCHW -> NHWC transpose
    for NHWC models, and a cast for non-float32 inputs. Analyses then blend, clip and
    differentiate in raw pixel space, before the model's own preprocessing.
    """
    model = copy_model(model)
    graph = model.graph
    original = graph_inputs(graph)[0]
    elem_type = original.type.tensor_type.elem_type
    pixel_steps = (
        channel_order != "rgb" or input_scale != 1.0 or mean is not None or std is not None
    )
    if layout == "NCHW" and not pixel_steps and elem_type == TensorProto.FLOAT:
        return model

    dims = list(original.type.tensor_type.shape.dim)
    if layout == "NHWC":
        dims = [dims[i] for i in NCHW_FROM_NHWC]
    inner = _detach_input(graph, original.name)
    steps = _PixelSteps(graph, original.name)
    steps.pixel_transform(dims[1].dim_value, channel_order, input_scale, mean, std)
    if layout == "NHWC":
        steps.add("Transpose", "onnxaudit_nhwc", perm=[0, 2, 3, 1])
    if elem_type != TensorProto.FLOAT:
        steps.add("Cast", "onnxaudit_cast", to=elem_type)
    steps.nodes.append(helper.make_node("Identity", [steps.current], [inner], name=inner))

    new_input = helper.make_tensor_value_info(original.name, TensorProto.FLOAT, None)
    new_input.type.tensor_type.shape.dim.extend(dims)
    position = list(graph.input).index(original)
    graph.input.remove(original)
    graph.input.insert(position, new_input)
    for node in reversed(steps.nodes):
        graph.node.insert(0, node)
    return model


def _detach_input(graph: onnx.GraphProto, name: str) -> str:
    """Rename the input where the nodes read it; returns the new name, to be fed by the steps."""
    inner = unique_name(graph, f"{name}__model_input")
    for node in graph.node:
        node.input[:] = [inner if i == name else i for i in node.input]
    if any(out.name == name for out in graph.output):
        raise AuditError("the model's input is also one of its outputs; cannot rewrite it")
    return inner


def _per_channel(values: tuple[float, ...]) -> np.ndarray:
    return np.asarray(values, np.float32).reshape(1, len(values), 1, 1)


class _PixelSteps:
    """The chain of nodes prepended in front of the model's input, built one step at a time."""

    def __init__(self, graph: onnx.GraphProto, start: str) -> None:
        self.graph, self.current = graph, start
        self.nodes: list[onnx.NodeProto] = []

    def add(self, op: str, stem: str, extra: list[str] = (), **attrs) -> None:
        name = unique_name(self.graph, stem)
        self.nodes.append(helper.make_node(op, [self.current, *extra], [name], name=name, **attrs))
        self.current = name

    def elementwise(self, op: str, stem: str, value: np.ndarray) -> None:
        self.add(op, stem, [_constant(self.graph, f"{stem}_value", np.asarray(value, np.float32))])

    def pixel_transform(
        self,
        channels: int,
        channel_order: str,
        input_scale: float,
        mean: tuple[float, ...] | None,
        std: tuple[float, ...] | None,
    ) -> None:
        """RGB [0, 1] -> what the model expects: reorder, scale, centre, divide."""
        if channel_order == "bgr":
            self.reverse_channels(channels)
        if input_scale != 1.0:
            self.elementwise("Mul", "onnxaudit_scaled", np.float32(input_scale))
        if mean is not None:
            self.elementwise("Sub", "onnxaudit_centred", _per_channel(mean))
        if std is not None:
            self.elementwise("Div", "onnxaudit_normalised", _per_channel(std))

    def reverse_channels(self, channels: int) -> None:
        """RGB -> BGR by Split and Concat (both differentiable, every opset).

        Every name comes from a distinct stem: the nodes join the graph only at the end.
        """
        parts = [unique_name(self.graph, f"onnxaudit_channel_{c}") for c in range(channels)]
        split = unique_name(self.graph, "onnxaudit_split")
        self.nodes.append(helper.make_node("Split", [self.current], parts, axis=1, name=split))
        reordered = unique_name(self.graph, "onnxaudit_bgr")
        self.nodes.append(
            helper.make_node("Concat", parts[::-1], [reordered], axis=1, name=reordered)
        )
        self.current = reordered


def expose_tensors(
    model: onnx.ModelProto,
    names: list[str],
    layouts: dict[str, str] | None = None,
    grid: int | None = None,
    shapes: dict[str, tuple[int, int, int]] | None = None,
) -> tuple[onnx.ModelProto, dict[str, str]]:
    """Add `names` as graph outputs; returns the new model and a map name -> output name.

    4-D feature maps come out NCHW (an in-graph Transpose for NHWC ones). With `grid`, each map is
    average-pooled on the device to at most grid x grid positions (exactly as adaptive average
    pooling) and returned channels-last, (N, G, G, C), so only the reduced tensor is copied out;
    reshaped to (N, R, C) it lists the regional features in row-major order. `shapes` gives
    each map's (C, H, W), needed for pooling.
    """
    model = copy_model(model)
    graph = model.graph
    layouts = layouts or {}
    produced = {out for node in graph.node for out in node.output}
    produced |= {i.name for i in graph.input}
    existing_outputs = {o.name for o in graph.output}
    mapping: dict[str, str] = {}
    for name in names:
        if name not in produced:
            raise AuditError(f"no tensor named {name!r} in the model")
        current = name
        if layouts.get(name) == "NHWC":
            current = _append(
                graph, "Transpose", [current], f"{name}::nchw", perm=list(NCHW_FROM_NHWC)
            )
        if grid is not None:
            if shapes is None or name not in shapes:
                raise AuditError(f"the spatial size of {name!r} is unknown; cannot pool it")
            current = _regional(graph, current, name, shapes[name], grid)
        if current == name and name in existing_outputs:
            mapping[name] = name
            continue
        if current == name:
            current = _append(graph, "Identity", [name], f"{name}::out")
        graph.output.append(helper.make_tensor_value_info(current, TensorProto.FLOAT, None))
        mapping[name] = current
    return _with_output_shapes(model), mapping


def _with_output_shapes(model: onnx.ModelProto) -> onnx.ModelProto:
    """Fill in the types of the new outputs by shape inference, then check the graph."""
    inferred = onnx.shape_inference.infer_shapes(skeleton(model))
    known = {vi.name: vi for vi in (*inferred.graph.value_info, *inferred.graph.output)}
    for out in model.graph.output:
        if out.type.tensor_type.HasField("shape"):
            continue
        if out.name not in known or not known[out.name].type.tensor_type.HasField("shape"):
            made_by = next((n for n in model.graph.node if out.name in n.output), None)
            where = f" ({made_by.op_type} node {made_by.name!r})" if made_by is not None else ""
            raise AuditError(f"the shape of {out.name!r}{where} is unknown, even its rank")
        out.type.CopyFrom(known[out.name].type)
    try:
        onnx.checker.check_model(skeleton(model))  # without the weights: fast, and under 2 GB
    except onnx.checker.ValidationError as exc:
        raise AuditError(f"the rewritten graph is invalid: {str(exc).splitlines()[0]}") from exc
    return model


def adaptive_pool_matrix(size: int, out: int) -> np.ndarray:
    """(out, size) averaging matrix of adaptive average pooling along one axis."""
    matrix = np.zeros((out, size), np.float32)
    for i in range(out):
        start, stop = (i * size) // out, -((-(i + 1) * size) // out)
        matrix[i, start:stop] = 1.0 / (stop - start)
    return matrix


def _regional(
    graph: onnx.GraphProto, tensor: str, name: str, chw: tuple[int, int, int], grid: int
) -> str:
    """Pool an NCHW map to at most grid x grid positions, channels-last: (N, G, G, C)."""
    _, height, width = chw
    out_h, out_w = min(grid, height), min(grid, width)
    pooled = tensor
    if (out_h, out_w) != (height, width):
        if height % out_h == 0 and width % out_w == 0:
            kernel = [height // out_h, width // out_w]
            pooled = _append(
                graph, "AveragePool", [tensor], f"{name}::pool", kernel_shape=kernel, strides=kernel
            )
        else:  # adaptive windows of unequal size: two small matrix products
            pool_w = _constant(
                graph, f"{name}::pool_w", adaptive_pool_matrix(width, out_w).T.copy()
            )
            pool_h = _constant(
                graph, f"{name}::pool_h", adaptive_pool_matrix(height, out_h).T.copy()
            )
            along_w = _append(graph, "MatMul", [tensor, pool_w], f"{name}::pool_cols")
            swapped = _append(graph, "Transpose", [along_w], f"{name}::swap", perm=[0, 1, 3, 2])
            along_h = _append(graph, "MatMul", [swapped, pool_h], f"{name}::pool_rows")
            pooled = _append(graph, "Transpose", [along_h], f"{name}::pool", perm=[0, 1, 3, 2])
    # NCHW -> NHWC: onnxruntime folds this Transpose into the reorder out of its blocked NCHWc
    # layout, so it costs no extra pass. The (N, G, G, C) result is reshaped to (N, R, C) by the
    # caller, free in numpy, where an in-graph Reshape would copy.
    return _append(graph, "Transpose", [pooled], f"{name}::regions", perm=[0, 2, 3, 1])


def _append(graph: onnx.GraphProto, op: str, inputs: list[str], stem: str, **attrs) -> str:
    output = unique_name(graph, stem)
    graph.node.append(helper.make_node(op, inputs, [output], name=output, **attrs))
    return output
