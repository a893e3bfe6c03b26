"""The class-wise search and its evaluation cut into class shards, to run on different workers.

A search shard is a pure function of (model bytes, search images, its classes, search options,
seed) returning plain arrays; an evaluation shard measures the predictive power of its classes'
patterns on the held-out images. Each class draws its batches from its own stream (`[seed, class]`, see
`search_batches`) and each image's gradient depends on that image alone, so a class's pattern
is the same whichever shard, worker or batch mates it had; shards are put back in class order.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from onnxaudit.analyses.patterns.evaluate import power_curve, predictive_power
from onnxaudit.analyses.patterns.search import ClassPatternSearch, Progress, target_classes
from onnxaudit.executors import Executor, Task, shard_bounds, worker_cache
from onnxaudit.progress import ProgressFn, silent


@dataclass
class SearchShard:
    """What the search of some classes leaves: arrays indexed [canvas, class-in-shard]."""

    classes: np.ndarray
    masks: np.ndarray
    pressure: np.ndarray
    canvases: np.ndarray
    loss_history: np.ndarray  # (steps of this shard, V, T)
    canvas_labels: list[str]
    search_accuracy: float


def search_shard(
    model: bytes,
    x: np.ndarray,
    y: np.ndarray,
    classes: np.ndarray,
    options: Mapping[str, object],
    seed: int,
    device: str,
    threads: int | None,
    max_memory: int | None = None,
    progress: Progress | None = None,
) -> SearchShard:
    """Search the patterns of `classes` (the unit of work of the distributed search)."""
    grad = worker_cache(
        "patterns-grad",
        model,
        (device, threads, max_memory),
        lambda: _gradient(model, device, threads, max_memory),
    )
    search = ClassPatternSearch(classes=classes, seed=seed, progress=progress, **options)
    search.fit(grad, x, y)
    return SearchShard(
        classes=search.classes_,
        masks=search.masks_,
        pressure=search.pressure_,
        canvases=search.canvases_,
        loss_history=search.loss_history_,
        canvas_labels=search.canvas_labels_,
        search_accuracy=search.search_accuracy_,
    )


def _gradient(model: bytes, device: str, threads: int | None, max_memory: int | None):
    import onnx

    from onnxaudit.features.gradients import CrossEntropy, InputGradient

    objective = CrossEntropy(targeted=False, reduction="sum")
    return InputGradient(
        onnx.load_from_string(model), objective, device, threads, max_memory=max_memory
    )


def sharded_search(
    model: bytes,
    x: np.ndarray,
    y: np.ndarray,
    classes: np.ndarray | list[int] | None,
    options: Mapping[str, object],
    seed: int,
    device: str,
    threads: int | None,
    executor: Executor,
    progress: ProgressFn = silent,
    *,
    max_memory: int | None = None,
) -> ClassPatternSearch:
    """The fitted all-class search, its classes cut into one shard per executor slot;
    `max_memory` (bytes) sizes each shard's gradient batches."""
    chosen = target_classes(np.asarray(y, dtype=np.int64), classes)
    bounds = shard_bounds(len(chosen), executor.slots)
    shared = [executor.share(value) for value in (model, x, y)]
    tasks = [
        Task(
            f"patterns classes {chosen[a]}..{chosen[b - 1]}",
            search_shard,
            (
                *shared,
                chosen[a:b],
                dict(options),
                seed,
                device,
                executor.threads(threads),
                max_memory,
            ),  # fmt: skip
            local={"progress": lambda i, n: progress("patterns: search", i, n)},
        )
        for a, b in bounds
    ]
    on_done = None if len(tasks) == 1 else lambda i, n: progress("patterns: search", i, n)
    parts = executor.run(tasks, on_done)
    return merge_shards(parts, options, seed, len(x))


def merge_shards(
    parts: list[SearchShard], options: Mapping[str, object], seed: int, n_images: int
) -> ClassPatternSearch:
    """One fitted search from its class shards, in shard order; loss rows past a shard's own
    step count (its classes had stopped moving) are NaN."""
    search = ClassPatternSearch(seed=seed, **options)
    search.classes_ = np.concatenate([p.classes for p in parts])
    search.canvas_labels_ = parts[0].canvas_labels
    search.n_images_ = n_images
    search.search_accuracy_ = parts[0].search_accuracy
    search.n_steps_ = max(len(p.loss_history) for p in parts)
    history = np.full((search.n_steps_, len(search.canvas_labels_), len(search.classes_)), np.nan)
    start = 0
    for p in parts:
        history[: len(p.loss_history), :, start : start + len(p.classes)] = p.loss_history
        start += len(p.classes)
    search.loss_history_ = history.astype(np.float32)
    return search.finish(
        np.concatenate([p.masks for p in parts], axis=1),
        np.concatenate([p.pressure for p in parts], axis=1),
        np.concatenate([p.canvases for p in parts], axis=1),
    )


