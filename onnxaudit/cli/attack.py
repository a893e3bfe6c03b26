"""`onnxaudit attack`: clean and L-inf PGD robust accuracy through the ONNX input gradient."""

from __future__ import annotations

from pathlib import Path

import typer

from onnxaudit.analyses.robustness import robustness
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
)
from onnxaudit.errors import AuditError
from onnxaudit.results.schema import build_result, dumps, model_section, write_atomic


def attack(
    model: Path = MODEL,
    data: Path = DATA,
    eps: float = typer.Option(0.1, "--eps", help="L-inf radius on [0, 1] pixels."),
    steps: int = typer.Option(10, "--steps", help="PGD iterations."),
    step: float = typer.Option(None, "--step", help="Step size (default 2.5 * eps / steps)."),
    out: Path = typer.Option(None, "--out", "-o", help="Also write the result as JSON here."),
    per_class: int = PER_CLASS,
    seed: int = SEED,
    mean: str = MEAN,
    std: str = STD,
    device: str = DEVICE,
    threads: int = THREADS,
    batch_size: int = BATCH_SIZE,
) -> None:
    """Print clean and PGD robust accuracy (untargeted, random start, final iterate)."""
    if eps < 0 or steps < 0:
        raise AuditError(f"--eps and --steps must be >= 0 (got {eps}, {steps})")
    prepared, dataset = load_inputs(model, data, per_class, seed, mean, std)
    images = dataset.images(prepared.info.input_shape)
    console.print(f"PGD-{steps} at eps {eps} on {len(dataset)} images ...")
    result = robustness(
        prepared.proto,
        images,
        dataset.labels,
        eps=eps,
        steps=steps,
        step=step,
        seed=seed,
        device=device,
        threads=threads,
        batch_size=batch_size,
    )
    typer.echo(f"clean accuracy:  {result.clean_accuracy:.4f}")
    typer.echo(f"robust accuracy: {result.robust_accuracy:.4f}  (PGD-{steps}, eps {eps})")
    if out is not None:
        settings = {"eps": eps, "steps": steps, "step": step, "seed": seed}
        doc = build_result(
            model_section(prepared),
            dataset.identity(per_class, seed),
            settings,
            robustness=result,
        )
        write_atomic(out, dumps(doc))
        console.print(f"wrote {out}")
