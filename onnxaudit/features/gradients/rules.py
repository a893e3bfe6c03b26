"""Per-op backward rules: each maps the gradient of a node's outputs to its inputs' gradients.

A rule receives the context, the forward node and one gradient name (or None) per output, and
returns one gradient name (or None) per input. It differentiates only the inputs listed in its
`BackwardRule.inputs`; the pass refuses a model that needs any other input's gradient before
emitting anything. Rules emit standard-domain ops only, so the result runs in plain onnxruntime.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import onnx

from onnxaudit.errors import AuditError
from onnxaudit.features.gradients.context import GradContext, attributes, describe_node
from onnxaudit.features.runtime import create_session

Grads = list[str | None]
RuleFn = Callable[[GradContext, onnx.NodeProto, Grads], Grads]


@dataclass(frozen=True)
class BackwardRule:
    """`fn` computes input gradients; `inputs`: the input positions it can differentiate
    (None: all of them)."""

    fn: RuleFn
    inputs: tuple[int, ...] | None = (0,)

    def differentiates(self, position: int) -> bool:
        return self.inputs is None or position in self.inputs


RULES: dict[str, BackwardRule] = {}


def rule(*op_types: str, inputs: tuple[int, ...] | None = (0,)) -> Callable[[RuleFn], RuleFn]:
    def register(fn: RuleFn) -> RuleFn:
        for op_type in op_types:
            RULES[op_type] = BackwardRule(fn, inputs)
        return fn

    return register


def _only_first(node: onnx.NodeProto, grad: str | None) -> Grads:
    return [grad] + [None] * (len(node.input) - 1)


# --- structural ops -------------------------------------------------------------------------------
@rule("Identity")
def identity(ctx: GradContext, node: onnx.NodeProto, grads: Grads) -> Grads:
    return [grads[0]]


@rule("Dropout")
def dropout(ctx: GradContext, node: onnx.NodeProto, grads: Grads) -> Grads:
    """Inference Dropout is the identity; a training-mode Dropout has no deterministic gradient."""
    training = len(node.input) > 2 and node.input[2]
    if training and bool(ctx.constant(node.input[2], node, "training_mode")):
        raise AuditError(f"{describe_node(node)} runs in training mode; export in eval mode")
    return _only_first(node, grads[0])


@rule("Flatten", "Reshape", "Squeeze", "Unsqueeze")
def reshape(ctx: GradContext, node: onnx.NodeProto, grads: Grads) -> Grads:
    return _only_first(node, ctx.reshape_like(grads[0], node.input[0]))


@rule("Expand")
def expand(ctx: GradContext, node: onnx.NodeProto, grads: Grads) -> Grads:
    dims = ctx.dims[node.output[0]]
    return _only_first(node, ctx.unbroadcast(grads[0], dims, node.input[0]))


@rule("Cast")
def cast(ctx: GradContext, node: onnx.NodeProto, grads: Grads) -> Grads:
    return [ctx.op("Cast", [grads[0]], to=ctx.elem_type(node.input[0]))]


@rule("Transpose")
def transpose(ctx: GradContext, node: onnx.NodeProto, grads: Grads) -> Grads:
    perm = attributes(node).get("perm") or list(reversed(range(ctx.rank(node.input[0], node))))
    return [ctx.op("Transpose", [grads[0]], perm=[int(i) for i in np.argsort(perm)])]


def _axis(ctx: GradContext, node: onnx.NodeProto, default: int) -> int:
    axis = attributes(node).get("axis", default)
    return axis + ctx.rank(node.input[0], node) if axis < 0 else axis


@rule("Concat", inputs=None)
def concat(ctx: GradContext, node: onnx.NodeProto, grads: Grads) -> Grads:
    axis = _axis(ctx, node, 0)
    take = ctx.ints([axis])
    after = ctx.ints([axis + 1])
    sizes = [ctx.op("Slice", [ctx.shape_of(x), take, after]) for x in node.input]
    sizes = ctx.op("Concat", sizes, axis=0)
    parts = ctx.op("Split", [grads[0], sizes], outputs=len(node.input), axis=axis)
    parts = parts if isinstance(parts, list) else [parts]
    return [p if x in ctx.varied else None for p, x in zip(parts, node.input, strict=True)]


@rule("Split")
def split(ctx: GradContext, node: onnx.NodeProto, grads: Grads) -> Grads:
    filled = [
        g
        if g is not None
        else ctx.op("ConstantOfShape", [ctx.shape_of(y)], value=_zero(ctx, node.input[0]))
        for g, y in zip(grads, node.output, strict=True)
    ]
    return _only_first(node, ctx.op("Concat", filled, axis=_axis(ctx, node, 0)))


@rule("Slice")
def slice_(ctx: GradContext, node: onnx.NodeProto, grads: Grads) -> Grads:
    """Pad the gradient back with zeros where the slice cut the input (steps of 1 only)."""
    x = node.input[0]
    rank = ctx.rank(x, node)
    starts = ctx.constant(node.input[1], node, "starts")
    ends = ctx.constant(node.input[2], node, "ends")
    axes, steps = (
        ctx.constant(node.input[i], node, name) if len(node.input) > i and node.input[i] else None
        for i, name in ((3, "axes"), (4, "steps"))
    )
    if steps is not None and np.any(steps != 1):
        raise AuditError(f"{describe_node(node)}: only Slice steps of 1 are differentiable here")
    axes = range(len(starts)) if axes is None else axes
    pads = [0] * (2 * rank)
    dims = ctx.dims.get(x, (None,) * rank)
    for axis, start, end in zip(axes, starts, ends, strict=True):
        axis = int(axis) + rank if axis < 0 else int(axis)
        dim = dims[axis]
        if dim is None:
            if start == 0 and end >= 2**31 - 1:
                continue
            ctx.static_dims(x, node)  # raises a clear error
        begin = int(np.clip(start + dim if start < 0 else start, 0, dim))
        stop = int(np.clip(end + dim if end < 0 else end, 0, dim))
        pads[axis], pads[rank + axis] = begin, dim - max(stop, begin)
    return _only_first(node, ctx.op("Pad", [grads[0], ctx.ints(pads)]))


@rule("Pad")
def pad(ctx: GradContext, node: onnx.NodeProto, grads: Grads) -> Grads:
    """Constant padding adds no dependence: pad back by the negated amounts (crops, or re-pads)."""
    mode = attributes(node).get("mode", "constant")
    if mode != "constant":
        raise AuditError(f"{describe_node(node)}: Pad mode {mode!r} is not differentiable here")
    inputs = [grads[0], ctx.op("Neg", [node.input[1]])]
    if len(node.input) > 3 and node.input[3]:
        inputs += ["", node.input[3]]
    return _only_first(node, ctx.op("Pad", inputs))


# --- elementwise activations ----------------------------------------------------------------------
def _scaled(ctx: GradContext, node: onnx.NodeProto, grad: str, factor: str) -> Grads:
    return _only_first(node, ctx.op("Mul", [grad, factor]))


def _positive(ctx: GradContext, x: str) -> str:
    return ctx.mask("Greater", x, ctx.scalar(0.0, x), x)


def _blend(ctx: GradContext, mask: str, inside: str, outside: str) -> str:
    """mask * inside + (1 - mask) * outside, without the slow Where."""
    flipped = ctx.op("Sub", [ctx.scalar(1.0, mask), mask])
    return ctx.op("Add", [ctx.op("Mul", [mask, inside]), ctx.op("Mul", [flipped, outside])])


@rule("Relu")
def relu(ctx: GradContext, node: onnx.NodeProto, grads: Grads) -> Grads:
    """Mask Sign(y) (y >= 0, so 1 where x > 0, else 0): one op, and reading y rather than x
    leaves onnxruntime free to fuse Conv + Relu in the forward."""
    return _scaled(ctx, node, grads[0], ctx.op("Sign", [node.output[0]]))


@rule("LeakyRelu")
def leaky_relu(ctx: GradContext, node: onnx.NodeProto, grads: Grads) -> Grads:
    x = node.input[0]
    alpha = attributes(node).get("alpha", 0.01)
    return _scaled(
        ctx,
        node,
        grads[0],
        _blend(ctx, _positive(ctx, x), ctx.scalar(1.0, x), ctx.scalar(alpha, x)),
    )


@rule("PRelu")
def prelu(ctx: GradContext, node: onnx.NodeProto, grads: Grads) -> Grads:
    x = node.input[0]
    factor = _blend(ctx, _positive(ctx, x), ctx.scalar(1.0, x), node.input[1])
    return _scaled(ctx, node, grads[0], factor)


@rule("Elu")
def elu(ctx: GradContext, node: onnx.NodeProto, grads: Grads) -> Grads:
    x, y = node.input[0], node.output[0]
    alpha = ctx.scalar(attributes(node).get("alpha", 1.0), x)
    outside = ctx.op("Add", [y, alpha])  # alpha * exp(x) for x <= 0
    return _scaled(ctx, node, grads[0], _blend(ctx, _positive(ctx, x), ctx.scalar(1.0, x), outside))


@rule("Clip")
def clip(ctx: GradContext, node: onnx.NodeProto, grads: Grads) -> Grads:
    """Gradient 1 where min <= x <= max (as torch), 0 where clipped."""
    x = node.input[0]
    bounds = [
        (op_type, node.input[i])
        for i, op_type in ((1, "GreaterOrEqual"), (2, "LessOrEqual"))
        if len(node.input) > i and node.input[i]
    ]
    keep = None
    for op_type, bound in bounds:
        inside = ctx.mask(op_type, x, bound, x)
        keep = inside if keep is None else ctx.op("Mul", [keep, inside])
    return _only_first(node, grads[0] if keep is None else ctx.op("Mul", [grads[0], keep]))


@rule("Sigmoid")
def sigmoid(ctx: GradContext, node: onnx.NodeProto, grads: Grads) -> Grads:
    y = node.output[0]
    return _scaled(ctx, node, grads[0], ctx.op("Mul", [y, ctx.op("Sub", [ctx.scalar(1.0, y), y])]))


@rule("Tanh")
def tanh(ctx: GradContext, node: onnx.NodeProto, grads: Grads) -> Grads:
    y = node.output[0]
    return _scaled(ctx, node, grads[0], ctx.op("Sub", [ctx.scalar(1.0, y), ctx.op("Mul", [y, y])]))


def _between(ctx: GradContext, z: str, low: float, high: float) -> str:
    """1 where low < z < high."""
    above = ctx.mask("Greater", z, ctx.scalar(low, z), z)
    return ctx.op("Mul", [above, ctx.mask("Less", z, ctx.scalar(high, z), z)])


@rule("HardSigmoid")
def hard_sigmoid(ctx: GradContext, node: onnx.NodeProto, grads: Grads) -> Grads:
    x = node.input[0]
    attrs = attributes(node)
    alpha, beta = attrs.get("alpha", 0.2), attrs.get("beta", 0.5)
    z = ctx.op("Add", [ctx.op("Mul", [x, ctx.scalar(alpha, x)]), ctx.scalar(beta, x)])
    factor = ctx.op("Mul", [_between(ctx, z, 0.0, 1.0), ctx.scalar(alpha, x)])
    return _scaled(ctx, node, grads[0], factor)


@rule("HardSwish")
def hard_swish(ctx: GradContext, node: onnx.NodeProto, grads: Grads) -> Grads:
    """y = x * relu6(x + 3) / 6: slope x/3 + 1/2 on (-3, 3), 1 above, 0 below."""
    x = node.input[0]
    ramp = ctx.op("Add", [ctx.op("Div", [x, ctx.scalar(3.0, x)]), ctx.scalar(0.5, x)])
    factor = ctx.op(
        "Add",
        [
            ctx.op("Mul", [_between(ctx, x, -3.0, 3.0), ramp]),
            ctx.mask("GreaterOrEqual", x, ctx.scalar(3.0, x), x),
        ],
    )
    return _scaled(ctx, node, grads[0], factor)


@rule("Softplus")
def softplus(ctx: GradContext, node: onnx.NodeProto, grads: Grads) -> Grads:
    return _scaled(ctx, node, grads[0], ctx.op("Sigmoid", [node.input[0]]))


@rule("Neg")
def neg(ctx: GradContext, node: onnx.NodeProto, grads: Grads) -> Grads:
    return [ctx.op("Neg", [grads[0]])]


@rule("Exp")
def exp(ctx: GradContext, node: onnx.NodeProto, grads: Grads) -> Grads:
    return _scaled(ctx, node, grads[0], node.output[0])


# --- broadcasting arithmetic ----------------------------------------------------------------------
def _binary(
    ctx: GradContext, node: onnx.NodeProto, ga: str | None, gb: str | None, first: int = 0
) -> Grads:
    """Undo broadcasting of the gradients of operands `first`, `first + 1`; operands off the
    path get None."""
    dims = ctx.dims.get(node.output[0])
    if dims is None:
        raise AuditError(f"unknown output shape of {describe_node(node)}")
    return [
        ctx.unbroadcast(g, dims, x) if g is not None and x in ctx.varied else None
        for g, x in zip((ga, gb), node.input[first : first + 2], strict=True)
    ]


def _if_varied(ctx: GradContext, name: str, build: Callable[[], str]) -> str | None:
    return build() if name in ctx.varied else None


@rule("Add", inputs=(0, 1))
def add(ctx: GradContext, node: onnx.NodeProto, grads: Grads) -> Grads:
    return _binary(ctx, node, grads[0], grads[0])


@rule("Sub", inputs=(0, 1))
def sub(ctx: GradContext, node: onnx.NodeProto, grads: Grads) -> Grads:
    g = grads[0]
    return _binary(ctx, node, g, _if_varied(ctx, node.input[1], lambda: ctx.op("Neg", [g])))


@rule("Mul", inputs=(0, 1))
def mul(ctx: GradContext, node: onnx.NodeProto, grads: Grads) -> Grads:
    g, (a, b) = grads[0], node.input
    ga = _if_varied(ctx, a, lambda: ctx.op("Mul", [g, b]))
    return _binary(ctx, node, ga, _if_varied(ctx, b, lambda: ctx.op("Mul", [g, a])))


@rule("Div", inputs=(0, 1))
def div(ctx: GradContext, node: onnx.NodeProto, grads: Grads) -> Grads:
    """d(a/b)/da = 1/b, d(a/b)/db = -y/b."""
    g, (a, b), y = grads[0], node.input, node.output[0]
    ga = _if_varied(ctx, a, lambda: ctx.op("Div", [g, b]))
    gb = _if_varied(ctx, b, lambda: ctx.op("Neg", [ctx.op("Div", [ctx.op("Mul", [g, y]), b])]))
    return _binary(ctx, node, ga, gb)


@rule("Where", inputs=(1, 2))
def where(ctx: GradContext, node: onnx.NodeProto, grads: Grads) -> Grads:
    cond, a, b = node.input
    zero = ctx.scalar(0.0, node.output[0])
    ga = _if_varied(ctx, a, lambda: ctx.op("Where", [cond, grads[0], zero]))
    gb = _if_varied(ctx, b, lambda: ctx.op("Where", [cond, zero, grads[0]]))
    return [None, *_binary(ctx, node, ga, gb, first=1)]


# --- linear layers --------------------------------------------------------------------------------
@rule("Gemm", inputs=(0, 1, 2))
def gemm(ctx: GradContext, node: onnx.NodeProto, grads: Grads) -> Grads:
    """Y = alpha * A' B' + beta * C with A' = A or A^T (transA), B' likewise."""
    attrs = attributes(node)
    alpha, beta = attrs.get("alpha", 1.0), attrs.get("beta", 1.0)
    trans_a, trans_b = attrs.get("transA", 0), attrs.get("transB", 0)
    g, a, b = grads[0], node.input[0], node.input[1]
    out = [None] * len(node.input)
    if a in ctx.varied:  # dA' = alpha * g B'^T
        out[0] = (
            ctx.op("Gemm", [b, g], alpha=alpha, transA=trans_b, transB=1)
            if trans_a
            else ctx.op("Gemm", [g, b], alpha=alpha, transB=1 - trans_b)
        )
    if b in ctx.varied:  # dB' = alpha * A'^T g
        out[1] = (
            ctx.op("Gemm", [g, a], alpha=alpha, transA=1, transB=trans_a)
            if trans_b
            else ctx.op("Gemm", [a, g], alpha=alpha, transA=1 - trans_a)
        )
    if len(node.input) > 2 and node.input[2] in ctx.varied:
        scaled = ctx.op("Mul", [g, ctx.scalar(beta, node.output[0])])
        out[2] = ctx.unbroadcast(scaled, ctx.dims[node.output[0]], node.input[2])
    return out


@rule("MatMul", inputs=(0, 1))
def matmul(ctx: GradContext, node: onnx.NodeProto, grads: Grads) -> Grads:
    g, (a, b) = grads[0], node.input
    ra, rb = ctx.rank(a, node), ctx.rank(b, node)
    if min(ra, rb) < 2:
        raise AuditError(f"{describe_node(node)}: MatMul with a 1-D operand is not supported")
    y_dims = ctx.dims[node.output[0]]

    def swap(name: str, rank: int) -> str:
        perm = [*range(rank - 2), rank - 1, rank - 2]
        return ctx.op("Transpose", [name], perm=perm)

    out: Grads = [None, None]
    if a in ctx.varied:
        ga = ctx.op("MatMul", [g, swap(b, rb)])
        out[0] = ctx.unbroadcast(ga, (*y_dims[:-2], *ctx.dims[a][-2:]), a)
    if b in ctx.varied:
        gb = ctx.op("MatMul", [swap(a, ra), g])
        out[1] = ctx.unbroadcast(gb, (*y_dims[:-2], *ctx.dims[b][-2:]), b)
    return out


@dataclass(frozen=True)
class _Window:
    """Explicit geometry of a sliding window op (Conv, pools) over the spatial axes."""

    kernel: list[int]
    strides: list[int]
    dilations: list[int]
    begin: list[int]  # padding before, per axis
    end: list[int]  # padding after, enough for every window the op evaluates
    output_padding: list[int]  # input cells past the last window, never read
    out: list[int]

    @property
    def pads(self) -> list[int]:
        return self.begin + self.end


def _window(ctx: GradContext, node: onnx.NodeProto, kernel: list[int], ceil: bool = False):
    """Resolve auto_pad and ceil_mode to explicit pads from the static input dims."""
    attrs = attributes(node)
    size = np.asarray(ctx.static_dims(node.input[0], node, start=2))
    n = len(size)
    strides = np.asarray(attrs.get("strides") or [1] * n)
    dilations = np.asarray(attrs.get("dilations") or [1] * n)
    pads = np.asarray(attrs.get("pads") or [0] * (2 * n))
    auto_pad = attrs.get("auto_pad", "NOTSET")
    span = dilations * (np.asarray(kernel) - 1) + 1
    if auto_pad in ("SAME_UPPER", "SAME_LOWER"):
        total = np.maximum((-(-size // strides) - 1) * strides + span - size, 0)
        low = total // 2 if auto_pad == "SAME_UPPER" else total - total // 2
        pads = np.concatenate([low, total - low])
    elif auto_pad == "VALID":
        pads = np.zeros(2 * n, dtype=int)
    begin, end = pads[:n], pads[n:]
    reach = size + begin + end - span
    out = (-(-reach // strides) if ceil else reach // strides) + 1
    if ceil:  # the last window must start inside the input or the left padding
        out -= (out - 1) * strides >= size + begin
    extra = (out - 1) * strides + span - (size + begin + end)
    return _Window(
        kernel=list(kernel),
        strides=strides.tolist(),
        dilations=dilations.tolist(),
        begin=begin.tolist(),
        end=(end + np.maximum(extra, 0)).tolist(),
        output_padding=np.maximum(-extra, 0).tolist(),
        out=out.tolist(),
    )


def _transposed(ctx: GradContext, grad: str, weight: str, win: _Window, group: int = 1) -> str:
    """The adjoint of a sliding window: ConvTranspose with the same geometry."""
    return ctx.op(
        "ConvTranspose",
        [grad, weight],
        strides=win.strides,
        dilations=win.dilations,
        pads=win.pads,
        output_padding=win.output_padding,
        group=group,
    )


@rule("Conv")
def conv(ctx: GradContext, node: onnx.NodeProto, grads: Grads) -> Grads:
    """ConvTranspose with the same geometry; for stride 1 and constant weights, the equivalent
    "full" Conv with flipped, transposed weights, which onnxruntime runs ~1.5x faster."""
    weight = node.input[1]
    kernel = ctx.static_dims(weight, node, start=2)
    win = _window(ctx, node, kernel)
    group = attributes(node).get("group", 1)
    values = ctx.value(weight)
    reach = [d * (k - 1) for d, k in zip(win.dilations, kernel, strict=True)]
    full_pads = [r - b for r, b in zip(reach, win.begin, strict=True)]
    full_pads += [r - e + p for r, e, p in zip(reach, win.end, win.output_padding, strict=True)]
    if values is None or set(win.strides) != {1} or min(full_pads) < 0:
        return _only_first(node, _transposed(ctx, grads[0], weight, win, group))
    m, c = values.shape[:2]  # (M, C / group, *kernel) -> (C, M / group, *kernel), flipped
    swapped = values.reshape(group, m // group, c, *kernel).swapaxes(1, 2)
    swapped = swapped.reshape(c * group, m // group, *kernel)
    flipped = np.flip(swapped, axis=tuple(range(2, 2 + len(kernel))))
    grad = ctx.op(
        "Conv",
        [grads[0], ctx.const(np.ascontiguousarray(flipped), "flipped")],
        dilations=win.dilations,
        pads=full_pads,
        group=group,
    )
    return _only_first(node, grad)


@rule("ConvTranspose")
def conv_transpose(ctx: GradContext, node: onnx.NodeProto, grads: Grads) -> Grads:
    attrs = attributes(node)
    if attrs.get("auto_pad", "NOTSET") != "NOTSET" or attrs.get("output_shape"):
        raise AuditError(f"{describe_node(node)}: use explicit pads (no auto_pad/output_shape)")
    keep = ("strides", "dilations", "pads", "group")
    grad = ctx.op("Conv", [grads[0], node.input[1]], **{k: attrs[k] for k in keep if k in attrs})
    return _only_first(node, grad)


@rule("BatchNormalization")
def batch_norm(ctx: GradContext, node: onnx.NodeProto, grads: Grads) -> Grads:
    """Inference BN is a per-channel scale: scale / sqrt(var + eps)."""
    attrs = attributes(node)
    if attrs.get("training_mode", 0) or len(node.output) > 1:
        raise AuditError(f"{describe_node(node)} runs in training mode; export in eval mode")
    x, scale, _, _, var = node.input
    eps = ctx.scalar(attrs.get("epsilon", 1e-5), var)
    factor = ctx.op("Div", [scale, ctx.op("Sqrt", [ctx.op("Add", [var, eps])])])
    factor = ctx.op("Cast", [factor], to=ctx.elem_type(x))
    rank = ctx.rank(x, node)
    factor = ctx.op("Reshape", [factor, ctx.ints([-1] + [1] * (rank - 2))])
    return _scaled(ctx, node, grads[0], factor)


# --- pooling --------------------------------------------------------------------------------------
def _tiles(win: _Window) -> bool:
    """Non-overlapping, gap-free windows (kernel == stride, no dilation): VGG-style pooling."""
    return win.kernel == win.strides and set(win.dilations) == {1}


def _tiled(ctx: GradContext, x: str, win: _Window, fill: float) -> str:
    """x padded (with `fill`) or cropped to exactly the cells of the windows: (N, C, *out * k)."""
    n = len(win.kernel)
    size = ctx.dims[x][2:]  # static: checked by _window
    extent = [o * k for o, k in zip(win.out, win.kernel, strict=True)]
    stop = [b + i for b, i in zip(win.begin, size, strict=True)]
    after = [max(e - t, 0) for e, t in zip(extent, stop, strict=True)]
    tiled = x
    if any(win.begin) or any(after):
        pads = ctx.ints([0, 0, *win.begin, 0, 0, *after])
        tiled = ctx.op("Pad", [x, pads, ctx.scalar(fill, x)])
    if any(e < t for e, t in zip(extent, stop, strict=True)):  # cells past the last window
        tiled = ctx.op("Slice", [tiled, ctx.ints([0] * n), ctx.ints(extent), _spatial(ctx, n)])
    return tiled


def _untile(ctx: GradContext, grad: str, x: str, win: _Window) -> str:
    """The adjoint of _tiled: crop the padding, zero-fill the cells no window reads."""
    n = len(win.kernel)
    size = ctx.dims[x][2:]
    extent = [o * k for o, k in zip(win.out, win.kernel, strict=True)]
    stop = [min(b + i, e) for b, i, e in zip(win.begin, size, extent, strict=True)]
    if any(win.begin) or stop != extent:
        grad = ctx.op("Slice", [grad, ctx.ints(win.begin), ctx.ints(stop), _spatial(ctx, n)])
    short = [b + i - t for b, i, t in zip(win.begin, size, stop, strict=True)]
    if any(short):
        grad = ctx.op("Pad", [grad, ctx.ints([0] * (2 + n) + [0, 0, *short])])
    return grad


def _upsampled(ctx: GradContext, per_window: str, win: _Window) -> str:
    """Repeat each window's value over its cells. Nearest Resize is fast in onnxruntime, unlike
    broadcasting (N, C, O, 1, O, 1) against (N, C, O, k, O, k), which is ~50x slower."""
    scales = ctx.const(np.asarray([1, 1, *win.kernel], dtype=np.float32), "scales")
    return ctx.op(
        "Resize",
        [per_window, "", scales],
        mode="nearest",
        coordinate_transformation_mode="asymmetric",
        nearest_mode="floor",
    )


def _pairs(outer: list[int], inner: list[int]) -> list[int]:
    return [d for pair in zip(outer, inner, strict=True) for d in pair]


def _spatial(ctx: GradContext, n: int) -> str:
    return ctx.ints(range(2, 2 + n))


@rule("MaxPool")
def max_pool(ctx: GradContext, node: onnx.NodeProto, grads: Grads) -> Grads:
    """Route each window's gradient to its first maximal cell (row-major), like torch and ORT.

    Tiling windows (the common kernel == stride case) avoid MaxPool's Indices output, which
    onnxruntime computes on a slow path: cells equal to their window's max get priority K - r
    (r: row-major position in the window of K cells), the others 0; the window's highest
    priority, itself a MaxPool, marks its first maximum, so ties are exact. Overlapping windows
    use Indices + ScatterElements(add).
    """
    attrs = attributes(node)
    win = _window(ctx, node, list(attrs["kernel_shape"]), ceil=bool(attrs.get("ceil_mode", 0)))
    x, y, grad = node.input[0], node.output[0], grads[0]
    if not _tiles(win):
        return [_max_pool_scatter(ctx, node, grad)]
    cells = int(np.prod(win.kernel))
    hit = ctx.mask("Equal", _tiled(ctx, x, win, -np.inf), _upsampled(ctx, y, win), x)
    rank = np.arange(cells, 0, -1, dtype=ctx.np_dtype(x)).reshape(win.kernel)
    priority = ctx.op("Mul", [hit, ctx.const(np.tile(rank, win.out), "priority")])
    best = ctx.op("MaxPool", [priority], kernel_shape=win.kernel, strides=win.kernel)
    first = ctx.mask("Equal", priority, _upsampled(ctx, best, win), x)
    routed = ctx.op("Mul", [first, _upsampled(ctx, grad, win)])
    return [_untile(ctx, routed, x, win)]


def _max_pool_scatter(ctx: GradContext, node: onnx.NodeProto, grad: str) -> str:
    """Overlapping windows: add each output's gradient at its flat argmax index."""
    if ctx.opset < 16:
        raise AuditError(
            f"{describe_node(node)}: overlapping MaxPool needs opset >= 16 (ScatterElements "
            "with reduction); convert the model with onnx.version_converter"
        )
    x = node.input[0]
    _, indices = ctx.op("MaxPool", [x], outputs=2, **attributes(node))
    flat = ctx.ints([-1])
    zeros = ctx.op("ConstantOfShape", [ctx.shape_of(x)], value=_zero(ctx, x))
    zeros = ctx.op("Reshape", [zeros, flat])
    added = ctx.op(
        "ScatterElements",
        [zeros, ctx.op("Reshape", [indices, flat]), ctx.op("Reshape", [grad, flat])],
        reduction="add",
    )
    return ctx.reshape_like(added, x)


