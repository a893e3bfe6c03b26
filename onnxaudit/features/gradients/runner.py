"""Batched runner for the gradient model: build and load once, then call on any number of images."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx
from onnx import helper

from onnxaudit.errors import AuditError
from onnxaudit.features.gradients.builder import build_gradient_model
from onnxaudit.features.gradients.objectives import CrossEntropy, Objective
from onnxaudit.features.runtime import create_session


@dataclass
class GradientResult:
    """loss: scalar (mean/sum objectives) or (N,) ("none"); logits (N, K); input_grad like x."""

    loss: np.ndarray
    logits: np.ndarray
    input_grad: np.ndarray


class InputGradient:
    """d objective / d input of an ONNX classifier, computed by onnxruntime alone.

    Large batches are cut into chunks of `batch_size` (the backward graph keeps every activation
    alive); chunk results are combined so the answer equals one pass over the whole batch.
    """

    def __init__(
        self,
        model: onnx.ModelProto,
        objective: Objective | None = None,
        device: str = "auto",
        threads: int | None = None,
        batch_size: int = 256,
    ) -> None:
        self.objective = objective or CrossEntropy()
        self.batch_size = batch_size
        self.proto = build_gradient_model(model, self.objective)
        self.session = create_session(self.proto, device, threads)
        initializers = {t.name for t in model.graph.initializer}
        images = [i for i in model.graph.input if i.name not in initializers]
        if len(images) != 1:
            raise AuditError(f"expected one image input, the model has {len(images)}")
        self.input_name = images[0].name
        self.dtype = helper.tensor_dtype_to_np_dtype(images[0].type.tensor_type.elem_type)
        self.target_dtype = np.int64 if self.objective.input_name == "labels" else self.dtype

    def __call__(self, x: np.ndarray, target: np.ndarray) -> GradientResult:
        """`target`: int64 labels (N,) for CrossEntropy, grad_logits (N, K) for VectorJacobian."""
        x = np.asarray(x, dtype=self.dtype)
        target = np.asarray(target, dtype=self.target_dtype)
        if len(x) == 0:
            raise AuditError("no images to differentiate")
        if len(x) != len(target):
            raise AuditError(f"{len(x)} images but {len(target)} {self.objective.input_name}")
        losses, logits, grads = [], [], []
        for start in range(0, len(x), self.batch_size):
            chunk = slice(start, start + self.batch_size)
            feeds = {self.input_name: x[chunk], self.objective.input_name: target[chunk]}
            loss, chunk_logits, grad = self.session.run(["loss", "logits", "input_grad"], feeds)
            if self.objective.reduction == "mean":  # re-weight chunk means into the batch mean
                share = len(chunk_logits) / len(x)
                loss, grad = loss * share, grad * share
            losses.append(loss)
            logits.append(chunk_logits)
            grads.append(grad)
        if self.objective.reduction == "none":
            loss = np.concatenate(losses)
        else:
            loss = np.sum(losses, axis=0)
        return GradientResult(loss, np.concatenate(logits), np.concatenate(grads))
