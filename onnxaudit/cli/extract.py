"""`onnxaudit extract`: stream chosen feature maps of a data set into an .npz."""

from __future__ import annotations

from pathlib import Path

import typer

from onnxaudit.cli.common import console, print_warnings, progress
from onnxaudit.cli.options import (
    BatchSize,
    ChannelOrder,
    ClassNames,
    Data,
    Device,
    InputScale,
    InputShape,
    Mean,
    Model,
    PerClass,
    Seed,
    Std,
    Threads,
    model_options,
    parse_names,
)
from onnxaudit.errors import AuditError


def extract(
    model: Model,
    data: Data,
    layers: str = typer.Option(
        ...,
        "--layers",
        "-l",
        help="Comma-separated tensor names or numbers from `onnxaudit layers`, or 'all'.",
    ),
    out: Path = typer.Option(..., "--out", "-o", help="The .npz to write."),
    grid: int = typer.Option(
        None, "--grid", help="Pool each map in-graph to at most GxG regions: (N, G*G, C) arrays."
    ),
    sample_feature: bool = typer.Option(
        False, "--sample-feature", help="Also store the input of the last Gemm/MatMul."
    ),
    float16: bool = typer.Option(False, "--float16", help="Store features as float16."),
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
    batch_size: BatchSize = 128,
) -> None:
    """Write per-layer features (NCHW, or regional with --grid), logits and labels to an .npz.

    The logits are the class scores before any final Softmax."""
    from onnxaudit.checks import check_compatible
    from onnxaudit.features.extract import FeatureExtractor, label_order_warning
    from onnxaudit.model import resolve_layers
    from onnxaudit.pipeline import load_data

    if out.suffix != ".npz":
        raise AuditError("the output must end in .npz", out)
    prepared = model_options(locals()).prepare(model)
    dataset = load_data(data, per_class, seed)
    check_compatible(prepared, dataset)
    names = resolve_layers(prepared.info, parse_names(layers))
    if not names:
        raise AuditError("--layers names no tensor", model)
    extractor = FeatureExtractor(
        prepared, names, grid, sample_feature, device, threads, batch_size, float16
    )
    console.print(dataset.describe_labels())
    print_warnings(
        [label_order_warning(prepared, dataset, seed=seed, device=device, threads=threads)]
    )
    with progress() as bar:
        task = bar.add_task("extracting", total=len(dataset))
        shapes = extractor.extract_to_npz(dataset, out, lambda n: bar.advance(task, n))
    for key, shape in shapes.items():
        console.print(f"  {key}: {shape}")
    console.print(f"wrote {out}")
