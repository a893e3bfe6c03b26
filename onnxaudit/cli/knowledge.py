"""`onnxaudit knowledge`: knowledge points per layer, their emergence and adversarial change."""

from __future__ import annotations

from pathlib import Path

import typer

from onnxaudit.cli.common import (
    DATA,
    DEVICE,
    MEAN,
    MODEL,
    SEED,
    STD,
    THREADS,
    console,
    load_inputs,
    parse_names,
    progress,
)
from onnxaudit.results.schema import build_result, dumps, model_section, write_atomic


def knowledge(
    model: Path = MODEL,
    data: Path = DATA,
    out: Path = typer.Option(..., "--out", "-o", help="Folder for result.json and the figures."),
    layers: str = typer.Option(
        None, "--layers", help="Comma-separated layers (default: the end of up to 4 stages)."
    ),
    per_class: int = typer.Option(50, "--per-class", help="Images per class (stratified, seeded)."),
    checkpoints: list[Path] = typer.Option(
        None,
        "--checkpoints",
        help="A training checkpoint of the same architecture, in training order; repeat the "
        "option for each (--checkpoints a.onnx --checkpoints b.onnx).",
    ),
    attack: bool = typer.Option(False, "--attack", help="Also track regional features under PGD."),
    seed: int = SEED,
    mean: str = MEAN,
    std: str = STD,
    device: str = DEVICE,
    threads: int = THREADS,
) -> None:
    """Embed sample and regional features in 3-D (Li, Wang, Zhang, NeurIPS 2021) and count the
    knowledge points of each layer; optionally across checkpoints and under a PGD attack."""
    from matplotlib import pyplot as plt

    from onnxaudit.analyses.knowledge import analyse_knowledge
    from onnxaudit.analyses.knowledge.plots import FIGURES

    prepared, dataset = load_inputs(model, data, per_class, seed, mean, std)
    with progress() as bar:
        tasks: dict[str, int] = {}

        def report(stage: str, done: int, total: int) -> None:
            if stage not in tasks:
                tasks[stage] = bar.add_task(stage, total=total)
            bar.update(tasks[stage], completed=done, total=total)

        result = analyse_knowledge(
            prepared,
            dataset,
            layers=parse_names(layers) or None,
            per_class=None,
            seed=seed,
            checkpoints=[str(p) for p in checkpoints or ()],
            attack=attack,
            device=device,
            progress=report,
            threads=threads,
        )
    out.mkdir(parents=True, exist_ok=True)
    settings = {"layers": layers, "per_class": per_class, "attack": attack, "device": device}
    doc = build_result(
        model_section(prepared), dataset.identity(per_class, seed), settings, knowledge=result
    )
    write_atomic(out / "result.json", dumps(doc))
    for name, plot in FIGURES.items():
        figure = plot(result)
        if figure is not None:
            figure.savefig(out / f"knowledge-{name}.png", dpi=110)
            plt.close(figure)
    for layer in result.layers:
        console.print(
            f"{layer.name}: {layer.knowledge_points:.1f} knowledge points / image, "
            f"{layer.reliable_knowledge_points:.1f} reliable ({layer.reliable_ratio:.0%})"
        )
    console.print(f"wrote {out / 'result.json'}")
