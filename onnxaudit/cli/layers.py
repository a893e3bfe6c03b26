"""`onnxaudit layers`: the candidate feature maps of a classifier."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console
from rich.table import Table

from onnxaudit.cli.common import MODEL
from onnxaudit.model import prepare_model


def layers(model: Path = MODEL) -> None:
    """List the model's input, logits, sample feature and every 4-D feature map."""
    info = prepare_model(model).info
    out = Console()
    c, h, w = info.input_shape
    out.print(f"[bold]input[/]   {info.input_name}  {info.layout}  C={c} H={h} W={w}  {info.dtype}")
    out.print(f"[bold]logits[/]  {info.logits_name}  ({info.num_classes} classes)")
    feature = f"{info.sample_feature_name}  (D={info.sample_feature_dim})"
    out.print(f"[bold]sample feature[/]  {feature if info.sample_feature_name else 'none found'}")
    if not info.layers:
        out.print("no 4-D feature map with more than one spatial position")
        return
    table = Table("#", "tensor", "op", "C", "H", "W", "stride", "layout")
    for i, layer in enumerate(info.layers):
        table.add_row(
            str(i),
            layer.name,
            layer.op_type,
            str(layer.channels),
            str(layer.height),
            str(layer.width),
            f"{layer.stride:g}",
            layer.layout,
        )
    out.print(table)
