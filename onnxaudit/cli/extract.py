"""`onnxaudit extract`: stream chosen feature maps of a data set into an .npz."""

from __future__ import annotations

from pathlib import Path

import typer

from onnxaudit.cli.common import (
    BATCH_SIZE,
    DATA,
    DEVICE,
    MEAN,
    MODEL,
    PER_CLASS,
    SEED,
    STD,
    THREADS,
    console,
    load_inputs,
    parse_names,
    progress,
)
from onnxaudit.errors import AuditError
from onnxaudit.features.extract import FeatureExtractor


def extract(
    model: Path = MODEL,
    data: Path = DATA,
    layers: str = typer.Option(
        ...,
        "--layers",
        "-l",
        help="Comma-separated tensor names (see `onnxaudit layers`), or 'all'.",
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
    mean: str = MEAN,
    std: str = STD,
    device: str = DEVICE,
    threads: int = THREADS,
    batch_size: int = BATCH_SIZE,
) -> None:
    """Write per-layer features (NCHW, or regional with --grid), logits and labels to an .npz."""
    if out.suffix != ".npz":
        raise AuditError("the output must end in .npz", out)
    prepared, dataset = load_inputs(model, data, per_class, seed, mean, std)
    names = parse_names(layers)
    if names == ["all"]:
        names = [layer.name for layer in prepared.info.layers]
    if not names:
        raise AuditError("--layers names no tensor", model)
    extractor = FeatureExtractor(
        prepared, names, grid, sample_feature, device, threads, batch_size, float16
    )
    with progress() as bar:
        task = bar.add_task("extracting", total=len(dataset))
        shapes = extractor.extract_to_npz(dataset, out, lambda n: bar.advance(task, n))
    for key, shape in shapes.items():
        console.print(f"  {key}: {shape}")
    console.print(f"wrote {out}")
