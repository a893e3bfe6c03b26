"""`onnxaudit extract`: stream chosen feature maps of a data set into an .npz."""

from __future__ import annotations

from pathlib import Path

import typer

from onnxaudit.cli import model_options as opts
from onnxaudit.cli.common import (
    BATCH_SIZE,
    DATA,
    DEVICE,
    MODEL,
    PER_CLASS,
    SEED,
    THREADS,
    check_compatible,
    console,
    parse_names,
    progress,
)
from onnxaudit.data import load_dataset
from onnxaudit.errors import AuditError
from onnxaudit.features.extract import FeatureExtractor, label_order_warning
from onnxaudit.model import prepare_model, resolve_layers


def extract(
    model: Path = MODEL,
    data: Path = DATA,
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
    per_class: int = PER_CLASS,
    seed: int = SEED,
    input_shape: opts.InputShape = None,
    channel_order: opts.ChannelOrder = None,
    input_scale: opts.InputScale = None,
    mean: opts.Mean = None,
    std: opts.Std = None,
    classes: opts.ClassNames = None,
    device: str = DEVICE,
    threads: int = THREADS,
    batch_size: int = BATCH_SIZE,
) -> None:
    """Write per-layer features (NCHW, or regional with --grid), logits and labels to an .npz.

    The logits are the class scores before any final Softmax."""
    if out.suffix != ".npz":
        raise AuditError("the output must end in .npz", out)
    options = opts.prepare_options(input_shape, channel_order, input_scale, mean, std, classes)
    prepared = prepare_model(model, **options)
    dataset = load_dataset(data).subset(per_class, seed)
    check_compatible(prepared, dataset, data)
    names = resolve_layers(prepared.info, parse_names(layers))
    if not names:
        raise AuditError("--layers names no tensor", model)
    extractor = FeatureExtractor(
        prepared, names, grid, sample_feature, device, threads, batch_size, float16
    )
    console.print(dataset.describe_labels())
    warning = label_order_warning(prepared, dataset, seed=seed, device=device, threads=threads)
    if warning:
        console.print(f"[yellow]warning:[/] {warning}")
    with progress() as bar:
        task = bar.add_task("extracting", total=len(dataset))
        shapes = extractor.extract_to_npz(dataset, out, lambda n: bar.advance(task, n))
    for key, shape in shapes.items():
        console.print(f"  {key}: {shape}")
    console.print(f"wrote {out}")
