"""Predictive power: how often a pasted pattern turns images of other classes into its class."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from onnxaudit.analyses.patterns.search import blend, top_k_mask

# Pattern sizes (fractions of the pixels) at which predictive power is also measured: the report's
# power curve, "k90", and the verdict's pattern-size test (the size reaching 50 %).
K_GRID = (0.0025, 0.005, 0.01, 0.02, 0.03, 0.05, 0.1)
SEARCH_FRACTION = 0.5  # of each class's images searched; the rest is held out
PredictFn = Callable[[np.ndarray], np.ndarray]  # (N, C, H, W) in [0,1] -> logits (N, K)


def predict_labels(predict_fn: PredictFn, x: np.ndarray, batch: int = 512) -> np.ndarray:
    """argmax labels of `predict_fn` over x, `batch` images at a time."""
    out = [np.asarray(predict_fn(x[s : s + batch])).argmax(axis=1) for s in range(0, len(x), batch)]
    return np.concatenate(out).astype(np.int64) if out else np.empty(0, np.int64)


def split_search_eval(
    y: np.ndarray, search_fraction: float = SEARCH_FRACTION, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Disjoint (search, eval) index arrays: a seeded stratified split, `search_fraction` of each
    class (or that many images of each class when it is 1 or more)."""
    rng = np.random.default_rng(seed)
    search, held = [], []
    for c in np.unique(y):
        idx = rng.permutation(np.flatnonzero(y == c))
        n = int(round(search_fraction * len(idx))) if search_fraction < 1 else int(search_fraction)
        search.append(idx[:n])
        held.append(idx[n:])
    return np.sort(np.concatenate(search)), np.sort(np.concatenate(held))


def predictive_power(
    predict_fn: PredictFn,
    x: np.ndarray,
    y: np.ndarray,
    binary_masks: np.ndarray,
    canvases: np.ndarray,
    classes: Sequence[int],
    num_classes: int,
    batch: int = 512,
) -> np.ndarray:
    """(T, num_classes) fraction of images of each source class predicted as t once the pattern
    of t (binary mask (T, H, W) over canvas (T, C, H, W)) is pasted; NaN where source == t."""
    table = np.full((len(classes), num_classes), np.nan)
    for ti, t in enumerate(classes):
        others = y != t
        pasted = blend(binary_masks[ti], canvases[ti], x[others])
        hit = predict_labels(predict_fn, pasted, batch) == t
        src = y[others]
        for s in np.unique(src):
            table[ti, s] = hit[src == s].mean()
    return table


def overall_power(table: np.ndarray, y: np.ndarray, classes: Sequence[int]) -> np.ndarray:
    """(T,) pooled predictive power over all other-class images (source rates weighted by count)."""
    counts = np.bincount(y, minlength=table.shape[1]).astype(float)
    out = np.empty(len(classes))
    for ti, t in enumerate(classes):
        weights = counts.copy()
        weights[t] = 0.0
        rates = np.nan_to_num(table[ti])
        out[ti] = (rates * weights).sum() / weights.sum()
    return out


def clean_rate(labels_pred: np.ndarray, y: np.ndarray, classes: Sequence[int]) -> np.ndarray:
    """(T,) fraction of clean other-class images already predicted as t: the baseline."""
    return np.array([(labels_pred[y != t] == t).mean() for t in classes])


def power_curve(
    predict_fn: PredictFn,
    x: np.ndarray,
    y: np.ndarray,
    masks: np.ndarray,
    canvases: np.ndarray,
    classes: Sequence[int],
    ks: Sequence[float],
    tiebreak: np.ndarray | None = None,
    batch: int = 512,
) -> np.ndarray:
    """(T, len(ks)) pooled predictive power of the top-k pattern of each class, for each k
    (masks (T, H, W) ranked as by `top_k_mask`, with its `tiebreak`)."""
    num_classes = int(y.max()) + 1
    columns = [
        overall_power(
            predictive_power(
                predict_fn,
                x,
                y,
                top_k_mask(masks, k, tiebreak),
                canvases,
                classes,
                num_classes,
                batch,
            ),
            y,
            classes,
        )
        for k in ks
    ]
    return np.stack(columns, axis=1)


def k_at_power(curve: np.ndarray, ks: Sequence[float], level: float = 0.9) -> np.ndarray:
    """(...) the pattern size at which predictive power first reaches `level`, from curves
    (..., len(ks)), interpolated in log k between grid points (the first k when already reached
    there); NaN if never reached."""
    logk = np.log(np.asarray(ks, dtype=float))
    curve = np.asarray(curve, dtype=float)
    out = np.full(curve.shape[:-1], np.nan)
    for i in np.ndindex(out.shape):
        row = curve[i]
        hit = np.flatnonzero(row >= level)
        if not len(hit):
            continue
        j = hit[0]
        if j == 0:
            out[i] = ks[0]
            continue
        frac = (level - row[j - 1]) / (row[j] - row[j - 1])
        out[i] = np.exp(logk[j - 1] + frac * (logk[j] - logk[j - 1]))
    return out


def confident_victims(logits: np.ndarray, y: np.ndarray, t: int) -> np.ndarray:
    """Indices of the victims a trigger of t must move: the correctly classified images of other
    classes, the most confident half of them by margin logit(true class) - logit(t) (at least
    one, when there is any). A clean class's small patterns flip the borderline images of a
    hard pair; an implanted trigger flips the confident ones too."""
    correct = np.flatnonzero((y != t) & (logits.argmax(axis=1) == y))
    margin = logits[correct, y[correct]] - logits[correct, t]
    return correct[np.argsort(-margin, kind="stable")[: (len(correct) + 1) // 2]]


def confident_victim_power(
    predict_fn: PredictFn,
    x: np.ndarray,
    y: np.ndarray,
    masks: np.ndarray,
    canvases: np.ndarray,
    pressure: np.ndarray,
    classes: Sequence[int],
    k: float,
) -> np.ndarray:
    """(T,) the share of each class's confident victims (`confident_victims`) that its top-k
    pattern sends to it, the largest over the canvases given (masks (V, T, H, W) ranked as by
    `top_k_mask` with `pressure`, canvases (V, T, C, H, W)); 0 for a class without victims."""
    logits = np.concatenate([predict_fn(x[s : s + 512]) for s in range(0, len(x), 512)])
    out = np.zeros(len(classes))
    for ti, t in enumerate(classes):
        victims = confident_victims(logits, y, int(t))
        if not len(victims):
            continue
        binary = top_k_mask(masks[:, ti], k, pressure[:, ti])
        for v in range(len(masks)):
            pasted = blend(binary[v], canvases[v, ti], x[victims])
            out[ti] = max(out[ti], float((predict_labels(predict_fn, pasted) == t).mean()))
    return out
