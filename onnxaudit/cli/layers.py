"""`onnxaudit layers`: the classifier as the analyses see it: input, class scores, feature maps."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from onnxaudit.cli import model_options as opts
from onnxaudit.cli.common import MODEL
from onnxaudit.model import ModelInfo, prepare_model


def layers(
    model: Path = MODEL,
    as_json: bool = typer.Option(False, "--json", help="Print the description as JSON."),
    input_shape: opts.InputShape = None,
    channel_order: opts.ChannelOrder = None,
    input_scale: opts.InputScale = None,
    mean: opts.Mean = None,
    std: opts.Std = None,
    classes: opts.ClassNames = None,
) -> None:
    """List the model's input, class scores (and why), sample feature and every feature map."""
    options = opts.prepare_options(input_shape, channel_order, input_scale, mean, std, classes)
    info = prepare_model(model, **options).info
    if as_json:
        typer.echo(json.dumps(info.to_dict(), indent=2))
        return
    # Piped output gets full tensor names: no terminal width to fit.
    out = Console(width=None if sys.stdout.isatty() else 100_000, highlight=False)
    for line in summary_lines(info):
        out.print(line)
    if not info.layers:
        out.print("no 4-D feature map with more than one spatial position")
        return
    out.print(layer_table(info))


def summary_lines(info: ModelInfo) -> list[str]:
    """The input, preprocessing, class scores and sample feature, one line each."""
    c, h, w = info.input_shape
    prep = info.preprocessing
    feature = f"{info.sample_feature_name}  (D={info.sample_feature_dim})"
    batch = {"fixed": f"fixed at {info.fixed_batch}: run one batch of {info.fixed_batch} at a time"}
    return [
        f"[bold]input[/]   {escape(info.input_name)}  {info.layout}  C={c} H={h} W={w}  "
        f"{info.dtype}  batch {batch.get(info.batch, info.batch)}",
        f"[bold]pixels[/]  {prep.channel_order.upper()}, x*{prep.input_scale:g}, "
        f"mean {prep.mean}, std {prep.std}",
        f"[bold]logits[/]  {escape(info.logits_name)}  ({info.num_classes} classes): "
        f"{escape(info.logits_reason)}",
        f"[bold]sample feature[/]  {escape(feature) if info.sample_feature_name else 'none found'}",
    ]


def layer_table(info: ModelInfo) -> Table:
    table = Table("#", "tensor", "op", "C", "H", "W", "stride", "layout")
    for i, layer in enumerate(info.layers):
        table.add_row(
            str(i),
            escape(layer.name),
            layer.op_type,
            str(layer.channels),
            str(layer.height),
            str(layer.width),
            f"{layer.stride:g}",
            layer.layout,
        )
    return table