# -- evaluation -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Patterns:
    """The searched patterns of some classes, arrays indexed [canvas, class]."""

    masks: np.ndarray
    binary_masks: np.ndarray
    canvases: np.ndarray
    pressure: np.ndarray

    @classmethod
    def of(cls, search: ClassPatternSearch, part: slice = slice(None)) -> Patterns:
        return cls(
            search.masks_[:, part],
            search.binary_masks_[:, part],
            search.canvases_[:, part],
            search.pressure_[:, part],
        )


def canvas_curve(
    predict: Callable[[np.ndarray], np.ndarray],
    x: np.ndarray,
    y: np.ndarray,
    patterns: Patterns,
    v: int,
    classes: Sequence[int],
    k_grid: Sequence[float],
) -> np.ndarray:
    """(T, len(k_grid)) the power curve of canvas v's patterns of `classes` on x, y."""
    return power_curve(
        predict,
        x,
        y,
        patterns.masks[v],
        patterns.canvases[v],
        classes,
        k_grid,
        patterns.pressure[v],
    )


def class_powers(
    predict: Callable[[np.ndarray], np.ndarray],
    x_eval: np.ndarray,
    y_eval: np.ndarray,
    few: np.ndarray,
    patterns: Patterns,
    classes: Sequence[int],
    num_classes: int,
    k_grid: Sequence[float],
    on_canvas: Progress | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """(V, T, num_classes) predictive power per source class at the search's k and the (V, T,
    len(k_grid)) power curve (on the `few` images) of the patterns of `classes`."""
    tables, curves = [], []
    n_canvas = len(patterns.masks)
    for v in range(n_canvas):
        canvases = patterns.canvases[v]
        tables.append(
            predictive_power(
                predict, x_eval, y_eval, patterns.binary_masks[v], canvases, classes, num_classes
            )
        )
        curves.append(canvas_curve(predict, x_eval[few], y_eval[few], patterns, v, classes, k_grid))
        if on_canvas is not None:
            on_canvas(v + 1, n_canvas)
    return np.stack(tables), np.stack(curves)


def power_shard(
    model: bytes,
    names: tuple[str, str],
    device: str,
    threads: int | None,
    *args: object,
    on_canvas: Progress | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """`class_powers(predict, *args)` on a worker's own session of the model (the unit of work
    of the distributed evaluation); `names` are the model's input and logits names."""
    from onnxaudit.features.runtime import create_session

    session = worker_cache(
        "patterns-predict", model, (device, threads), lambda: create_session(model, device, threads)
    )
    input_name, logits_name = names

    def predict(batch: np.ndarray) -> np.ndarray:
        return session.run([logits_name], {input_name: batch})[0]

    return class_powers(predict, *args, on_canvas=on_canvas)


@dataclass(frozen=True)
class PowerShards:
    """How to evaluate patterns in class shards: the model and where the shards run."""

    model: bytes
    input_name: str
    logits_name: str
    device: str
    threads: int | None
    executor: Executor

    def run(
        self,
        search: ClassPatternSearch,
        x_eval: np.ndarray,
        y_eval: np.ndarray,
        few: np.ndarray,
        num_classes: int,
        k_grid: Sequence[float],
        progress: ProgressFn = silent,
    ) -> tuple[np.ndarray, np.ndarray]:
        """The tables and curves of `class_powers`, put back together in class order."""
        executor = self.executor
        shared = [executor.share(value) for value in (self.model, x_eval, y_eval)]
        names = (self.input_name, self.logits_name)
        classes = [int(t) for t in search.classes_]
        tasks = [
            Task(
                f"patterns evaluation classes {classes[a]}..{classes[b - 1]}",
                power_shard,
                (
                    shared[0],
                    names,
                    self.device,
                    executor.threads(self.threads),
                    *shared[1:],
                    few,
                    Patterns.of(search, slice(a, b)),
                    classes[a:b],
                    num_classes,
                    tuple(k_grid),
                ),
                local={"on_canvas": lambda v, n: progress("patterns: evaluate", v, n)},
            )
            for a, b in shard_bounds(len(classes), executor.slots)
        ]
        on_done = None if len(tasks) == 1 else lambda i, n: progress("patterns: evaluate", i, n)
        parts = executor.run(tasks, on_done)
        return (
            np.concatenate([table for table, _ in parts], axis=1),
            np.concatenate([curve for _, curve in parts], axis=1),
        )
