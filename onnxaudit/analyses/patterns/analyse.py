"""`analyse_patterns`: search, measure and judge the class-wise patterns of one prepared model."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from onnxaudit.analyses.patterns.evaluate import (
    K_GRID,
    SEARCH_FRACTION,
    PredictFn,
    clean_rate,
    confident_victim_power,
    k_at_power,
    overall_power,
    predict_labels,
    split_search_eval,
)
from onnxaudit.analyses.patterns.restarts import SeedLike, restart_seeds
from onnxaudit.analyses.patterns.search import ClassPatternSearch
from onnxaudit.analyses.patterns.settings import validate_pattern_settings
from onnxaudit.analyses.patterns.shape import ShapeStats, shape_stats
from onnxaudit.analyses.patterns.shards import (
    Patterns,
    PowerShards,
    canvas_curve,
    class_powers,
    sharded_search,
)
from onnxaudit.analyses.patterns.universal import NoiseBlendResponse
from onnxaudit.analyses.patterns.verdict import (
    MIN_CLASSES,
    VICTIM_K,
    BackdoorVerdict,
    RestartEvidence,
    any_value_canvases,
    backdoor_verdict,
)
from onnxaudit.analyses.patterns.warp import WarpResponse
from onnxaudit.data import Dataset
from onnxaudit.executors import Executor, current
from onnxaudit.model import PreparedModel
from onnxaudit.progress import ProgressFn, silent
from onnxaudit.seeds import as_int, child
from onnxaudit.settings import PATTERN_EPOCHS

CURVE_PER_CLASS = 20  # held-out images per class the power curves are measured on
CORE_K = 0.01  # the "core" of a pattern: its top 1 % of pixels (an implanted patch fits in it)
DEFAULT_CANVASES = ("confident", "white", "free")
SPLIT_STREAM, SEARCH_STREAM, IMAGES_STREAM = 0, 1, 2  # children of each restart's stream
DEFAULT_RESTARTS = 3


@dataclass
class PatternsResult:
    """Per class and canvas: masks, patterns, predictive power, shape statistics; the verdict.

    Arrays are indexed [canvas, class] in the order of `canvas_labels` and `classes`.
    """

    classes: list[int]
    class_names: list[str]
    canvas_labels: list[str]
    k: float
    settings: dict[str, Any]
    masks: np.ndarray  # (V, T, H, W) continuous masks after the search
    canvases: np.ndarray  # (V, T, C, H, W)
    binary_masks: np.ndarray  # (V, T, H, W) top-k
    power_table: np.ndarray  # (V, T, K) predictive power per source class (NaN for t itself)
    power: np.ndarray  # (V, T) pooled over the other classes
    clean_rate: np.ndarray  # (T,) clean images of other classes predicted as t
    k_grid: tuple[float, ...]
    curve: np.ndarray  # (V, T, len(k_grid)) predictive power against pattern size
    k90: np.ndarray  # (V, T) pattern size reaching 90 % predictive power; NaN if none
    k50: np.ndarray  # (V, T) the same for 50 %
    mask_l1: np.ndarray  # (V, T) ||m||_1 / (H*W) of the continuous mask
    shapes: list[list[ShapeStats]]  # [canvas][class], of the top-k pattern
    core_shapes: list[list[ShapeStats]]  # [canvas][class], of the top CORE_K pixels
    verdict: BackdoorVerdict
    eval_accuracy: float
    n_search: int
    n_eval: int
    pressure: np.ndarray = field(repr=False, default_factory=lambda: np.empty(0))
    loss_history: np.ndarray = field(repr=False, default_factory=lambda: np.empty(0))
    # (R, V, T, len(k_grid)) every restart's power curve (restart 0's is `curve`)
    restart_curves: np.ndarray = field(repr=False, default_factory=lambda: np.empty(0))

    @property
    def patterns(self) -> np.ndarray:
        """(V, T, C, H, W) the canvas pixels kept by the binary masks."""
        return self.binary_masks[:, :, None] * self.canvases

    def to_dict(self) -> dict[str, Any]:
        """JSON data: the per-class summary (best canvas), every canvas's numbers, the verdict."""
        best = self.power.argmax(axis=0)
        rows = []
        for ti, t in enumerate(self.classes):
            b = int(best[ti])
            rows.append(
                {
                    "class": int(t),
                    "name": self.class_names[ti],
                    "predictive_power": float(self.power[b, ti]),
                    "best_canvas": self.canvas_labels[b],
                    "clean_rate": float(self.clean_rate[ti]),
                    "mask_l1": float(self.verdict.mask_l1[ti]),  # the one the index is on
                    "k90": _num(
                        self.k90[:, ti].min() if np.isfinite(self.k90[:, ti]).any() else None
                    ),
                    "anomaly_index": float(self.verdict.anomaly_index[ti]),
                    "suspected": bool(int(t) in self.verdict.classes),
                    **self._test_rows(ti),
                    **self._universal_row(ti),
                    "canvases": {
                        label: {
                            "predictive_power": float(self.power[v, ti]),
                            "per_source": [_num(p) for p in self.power_table[v, ti]],
                            "mask_l1": float(self.mask_l1[v, ti]),
                            "k90": _num(self.k90[v, ti]),
                            "k50": _num(self.k50[v, ti]),
                            "curve": [float(p) for p in self.curve[v, ti]],
                            "shape": self.shapes[v][ti].to_dict(),
                            "core_shape": self.core_shapes[v][ti].to_dict(),
                            "positions": np.argwhere(self.binary_masks[v, ti] > 0.5).tolist(),
                        }
                        for v, label in enumerate(self.canvas_labels)
                    },
                }
            )
        return {
            "method": "class-wise patterns (Zhao et al.), all classes searched in shared batches",
            "settings": self.settings,
            "k": self.k,
            "k_grid": list(self.k_grid),
            "canvases": self.canvas_labels,
            "n_search": self.n_search,
            "n_eval": self.n_eval,
            "eval_accuracy": self.eval_accuracy,
            "classes": rows,
            "backdoor": self.verdict.to_dict(),
        }

    def _test_rows(self, ti: int) -> dict[str, float | None]:
        """Each test's statistic (over the restarts), p-value and threshold for class ti."""
        row: dict[str, float | None] = {}
        for test in self.verdict.tests:
            row[f"{test.name}"] = float(test.statistic[ti])
            row[f"{test.name}_threshold"] = test.threshold
            if test.p_value is not None:
                row[f"{test.name}_p_value"] = float(test.p_value[ti])
        return row

    def _universal_row(self, ti: int) -> dict[str, float]:
        universal = self.verdict.universal
        if universal is None:
            return {}
        return {
            "universal_rate": float(universal.rate[ti]),
            "universal_index": float(universal.anomaly_index[ti]),
        }


