"""Settings of the pattern search that cannot give a verdict are refused before any work."""

from __future__ import annotations

from collections.abc import Sequence

from onnxaudit.analyses.patterns.evaluate import SEARCH_FRACTION
from onnxaudit.analyses.patterns.search import CANVAS_KINDS
from onnxaudit.errors import AuditError


def validate_pattern_settings(
    epochs: float,
    k: float,
    restarts: int = 3,
    batch_per_class: int = 4,
    search_fraction: float = SEARCH_FRACTION,
    canvas: str | Sequence[str] = ("confident", "white", "free"),
    per_class: int | None = None,
    num_classes: int | None = None,
) -> None:
    """Raise AuditError (a usage error) for settings under which the search cannot run or judge:
    zero epochs, k = 0, no restarts, an unknown canvas, fewer than 2 classes, or a per-class
    image count that leaves no search or held-out image. `per_class` and `num_classes` are
    checked when known (the lead's CLI knows them before loading anything heavy)."""
    _check_search(epochs, k, restarts, batch_per_class, search_fraction)
    _check_data(canvas, search_fraction, per_class, num_classes)


def _check_search(
    epochs: float, k: float, restarts: int, batch_per_class: int, search_fraction: float
) -> None:
    if not epochs > 0:
        raise AuditError(f"--pattern-epochs must be > 0 (got {epochs:g}): no search, no verdict")
    if not k > 0 or (k >= 1 and k != int(k)):
        raise AuditError(f"--k must be a pixel fraction in (0, 1) or a pixel count (got {k:g})")
    if restarts < 1:
        raise AuditError(f"the verdict needs at least 1 restart (got {restarts})")
    if batch_per_class < 1:
        raise AuditError(f"batch_per_class must be at least 1 (got {batch_per_class})")
    if not 0 < search_fraction:
        raise AuditError(f"search_fraction must be > 0 (got {search_fraction:g})")


def _check_data(
    canvas: str | Sequence[str],
    search_fraction: float,
    per_class: int | None,
    num_classes: int | None,
) -> None:
    kinds = [canvas] if isinstance(canvas, str) else list(canvas)
    unknown = [c for c in kinds if c not in CANVAS_KINDS]
    if unknown or not kinds:
        raise AuditError(
            f"unknown canvas {unknown or kinds}; choose from {', '.join(CANVAS_KINDS)}"
        )
    if num_classes is not None and num_classes < 2:
        raise AuditError(
            f"a backdoor verdict needs at least 2 classes (the model has {num_classes})"
        )
    if per_class is not None:
        n_search = round(search_fraction * per_class) if search_fraction < 1 else search_fraction
        if n_search < 1 or per_class - n_search < 1:
            raise AuditError(
                f"--per-class {per_class} leaves no search or no held-out image per class "
                f"(search fraction {search_fraction:g})"
            )
