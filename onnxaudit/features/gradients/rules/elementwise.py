"""Rules for elementwise activations and unary math: grad * f'(x), with f' written from x or,
where cheaper, from the forward output y."""

from __future__ import annotations

import numpy as np
import onnx

from onnxaudit.errors import AuditError
from onnxaudit.features.gradients.context import GradContext, attributes, describe_node
from onnxaudit.features.gradients.rules.registry import Grads, only_first, rule, scaled

SELU_ALPHA, SELU_GAMMA = 1.67326319217681884765625, 1.05070102214813232421875


def _positive(ctx: GradContext, x: str) -> str:
    return ctx.mask("Greater", x, ctx.scalar(0.0, x), x)


def _blend(ctx: GradContext, mask: str, inside: str, outside: str) -> str:
    """mask * inside + (1 - mask) * outside, without the slow Where."""
    flipped = ctx.op("Sub", [ctx.scalar(1.0, mask), mask])
    return ctx.op("Add", [ctx.op("Mul", [mask, inside]), ctx.op("Mul", [flipped, outside])])


def _between(ctx: GradContext, z: str, low: float, high: float) -> str:
    """1 where low < z < high."""
    above = ctx.mask("Greater", z, ctx.scalar(low, z), z)
    return ctx.op("Mul", [above, ctx.mask("Less", z, ctx.scalar(high, z), z)])


@rule("Relu")
def relu(ctx: GradContext, node: onnx.NodeProto, grads: Grads) -> Grads:
    """Mask Cast(y > 0) (1 where x > 0, else 0): reading y rather than x leaves onnxruntime free
    to fuse Conv + Relu in the forward; Greater + Cast run 2x faster than Sign(y), which was
    15 % of a zoo vgg gradient step (bench/RESULTS.md)."""
    y = node.output[0]
    return scaled(ctx, node, grads[0], ctx.mask("Greater", y, ctx.scalar(0.0, y), y))


@rule("LeakyRelu")
def leaky_relu(ctx: GradContext, node: onnx.NodeProto, grads: Grads) -> Grads:
    x = node.input[0]
    alpha = attributes(node).get("alpha", 0.01)
    factor = _blend(ctx, _positive(ctx, x), ctx.scalar(1.0, x), ctx.scalar(alpha, x))
    return scaled(ctx, node, grads[0], factor)


@rule("PRelu")
def prelu(ctx: GradContext, node: onnx.NodeProto, grads: Grads) -> Grads:
    x = node.input[0]
    factor = _blend(ctx, _positive(ctx, x), ctx.scalar(1.0, x), node.input[1])
    return scaled(ctx, node, grads[0], factor)


@rule("Elu")
def elu(ctx: GradContext, node: onnx.NodeProto, grads: Grads) -> Grads:
    x, y = node.input[0], node.output[0]
    alpha = ctx.scalar(attributes(node).get("alpha", 1.0), x)
    outside = ctx.op("Add", [y, alpha])  # alpha * exp(x) for x <= 0
    return scaled(ctx, node, grads[0], _blend(ctx, _positive(ctx, x), ctx.scalar(1.0, x), outside))


@rule("Selu")
def selu(ctx: GradContext, node: onnx.NodeProto, grads: Grads) -> Grads:
    """gamma for x > 0, y + gamma * alpha below."""
    x, y = node.input[0], node.output[0]
    attrs = attributes(node)
    alpha, gamma = attrs.get("alpha", SELU_ALPHA), attrs.get("gamma", SELU_GAMMA)
    outside = ctx.op("Add", [y, ctx.scalar(alpha * gamma, x)])
    factor = _blend(ctx, _positive(ctx, x), ctx.scalar(gamma, x), outside)
    return scaled(ctx, node, grads[0], factor)


@rule("Celu")
def celu(ctx: GradContext, node: onnx.NodeProto, grads: Grads) -> Grads:
    """1 for x > 0, exp(x / alpha) = y / alpha + 1 below."""
    x, y = node.input[0], node.output[0]
    alpha = attributes(node).get("alpha", 1.0)
    outside = ctx.op("Add", [ctx.op("Div", [y, ctx.scalar(alpha, x)]), ctx.scalar(1.0, x)])
    factor = _blend(ctx, _positive(ctx, x), ctx.scalar(1.0, x), outside)
    return scaled(ctx, node, grads[0], factor)


