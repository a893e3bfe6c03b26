"""Rules for pooling: max pooling routes each window's gradient to its first maximal cell,
average and Lp pooling spread it over the window's cells."""

from __future__ import annotations

import numpy as np
import onnx

from onnxaudit.features.gradients.context import GradContext, attributes
from onnxaudit.features.gradients.rules.conv import Window, transposed, window
from onnxaudit.features.gradients.rules.registry import Grads, rule, zero


def _tiles(win: Window) -> bool:
    """Non-overlapping, gap-free windows (kernel == stride, no dilation): VGG-style pooling."""
    return win.kernel == win.strides and set(win.dilations) == {1}


def _pool_window(ctx: GradContext, node: onnx.NodeProto) -> Window:
    attrs = attributes(node)
    return window(ctx, node, list(attrs["kernel_shape"]), ceil=bool(attrs.get("ceil_mode", 0)))


def _tiled(ctx: GradContext, x: str, win: Window, fill: float) -> str:
    """x padded (with `fill`) or cropped to exactly the cells of the windows: (N, C, *out * k)."""
    n = len(win.kernel)
    size = ctx.dims[x][2:]  # static: checked by window()
    extent = [o * k for o, k in zip(win.out, win.kernel, strict=True)]
    stop = [b + i for b, i in zip(win.begin, size, strict=True)]
    after = [max(e - t, 0) for e, t in zip(extent, stop, strict=True)]
    tiled = x
    if any(win.begin) or any(after):
        tiled = ctx.pad(x, [0, 0, *win.begin, 0, 0, *after], fill)
    if any(e < t for e, t in zip(extent, stop, strict=True)):  # cells past the last window
        tiled = ctx.slice(tiled, [0] * n, extent, range(2, 2 + n))
    return tiled


def _untile(ctx: GradContext, grad: str, x: str, win: Window) -> str:
    """The adjoint of _tiled: crop the padding, zero-fill the cells no window reads."""
    n = len(win.kernel)
    size = ctx.dims[x][2:]
    extent = [o * k for o, k in zip(win.out, win.kernel, strict=True)]
    stop = [min(b + i, e) for b, i, e in zip(win.begin, size, extent, strict=True)]
    if any(win.begin) or stop != extent:
        grad = ctx.slice(grad, win.begin, stop, range(2, 2 + n))
    short = [b + i - t for b, i, t in zip(win.begin, size, stop, strict=True)]
    if any(short):
        grad = ctx.pad(grad, [0] * (2 + n) + [0, 0, *short])
    return grad


def _upsampled(ctx: GradContext, per_window: str, win: Window) -> str:
    """Repeat each window's value over its cells. Nearest Resize is fast in onnxruntime, unlike
    broadcasting (N, C, O, 1, O, 1) against (N, C, O, k, O, k), which is ~50x slower."""
    return ctx.upsample_nearest(per_window, [1, 1, *win.kernel])


def _folded(ctx: GradContext, t: str, spatial: list[int]) -> str:
    """(N, C, *spatial) -> (N * C, 1, *spatial): one channel, so one kernel serves them all."""
    return ctx.op("Reshape", [t, ctx.ints([-1, 1, *spatial])])


def _spread(ctx: GradContext, per_window: str, x: str, win: Window) -> str:
    """Add each window's value to each of its cells (the adjoint of a window sum)."""
    if _tiles(win):
        return _untile(ctx, _upsampled(ctx, per_window, win), x, win)
    ones = ctx.const(np.ones((1, 1, *win.kernel), ctx.np_dtype(x)), "ones")
    spread = transposed(ctx, _folded(ctx, per_window, win.out), ones, win)
    return ctx.reshape_like(spread, x)


@rule("MaxPool")
def max_pool(ctx: GradContext, node: onnx.NodeProto, grads: Grads) -> Grads:
    """Route each window's gradient to its first maximal cell (row-major), like torch and ORT.

    Tiling windows (kernel == stride) avoid MaxPool's Indices output (onnxruntime computes it on
    a slow path): cells equal to their window's max get priority K - r (r: row-major position in
    the window of K cells), the others 0; the window's highest priority, itself a MaxPool, marks
    its first maximum, so ties are exact. Overlapping windows: Indices + ScatterElements(add)
    from opset 16, before it `_max_pool_overlapping`, which needs neither.
    """
    win = _pool_window(ctx, node)
    x, y, grad = node.input[0], node.output[0], grads[0]
    if not _tiles(win):
        if ctx.opset >= 16:  # ~2x faster than the one-hot Conv route in onnxruntime 1.32
            return [_max_pool_scatter(ctx, node, grad)]
        return [_max_pool_overlapping(ctx, x, grad, win)]
    cells = int(np.prod(win.kernel))
    hit = ctx.mask("Equal", _tiled(ctx, x, win, -np.inf), _upsampled(ctx, y, win), x)
    rank = np.arange(cells, 0, -1, dtype=ctx.np_dtype(x)).reshape(win.kernel)
    priority = ctx.op("Mul", [hit, ctx.const(np.tile(rank, win.out), "priority")])
    best = ctx.op("MaxPool", [priority], kernel_shape=win.kernel, strides=win.kernel)
    first = ctx.mask("Equal", priority, _upsampled(ctx, best, win), x)
    routed = ctx.op("Mul", [first, _upsampled(ctx, grad, win)])
    return [_untile(ctx, routed, x, win)]


