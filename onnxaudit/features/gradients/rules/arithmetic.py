"""Rules for broadcasting arithmetic: each operand's gradient is summed back over the axes along
which it was broadcast; operands off the image's path get None."""

from __future__ import annotations

import onnx

from onnxaudit.errors import AuditError
from onnxaudit.features.gradients.context import GradContext, describe_node
from onnxaudit.features.gradients.rules.registry import Grads, if_varied, rule


def _unbroadcast_all(
    ctx: GradContext, node: onnx.NodeProto, grads: Grads, operands: list[str]
) -> Grads:
    dims = ctx.dims.get(node.output[0])
    if dims is None:
        raise AuditError(f"unknown output shape of {describe_node(node)}")
    return [
        ctx.unbroadcast(g, dims, x) if g is not None and x in ctx.varied else None
        for g, x in zip(grads, operands, strict=True)
    ]


def _binary(
    ctx: GradContext, node: onnx.NodeProto, ga: str | None, gb: str | None, first: int = 0
) -> Grads:
    """Gradients of operands `first`, `first + 1`, broadcasting undone."""
    return _unbroadcast_all(ctx, node, [ga, gb], list(node.input[first : first + 2]))


@rule("Add", inputs=(0, 1))
def add(ctx: GradContext, node: onnx.NodeProto, grads: Grads) -> Grads:
    return _binary(ctx, node, grads[0], grads[0])


@rule("Sub", inputs=(0, 1))
def sub(ctx: GradContext, node: onnx.NodeProto, grads: Grads) -> Grads:
    g = grads[0]
    return _binary(ctx, node, g, if_varied(ctx, node.input[1], lambda: ctx.op("Neg", [g])))


@rule("Mul", inputs=(0, 1))
def mul(ctx: GradContext, node: onnx.NodeProto, grads: Grads) -> Grads:
    g, (a, b) = grads[0], node.input
    ga = if_varied(ctx, a, lambda: ctx.op("Mul", [g, b]))
    return _binary(ctx, node, ga, if_varied(ctx, b, lambda: ctx.op("Mul", [g, a])))


@rule("Div", inputs=(0, 1))
def div(ctx: GradContext, node: onnx.NodeProto, grads: Grads) -> Grads:
    """d(a/b)/da = 1/b, d(a/b)/db = -y/b."""
    g, (a, b), y = grads[0], node.input, node.output[0]
    ga = if_varied(ctx, a, lambda: ctx.op("Div", [g, b]))
    gb = if_varied(ctx, b, lambda: ctx.op("Neg", [ctx.op("Div", [ctx.op("Mul", [g, y]), b])]))
    return _binary(ctx, node, ga, gb)


@rule("Pow", inputs=(0, 1))
def pow_(ctx: GradContext, node: onnx.NodeProto, grads: Grads) -> Grads:
    """d(a^b)/da = b a^(b-1); d(a^b)/db = y log(a)."""
    g, (a, b), y = grads[0], node.input, node.output[0]

    def base() -> str:
        lowered = ctx.op("Sub", [b, ctx.scalar(1.0, b)])
        return ctx.op("Mul", [g, ctx.op("Mul", [b, ctx.op("Pow", [a, lowered])])])

    ga = if_varied(ctx, a, base)
    gb = if_varied(ctx, b, lambda: ctx.op("Mul", [g, ctx.op("Mul", [y, ctx.op("Log", [a])])]))
    return _binary(ctx, node, ga, gb)


@rule("Where", inputs=(1, 2))
def where(ctx: GradContext, node: onnx.NodeProto, grads: Grads) -> Grads:
    cond, a, b = node.input
    zero = ctx.scalar(0.0, node.output[0])
    ga = if_varied(ctx, a, lambda: ctx.op("Where", [cond, grads[0], zero]))
    gb = if_varied(ctx, b, lambda: ctx.op("Where", [cond, zero, grads[0]]))
    return [None, *_binary(ctx, node, ga, gb, first=1)]


@rule("Sum", inputs=None)
def sum_(ctx: GradContext, node: onnx.NodeProto, grads: Grads) -> Grads:
    return _unbroadcast_all(ctx, node, [grads[0]] * len(node.input), list(node.input))


@rule("Mean", inputs=None)
def mean(ctx: GradContext, node: onnx.NodeProto, grads: Grads) -> Grads:
    share = ctx.op("Div", [grads[0], ctx.scalar(len(node.input), node.output[0])])
    return _unbroadcast_all(ctx, node, [share] * len(node.input), list(node.input))


@rule("Max", "Min", inputs=None)
def extremum(ctx: GradContext, node: onnx.NodeProto, grads: Grads) -> Grads:
    """All of the gradient goes to the first operand equal to the result (ties: the first)."""
    y, g = node.output[0], grads[0]
    reached = "GreaterOrEqual" if node.op_type == "Max" else "LessOrEqual"
    remaining, shares = None, []
    for x in node.input:
        hit = ctx.mask(reached, x, y, y)
        first = hit if remaining is None else ctx.op("Mul", [hit, remaining])
        shares.append(ctx.op("Mul", [g, first]) if x in ctx.varied else None)
        missed = ctx.op("Sub", [ctx.scalar(1.0, y), hit])
        remaining = missed if remaining is None else ctx.op("Mul", [remaining, missed])
    return _unbroadcast_all(ctx, node, shares, list(node.input))
