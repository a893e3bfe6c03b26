"""`onnxaudit compare`: several models audited on the same images, side by side in one report."""

from __future__ import annotations

from pathlib import Path

import typer

from onnxaudit.audit import AuditConfig, write_report
from onnxaudit.cli.audit import (
    EPS,
    LAYERS,
    OUT,
    PATTERN_EPOCHS,
    PER_CLASS,
    SKIP,
    STEPS,
    stage_progress,
)
from onnxaudit.cli.common import (
    DATA,
    DEVICE,
    MEAN,
    SEED,
    STD,
    THREADS,
    check_compatible,
    parse_floats,
    parse_names,
    progress,
)
from onnxaudit.compare import audit_models, compare_runs
from onnxaudit.data import load_dataset
from onnxaudit.errors import AuditError
from onnxaudit.model import prepare_model


def compare(
    models: list[Path] = typer.Argument(
        ..., help="Two or more .onnx classifiers; the first is the reference."
    ),
    data: Path = DATA,
    out: Path = OUT,
    per_class: int = PER_CLASS,
    seed: int = SEED,
    device: str = DEVICE,
    threads: int = THREADS,
    mean: str = MEAN,
    std: str = STD,
    layers: str = LAYERS,
    skip: str = SKIP,
    eps: float = EPS,
    steps: int = STEPS,
    pattern_epochs: float = PATTERN_EPOCHS,
) -> None:
    """Compare models (e.g. normal, adversarially trained, distilled, backdoored) in one report."""
    if len(models) < 2:
        raise AuditError("compare needs at least two models")
    prepared = [
        prepare_model(path, parse_floats(mean, "mean"), parse_floats(std, "std")) for path in models
    ]
    dataset = load_dataset(data).subset(per_class, seed)
    for pm in prepared:
        check_compatible(pm, dataset, data)
    config = AuditConfig(
        per_class=per_class,
        seed=seed,
        device=device,
        threads=threads,
        layers=parse_names(layers) or None,
        patterns_epochs=pattern_epochs,
        eps=eps,
        pgd_steps=steps,
        skip=frozenset(parse_names(skip)),
    )
    with progress() as bar:
        update = stage_progress(bar)
        runs = audit_models(prepared, dataset, config, update)
        compared = compare_runs(runs, update, device, threads)
    paths = write_report(out, compared.doc, compared.figures)
    typer.echo("wrote " + ", ".join(str(p) for p in paths.values()))
