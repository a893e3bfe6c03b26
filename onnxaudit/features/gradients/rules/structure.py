"""Rules for ops that move, copy or cut values without arithmetic: each backward is the adjoint
data movement (inverse reshape or permutation, zero padding, summing copies)."""

from __future__ import annotations

import numpy as np
import onnx

from onnxaudit.errors import AuditError
from onnxaudit.features.gradients.context import GradContext, attributes, describe_node
from onnxaudit.features.gradients.rules.registry import Grads, axis_of, only_first, rule, zero


@rule("Identity")
def identity(ctx: GradContext, node: onnx.NodeProto, grads: Grads) -> Grads:
    return [grads[0]]


@rule("Dropout")
def dropout(ctx: GradContext, node: onnx.NodeProto, grads: Grads) -> Grads:
    """Inference Dropout is the identity; a training-mode Dropout has no deterministic gradient."""
    training = len(node.input) > 2 and node.input[2]
    if training and bool(ctx.constant(node.input[2], node, "training_mode")):
        raise AuditError(f"{describe_node(node)} runs in training mode; export in eval mode")
    return only_first(node, grads[0])


@rule("Flatten", "Reshape", "Squeeze", "Unsqueeze")
def reshape(ctx: GradContext, node: onnx.NodeProto, grads: Grads) -> Grads:
    return only_first(node, ctx.reshape_like(grads[0], node.input[0]))


@rule("Expand")
def expand(ctx: GradContext, node: onnx.NodeProto, grads: Grads) -> Grads:
    dims = ctx.dims[node.output[0]]
    return only_first(node, ctx.unbroadcast(grads[0], dims, node.input[0]))


@rule("Cast")
def cast(ctx: GradContext, node: onnx.NodeProto, grads: Grads) -> Grads:
    return [ctx.op("Cast", [grads[0]], to=ctx.elem_type(node.input[0]))]


@rule("Transpose")
def transpose(ctx: GradContext, node: onnx.NodeProto, grads: Grads) -> Grads:
    perm = attributes(node).get("perm") or list(reversed(range(ctx.rank(node.input[0], node))))
    return [ctx.op("Transpose", [grads[0]], perm=[int(i) for i in np.argsort(perm)])]


@rule("Concat", inputs=None)
def concat(ctx: GradContext, node: onnx.NodeProto, grads: Grads) -> Grads:
    axis = axis_of(ctx, node, 0)
    sizes = [ctx.dims.get(x, (None,) * (axis + 1))[axis] for x in node.input]
    if None not in sizes:
        parts = ctx.split(grads[0], sizes, axis)
    elif ctx.opset >= 13:
        take, after = ctx.ints([axis]), ctx.ints([axis + 1])
        runtime = [ctx.op("Slice", [ctx.shape_of(x), take, after]) for x in node.input]
        parts = ctx.op(
            "Split",
            [grads[0], ctx.op("Concat", runtime, axis=0)],
            outputs=len(node.input),
            axis=axis,
        )
        parts = parts if isinstance(parts, list) else [parts]
    else:
        raise AuditError(f"{describe_node(node)}: unknown sizes along the concatenation axis")
    return [p if x in ctx.varied else None for p, x in zip(parts, node.input, strict=True)]


@rule("Split")
def split(ctx: GradContext, node: onnx.NodeProto, grads: Grads) -> Grads:
    filled = [
        g
        if g is not None
        else ctx.op("ConstantOfShape", [ctx.shape_of(y)], value=zero(ctx, node.input[0]))
        for g, y in zip(grads, node.output, strict=True)
    ]
    return only_first(node, ctx.op("Concat", filled, axis=axis_of(ctx, node, 0)))


