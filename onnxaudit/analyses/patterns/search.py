"""Class-wise pattern search (Zhao et al.): a top-k mask per class that pastes a canvas into a target.

All classes (and all canvases) are searched together: every step stacks the blended batches of
every (canvas, class) unit into one gradient call, so a model is run once per step, not once per
class. The mask is the only variable for real-image canvases; a "free" canvas is learned too.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from onnxaudit.errors import AuditError

CANVAS_KINDS = ("confident", "white", "free")

# grad_fn(x, labels) -> (loss, logits, d CE_i / d x_i): the per-sample gradient of each image's
# own cross-entropy toward its label (a "sum" reduction). GradientResult objects are accepted too.
GradFn = Callable[[np.ndarray, np.ndarray], Any]
Progress = Callable[[int, int], None]


def _unpack(result: Any) -> tuple[np.ndarray, np.ndarray]:
    """(logits, input_grad) from a (loss, logits, grad) tuple or a GradientResult-like object."""
    if hasattr(result, "input_grad"):
        return np.asarray(result.logits), np.asarray(result.input_grad)
    _, logits, grad = result
    return np.asarray(logits), np.asarray(grad)


def call_in_chunks(
    grad_fn: GradFn, x: np.ndarray, labels: np.ndarray, chunk: int
) -> tuple[np.ndarray, np.ndarray]:
    """Run `grad_fn` on at most `chunk` images at a time; the backward graph keeps activations."""
    logits, grads = [], []
    for start in range(0, len(x), chunk):
        lo, gr = _unpack(grad_fn(x[start : start + chunk], labels[start : start + chunk]))
        logits.append(lo)
        grads.append(gr)
    return np.concatenate(logits), np.concatenate(grads).astype(np.float32, copy=False)


def top_k_mask(mask: np.ndarray, k: float | int, tiebreak: np.ndarray | None = None) -> np.ndarray:
    """Binary mask of the k largest entries of each (H, W) mask; k < 1 is a fraction of pixels.

    Sign steps leave many entries at exactly 1, so ties are broken by `tiebreak` (larger first;
    the search's accumulated gradient pressure), then by row-major order: deterministic.
    """
    mask = np.asarray(mask)
    h, w = mask.shape[-2:]
    count = pixel_count(k, h * w)
    flat = mask.reshape(-1, h * w)
    second = np.zeros_like(flat) if tiebreak is None else np.asarray(tiebreak).reshape(flat.shape)
    order = np.lexsort((-second, -flat), axis=-1)[:, :count]
    out = np.zeros(flat.shape, dtype=np.float32)
    np.put_along_axis(out, order, 1.0, axis=1)
    return out.reshape(mask.shape)


def pixel_count(k: float | int, n_pixels: int) -> int:
    """Number of pixels for `k`: a fraction of the image when k < 1, else a count."""
    count = int(round(k * n_pixels)) if k < 1 else int(k)
    return min(max(count, 1), n_pixels)


def search_batches(
    y: np.ndarray, classes: Sequence[int], batch: int, epochs: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """The (S, T, batch) indices of the other-class images each class sees at each step, and
    the (T,) number of steps of each class (`epochs` passes over its other-class images).

    Each class draws from its own seeded stream of shuffled passes, so its batches do not depend
    on which other classes are searched alongside it.
    """
    pools = [np.flatnonzero(y != t) for t in classes]
    if min(len(p) for p in pools) < batch:
        raise AuditError(f"fewer than {batch} search images outside some target class")
    steps = np.array([max(1, int(epochs * (len(p) // batch))) for p in pools])
    schedule = np.empty((steps.max(), len(pools), batch), dtype=np.int64)
    for ti, (t, pool) in enumerate(zip(classes, pools, strict=True)):
        rng = np.random.default_rng([seed, int(t)])
        per_pass = len(pool) // batch
        passes = -(-steps.max() // per_pass)
        drawn = [rng.permutation(pool)[: per_pass * batch] for _ in range(passes)]
        schedule[:, ti] = np.concatenate(drawn).reshape(-1, batch)[: steps.max()]
    return schedule, steps


def target_classes(y: np.ndarray, classes: Sequence[int] | None) -> np.ndarray:
    """The classes to search, in order: `classes`, or every class present in `y`."""
    present = np.unique(y)
    chosen = np.array(present if classes is None else classes, dtype=np.int64)
    missing = [int(t) for t in chosen if t not in present]
    if missing:
        raise AuditError(f"no search images of class(es) {missing}")
    return chosen


def blend(mask: np.ndarray, canvas: np.ndarray, x: np.ndarray) -> np.ndarray:
    """m * canvas + (1 - m) * x in raw pixel space; mask (..., H, W) is shared over channels."""
    m = mask[..., None, :, :]
    return m * canvas + (1.0 - m) * x


def confident_images(
    logits: np.ndarray, y: np.ndarray, classes: Sequence[int], rank: int = 0
) -> np.ndarray:
    """(T,) index of the rank-th most confident image of each class: correctly classified ones
    first, then by the softmax probability of the class (stable order: deterministic)."""
    shifted = logits - logits.max(axis=1, keepdims=True)
    prob = np.exp(shifted) / np.exp(shifted).sum(axis=1, keepdims=True)
    correct = logits.argmax(axis=1) == y
    picks = []
    for t in classes:
        own = np.flatnonzero(y == t)
        ranked = own[np.lexsort((-prob[own, t], ~correct[own]))]
        picks.append(ranked[min(rank, len(ranked) - 1)])
    return np.array(picks, dtype=np.int64)


def blend_gradients(
    masks: np.ndarray,
    canvases: np.ndarray,
    x: np.ndarray,
    grad_x: np.ndarray,
    alpha: float,
    reg: float,
) -> tuple[np.ndarray, np.ndarray]:
    """d loss / d mask (..., H, W) and d loss / d canvas (..., C, H, W), chained through the blend.

    loss = alpha * mean_b CE_b + reg * sum(m); x and grad_x (d CE_b / d x'_b) are (..., B, C, H, W),
    masks and canvases broadcast against them without the batch axis.
    """
    diff = canvases[..., None, :, :, :] - x
    grad_m = alpha * (diff * grad_x).sum(axis=-3).mean(axis=-3) + reg
    grad_c = alpha * (masks[..., None, None, :, :] * grad_x).mean(axis=-4)
    return grad_m, grad_c


class ClassPatternSearch:
    """Search one mask per (canvas, target class) with signed-gradient steps, as in the paper.

    loss = alpha * CE(f(m*x_c + (1-m)*x), t) + beta * ||m||_1 / (H*W/2), with m in [0,1]^(HxW)
    started at 0.5, batches of `batch_per_class` images of the other classes, `epochs` passes
    over them. `canvas` is one kind or a sequence of kinds:
    "confident" (the correctly classified image of t with the highest probability of t; the
    paper's real-image canvas; `n_confident` > 1 adds the next most confident ones), "white"
    (all ones: can express bright triggers that dark real images cannot) and "free" (a canvas
    learned alongside the mask, which can express any pixel value).
    """

    def __init__(
        self,
        k: float = 0.05,
        alpha: float = 0.2,
        beta: float = 0.8,
        step: float = 0.02,
        batch_per_class: int = 4,
        epochs: float = 5,
        canvas: str | Sequence[str] = "confident",
        n_confident: int = 1,
        classes: Sequence[int] | None = None,
        chunk: int = 512,
        seed: int = 0,
        progress: Progress | None = None,
    ) -> None:
        self.k = k
        self.alpha = alpha
        self.beta = beta
        self.step = step
        self.batch_per_class = batch_per_class
        self.epochs = epochs
        self.canvas = canvas
        self.n_confident = n_confident
        self.classes = classes
        self.chunk = chunk
        self.seed = seed
        self.progress = progress

    # -- set-up --------------------------------------------------------------------------------
    def _canvas_labels(self) -> list[str]:
        kinds = [self.canvas] if isinstance(self.canvas, str) else list(self.canvas)
        labels: list[str] = []
        for kind in kinds:
            if kind not in CANVAS_KINDS:
                raise AuditError(f"unknown canvas {kind!r}; choose from {', '.join(CANVAS_KINDS)}")
            if kind == "confident" and self.n_confident > 1:
                labels += [f"confident{i}" for i in range(self.n_confident)]
            else:
                labels.append(kind)
        return labels

    def _initial_canvases(self, logits: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """(V, T, C, H, W) starting canvases for every (canvas, class) unit."""
        canvases = np.empty((len(self.canvas_labels_), len(self.classes_), *x.shape[1:]), "f4")
        for vi, label in enumerate(self.canvas_labels_):
            if label.startswith("confident"):
                rank = int(label[len("confident") :] or 0)
                canvases[vi] = x[confident_images(logits, y, self.classes_, rank)]
            else:  # white is fixed; free starts from mid-grey and is learned
                canvases[vi] = 1.0 if label == "white" else 0.5
        return canvases

    # -- search --------------------------------------------------------------------------------
    def fit(self, grad_fn: GradFn, x: np.ndarray, y: np.ndarray) -> ClassPatternSearch:
        """Search every (canvas, class) unit at once on images x (N, C, H, W) in [0,1], labels y."""
        x = np.asarray(x, dtype=np.float32)
        y = np.asarray(y, dtype=np.int64)
        self.classes_ = target_classes(y, self.classes)
        self.canvas_labels_ = self._canvas_labels()
        self.n_images_ = len(x)
        n_canvas, n_class = len(self.canvas_labels_), len(self.classes_)
        batch = self.batch_per_class
        h, w = x.shape[-2:]

        logits, _ = call_in_chunks(grad_fn, x, y, self.chunk)
        self.search_accuracy_ = float((logits.argmax(axis=1) == y).mean())
        canvases = self._initial_canvases(logits, x, y)
        learned = np.array([label == "free" for label in self.canvas_labels_])
        masks = np.full((n_canvas, n_class, h, w), 0.5, dtype=np.float32)
        pressure = np.zeros_like(masks)

        schedule, steps = search_batches(y, self.classes_, batch, self.epochs, self.seed)
        self.n_steps_ = len(schedule)
        targets = np.repeat(np.tile(self.classes_, n_canvas), batch)
        reg = self.beta / (h * w / 2)
        self.loss_history_ = np.empty((self.n_steps_, n_canvas, n_class), dtype=np.float32)

        for it in range(self.n_steps_):
            active = it < steps
            xb = x[schedule[it]][None]  # (1, T, B, C, H, W), shared by all canvases
            mixed = blend(masks[:, :, None], canvases[:, :, None], xb)
            flat = mixed.reshape(-1, *x.shape[1:])
            lo, g = call_in_chunks(grad_fn, flat, targets, self.chunk)
            g = g.reshape(mixed.shape)
            self.loss_history_[it] = self._loss(lo, targets, masks, reg).reshape(n_canvas, n_class)
            grad_m, grad_c = blend_gradients(masks, canvases, xb, g, self.alpha, reg)
            moving = active[None, :, None, None]  # classes past their own step count stay put
            pressure -= np.where(moving, grad_m, 0.0)
            if learned.any():
                moved = np.clip(canvases[learned] - self.step * np.sign(grad_c[learned]), 0.0, 1.0)
                canvases[learned] = np.where(moving[..., None], moved, canvases[learned])
            moved = np.clip(masks - self.step * np.sign(grad_m), 0.0, 1.0)
            masks = np.where(moving, moved, masks).astype(np.float32)
            if self.progress is not None:
                self.progress(it + 1, self.n_steps_)

        return self.finish(masks, pressure, canvases)

    def finish(
        self, masks: np.ndarray, pressure: np.ndarray, canvases: np.ndarray
    ) -> ClassPatternSearch:
        """Keep the searched (V, T, ...) masks, pressure and canvases and their top-k patterns
        (also how class shards searched apart are put back together)."""
        self.masks_ = masks
        self.pressure_ = pressure  # summed -d loss/d m: ranks pixels the mask saturates alike
        self.canvases_ = canvases
        self.binary_masks_ = top_k_mask(masks, self.k, pressure)
        self.patterns_ = self.binary_masks_[:, :, None] * canvases
        return self

    def _loss(self, logits: np.ndarray, targets: np.ndarray, masks: np.ndarray, reg: float):
        """Per-unit objective of the batch just run, for monitoring convergence."""
        shifted = logits - logits.max(axis=1, keepdims=True)
        ce = np.log(np.exp(shifted).sum(axis=1)) - shifted[np.arange(len(targets)), targets]
        ce = ce.reshape(-1, self.batch_per_class).mean(axis=1)
        return self.alpha * ce + reg * masks.reshape(len(ce), -1).sum(axis=1)

    def binary_masks(self, k: float | int) -> np.ndarray:
        """(V, T, H, W) top-k masks of the fitted masks at another k."""
        return top_k_mask(self.masks_, k, self.pressure_)
