"""Rules for convolutions, and the sliding-window geometry the pooling rules share."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx

from onnxaudit.errors import AuditError
from onnxaudit.features.gradients.context import GradContext, attributes, describe_node
from onnxaudit.features.gradients.rules.registry import Grads, only_first, rule


@dataclass(frozen=True)
class Window:
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


def window(ctx: GradContext, node: onnx.NodeProto, kernel: list[int], ceil: bool = False):
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
    return Window(
        kernel=list(kernel),
        strides=strides.tolist(),
        dilations=dilations.tolist(),
        begin=begin.tolist(),
        end=(end + np.maximum(extra, 0)).tolist(),
        output_padding=np.maximum(-extra, 0).tolist(),
        out=out.tolist(),
    )


def transposed(ctx: GradContext, grad: str, weight: str, win: Window, group: int = 1) -> str:
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


FEW_CHANNELS = 4  # adjoint output channels below onnxruntime's blocked (NCHWc) Conv layout


@rule("Conv")
def conv(ctx: GradContext, node: onnx.NodeProto, grads: Grads) -> Grads:
    """ConvTranspose with the same geometry; for stride 1 and constant weights, the equivalent
    "full" Conv with flipped, transposed weights, which onnxruntime runs ~1.5x faster, unless
    that Conv would have a few output channels (the image's): there onnxruntime's Conv is ~6x
    slower than ConvTranspose (16 -> 1 channels, 28x28: 2.4 vs 0.4 ms; bench/RESULTS.md)."""
    weight = node.input[1]
    kernel = ctx.static_dims(weight, node, start=2)
    win = window(ctx, node, kernel)
    group = attributes(node).get("group", 1)
    values = ctx.value(weight)
    reach = [d * (k - 1) for d, k in zip(win.dilations, kernel, strict=True)]
    full_pads = [r - b for r, b in zip(reach, win.begin, strict=True)]
    full_pads += [r - e + p for r, e, p in zip(reach, win.end, win.output_padding, strict=True)]
    few_channels = values is not None and values.shape[1] * group <= FEW_CHANNELS
    if values is None or set(win.strides) != {1} or min(full_pads) < 0 or few_channels:
        return only_first(node, transposed(ctx, grads[0], weight, win, group))
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
    return only_first(node, grad)


@rule("ConvTranspose")
def conv_transpose(ctx: GradContext, node: onnx.NodeProto, grads: Grads) -> Grads:
    attrs = attributes(node)
    if attrs.get("auto_pad", "NOTSET") != "NOTSET" or attrs.get("output_shape"):
        raise AuditError(f"{describe_node(node)}: use explicit pads (no auto_pad/output_shape)")
    keep = ("strides", "dilations", "pads", "group")
    grad = ctx.op("Conv", [grads[0], node.input[1]], **{k: attrs[k] for k in keep if k in attrs})
    return only_first(node, grad)
