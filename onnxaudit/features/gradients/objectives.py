"""Objectives: the scalar whose input gradient the gradient model computes.

Sign convention: `loss` is always the plain objective (for CrossEntropy, the cross-entropy toward
`labels`) and `input_grad` is always d loss / d input; nothing is negated inside the graph.
Callers pick the direction: an untargeted attack ascends (x + step * sign(grad)) to push the true
label's CE up, a targeted attack descends (x - step * sign(grad)) to pull the CE toward the target
label. `CrossEntropy.targeted` records which of the two an attack built on it should do.

Each objective adds its graph input and emits the loss plus the gradient seed d loss / d logits.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal

import numpy as np
from onnx import TensorProto

from onnxaudit.errors import AuditError
from onnxaudit.features.gradients.context import GradContext

Reduction = Literal["mean", "sum", "none"]


@dataclass(frozen=True)
class _LabelObjective:
    """A per-sample loss toward int64 `labels` (N,), reduced by `reduction`.

    reduction "mean"/"sum" give a scalar loss; "none" gives loss (N,) and input_grad[i] =
    d loss[i] / d x[i] (samples are independent), which is what per-sample attacks need.
    """

    targeted: bool = False
    reduction: Reduction = "mean"
    input_name: ClassVar[str] = "labels"

    def __post_init__(self) -> None:
        if self.reduction not in ("mean", "sum", "none"):
            raise AuditError(f"unknown reduction {self.reduction!r}; use mean, sum or none")

    @property
    def direction(self) -> int:
        """+1: ascend the loss (untargeted attack); -1: descend it (targeted)."""
        return -1 if self.targeted else 1

    def emit(self, ctx: GradContext, logits: str) -> tuple[str, str]:
        labels = ctx.add_input(self.input_name, TensorProto.INT64, ["N"])
        column = ctx.unsqueeze(labels, [1])
        per_sample, seed = self._per_sample(ctx, logits, column)
        if self.reduction == "none":
            return per_sample, seed
        if self.reduction == "sum":
            return ctx.op("ReduceSum", [per_sample], keepdims=0), seed
        batch = ctx.slice(ctx.shape_of(logits), [0], [1], [0])
        batch = ctx.op("Cast", [batch], to=ctx.elem_type(logits))
        return ctx.op("ReduceMean", [per_sample], keepdims=0), ctx.op("Div", [seed, batch])

    def _per_sample(self, ctx: GradContext, logits: str, column: str) -> tuple[str, str]:
        """Loss (N,) and its gradient w.r.t. logits (N, K), given labels as a column (N, 1)."""
        raise NotImplementedError


def _onehot(ctx: GradContext, column: str, logits: str) -> str:
    """(N, K) 0/1 rows of `column` (N, 1) in the logits' float type (OneHot has no double)."""
    count = ctx.dims.get(logits, (None, None))[1]
    if count is not None:
        classes = ctx.const(np.arange(count, dtype=np.int64))
    else:
        zero, one = (ctx.const(np.asarray(i, np.int64)) for i in (0, 1))
        classes = ctx.op("Range", [zero, ctx.op("Gather", [ctx.shape_of(logits), one]), one])
    return ctx.mask("Equal", column, classes, logits)


def _pick(ctx: GradContext, values: str, column: str, onehot: str) -> str:
    """values[i, column[i]] as (N,); `onehot` is _onehot(column) (GatherElements from opset 11,
    a one-hot sum before)."""
    if ctx.opset >= 11:
        picked = ctx.op("GatherElements", [values, column], axis=1)
        return ctx.squeeze(picked, [1])
    return ctx.reduce("ReduceSum", ctx.op("Mul", [values, onehot]), [1], keepdims=False)


@dataclass(frozen=True)
class CrossEntropy(_LabelObjective):
    """Softmax cross-entropy of `logits` (N, K) toward `labels`."""

    def _per_sample(self, ctx: GradContext, logits: str, column: str) -> tuple[str, str]:
        log_probs = ctx.op("LogSoftmax", [logits], axis=1)
        label = _onehot(ctx, column, logits)
        per_sample = ctx.op("Neg", [_pick(ctx, log_probs, column, label)])
        seed = ctx.op("Sub", [ctx.op("Exp", [log_probs]), label])
        return per_sample, seed  # seed: softmax - onehot


@dataclass(frozen=True)
class LogitMargin(_LabelObjective):
    """max_{j != label} logits_j - logits_label: > 0 iff the label is not the top class.

    The margin (Carlini-Wagner) loss does not saturate like CE on confident predictions.
    """

    def _per_sample(self, ctx: GradContext, logits: str, column: str) -> tuple[str, str]:
        label = _onehot(ctx, column, logits)
        big = ctx.scalar(float(np.finfo(ctx.np_dtype(logits)).max) / 4, logits)
        others = ctx.op("Sub", [logits, ctx.op("Mul", [label, big])])
        rival = ctx.op("ArgMax", [others], axis=1, keepdims=1)
        rival_hot = _onehot(ctx, rival, logits)
        picks = [_pick(ctx, logits, rival, rival_hot), _pick(ctx, logits, column, label)]
        return ctx.op("Sub", picks), ctx.op("Sub", [rival_hot, label])


@dataclass(frozen=True)
class VectorJacobian:
    """loss = sum(logits * grad_logits): input_grad is the vector-Jacobian product J^T v."""

    reduction: ClassVar[Reduction] = "sum"
    input_name: ClassVar[str] = "grad_logits"

    def emit(self, ctx: GradContext, logits: str) -> tuple[str, str]:
        vector = ctx.add_input(self.input_name, ctx.elem_type(logits), ["N", None])
        loss = ctx.op("ReduceSum", [ctx.op("Mul", [logits, vector])], keepdims=0)
        return loss, vector


Objective = CrossEntropy | LogitMargin | VectorJacobian