def _num(value: Any) -> float | None:
    """A JSON number: NaN and infinities (no such size, no such power) become null."""
    return None if value is None or not np.isfinite(value) else float(value)


def analyse_patterns(
    pm: PreparedModel,
    dataset: Dataset,
    classes: Sequence[int] | None = None,
    k: float = 0.05,
    seed: SeedLike = 0,
    device: str = "auto",
    progress: ProgressFn = silent,
    canvas: str | Sequence[str] = DEFAULT_CANVASES,
    epochs: float = PATTERN_EPOCHS,
    batch_per_class: int = 4,
    search_fraction: float = SEARCH_FRACTION,
    threads: int | None = None,
    executor: Executor | None = None,
    restarts: int = DEFAULT_RESTARTS,
    max_memory: int | None = None,
) -> PatternsResult:
    """Search every class's pattern on one part of `dataset`, measure it on the disjoint rest;
    `restarts` times with spawned seeds (own split, batches and noise), the verdict on all.

    `pm` is a PreparedModel; `dataset` an onnxaudit Dataset (use `.subset()` to bound the cost).
    The search runs in class shards on `executor` (default: the run's, in-process outside one).
    Restart 0 gives the masks, patterns and figures; the others only the verdict's evidence.
    `max_memory` (bytes; default a safe share of the machine) sizes the gradient batches.
    """
    validate_pattern_settings(
        epochs,
        k,
        restarts,
        batch_per_class,
        search_fraction,
        canvas,
        num_classes=pm.info.num_classes,
    )
    info = pm.info
    predict = logits_predictor(pm, device, threads)
    payload = pm.proto.SerializeToString()
    executor = executor or current()
    options = {"k": k, "batch_per_class": batch_per_class, "epochs": epochs, "canvas": canvas}

    def run(images: Dataset, restart_seed: int, stage: int) -> tuple[ClassPatternSearch, Split]:
        x = images.images(info.input_shape)
        y = np.asarray(images.labels, dtype=np.int64)
        search_idx, eval_idx, search_seed = restart_split(y, search_fraction, restart_seed)

        def report(name: str, done: int, total: int) -> None:
            progress(f"{name} (restart {stage + 1}/{restarts})", done, total)

        search = sharded_search(
            payload,
            x[search_idx],
            y[search_idx],
            classes,
            options,
            search_seed,
            device,
            threads,
            executor,
            report,
            max_memory=max_memory,
        )
        return search, (x[eval_idx], y[eval_idx])

    seeds = restart_seeds(seed, restarts)
    pools = restart_images(dataset, seeds)
    first, (x_eval, y_eval) = run(pools[0], seeds[0], 0)
    extra = []
    for stage, restart_seed in enumerate(seeds[1:], start=1):
        search, held = run(pools[stage], restart_seed, stage)
        extra.append(restart_evidence(search, predict, *held, info.num_classes))
    result = measure(
        first,
        predict,
        x_eval,
        y_eval,
        info.num_classes,
        info.class_names,
        progress,
        shards=PowerShards(payload, info.input_name, info.logits_name, device, threads, executor),
        more_evidence=extra,
    )
    result.settings["restart_images"] = restart_images_kind(dataset, pools)
    return result


