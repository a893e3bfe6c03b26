"""Rules for reductions and softmax: the output gradient is broadcast back over the reduced axes,
times each reduction's own local derivative."""

from __future__ import annotations

import onnx

from onnxaudit.features.gradients.context import GradContext, attributes
from onnxaudit.features.gradients.rules.registry import Grads, axis_of, only_first, rule


def _reduced_axes(ctx: GradContext, node: onnx.NodeProto) -> list[int] | None:
    """Sorted non-negative reduced axes (axes attribute, or input from opset 13/18); None for a
    no-op reduction (empty axes with noop_with_empty_axes)."""
    x = node.input[0]
    rank = ctx.rank(x, node)
    values = ctx.input_or_attribute(node, 1, "axes")
    axes = [] if values is None else [int(a) for a in values.reshape(-1)]
    if not axes and attributes(node).get("noop_with_empty_axes", 0):
        return None
    return sorted(a + rank if a < 0 else a for a in axes) or list(range(rank))


def _kept(ctx: GradContext, node: onnx.NodeProto, t: str, axes: list[int]) -> str:
    """`t` shaped like the output, with the reduced axes kept as size 1."""
    return t if attributes(node).get("keepdims", 1) else ctx.unsqueeze(t, axes)


@rule("ReduceMean", "ReduceSum")
def reduce_linear(ctx: GradContext, node: onnx.NodeProto, grads: Grads) -> Grads:
    x = node.input[0]
    axes = _reduced_axes(ctx, node)
    if axes is None:
        return only_first(node, grads[0])
    grad = _kept(ctx, node, grads[0], axes)
    if node.op_type == "ReduceMean":
        picked = ctx.op("Gather", [ctx.shape_of(x), ctx.ints(axes)])
        count = ctx.op("Cast", [ctx.op("ReduceProd", [picked], keepdims=0)], to=ctx.elem_type(x))
        grad = ctx.op("Div", [grad, count])
    return only_first(node, ctx.op("Expand", [grad, ctx.shape_of(x)]))


def _local_derivative(
    ctx: GradContext, node: onnx.NodeProto, x: str, y: str, axes: list[int]
) -> str:
    """d y / d x cell by cell, y broadcast back to x's shape through kept axes."""
    op = node.op_type
    if op == "ReduceSumSquare":
        return ctx.op("Add", [x, x])
    if op == "ReduceL1":
        return ctx.op("Sign", [x])
    if op == "ReduceL2":
        return ctx.op("Div", [x, y])
    if op == "ReduceLogSumExp":
        return ctx.op("Exp", [ctx.op("Sub", [x, y])])
    # ReduceMax / ReduceMin: shared evenly among the cells that reach the extremum (as torch)
    reached = ctx.mask("GreaterOrEqual" if op == "ReduceMax" else "LessOrEqual", x, y, x)
    return ctx.op("Div", [reached, ctx.reduce("ReduceSum", reached, axes, keepdims=True)])


@rule("ReduceMax", "ReduceMin", "ReduceL1", "ReduceL2", "ReduceSumSquare", "ReduceLogSumExp")
def reduce_nonlinear(ctx: GradContext, node: onnx.NodeProto, grads: Grads) -> Grads:
    x = node.input[0]
    axes = _reduced_axes(ctx, node)
    if axes is None:
        return only_first(node, grads[0])
    y, grad = (_kept(ctx, node, t, axes) for t in (node.output[0], grads[0]))
    return only_first(node, ctx.op("Mul", [grad, _local_derivative(ctx, node, x, y, axes)]))


def _softmax_axes(ctx: GradContext, node: onnx.NodeProto) -> list[int]:
    """Before opset 13, (Log)Softmax flattens the input to 2-D at `axis`: it normalises over all
    axes from `axis` on."""
    if ctx.opset >= 13:
        return [axis_of(ctx, node, -1)]
    return list(range(axis_of(ctx, node, 1), ctx.rank(node.input[0], node)))


@rule("Softmax")
def softmax(ctx: GradContext, node: onnx.NodeProto, grads: Grads) -> Grads:
    y, g = node.output[0], grads[0]
    inner = ctx.reduce("ReduceSum", ctx.op("Mul", [g, y]), _softmax_axes(ctx, node), keepdims=True)
    return [ctx.op("Mul", [y, ctx.op("Sub", [g, inner])])]


@rule("LogSoftmax")
def log_softmax(ctx: GradContext, node: onnx.NodeProto, grads: Grads) -> Grads:
    y, g = node.output[0], grads[0]
    total = ctx.reduce("ReduceSum", g, _softmax_axes(ctx, node), keepdims=True)
    return [ctx.op("Sub", [g, ctx.op("Mul", [ctx.op("Exp", [y]), total])])]