@rule("Clip")
def clip(ctx: GradContext, node: onnx.NodeProto, grads: Grads) -> Grads:
    """Gradient 1 where min <= x <= max (as torch), 0 where clipped; bounds are inputs from
    opset 11, attributes before."""
    x = node.input[0]
    attrs = attributes(node)
    bounds = [
        (op_type, node.input[i])
        for i, op_type in ((1, "GreaterOrEqual"), (2, "LessOrEqual"))
        if len(node.input) > i and node.input[i]
    ]
    bounds += [
        (op_type, ctx.scalar(attrs[name], x))
        for name, op_type in (("min", "GreaterOrEqual"), ("max", "LessOrEqual"))
        if name in attrs
    ]
    keep = None
    for op_type, bound in bounds:
        inside = ctx.mask(op_type, x, bound, x)
        keep = inside if keep is None else ctx.op("Mul", [keep, inside])
    return only_first(node, grads[0] if keep is None else ctx.op("Mul", [grads[0], keep]))


@rule("Sigmoid")
def sigmoid(ctx: GradContext, node: onnx.NodeProto, grads: Grads) -> Grads:
    y = node.output[0]
    return scaled(ctx, node, grads[0], ctx.op("Mul", [y, ctx.op("Sub", [ctx.scalar(1.0, y), y])]))


@rule("Tanh")
def tanh(ctx: GradContext, node: onnx.NodeProto, grads: Grads) -> Grads:
    y = node.output[0]
    return scaled(ctx, node, grads[0], ctx.op("Sub", [ctx.scalar(1.0, y), ctx.op("Mul", [y, y])]))


@rule("HardSigmoid")
def hard_sigmoid(ctx: GradContext, node: onnx.NodeProto, grads: Grads) -> Grads:
    x = node.input[0]
    attrs = attributes(node)
    alpha, beta = attrs.get("alpha", 0.2), attrs.get("beta", 0.5)
    z = ctx.op("Add", [ctx.op("Mul", [x, ctx.scalar(alpha, x)]), ctx.scalar(beta, x)])
    factor = ctx.op("Mul", [_between(ctx, z, 0.0, 1.0), ctx.scalar(alpha, x)])
    return scaled(ctx, node, grads[0], factor)


@rule("HardSwish")
def hard_swish(ctx: GradContext, node: onnx.NodeProto, grads: Grads) -> Grads:
    """y = x * relu6(x + 3) / 6: slope x/3 + 1/2 on (-3, 3), 1 above, 0 below."""
    x = node.input[0]
    ramp = ctx.op("Add", [ctx.op("Div", [x, ctx.scalar(3.0, x)]), ctx.scalar(0.5, x)])
    above = ctx.mask("GreaterOrEqual", x, ctx.scalar(3.0, x), x)
    factor = ctx.op("Add", [ctx.op("Mul", [_between(ctx, x, -3.0, 3.0), ramp]), above])
    return scaled(ctx, node, grads[0], factor)


@rule("Softplus")
def softplus(ctx: GradContext, node: onnx.NodeProto, grads: Grads) -> Grads:
    return scaled(ctx, node, grads[0], ctx.op("Sigmoid", [node.input[0]]))


@rule("Mish")
def mish(ctx: GradContext, node: onnx.NodeProto, grads: Grads) -> Grads:
    """y = x tanh(softplus(x)): tanh(sp) + x (1 - tanh(sp)^2) sigmoid(x)."""
    x = node.input[0]
    t = ctx.op("Tanh", [ctx.op("Softplus", [x])])
    slope = ctx.op("Sub", [ctx.scalar(1.0, x), ctx.op("Mul", [t, t])])
    inner = ctx.op("Mul", [ctx.op("Mul", [x, slope]), ctx.op("Sigmoid", [x])])
    return scaled(ctx, node, grads[0], ctx.op("Add", [t, inner]))


