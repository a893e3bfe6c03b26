"""The class-wise search cut into class shards, so the shards can run on different workers.

A shard is a pure function of (model bytes, search images, its classes, search options, seed)
returning plain arrays. Each class draws its batches from its own stream (`[seed, class]`, see
`search_batches`) and each image's gradient depends on that image alone, so a class's pattern
is the same whichever shard, worker or batch mates it had; shards are put back in class order.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

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
    progress: Progress | None = None,
) -> SearchShard:
    """Search the patterns of `classes` (the unit of work of the distributed search)."""
    grad = worker_cache(
        "patterns-grad", model, (device, threads), lambda: _gradient(model, device, threads)
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


def _gradient(model: bytes, device: str, threads: int | None):
    import onnx

    from onnxaudit.features.gradients import CrossEntropy, InputGradient

    objective = CrossEntropy(targeted=False, reduction="sum")
    return InputGradient(onnx.load_from_string(model), objective, device, threads)


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
) -> ClassPatternSearch:
    """The fitted all-class search, its classes cut into one shard per executor slot."""
    chosen = target_classes(np.asarray(y, dtype=np.int64), classes)
    bounds = shard_bounds(len(chosen), executor.slots)
    shared = [executor.share(value) for value in (model, x, y)]
    tasks = [
        Task(
            f"patterns classes {chosen[a]}..{chosen[b - 1]}",
            search_shard,
            (*shared, chosen[a:b], dict(options), seed, device, executor.threads(threads)),
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