@rule("Slice")
def slice_(ctx: GradContext, node: onnx.NodeProto, grads: Grads) -> Grads:
    """Pad the gradient back with zeros where the slice cut the input (steps of 1 only)."""
    x = node.input[0]
    rank = ctx.rank(x, node)
    starts = ctx.input_or_attribute(node, 1, "starts")
    ends = ctx.input_or_attribute(node, 2, "ends")
    axes = ctx.input_or_attribute(node, 3, "axes")
    steps = ctx.input_or_attribute(node, 4, "steps")
    if starts is None or ends is None:
        raise AuditError(f"{describe_node(node)}: Slice without starts/ends")
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
    return only_first(node, ctx.pad(grads[0], pads))


@rule("Pad")
def pad(ctx: GradContext, node: onnx.NodeProto, grads: Grads) -> Grads:
    """Constant padding adds no dependence: pad back by the negated amounts (crops, or re-pads)."""
    mode = attributes(node).get("mode", "constant")
    if mode != "constant":
        raise AuditError(f"{describe_node(node)}: Pad mode {mode!r} is not differentiable here")
    has_axes = len(node.input) > 3 and node.input[3]
    pads = None if has_axes else ctx.value(node.input[1]) if len(node.input) > 1 else None
    if pads is None and len(node.input) < 2:
        pads = np.asarray(attributes(node)["pads"])
    if pads is not None:
        return only_first(node, ctx.pad(grads[0], [-int(p) for p in pads]))
    inputs = [grads[0], ctx.op("Neg", [node.input[1]])] + (["", node.input[3]] if has_axes else [])
    return only_first(node, ctx.op("Pad", inputs))


@rule("Tile")
def tile(ctx: GradContext, node: onnx.NodeProto, grads: Grads) -> Grads:
    """Each input cell is copied once per repeat: sum the copies."""
    x = node.input[0]
    repeats = [int(r) for r in ctx.constant(node.input[1], node, "repeats")]
    dims = ctx.dims.get(x) or ctx.static_dims(x, node)
    split = [d for r, d in zip(repeats, dims, strict=True) for d in (r, -1 if d is None else d)]
    if split.count(-1) > 1:
        ctx.static_dims(x, node)
    grad = ctx.op("Reshape", [grads[0], ctx.ints(split)])
    grad = ctx.reduce("ReduceSum", grad, range(0, len(split), 2), keepdims=False)
    return only_first(node, grad)


@rule("Gather")
def gather(ctx: GradContext, node: onnx.NodeProto, grads: Grads) -> Grads:
    """Constant indices: the adjoint of picking rows is a 0/1 matrix product, summing the
    gradient of every pick of the same row. Indices computed in the graph: a scatter-add."""
    x = node.input[0]
    axis = axis_of(ctx, node, 0)
    if ctx.value(node.input[1]) is None:
        return _gather_computed(ctx, node, grads, axis)
    dims = ctx.dims.get(x) or ctx.static_dims(x, node)
    size = dims[axis]
    if size is None:
        ctx.static_dims(x, node)
    indices = ctx.constant(node.input[1], node, "indices").reshape(-1)
    onehot = (np.mod(indices, size)[:, None] == np.arange(size)[None, :]).astype(ctx.np_dtype(x))
    before, after = dims[:axis], dims[axis + 1 :]
    if None not in after:  # the batch (or nothing unknown) before the axis
        split = [-1, len(indices), int(np.prod(after))]
    elif None not in before:  # e.g. attention's stacked (3, L, N, E) q/k/v
        split = [int(np.prod(before)), len(indices), -1]
    else:
        ctx.static_dims(x, node, start=axis + 1)  # raises a clear error
    grad = ctx.op("Reshape", [grads[0], ctx.ints(split)])
    grad = ctx.op("MatMul", [ctx.const(np.ascontiguousarray(onehot.T), "onehot"), grad])
    return only_first(node, ctx.reshape_like(grad, x))