def _max_pool_scatter(ctx: GradContext, node: onnx.NodeProto, grad: str) -> str:
    """Add each output's gradient at its flat argmax index (MaxPool's Indices output)."""
    x = node.input[0]
    _, indices = ctx.op("MaxPool", [x], outputs=2, **attributes(node))
    flat = ctx.ints([-1])
    zeros = ctx.op("ConstantOfShape", [ctx.shape_of(x)], value=zero(ctx, x))
    zeros = ctx.op("Reshape", [zeros, flat])
    added = ctx.op(
        "ScatterElements",
        [zeros, ctx.op("Reshape", [indices, flat]), ctx.op("Reshape", [grad, flat])],
        reduction="add",
    )
    return ctx.reshape_like(added, x)


def _max_pool_overlapping(ctx: GradContext, x: str, grad: str, win: Window) -> str:
    """A Conv with K one-hot kernels reads the K cells of every window (padding: the lowest
    float, so it never wins); ArgMax picks the first maximal one; a ConvTranspose with the same
    one-hot kernels puts each window's gradient back on that cell, adding where windows
    overlap."""
    cells = int(np.prod(win.kernel))
    size = list(ctx.dims[x][2:])  # static: checked by window()
    dtype = ctx.np_dtype(x)
    onehot = ctx.const(np.eye(cells, dtype=dtype).reshape(cells, 1, *win.kernel), "onehot")
    padded = ctx.pad(_folded(ctx, x, size), [0, 0, *win.begin, 0, 0, *win.end], np.finfo(dtype).min)
    patches = ctx.op("Conv", [padded, onehot], strides=win.strides, dilations=win.dilations)
    first = ctx.op("ArgMax", [patches], axis=1, keepdims=1)
    positions = ctx.const(np.arange(cells, dtype=np.int64).reshape(1, cells, *[1] * len(size)))
    routed = ctx.op("Mul", [ctx.mask("Equal", first, positions, x), _folded(ctx, grad, win.out)])
    return ctx.reshape_like(transposed(ctx, routed, onehot, win), x)


@rule("AveragePool")
def average_pool(ctx: GradContext, node: onnx.NodeProto, grads: Grads) -> Grads:
    """Divide by each window's cell count, then spread it evenly over the window's cells."""
    attrs = attributes(node)
    win = _pool_window(ctx, node)
    x = node.input[0]
    size = ctx.static_dims(x, node, start=2)
    n = len(win.kernel)
    pads = list(attrs.get("pads") or [0] * (2 * n))
    with_pad = attrs.get("count_include_pad", 0) and attrs.get("auto_pad", "NOTSET") == "NOTSET"
    counts = np.ones(())
    for i, k in enumerate(win.kernel):
        first = np.arange(win.out[i]) * win.strides[i] - win.begin[i]
        cells = first[:, None] + np.arange(k)[None, :] * win.dilations[i]
        low, high = (-pads[i], size[i] + pads[n + i]) if with_pad else (0, size[i])
        counts = np.multiply.outer(counts, ((cells >= low) & (cells < high)).sum(1))
    share = ctx.op("Div", [grads[0], ctx.const(counts.astype(ctx.np_dtype(x)))])
    return [_spread(ctx, share, x, win)]


@rule("LpPool")
def lp_pool(ctx: GradContext, node: onnx.NodeProto, grads: Grads) -> Grads:
    """y = (sum |x|^p)^(1/p) per window: dx = x |x|^(p-2) * spread(g y^(1-p))."""
    x, y = node.input[0], node.output[0]
    p = float(attributes(node).get("p", 2))
    win = _pool_window(ctx, node)
    per_window = ctx.op("Mul", [grads[0], ctx.op("Pow", [y, ctx.scalar(1.0 - p, y)])])
    factor = (
        x
        if p == 2
        else ctx.op("Mul", [x, ctx.op("Pow", [ctx.op("Abs", [x]), ctx.scalar(p - 2, x)])])
    )
    return [ctx.op("Mul", [factor, _spread(ctx, per_window, x, win)])]


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