def _zero(ctx: GradContext, like: str) -> onnx.TensorProto:
    return onnx.numpy_helper.from_array(np.zeros(1, ctx.np_dtype(like)))


@rule("AveragePool")
def average_pool(ctx: GradContext, node: onnx.NodeProto, grads: Grads) -> Grads:
    """Divide by each window's cell count, then spread it evenly over the window's cells."""
    attrs = attributes(node)
    kernel = list(attrs["kernel_shape"])
    win = _window(ctx, node, kernel, ceil=bool(attrs.get("ceil_mode", 0)))
    x = node.input[0]
    size = ctx.static_dims(x, node, start=2)
    pads = list(attrs.get("pads") or [0] * (2 * len(kernel)))
    with_pad = attrs.get("count_include_pad", 0) and attrs.get("auto_pad", "NOTSET") == "NOTSET"
    counts = np.ones(())
    for i, k in enumerate(kernel):
        first = np.arange(win.out[i]) * win.strides[i] - win.begin[i]
        cells = first[:, None] + np.arange(k)[None, :] * win.dilations[i]
        low, high = (-pads[i], size[i] + pads[len(kernel) + i]) if with_pad else (0, size[i])
        counts = np.multiply.outer(counts, ((cells >= low) & (cells < high)).sum(1))
    share = ctx.op("Div", [grads[0], ctx.const(counts.astype(ctx.np_dtype(x)))])
    if _tiles(win):
        return [_untile(ctx, _upsampled(ctx, share, win), x, win)]
    # overlapping windows: ConvTranspose with a ones kernel, channels folded into the batch
    folded = ctx.op("Reshape", [share, ctx.ints([-1, 1, *win.out])])
    ones = ctx.const(np.ones((1, 1, *kernel), ctx.np_dtype(x)), "ones")
    return [ctx.reshape_like(_transposed(ctx, folded, ones, win), x)]


