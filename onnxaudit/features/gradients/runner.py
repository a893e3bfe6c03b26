"""Batched runner for the gradient model: build and load once, then call on any number of images."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx
from onnx import helper

from onnxaudit.errors import AuditError
from onnxaudit.features.gradients.builder import build_gradient_model
from onnxaudit.features.gradients.memory import (
    activation_bytes,
    batch_for_budget,
    default_max_memory,
)
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

    Large batches are cut into chunks (the backward graph keeps every activation alive): at most
    `batch_size` images, fewer when the graph's activations would not fit `max_memory` bytes
    (default: `memory.default_max_memory()`), exactly the model's batch when it is fixed. Chunk
    results are combined so the answer equals one pass over the whole batch.
    """

    def __init__(
        self,
        model: onnx.ModelProto,
        objective: Objective | None = None,
        device: str = "auto",
        threads: int | None = None,
        batch_size: int = 256,
        max_memory: int | None = None,
    ) -> None:
        self.objective = objective or CrossEntropy()
        self.proto = build_gradient_model(model, self.objective)
        self.max_memory = default_max_memory() if max_memory is None else int(max_memory)
        self.activation_bytes = activation_bytes(model)
        self.fixed_batch = _fixed_batch(model)
        self.batch_size = self.fixed_batch or batch_for_budget(
            self.activation_bytes, self.max_memory, batch_size
        )
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
        if self.fixed_batch and len(x) % self.fixed_batch:
            raise AuditError(
                f"the model takes batches of exactly {self.fixed_batch}; got {len(x)} images"
            )
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


def _fixed_batch(model: onnx.ModelProto) -> int | None:
    """The image input's batch size when the graph fixes it (e.g. 1), else None."""
    initializers = {t.name for t in model.graph.initializer}
    image = next(i for i in model.graph.input if i.name not in initializers)
    dims = image.type.tensor_type.shape.dim
    return dims[0].dim_value if len(dims) and dims[0].HasField("dim_value") else None
