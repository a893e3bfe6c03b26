"""`onnxaudit knowledge`: the audit restricted to knowledge points (`audit --only knowledge`)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import typer

from onnxaudit.cli.common import audit_and_write
from onnxaudit.cli.options import (
    Attack,
    ChannelOrder,
    Checkpoints,
    ClassNames,
    Data,
    Device,
    InputScale,
    InputShape,
    Layers,
    MaxMemory,
    Mean,
    Model,
    Out,
    PerClass,
    Seed,
    Std,
    Threads,
    settings_from_options,
)

if TYPE_CHECKING:
    from onnxaudit.results.run import AuditResult


def knowledge(
    model: Model,
    data: Data,
    out: Out,
    layers: Layers = None,
    per_class: PerClass = 50,
    checkpoints: Checkpoints = None,
    attack: Attack = False,
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
    """Embed sample and regional features in 3-D (Li, Wang, Zhang, NeurIPS 2021) and count the
    knowledge points of each layer; optionally across checkpoints and under a PGD attack."""
    settings = settings_from_options(locals()).only("knowledge")
    audit_and_write(model, data, settings, out, summary=print_layers)


def print_layers(result: AuditResult) -> None:
    for layer in result.to_dict()["knowledge"]["layers"]:
        typer.echo(
            f"{layer['name']}: {layer['knowledge_points']:.1f} knowledge points / image, "
            f"{layer['reliable_knowledge_points']:.1f} reliable ({layer['reliable_ratio'] or 0:.0%})"
        )
