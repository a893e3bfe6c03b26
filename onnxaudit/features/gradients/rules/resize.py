"""Rules for Resize and its predecessor Upsample: linear and separable, so the adjoint is one
constant matrix product per resized axis."""

from __future__ import annotations

import numpy as np
import onnx

from onnxaudit.errors import AuditError
from onnxaudit.features.gradients.context import GradContext, attributes, describe_node
from onnxaudit.features.gradients.rules.registry import Grads, only_first, rule
from onnxaudit.features.runtime import create_session


def _resize_matrix(
    attrs: list[onnx.AttributeProto], axis: int, rank: int, n: int, m: int, scale: float | None
) -> np.ndarray:
    """R[i, j] = d y_j / d x_i of the Resize along one axis, measured by resizing basis vectors.

    Resize (nearest, linear, cubic) is linear and separable, so the matrices of the axes define
    its adjoint exactly; running onnxruntime itself keeps every mode's rounding rules identical.
    """
    dims = [n] + [1] * (rank - 1)
    dims[axis] = n
    basis = np.eye(n, dtype=np.float32).reshape(dims)
    out_dims = list(dims)
    out_dims[axis] = m
    if scale is None:
        extra = [onnx.numpy_helper.from_array(np.asarray(out_dims, dtype=np.int64), "sizes")]
        inputs = ["x", "", "", "sizes"]
    else:
        scales = np.ones(rank, dtype=np.float32)
        scales[axis] = scale
        extra = [onnx.numpy_helper.from_array(scales, "scales")]
        inputs = ["x", "", "scales"]
    resize = onnx.helper.make_node("Resize", inputs, ["y"])
    resize.attribute.extend(attrs)
    graph = onnx.helper.make_graph(
        [resize],
        "resize_axis",
        [onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, dims)],
        [onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, None)],
        extra,
    )
    model = onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", 19)])
    result = create_session(model, "cpu").run(None, {"x": basis})[0]
    return result.reshape(n, m)


def _legacy_attributes(node: onnx.NodeProto) -> list[onnx.AttributeProto]:
    """Upsample and Resize-10 in Resize-19 terms: asymmetric coordinates, floor rounding."""
    mode = attributes(node).get("mode", "nearest")
    attrs = {"mode": mode, "coordinate_transformation_mode": "asymmetric"}
    if mode == "nearest":
        attrs["nearest_mode"] = "floor"
    return [onnx.helper.make_attribute(k, v) for k, v in attrs.items()]


def _scales_and_sizes(
    ctx: GradContext, node: onnx.NodeProto, size: list[int]
) -> tuple[np.ndarray | None, list[int]]:
    """The scales (None when given as sizes) and the output spatial sizes."""
    if node.op_type == "Upsample" or ctx.opset == 10:
        scales = ctx.input_or_attribute(node, 1, "scales")
    else:
        scales = ctx.value(node.input[2]) if len(node.input) > 2 else None
    if scales is None or not scales.size:
        sizes = ctx.constant(node.input[3] if len(node.input) > 3 else "", node, "scales or sizes")
        return None, [int(s) for s in sizes[2:]]
    if np.any(scales[:2] != 1):
        raise AuditError(f"{describe_node(node)}: resizing over batch or channels")
    return scales, [int(np.floor(i * s)) for i, s in zip(size, scales[2:], strict=True)]


@rule("Resize", "Upsample")
def resize(ctx: GradContext, node: onnx.NodeProto, grads: Grads) -> Grads:
    attrs = attributes(node)
    x = node.input[0]
    if attrs.get("coordinate_transformation_mode") == "tf_crop_and_resize" or attrs.get("axes"):
        raise AuditError(f"{describe_node(node)}: tf_crop_and_resize/axes are not supported")
    if attrs.get("keep_aspect_ratio_policy", "stretch") != "stretch":
        raise AuditError(f"{describe_node(node)}: only keep_aspect_ratio_policy='stretch'")
    legacy = node.op_type == "Upsample" or ctx.opset == 10
    forward_attrs = _legacy_attributes(node) if legacy else list(node.attribute)
    rank = ctx.rank(x, node)
    size = ctx.static_dims(x, node, start=2)
    scales, out = _scales_and_sizes(ctx, node, size)
    grad = grads[0]
    dtype = ctx.np_dtype(x)
    for i in reversed(range(len(size))):
        axis = 2 + i
        scale = None if scales is None else float(scales[axis])
        matrix = _resize_matrix(forward_attrs, axis, rank, size[i], out[i], scale)
        if matrix.shape[0] == matrix.shape[1] and np.array_equal(matrix, np.eye(size[i])):
            continue
        if axis < rank - 2:
            raise AuditError(f"{describe_node(node)}: only the last two axes may be resized")
        if axis == rank - 1:
            grad = ctx.op("MatMul", [grad, ctx.const(matrix.T.astype(dtype), "resize")])
        else:
            grad = ctx.op("MatMul", [ctx.const(matrix.astype(dtype), "resize"), grad])
    return only_first(node, grad)