@rule("Gelu")
def gelu(ctx: GradContext, node: onnx.NodeProto, grads: Grads) -> Grads:
    """Exact: Phi(x) + x phi(x). tanh approximation: derivative of 0.5 x (1 + tanh(u))."""
    x = node.input[0]
    approximate = attributes(node).get("approximate", "none")
    if approximate == "tanh":
        k, c = np.sqrt(2 / np.pi), 0.044715
        x2 = ctx.op("Mul", [x, x])
        u = ctx.op(
            "Mul", [x, ctx.op("Add", [ctx.scalar(k, x), ctx.op("Mul", [x2, ctx.scalar(k * c, x)])])]
        )
        t = ctx.op("Tanh", [u])
        half = ctx.op("Mul", [ctx.op("Add", [t, ctx.scalar(1.0, x)]), ctx.scalar(0.5, x)])
        du = ctx.op("Add", [ctx.scalar(k, x), ctx.op("Mul", [x2, ctx.scalar(3 * k * c, x)])])
        slope = ctx.op("Sub", [ctx.scalar(1.0, x), ctx.op("Mul", [t, t])])
        rest = ctx.op("Mul", [ctx.op("Mul", [x, slope]), ctx.op("Mul", [du, ctx.scalar(0.5, x)])])
        return scaled(ctx, node, grads[0], ctx.op("Add", [half, rest]))
    if approximate != "none":
        raise AuditError(f"{describe_node(node)}: unknown Gelu approximation {approximate!r}")
    return scaled(ctx, node, grads[0], _normal_cdf_slope(ctx, x))


def _normal_cdf_slope(ctx: GradContext, x: str) -> str:
    """d/dx [x Phi(x)] = Phi(x) + x phi(x)."""
    erf = ctx.op("Erf", [ctx.op("Mul", [x, ctx.scalar(1 / np.sqrt(2), x)])])
    cdf = ctx.op("Mul", [ctx.op("Add", [erf, ctx.scalar(1.0, x)]), ctx.scalar(0.5, x)])
    x2 = ctx.op("Mul", [x, x])
    pdf = ctx.op("Exp", [ctx.op("Mul", [x2, ctx.scalar(-0.5, x)])])
    pdf = ctx.op("Mul", [pdf, ctx.scalar(1 / np.sqrt(2 * np.pi), x)])
    return ctx.op("Add", [cdf, ctx.op("Mul", [x, pdf])])


@rule("Erf")
def erf(ctx: GradContext, node: onnx.NodeProto, grads: Grads) -> Grads:
    x = node.input[0]
    bell = ctx.op("Exp", [ctx.op("Neg", [ctx.op("Mul", [x, x])])])
    return scaled(ctx, node, grads[0], ctx.op("Mul", [bell, ctx.scalar(2 / np.sqrt(np.pi), x)]))


@rule("Neg")
def neg(ctx: GradContext, node: onnx.NodeProto, grads: Grads) -> Grads:
    return [ctx.op("Neg", [grads[0]])]


@rule("Exp")
def exp(ctx: GradContext, node: onnx.NodeProto, grads: Grads) -> Grads:
    return scaled(ctx, node, grads[0], node.output[0])


@rule("Log")
def log(ctx: GradContext, node: onnx.NodeProto, grads: Grads) -> Grads:
    return only_first(node, ctx.op("Div", [grads[0], node.input[0]]))


@rule("Sqrt")
def sqrt(ctx: GradContext, node: onnx.NodeProto, grads: Grads) -> Grads:
    y = node.output[0]
    return only_first(node, ctx.op("Div", [grads[0], ctx.op("Add", [y, y])]))


@rule("Reciprocal")
def reciprocal(ctx: GradContext, node: onnx.NodeProto, grads: Grads) -> Grads:
    y = node.output[0]
    return scaled(ctx, node, grads[0], ctx.op("Neg", [ctx.op("Mul", [y, y])]))


@rule("Abs")
def abs_(ctx: GradContext, node: onnx.NodeProto, grads: Grads) -> Grads:
    return scaled(ctx, node, grads[0], ctx.op("Sign", [node.input[0]]))


@rule("Floor", "Ceil", "Round", "Sign")
def piecewise_constant(ctx: GradContext, node: onnx.NodeProto, grads: Grads) -> Grads:
    """Zero almost everywhere (as torch): no gradient flows back."""
    return only_first(node, None)
