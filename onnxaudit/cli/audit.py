"""`onnxaudit audit`: every analysis of one model, a self-contained report, and CI gates."""

from __future__ import annotations

from onnxaudit.cli.common import audit_and_write
from onnxaudit.cli.options import (
    AllowInconclusive,
    Baseline,
    ChannelOrder,
    Checkpoints,
    ClassNames,
    Data,
    Device,
    Eps,
    FailOn,
    InputScale,
    InputShape,
    Junit,
    KnowledgePerClass,
    Layers,
    MaxDrop,
    MaxMemory,
    Mean,
    MinReliableRatio,
    MinRobustAccuracy,
    Model,
    Only,
    Out,
    PatternEpochs,
    PerClass,
    Scheduler,
    Seed,
    Skip,
    Std,
    Steps,
    Threads,
    Workers,
    gates_from_options,
    settings_from_options,
)
from onnxaudit.settings import PATTERN_EPOCHS


def audit(
    model: Model,
    data: Data,
    out: Out,
    per_class: PerClass = 20,
    seed: Seed = 0,
    device: Device = "auto",
    threads: Threads = None,
    max_memory: MaxMemory = None,
    input_shape: InputShape = None,
    channel_order: ChannelOrder = None,
    input_scale: InputScale = None,
    mean: Mean = None,
    std: Std = None,
    classes: ClassNames = None,
    layers: Layers = None,
    knowledge_per_class: KnowledgePerClass = None,
    skip: Skip = None,
    only: Only = None,
    eps: Eps = 0.1,
    steps: Steps = 10,
    pattern_epochs: PatternEpochs = PATTERN_EPOCHS,
    checkpoints: Checkpoints = None,
    junit: Junit = None,
    fail_on: FailOn = None,
    allow_inconclusive: AllowInconclusive = False,
    min_reliable_ratio: MinReliableRatio = None,
    min_robust_accuracy: MinRobustAccuracy = None,
    workers: Workers = None,
    scheduler: Scheduler = None,
    baseline: Baseline = None,
    max_drop: MaxDrop = None,
) -> None:
    """Audit one model: knowledge points, class-wise patterns, PGD robustness; gate it for CI.

    Exit codes: 0 all gates pass, 1 a gate failed, 2 usage or input error.
    """
    options = locals()
    audit_and_write(
        model, data, settings_from_options(options), out, gates_from_options(options), junit
    )