@rule("GlobalAveragePool")
def global_average_pool(ctx: GradContext, node: onnx.NodeProto, grads: Grads) -> Grads:
    x = node.input[0]
    cells = int(np.prod(ctx.static_dims(x, node, start=2)))
    share = ctx.op("Div", [grads[0], ctx.scalar(cells, x)])
    return [ctx.op("Expand", [share, ctx.shape_of(x)])]


@rule("GlobalMaxPool")
def global_max_pool(ctx: GradContext, node: onnx.NodeProto, grads: Grads) -> Grads:
    """All of the gradient goes to the first maximal cell of each channel."""
    x = node.input[0]
    cells = int(np.prod(ctx.static_dims(x, node, start=2)))
    flat = ctx.op("Reshape", [x, ctx.ints([0, 0, -1])])
    first = ctx.op("ArgMax", [flat], axis=2, keepdims=1)
    onehot = ctx.mask("Equal", ctx.const(np.arange(cells, dtype=np.int64)), first, x)
    share = ctx.op("Mul", [onehot, ctx.op("Reshape", [grads[0], ctx.ints([0, 0, 1])])])
    return [ctx.reshape_like(share, x)]


@rule("ReduceMean", "ReduceSum")
def reduce(ctx: GradContext, node: onnx.NodeProto, grads: Grads) -> Grads:
    x = node.input[0]
    rank = ctx.rank(x, node)
    attrs = attributes(node)
    if len(node.input) > 1 and node.input[1]:
        axes = [int(a) for a in ctx.constant(node.input[1], node, "axes")]
    else:
        axes = list(attrs.get("axes", []))
    if not axes and attrs.get("noop_with_empty_axes", 0):
        return _only_first(node, grads[0])
    axes = sorted(a + rank if a < 0 else a for a in axes) or list(range(rank))
    grad = grads[0]
    if not attrs.get("keepdims", 1):
        grad = ctx.op("Unsqueeze", [grad, ctx.ints(axes)])
    if node.op_type == "ReduceMean":
        picked = ctx.op("Gather", [ctx.shape_of(x), ctx.ints(axes)])
        count = ctx.op("Cast", [ctx.op("ReduceProd", [picked], keepdims=0)], to=ctx.elem_type(x))
        grad = ctx.op("Div", [grad, count])
    return _only_first(node, ctx.op("Expand", [grad, ctx.shape_of(x)]))


