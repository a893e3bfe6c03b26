"""The backward-rule table and the helpers every rule family shares.

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

from onnxaudit.features.gradients.context import GradContext, attributes

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


def only_first(node: onnx.NodeProto, grad: str | None) -> Grads:
    return [grad] + [None] * (len(node.input) - 1)


def scaled(ctx: GradContext, node: onnx.NodeProto, grad: str, factor: str) -> Grads:
    """The first input's gradient is grad * factor (an elementwise derivative)."""
    return only_first(node, ctx.op("Mul", [grad, factor]))


def axis_of(ctx: GradContext, node: onnx.NodeProto, default: int) -> int:
    axis = attributes(node).get("axis", default)
    return axis + ctx.rank(node.input[0], node) if axis < 0 else axis


def zero(ctx: GradContext, like: str) -> onnx.TensorProto:
    """A one-element zero tensor of `like`'s float type (a ConstantOfShape value)."""
    return onnx.numpy_helper.from_array(np.zeros(1, ctx.np_dtype(like)))


def if_varied(ctx: GradContext, name: str, build: Callable[[], str]) -> str | None:
    return build() if name in ctx.varied else None
