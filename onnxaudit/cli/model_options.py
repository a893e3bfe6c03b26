"""What the model expects, as options every verb can take: `--input-shape`, `--channel-order`,
`--input-scale`, `--mean`, `--std`, `--classes`; `prepare_options` turns them into the keyword
arguments of `onnxaudit.model.prepare_model`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from onnxaudit.cli.common import parse_floats
from onnxaudit.errors import AuditError
from onnxaudit.model import load_class_names

InputShape = Annotated[
    str | None,
    typer.Option(
        "--input-shape",
        help="C,H,W the model takes (fixes dynamic sizes, or overrides them), e.g. 3,224,224.",
    ),
]
ChannelOrder = Annotated[
    str | None,
    typer.Option(
        "--channel-order", help="rgb or bgr: the channel order the model expects (data are RGB)."
    ),
]
InputScale = Annotated[
    float | None,
    typer.Option(
        "--input-scale",
        help="S: the model expects (x*S - mean)/std for pixels x in [0, 1]; 255 for 0-255 models.",
    ),
]
Mean = Annotated[
    str | None,
    typer.Option(
        "--mean",
        help="Per-channel mean in the model's units and channel order, e.g. 123.7,116.3,103.5.",
    ),
]
Std = Annotated[
    str | None,
    typer.Option("--std", help="Per-channel std in the model's units and channel order."),
]
ClassNames = Annotated[
    Path | None,
    typer.Option("--classes", help="Class names: a file with one name per line, or a JSON list."),
]


def prepare_options(
    input_shape: str | None = None,
    channel_order: str | None = None,
    input_scale: float | None = None,
    mean: str | None = None,
    std: str | None = None,
    classes: Path | None = None,
) -> dict[str, object]:
    """Keyword arguments for `prepare_model`; None leaves a setting to the model's metadata."""
    return {
        "mean": parse_floats(mean, "mean"),
        "std": parse_floats(std, "std"),
        "input_shape": _shape(input_shape),
        "channel_order": channel_order,
        "input_scale": input_scale,
        "class_names": None if classes is None else load_class_names(classes),
    }


def _shape(text: str | None) -> tuple[int, ...] | None:
    if text is None:
        return None
    try:
        return tuple(int(v) for v in text.replace("x", ",").split(","))
    except ValueError:
        raise AuditError(f"--input-shape takes C,H,W (integers), got {text!r}") from None