@rule("Softmax")
def softmax(ctx: GradContext, node: onnx.NodeProto, grads: Grads) -> Grads:
    y, g = node.output[0], grads[0]
    inner = ctx.reduce("ReduceSum", ctx.op("Mul", [g, y]), [_axis(ctx, node, -1)], keepdims=True)
    return [ctx.op("Mul", [y, ctx.op("Sub", [g, inner])])]


@rule("LogSoftmax")
def log_softmax(ctx: GradContext, node: onnx.NodeProto, grads: Grads) -> Grads:
    y, g = node.output[0], grads[0]
    total = ctx.reduce("ReduceSum", g, [_axis(ctx, node, -1)], keepdims=True)
    return [ctx.op("Sub", [g, ctx.op("Mul", [ctx.op("Exp", [y]), total])])]


# --- Resize -------------------------------------------------------------------------------------
def _resize_matrix(
    node: onnx.NodeProto, axis: int, rank: int, n: int, m: int, scale: float | None
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
    attrs = {a.name: a for a in node.attribute}
    if scale is None:
        extra = [onnx.numpy_helper.from_array(np.asarray(out_dims, dtype=np.int64), "sizes")]
        inputs = ["x", "", "", "sizes"]
    else:
        scales = np.ones(rank, dtype=np.float32)
        scales[axis] = scale
        extra = [onnx.numpy_helper.from_array(scales, "scales")]
        inputs = ["x", "", "scales"]
    resize = onnx.helper.make_node("Resize", inputs, ["y"])
    resize.attribute.extend(attrs.values())
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


@rule("Resize")
def resize(ctx: GradContext, node: onnx.NodeProto, grads: Grads) -> Grads:
    attrs = attributes(node)
    x = node.input[0]
    if attrs.get("coordinate_transformation_mode") == "tf_crop_and_resize" or attrs.get("axes"):
        raise AuditError(f"{describe_node(node)}: tf_crop_and_resize/axes are not supported")
    if attrs.get("keep_aspect_ratio_policy", "stretch") != "stretch":
        raise AuditError(f"{describe_node(node)}: only keep_aspect_ratio_policy='stretch'")
    rank = ctx.rank(x, node)
    size = ctx.static_dims(x, node, start=2)
    scales = ctx.value(node.input[2]) if len(node.input) > 2 else None
    scales = None if scales is None or scales.size == 0 else scales
    if scales is None:
        sizes = ctx.constant(node.input[3] if len(node.input) > 3 else "", node, "scales or sizes")
        out = [int(s) for s in sizes[2:]]
    else:
        if np.any(scales[:2] != 1):
            raise AuditError(f"{describe_node(node)}: Resize over batch or channels")
        out = [int(np.floor(i * s)) for i, s in zip(size, scales[2:], strict=True)]
    grad = grads[0]
    dtype = ctx.np_dtype(x)
    for i in reversed(range(len(size))):
        axis = 2 + i
        matrix = _resize_matrix(
            node, axis, rank, size[i], out[i], None if scales is None else scales[axis]
        )
        if matrix.shape[0] == matrix.shape[1] and np.array_equal(matrix, np.eye(size[i])):
            continue
        if axis < rank - 2:
            raise AuditError(f"{describe_node(node)}: only the last two axes may be resized")
        if axis == rank - 1:
            grad = ctx.op("MatMul", [grad, ctx.const(matrix.T.astype(dtype), "resize")])
        else:
            grad = ctx.op("MatMul", [ctx.const(matrix.astype(dtype), "resize"), grad])
    return _only_first(node, grad)
