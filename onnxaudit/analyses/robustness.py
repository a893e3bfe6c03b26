"""L-inf PGD through the ONNX input gradient, and clean/robust accuracy.

Images are canonical NCHW pixels in [0, 1]; `clip` is the valid pixel range, applied before the
model's own normalisation (which lives inside the canonical model).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np
import onnx

from onnxaudit.errors import AuditError
from onnxaudit.features.gradients import CrossEntropy, InputGradient

Callback = Callable[[int, np.ndarray], None]


def pgd(
    grad: InputGradient,
    x: np.ndarray,
    labels: np.ndarray,
    eps: float = 0.1,
    step: float | None = None,
    steps: int = 10,
    targeted: bool | None = None,
    random_start: bool = True,
    seed: int = 0,
    clip: tuple[float, float] = (0.0, 1.0),
    callback: Callback | None = None,
) -> np.ndarray:
    """Projected sign-gradient steps inside the L-inf ball of radius `eps` around `x`.

    Untargeted: `labels` are the true labels and each step ascends their cross-entropy.
    Targeted: `labels` are the targets and each step descends it. `targeted=None` takes the
    direction from `grad.objective.targeted`. `step` defaults to 2.5 * eps / steps (Madry et al.).
    `callback(i, x_adv)` sees the start point (i = 0) and the iterate after each step i = 1..steps.
    """
    if grad.objective.input_name != "labels":
        raise AuditError("PGD needs a label objective such as CrossEntropy")
    if eps < 0 or steps < 0:
        raise AuditError(f"eps and steps must be >= 0 (got eps={eps}, steps={steps})")
    targeted = grad.objective.targeted if targeted is None else targeted
    step = 2.5 * eps / max(steps, 1) if step is None else step
    sign = np.float32(-step if targeted else step)
    x, labels = np.asarray(x, dtype=np.float32), np.asarray(labels)
    chunks = _chunks(grad, len(x))
    x_adv = x.copy()
    if random_start:
        rng = np.random.default_rng(seed)
        for part in chunks:  # drawn chunk by chunk: no second dataset-sized array
            noise = rng.uniform(-eps, eps, size=x[part].shape).astype(np.float32)
            x_adv[part] = _project(x[part] + noise, x[part], eps, clip)
    if callback is not None:
        callback(0, x_adv)
    for i in range(1, steps + 1):
        for part in chunks:  # in place, one gradient batch at a time: memory stays bounded
            direction = np.sign(grad(x_adv[part], labels[part]).input_grad)
            x_adv[part] = _project(x_adv[part] + sign * direction, x[part], eps, clip)
        if callback is not None:
            callback(i, x_adv)
    return x_adv


def _chunks(grad: InputGradient, n: int) -> list[slice]:
    return [slice(i, i + grad.batch_size) for i in range(0, n, grad.batch_size)]


def _correct(grad: InputGradient, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Whether each image is classified as its label, one gradient batch at a time."""
    parts = [grad(x[p], y[p]).logits.argmax(1) == y[p] for p in _chunks(grad, len(x))]
    return np.concatenate(parts)


def _project(z: np.ndarray, x: np.ndarray, eps: float, clip: tuple[float, float]) -> np.ndarray:
    """Into the L-inf ball of radius eps around x, intersected with the valid pixel range."""
    return np.clip(z, np.maximum(x - eps, clip[0]), np.minimum(x + eps, clip[1]))


@dataclass
class RobustnessResult:
    """Accuracy on clean images and on their untargeted PGD counterparts (final iterate)."""

    clean_accuracy: float
    robust_accuracy: float
    eps: float
    steps: int
    step: float
    n: int

    def to_dict(self) -> dict:
        return asdict(self)


def robustness(
    model: onnx.ModelProto | InputGradient,
    x: np.ndarray,
    y: np.ndarray,
    eps: float = 0.1,
    steps: int = 10,
    step: float | None = None,
    random_start: bool = True,
    seed: int = 0,
    device: str = "auto",
    threads: int | None = None,
    batch_size: int = 256,
    max_memory: int | None = None,
) -> RobustnessResult:
    """Clean and PGD-`steps` robust accuracy at L-inf radius `eps` on canonical images.

    `batch_size` caps the gradient batch, `max_memory` (bytes; default a safe share of the
    machine) sizes it from the graph's activations; a fixed-batch model runs per its batch."""
    grad = model
    if not isinstance(grad, InputGradient):
        grad = InputGradient(model, CrossEntropy(), device, threads, batch_size, max_memory)
    y = np.asarray(y, dtype=np.int64)
    step = 2.5 * eps / max(steps, 1) if step is None else step
    x = np.asarray(x, dtype=np.float32)
    clean = _correct(grad, x, y)
    robust = _correct(grad, pgd(grad, x, y, eps, step, steps, False, random_start, seed), y)
    return RobustnessResult(
        clean_accuracy=float(clean.mean()),
        robust_accuracy=float(robust.mean()),
        eps=float(eps),
        steps=int(steps),
        step=float(step),
        n=len(y),
    )
