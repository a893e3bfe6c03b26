"""Checks of the inputs that run before any analysis, so a bad model or data set fails in seconds
with a one-line AuditError, never after minutes of work or as a traceback."""

from __future__ import annotations

import numpy as np

from onnxaudit.data import Dataset
from onnxaudit.errors import AuditError
from onnxaudit.model import PreparedModel
from onnxaudit.settings import Settings

# What each analysis needs of the data: classes present, and images of each class.
MIN_CLASSES = {"knowledge": 2, "patterns": 2, "robustness": 1}
MIN_PER_CLASS = {"knowledge": 1, "patterns": 2, "robustness": 1}  # patterns: search + evaluation
MIN_IMAGES = {"knowledge": 4, "patterns": 2, "robustness": 1}  # knowledge: a 3-D embedding


def check_compatible(model: PreparedModel, dataset: Dataset) -> None:
    """Labels must be classes of the model, and the first image must convert to its input."""
    if int(dataset.labels.max()) >= model.info.num_classes:
        raise AuditError(
            f"labels go up to {int(dataset.labels.max())} but the model has "
            f"{model.info.num_classes} classes",
            dataset.source,
        )
    dataset.images(model.info.input_shape, [0])


def check_pixels(dataset: Dataset) -> None:
    """Float images must be finite (uint8 and files read as uint8 always are)."""
    array = dataset.array
    if array is not None and np.issubdtype(array.dtype, np.floating):
        bad = ~np.isfinite(array)
        if bad.any():
            index = int(np.argwhere(bad.reshape(len(array), -1).any(1))[0, 0])
            raise AuditError(
                f"image {index} has NaN or infinite pixels ({int(bad.sum())} in all)",
                dataset.source,
            )


def check_outputs(model: PreparedModel, dataset: Dataset, settings: Settings) -> None:
    """Run the model on a first batch: NaN/Inf scores are an input error naming the model."""
    from onnxaudit.features.runtime import create_session

    session = create_session(model.proto, settings.device, settings.threads)
    n = min(len(dataset), 8)
    x = dataset.images(model.info.input_shape, np.arange(n))
    (scores,) = session.run([model.info.logits_name], {model.info.input_name: x})
    if not np.isfinite(scores).all():
        raise AuditError(
            f"the model's scores are NaN or infinite on the first {n} images of {dataset.source}",
            model.path,
        )


def check_enough_images(dataset: Dataset, settings: Settings) -> None:
    """Each analysis that runs gets the classes and images it needs."""
    counts = np.bincount(dataset.labels)
    present = counts[counts > 0]
    for analysis in MIN_CLASSES:
        if not settings.runs(analysis):
            continue
        if len(present) < MIN_CLASSES[analysis]:
            raise AuditError(
                f"{analysis} needs images of at least {MIN_CLASSES[analysis]} classes, "
                f"the data has {len(present)}",
                dataset.source,
            )
        if len(dataset) < MIN_IMAGES[analysis]:
            raise AuditError(
                f"{analysis} needs at least {MIN_IMAGES[analysis]} images, the data has "
                f"{len(dataset)}",
                dataset.source,
            )
        if present.min() < MIN_PER_CLASS[analysis]:
            raise AuditError(
                f"{analysis} needs at least {MIN_PER_CLASS[analysis]} images of each class, "
                f"class {int(np.flatnonzero(counts == present.min())[0])} has {int(present.min())}",
                dataset.source,
            )


def check_pattern_settings(model: PreparedModel, settings: Settings) -> None:
    """Settings under which the pattern search cannot run or judge, refused before any work."""
    if settings.runs("patterns"):
        from onnxaudit.analyses.patterns.settings import validate_pattern_settings

        validate_pattern_settings(
            settings.patterns_epochs,
            settings.patterns_k,
            canvas=settings.patterns_canvases,
            num_classes=model.info.num_classes,
        )


def check_inputs(model: PreparedModel, dataset: Dataset, settings: Settings) -> None:
    """Every check, cheapest first."""
    check_pattern_settings(model, settings)
    check_compatible(model, dataset)
    check_pixels(dataset)
    check_enough_images(dataset, settings)
    check_outputs(model, dataset, settings)
