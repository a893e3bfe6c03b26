"""L-inf PGD through the ONNX input gradient, and clean/robust accuracy.

Images are canonical NCHW pixels in [0, 1]; `clip` is the valid pixel range, applied before the
model's own normalisation (which lives inside the canonical model).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

import numpy as np
import onnx

from onnxaudit.errors import AuditError
from onnxaudit.features.gradients import CrossEntropy, InputGradient
from onnxaudit.progress import ProgressFn, silent

if TYPE_CHECKING:
    from onnxaudit.executors import Executor

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
    noise: np.ndarray | None = None,
) -> np.ndarray:
    """Projected sign-gradient steps inside the L-inf ball of radius `eps` around `x`.

    Untargeted: `labels` are the true labels and each step ascends their cross-entropy.
    Targeted: `labels` are the targets and each step descends it. `targeted=None` takes the
    direction from `grad.objective.targeted`. `step` defaults to 2.5 * eps / steps (Madry et al.).
    `callback(i, x_adv)` sees the start point (i = 0) and the iterate after each step i = 1..steps.
    `noise` is the random start's draw when given (a data shard's slice of the whole batch's).
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
        rng = None if noise is not None else np.random.default_rng(seed)
        for part in chunks:  # drawn chunk by chunk (the same numbers as one whole-batch draw)
            start = noise[part] if rng is None else rng.uniform(-eps, eps, size=x[part].shape)
            x_adv[part] = _project(x[part] + start.astype(np.float32), x[part], eps, clip)
    if callback is not None:
        callback(0, x_adv)
    for i in range(1, steps + 1):
        for part in chunks:  # in place, one gradient batch at a time: memory stays bounded
            direction = np.sign(grad(x_adv[part], labels[part]).input_grad)
            x_adv[part] = _project(x_adv[part] + sign * direction, x[part], eps, clip)
        if callback is not None:
            callback(i, x_adv)
    return x_adv


def start_noise(seed: int | np.random.SeedSequence, eps: float, shape: tuple) -> np.ndarray:
    """The uniform random start of PGD, drawn for a whole batch."""
    return np.random.default_rng(seed).uniform(-eps, eps, size=shape)


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

    @classmethod
    def of(
        cls, clean: np.ndarray, robust: np.ndarray, eps: float, steps: int, step: float
    ) -> RobustnessResult:
        """From per-image correctness, clean and under attack."""
        return cls(
            float(clean.mean()),
            float(robust.mean()),
            float(eps),
            int(steps),
            float(step),
            len(clean),
        )


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
    return RobustnessResult.of(clean, robust, eps, steps, step)


# -- data shards ----------------------------------------------------------------------------------
def pgd_shard(
    model: bytes,
    x: np.ndarray,
    y: np.ndarray,
    noise: np.ndarray | None,
    eps: float,
    step: float,
    steps: int,
    device: str,
    threads: int | None,
    batch_size: int,
    max_memory: int | None = None,
    progress: ProgressFn = silent,
) -> tuple[np.ndarray, np.ndarray]:
    """(clean correct, robust correct) of one data shard: the unit of work of sharded PGD;
    `progress` (in-process only) sees each of its steps."""
    from onnxaudit.executors import worker_cache

    def build() -> InputGradient:
        return InputGradient(
            onnx.load_from_string(model), CrossEntropy(), device, threads, batch_size, max_memory
        )

    grad = worker_cache("pgd-grad", model, (device, threads, batch_size, max_memory), build)
    clean = _correct(grad, x, y)
    x_adv = pgd(grad, x, y, eps, step, steps, False, noise is not None, noise=noise,
                callback=lambda i, _: progress("robustness: PGD steps", i, steps))  # fmt: skip
    return clean, _correct(grad, x_adv, y)


def sharded_robustness(
    model: onnx.ModelProto,
    x: np.ndarray,
    y: np.ndarray,
    eps: float = 0.1,
    steps: int = 10,
    step: float | None = None,
    seed: int | np.random.SeedSequence = 0,
    device: str = "auto",
    threads: int | None = None,
    batch_size: int = 256,
    executor: Executor | None = None,
    progress: ProgressFn = silent,
    max_memory: int | None = None,
) -> RobustnessResult:
    """`robustness` (random start) cut into data shards of whole batches on `executor`: the
    start noise is drawn once for all images and sliced, so any cut gives the same answer."""
    from onnxaudit.executors import Task, current, shard_bounds

    executor = executor or current()
    y = np.asarray(y, dtype=np.int64)
    step = 2.5 * eps / max(steps, 1) if step is None else step
    noise = start_noise(seed, eps, x.shape)
    payload = executor.share(model.SerializeToString())
    threads = executor.threads(threads)
    tasks = [
        Task(
            f"robustness images {a}..{b - 1}",
            pgd_shard,
            (
                payload,
                x[a:b],
                y[a:b],
                noise[a:b],
                eps,
                step,
                steps,
                device,
                threads,
                batch_size,
                max_memory,
            ),  # fmt: skip
            local={"progress": progress},
        )
        for a, b in shard_bounds(len(y), executor.slots, batch_size)
    ]
    on_done = None if len(tasks) == 1 else lambda i, n: progress("robustness: PGD shards", i, n)
    parts = executor.run(tasks, on_done)
    clean = np.concatenate([c for c, _ in parts])
    robust = np.concatenate([r for _, r in parts])
    return RobustnessResult.of(clean, robust, eps, steps, step)