def _gather_computed(ctx: GradContext, node: onnx.NodeProto, grads: Grads, axis: int) -> Grads:
    """Indices known only at run time (the dynamo exporter's as_strided flattens the batch and
    gathers a Range of it): ScatterND-add the gradient into zeros, with the gathered axis moved
    first and negative indices wrapped. Needs opset 16 (the add reduction)."""
    if ctx.opset < 16:
        raise AuditError(f"{describe_node(node)}: computed indices need opset >= 16")
    x, indices = node.input[0], node.input[1]
    rank_x, rank_i = ctx.rank(x, node), ctx.rank(indices, node)
    shape = ctx.shape_of(x)
    idx = ctx.op("Cast", [indices], to=onnx.TensorProto.INT64)
    size = ctx.op("Gather", [shape, ctx.ints([axis])])
    negative = ctx.op("Cast", [ctx.op("Less", [idx, ctx.ints([0])])], to=onnx.TensorProto.INT64)
    idx = ctx.op(
        "Unsqueeze", [ctx.op("Add", [idx, ctx.op("Mul", [negative, size])]), ctx.ints([-1])]
    )
    grad = grads[0]  # dims: x[:axis] + indices + x[axis + 1:]
    first = [axis, *(d for d in range(rank_x) if d != axis)]
    if axis:
        grad = ctx.op("Transpose", [grad], perm=[*range(axis, axis + rank_i), *range(axis),
                                                *range(axis + rank_i, rank_i + rank_x - 1)])  # fmt: skip
        shape = ctx.op("Gather", [shape, ctx.ints(first)])
    zeros = ctx.op("ConstantOfShape", [shape], value=zero(ctx, x))
    out = ctx.op("ScatterND", [zeros, idx, grad], reduction="add")
    if axis:
        out = ctx.op("Transpose", [out], perm=list(np.argsort(first)))
    return only_first(node, out)


@rule("GatherElements")
def gather_elements(ctx: GradContext, node: onnx.NodeProto, grads: Grads) -> Grads:
    """Constant indices: scatter the gradient back, adding repeated picks (needs opset 16 unless
    each position is picked at most once)."""
    x, indices = node.input[0], node.input[1]
    axis = axis_of(ctx, node, 0)
    values = ctx.constant(indices, node, "indices")
    repeated = any(
        len(np.unique(line)) < len(line)
        for line in np.moveaxis(values, axis, -1).reshape(-1, values.shape[axis])
    )
    attrs = {"axis": axis}
    if repeated:
        if ctx.opset < 16:
            raise AuditError(f"{describe_node(node)}: repeated indices need opset >= 16")
        attrs["reduction"] = "add"
    zeros = ctx.op("ConstantOfShape", [ctx.shape_of(x)], value=zero(ctx, x))
    return only_first(node, ctx.op("ScatterElements", [zeros, indices, grads[0]], **attrs))


def _blocks(ctx: GradContext, node: onnx.NodeProto, grad: str, perm: list[int], split: list[int]):
    grad = ctx.op("Reshape", [grad, ctx.ints(split)])
    return ctx.reshape_like(ctx.op("Transpose", [grad], perm=perm), node.input[0])


@rule("DepthToSpace")
def depth_to_space(ctx: GradContext, node: onnx.NodeProto, grads: Grads) -> Grads:
    """A permutation of cells: DCR mode is undone by SpaceToDepth, CRD by the inverse
    reshape-transpose."""
    attrs = attributes(node)
    b = attrs["blocksize"]
    if attrs.get("mode", "DCR") == "DCR":
        return [ctx.op("SpaceToDepth", [grads[0]], blocksize=b)]
    c, h, w = ctx.static_dims(node.input[0], node, start=1)
    # forward: (N, C', b, b, H, W) -> transpose (0, 1, 4, 2, 5, 3) -> (N, C', H*b, W*b)
    return [_blocks(ctx, node, grads[0], [0, 1, 3, 5, 2, 4], [-1, c // b // b, h, b, w, b])]


@rule("SpaceToDepth")
def space_to_depth(ctx: GradContext, node: onnx.NodeProto, grads: Grads) -> Grads:
    return [ctx.op("DepthToSpace", [grads[0]], blocksize=attributes(node)["blocksize"])]
