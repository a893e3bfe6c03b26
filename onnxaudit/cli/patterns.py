"""`onnxaudit patterns`: the audit restricted to class-wise patterns (`audit --only patterns`)."""

from __future__ import annotations

from onnxaudit.cli.common import audit_and_write
from onnxaudit.cli.options import (
    Canvas,
    ChannelOrder,
    ClassNames,
    Data,
    Device,
    InputScale,
    InputShape,
    K,
    MaxMemory,
    Mean,
    Model,
    Out,
    PatternClasses,
    PatternEpochs,
    PerClass,
    Seed,
    Std,
    Threads,
    settings_from_options,
)
from onnxaudit.settings import PATTERN_EPOCHS


def patterns(
    model: Model,
    data: Data,
    out: Out,
    pattern_classes: PatternClasses = None,
    k: K = 0.05,
    canvas: Canvas = "confident,white,free",
    pattern_epochs: PatternEpochs = PATTERN_EPOCHS,
    per_class: PerClass = None,
    seed: Seed = 0,
    input_shape: InputShape = None,
    channel_order: ChannelOrder = None,
    input_scale: InputScale = None,
    mean: Mean = None,
    std: Std = None,
    classes: ClassNames = None,
    device: Device = "auto",
    threads: Threads = None,
    max_memory: MaxMemory = None,
) -> None:
    """Search each class's most predictive small pattern, measure it on held-out images, and
    flag classes whose pattern looks like an implanted trigger."""
    settings = settings_from_options(locals()).only("patterns")
    audit_and_write(model, data, settings, out)
