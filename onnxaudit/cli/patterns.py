"""`onnxaudit patterns`: class-wise patterns of every class and a backdoor verdict."""

from __future__ import annotations

from pathlib import Path

import typer

from onnxaudit.cli.common import (
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
from onnxaudit.results.schema import build_result, dumps, model_section, write_atomic


def patterns(
    model: Path = MODEL,
    data: Path = DATA,
    out: Path = typer.Option(..., "--out", "-o", help="Folder for result.json and the figures."),
    classes: str = typer.Option(None, "--classes", help="Comma-separated class indices (all)."),
    k: float = typer.Option(
        0.05, "--k", help="Pattern size: a fraction of the pixels (or a count)."
    ),
    canvas: str = typer.Option(
        "confident,white,free", "--canvas", help="Canvases: confident, white, free (comma list)."
    ),
    epochs: float = typer.Option(5, "--epochs", help="Passes over the search images per class."),
    per_class: int = PER_CLASS,
    seed: int = SEED,
    mean: str = MEAN,
    std: str = STD,
    device: str = DEVICE,
    threads: int = THREADS,
) -> None:
    """Search each class's most predictive small pattern, measure it on held-out images, and
    flag classes whose pattern looks like an implanted trigger."""
    from onnxaudit.analyses.patterns import analyse_patterns
    from onnxaudit.analyses.patterns.plots import FIGURES

    prepared, dataset = load_inputs(model, data, per_class, seed, mean, std)
    try:
        chosen = [int(c) for c in parse_names(classes)] or None
    except ValueError:
        raise AuditError(
            f"--classes takes comma-separated class indices, got {classes!r}"
        ) from None
    if chosen and max(chosen) >= prepared.info.num_classes:
        raise AuditError(
            f"--classes names class {max(chosen)}; the model has {prepared.info.num_classes}", model
        )
    with progress() as bar:
        tasks: dict[str, int] = {}

        def report(stage: str, done: int, total: int) -> None:
            if stage not in tasks:
                tasks[stage] = bar.add_task(stage, total=total)
            bar.update(tasks[stage], completed=done)

        result = analyse_patterns(
            prepared,
            dataset,
            classes=chosen,
            k=k,
            seed=seed,
            device=device,
            progress=report,
            canvas=parse_names(canvas),
            epochs=epochs,
            threads=threads,
        )
    out.mkdir(parents=True, exist_ok=True)
    settings = {"classes": chosen, "k": k, "canvas": canvas, "epochs": epochs, "device": device}
    doc = build_result(
        model_section(prepared), dataset.identity(per_class, seed), settings, patterns=result
    )
    write_atomic(out / "result.json", dumps(doc))
    for name, plot in FIGURES.items():
        plot(result).savefig(out / f"patterns-{name}.png", dpi=110)
    verdict = result.verdict
    names = ", ".join(
        f"{t} ({result.class_names[result.classes.index(t)]})" for t in verdict.classes
    )
    console.print(f"backdoor suspected: {names}" if verdict.suspected else "no backdoor suspected")
    console.print(f"wrote {out / 'result.json'}")