def logits_predictor(
    pm: PreparedModel, device: str = "auto", threads: int | None = None
) -> PredictFn:
    """The model's logits of a batch (N, C, H, W) in [0, 1] on a session of its own: what the
    probes and the power curves of a run call (bench/verdict_zoo.py `probes` too)."""
    from onnxaudit.features.runtime import create_session

    info = pm.info
    session = create_session(pm.proto, device=device, threads=threads)

    def predict(batch: np.ndarray) -> np.ndarray:
        return session.run([info.logits_name], {info.input_name: batch})[0]

    return predict


def restart_images_kind(dataset: Dataset, pools: Sequence[Dataset]) -> str:
    """What the restarts searched: `fresh` images each, the run's images `shared`, or `none`
    (a single search, no restart)."""
    if len(pools) < 2:
        return "none"
    return "shared" if pools[1] is dataset else "fresh"


Split = tuple[np.ndarray, np.ndarray]


def restart_images(dataset: Dataset, seeds: Sequence[int]) -> list[Dataset]:
    """The images of each restart: `dataset` for the first and, when what the run's subset left
    out (`Dataset.rest`) holds enough, as many fresh images per class for each other one, so a
    restart repeats the whole draw (images, split, batches) and the median over restarts also
    averages the luck of the subset; else `dataset` for every restart (only the split is
    redrawn)."""
    pools = [dataset]
    for restart_seed in seeds[1:]:
        fresh = pools[-1].fresh_subset(child(restart_seed, IMAGES_STREAM))
        if fresh is None:
            return [dataset] * len(seeds)
        pools.append(fresh)
    return pools


def restart_split(
    y: np.ndarray, search_fraction: float, restart_seed: int
) -> tuple[np.ndarray, np.ndarray, int]:
    """One restart's (search, held-out) index split of labels y, and its search seed (which the
    noise-blend and warp probes of that restart use too)."""
    search_idx, eval_idx = split_search_eval(y, search_fraction, child(restart_seed, SPLIT_STREAM))
    return search_idx, eval_idx, as_int(child(restart_seed, SEARCH_STREAM))


def fewest_per_class(y: np.ndarray, classes: Sequence[int]) -> int:
    """The smallest number of images of any of `classes` in labels y."""
    counts = np.bincount(y, minlength=max(classes) + 1)
    return int(counts[list(classes)].min())


def restart_evidence(
    search: ClassPatternSearch,
    predict: Callable[[np.ndarray], np.ndarray],
    x_eval: np.ndarray,
    y_eval: np.ndarray,
    num_classes: int,
    curve: np.ndarray | None = None,
    curve_per_class: int = CURVE_PER_CLASS,
) -> RestartEvidence:
    """What the verdict needs from one fitted search: mask L1s, noise-blend and warp rates, the
    power curve over K_GRID (measured here on `curve_per_class` held-out images per class, as
    `measure` does, unless given) and, for a model of fewer than MIN_CLASSES classes, the
    confident-victim power (its cost grows with the classes, and only those models judge it)."""
    h, w = search.masks_.shape[-2:]
    noise, warp = probe_rates(predict, x_eval, y_eval, search.classes_, search.seed)
    mask_l1 = search.masks_.sum(axis=(2, 3)) / (h * w)
    if curve is None:
        few = curve_images(y_eval, curve_per_class, search.seed)
        patterns = Patterns.of(search)
        x, y = x_eval[few], y_eval[few]
        curve = np.stack(
            [
                canvas_curve(predict, x, y, patterns, v, search.classes_, K_GRID)
                for v in range(len(patterns.masks))
            ]
        )
    victim = None
    if num_classes < MIN_CLASSES:
        rows = any_value_canvases(search.canvas_labels_)
        victim = confident_victim_power(
            predict,
            x_eval,
            y_eval,
            search.masks_[rows],
            search.canvases_[rows],
            search.pressure_[rows],
            search.classes_,
            VICTIM_K,
        )
    return RestartEvidence(int(search.seed), mask_l1, noise, warp, curve, victim)


