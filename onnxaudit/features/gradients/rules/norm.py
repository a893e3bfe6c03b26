"""Rules for normalisation layers. Inference BatchNormalization is a per-channel scale; the
others normalise by statistics of the input itself, whose backward is the standard
rstd * (gh - mean(gh) - xhat * mean(gh * xhat)) over the normalised axes."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import onnx

from onnxaudit.errors import AuditError
from onnxaudit.features.gradients.context import GradContext, attributes, describe_node
from onnxaudit.features.gradients.rules.registry import Grads, only_first, rule, scaled


@rule("BatchNormalization")
def batch_norm(ctx: GradContext, node: onnx.NodeProto, grads: Grads) -> Grads:
    """scale / sqrt(var + eps) per channel. (Opset 7-8 `spatial` is gone after the conversion
    to MIN_OPSET.)"""
    attrs = attributes(node)
    if attrs.get("training_mode", 0) or (len(node.output) > 1 and any(node.output[1:])):
        raise AuditError(f"{describe_node(node)} runs in training mode; export in eval mode")
    x, scale, _, _, var = node.input
    eps = ctx.scalar(attrs.get("epsilon", 1e-5), var)
    factor = ctx.op("Div", [scale, ctx.op("Sqrt", [ctx.op("Add", [var, eps])])])
    factor = ctx.op("Cast", [factor], to=ctx.elem_type(x))
    rank = ctx.rank(x, node)
    factor = ctx.op("Reshape", [factor, ctx.ints([-1] + [1] * (rank - 2))])
    return scaled(ctx, node, grads[0], factor)


def _channel_mix(ctx: GradContext, t: str, matrix: np.ndarray, rank: int) -> str:
    """Apply `matrix` (C, C) along axis 1: out[:, c] = sum_c' t[:, c'] matrix[c', c]."""
    last = [0, *range(2, rank), 1]
    moved = ctx.op("Transpose", [t], perm=last)
    mixed = ctx.op("MatMul", [moved, ctx.const(matrix.astype(ctx.np_dtype(t)), "band")])
    return ctx.op("Transpose", [mixed], perm=[int(i) for i in np.argsort(last)])


@rule("LRN")
def lrn(ctx: GradContext, node: onnx.NodeProto, grads: Grads) -> Grads:
    """y = x s^-beta, s = bias + alpha / size * (window sum over channels of x^2):
    dx = g s^-beta - 2 alpha beta / size * x * windowsum^T(g y / s)."""
    attrs = attributes(node)
    size = attrs["size"]
    alpha, beta, bias = attrs.get("alpha", 1e-4), attrs.get("beta", 0.75), attrs.get("bias", 1.0)
    x, y, g = node.input[0], node.output[0], grads[0]
    rank = ctx.rank(x, node)
    channels = ctx.static_dims(x, node, start=1)[0]
    c = np.arange(channels)
    offset = c[:, None] - c[None, :]  # c' - c
    band = (offset >= -((size - 1) // 2)) & (offset <= (size - 1) - (size - 1) // 2)
    squares = _channel_mix(ctx, ctx.op("Mul", [x, x]), band, rank)
    s = ctx.op("Add", [ctx.op("Mul", [squares, ctx.scalar(alpha / size, x)]), ctx.scalar(bias, x)])
    direct = ctx.op("Mul", [g, ctx.op("Pow", [s, ctx.scalar(-beta, x)])])
    spread = _channel_mix(ctx, ctx.op("Div", [ctx.op("Mul", [g, y]), s]), band.T, rank)
    coupling = ctx.op("Mul", [ctx.op("Mul", [x, spread]), ctx.scalar(2 * alpha * beta / size, x)])
    return [ctx.op("Sub", [direct, coupling])]


def _normalised_grad(ctx: GradContext, x: str, gh: str, axes: Sequence[int], eps: float) -> str:
    """d loss / d x of xhat = (x - mean) / sqrt(var + eps) over `axes`, given gh = d loss / d xhat."""
    mean = ctx.reduce("ReduceMean", x, axes, keepdims=True)
    centred = ctx.op("Sub", [x, mean])
    var = ctx.reduce("ReduceMean", ctx.op("Mul", [centred, centred]), axes, keepdims=True)
    rstd = ctx.op("Reciprocal", [ctx.op("Sqrt", [ctx.op("Add", [var, ctx.scalar(eps, x)])])])
    xhat = ctx.op("Mul", [centred, rstd])
    mean_gh = ctx.reduce("ReduceMean", gh, axes, keepdims=True)
    mean_ghx = ctx.reduce("ReduceMean", ctx.op("Mul", [gh, xhat]), axes, keepdims=True)
    inner = ctx.op("Sub", [ctx.op("Sub", [gh, mean_gh]), ctx.op("Mul", [xhat, mean_ghx])])
    return ctx.op("Mul", [rstd, inner])


@rule("LayerNormalization")
def layer_norm(ctx: GradContext, node: onnx.NodeProto, grads: Grads) -> Grads:
    x = node.input[0]
    attrs = attributes(node)
    rank = ctx.rank(x, node)
    axis = attrs.get("axis", -1)
    axis = axis + rank if axis < 0 else axis
    gh = ctx.op("Mul", [grads[0], node.input[1]])
    return only_first(
        node, _normalised_grad(ctx, x, gh, range(axis, rank), attrs.get("epsilon", 1e-5))
    )


@rule("InstanceNormalization")
def instance_norm(ctx: GradContext, node: onnx.NodeProto, grads: Grads) -> Grads:
    x = node.input[0]
    rank = ctx.rank(x, node)
    scale = ctx.op("Reshape", [node.input[1], ctx.ints([-1] + [1] * (rank - 2))])
    gh = ctx.op("Mul", [grads[0], scale])
    eps = attributes(node).get("epsilon", 1e-5)
    return only_first(node, _normalised_grad(ctx, x, gh, range(2, rank), eps))


@rule("GroupNormalization")
def group_norm(ctx: GradContext, node: onnx.NodeProto, grads: Grads) -> Grads:
    """Statistics per (sample, group): normalise (N, G, C/G * spatial) over its last axis.
    The scale is per channel (opset 21) or per group (opset 18)."""
    x = node.input[0]
    attrs = attributes(node)
    groups = attrs["num_groups"]
    rank = ctx.rank(x, node)
    channels = ctx.static_dims(x, node, start=1)[0]
    scale_size = int(np.prod(ctx.static_dims(node.input[1], node)))
    grouped = ctx.ints([0, groups, -1])
    if scale_size == channels:
        scale = ctx.op("Reshape", [node.input[1], ctx.ints([-1] + [1] * (rank - 2))])
        gh = ctx.op("Reshape", [ctx.op("Mul", [grads[0], scale]), grouped])
    else:
        scale = ctx.op("Reshape", [node.input[1], ctx.ints([-1, 1])])
        gh = ctx.op("Mul", [ctx.op("Reshape", [grads[0], grouped]), scale])
    xg = ctx.op("Reshape", [x, grouped])
    grad = _normalised_grad(ctx, xg, gh, [2], attrs.get("epsilon", 1e-5))
    return only_first(node, ctx.reshape_like(grad, x))
