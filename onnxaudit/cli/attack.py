"""`onnxaudit attack`: the audit restricted to PGD robustness (`audit --only robustness`)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import typer

from onnxaudit.cli.common import audit_and_write
from onnxaudit.cli.options import (
    BatchSize,
    ChannelOrder,
    ClassNames,
    Data,
    Device,
    Eps,
    InputScale,
    InputShape,
    MaxMemory,
    Mean,
    Model,
    OptionalOut,
    PerClass,
    Seed,
    Std,
    Step,
    Steps,
    Threads,
    settings_from_options,
)

if TYPE_CHECKING:
    from onnxaudit.results.run import AuditResult


def attack(
    model: Model,
    data: Data,
    eps: Eps = 0.1,
    steps: Steps = 10,
    step: Step = None,
    out: OptionalOut = None,
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
    batch_size: BatchSize = 128,
) -> None:
    """Print clean and PGD robust accuracy (untargeted, random start, final iterate)."""
    settings = settings_from_options(locals()).only("robustness")
    audit_and_write(model, data, settings, out, summary=print_accuracies)


def print_accuracies(result: AuditResult) -> None:
    section = result.to_dict()["robustness"]
    typer.echo(f"clean accuracy:  {section['clean_accuracy']:.4f}")
    typer.echo(
        f"robust accuracy: {section['robust_accuracy']:.4f}  "
        f"(PGD-{section['steps']}, eps {section['eps']})"
    )
