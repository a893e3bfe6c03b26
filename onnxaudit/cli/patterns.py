"""`onnxaudit patterns`: the audit restricted to class-wise patterns (`audit --only patterns`)."""

from __future__ import annotations

from onnxaudit.cli.common import audit_and_write
from onnxaudit.cli.options import (
    Canvas,
    Classes,
    Data,
    Device,
    K,
    Mean,
    Model,
    Out,
    PatternEpochs,
    PerClass,
    Seed,
    Std,
    Threads,
    settings_from_options,
)


def patterns(
    model: Model,
    data: Data,
    out: Out,
    classes: Classes = None,
    k: K = 0.05,
    canvas: Canvas = "confident,white,free",
    pattern_epochs: PatternEpochs = 5.0,
    per_class: PerClass = None,
    seed: Seed = 0,
    mean: Mean = None,
    std: Std = None,
    device: Device = "auto",
    threads: Threads = None,
) -> None:
    """Search each class's most predictive small pattern, measure it on held-out images, and
    flag classes whose pattern looks like an implanted trigger."""
    settings = settings_from_options(locals()).only("patterns")
    audit_and_write(model, data, settings, out)