def probe_rates(
    predict: Callable[[np.ndarray], np.ndarray],
    x_eval: np.ndarray,
    y_eval: np.ndarray,
    classes: Sequence[int],
    seed: int,
) -> tuple[np.ndarray, np.ndarray]:
    """(T,) noise-blend and (T,) warp rates of one restart, on its held-out images, drawn with
    its search seed. They do not depend on the search itself, so recorded evidence can be
    re-probed without searching again (bench/verdict_zoo.py `probes`)."""
    noise = NoiseBlendResponse(seed=seed).fit(predict, x_eval, y_eval, classes)
    warp = WarpResponse(seed=seed).fit(predict, x_eval, y_eval, classes)
    return noise.rate_, warp.rate_


def curve_images(y_eval: np.ndarray, per_class: int, seed: int) -> np.ndarray:
    """Indices of the held-out images the power curve is measured on (it multiplies the forward
    passes by the grid size): `per_class` of each class, drawn with the restart's seed."""
    return split_search_eval(y_eval, per_class, seed=child(seed, 0))[0]


def measure(
    search: ClassPatternSearch,
    predict: Callable[[np.ndarray], np.ndarray],
    x_eval: np.ndarray,
    y_eval: np.ndarray,
    num_classes: int,
    class_names: Sequence[str],
    progress: ProgressFn = silent,
    k_grid: Sequence[float] = K_GRID,
    curve_per_class: int = CURVE_PER_CLASS,
    shards: PowerShards | None = None,
    more_evidence: Sequence[RestartEvidence] = (),
) -> PatternsResult:
    """Predictive power, k90, shapes, the noise-blend response and the verdict of a fitted search
    on held-out images (the per-class powers in class shards when `shards` says how).

    `more_evidence` holds the other restarts' evidence for the verdict. The power-against-k curve uses `curve_per_class` held-out images per class (it multiplies
    the forward passes by the grid size); predictive power at `k` uses all of them.
    """
    classes = [int(t) for t in search.classes_]
    clean_pred = predict_labels(predict, x_eval)
    few = curve_images(y_eval, curve_per_class, search.seed)
    if shards is None:
        table, curve = class_powers(
            predict,
            x_eval,
            y_eval,
            few,
            Patterns.of(search),
            classes,
            num_classes,
            k_grid,
            lambda v, n: progress("patterns: evaluate", v, n),
        )
    else:
        table, curve = shards.run(search, x_eval, y_eval, few, num_classes, k_grid, progress)
    power = np.stack([overall_power(tab, y_eval, classes) for tab in table])
    k90 = k_at_power(curve, k_grid, 0.9)
    k50 = k_at_power(curve, k_grid, 0.5)
    h, w = search.masks_.shape[-2:]
    mask_l1 = search.masks_.sum(axis=(2, 3)) / (h * w)
    shapes = [[shape_stats(m) for m in per_canvas] for per_canvas in search.binary_masks_]
    core = search.binary_masks(CORE_K)
    core_shapes = [[shape_stats(m) for m in per_canvas] for per_canvas in core]
    spread = np.array([[c.spread for c in per_canvas] for per_canvas in core_shapes])
    same_curve = tuple(k_grid) == K_GRID and curve_per_class == CURVE_PER_CLASS
    evidence = [
        # restart 0's curve is the verdict's when measured as the other restarts' are
        restart_evidence(
            search, predict, x_eval, y_eval, num_classes, curve if same_curve else None
        ),
        *more_evidence,
    ]
    verdict = backdoor_verdict(
        evidence,
        search.canvas_labels_,
        classes,
        num_classes,
        power,
        spread,
        eval_per_class=fewest_per_class(y_eval, classes),
    )
    return PatternsResult(
        classes=classes,
        class_names=[str(class_names[t]) for t in classes],
        canvas_labels=list(search.canvas_labels_),
        k=float(search.k),
        settings={
            "alpha": search.alpha,
            "beta": search.beta,
            "step": search.step,
            "batch_per_class": search.batch_per_class,
            "epochs": search.epochs,
            "steps": search.n_steps_,
            "seed": search.seed,
            "restarts": len(evidence),
            "restart_seeds": [e.seed for e in evidence],
        },
        masks=search.masks_,
        canvases=search.canvases_,
        binary_masks=search.binary_masks_,
        power_table=table,
        power=power,
        clean_rate=clean_rate(clean_pred, y_eval, classes),
        k_grid=tuple(k_grid),
        curve=curve,
        k90=k90,
        k50=k50,
        mask_l1=mask_l1,
        shapes=shapes,
        core_shapes=core_shapes,
        pressure=search.pressure_,
        verdict=verdict,
        eval_accuracy=float((clean_pred == y_eval).mean()),
        n_search=int(search.n_images_),
        n_eval=int(len(y_eval)),
        loss_history=search.loss_history_,
        restart_curves=np.stack([e.curve for e in evidence]),
    )
