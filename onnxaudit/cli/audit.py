"""`onnxaudit audit`: every analysis of one model, a self-contained report, and CI gates."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import typer
from rich.progress import Progress

from onnxaudit.audit import AuditConfig, StageProgress, baseline_layers, run_audit, write_audit
from onnxaudit.cli.common import (
    DATA,
    DEVICE,
    MEAN,
    MODEL,
    SEED,
    STD,
    THREADS,
    load_inputs,
    parse_names,
    progress,
)
from onnxaudit.errors import AuditError
from onnxaudit.report import verdicts
from onnxaudit.results.gates import GateOutcome, GateSpec, evaluate, parse_threshold
from onnxaudit.results.schema import load_result

OUT = typer.Option(..., "--out", "-o", help="Folder for report.html and result.json.")
PER_CLASS = typer.Option(
    20, "--per-class", help="Images per class (stratified subset; bounds the run time)."
)
LAYERS = typer.Option(
    None, "--layers", help="Comma-separated layers for knowledge points (default: spread stages)."
)
SKIP = typer.Option(
    None, "--skip", help="Comma-separated analyses to skip: knowledge, patterns, robustness."
)
EPS = typer.Option(0.1, "--eps", help="L-inf PGD radius in [0, 1] pixel units.")
STEPS = typer.Option(10, "--steps", help="PGD steps.")
PATTERN_EPOCHS = typer.Option(5.0, "--pattern-epochs", help="Epochs of the class-pattern search.")


def stage_progress(bar: Progress) -> StageProgress:
    """A (stage, done, total) callback drawing one progress bar per analysis stage."""
    tasks: dict[str, int] = {}

    def update(stage: str, done: int, total: int) -> None:
        if stage not in tasks:
            tasks[stage] = bar.add_task(stage, total=total)
        bar.update(tasks[stage], completed=done, total=total)

    return update


def report_outcomes(outcomes: Sequence[GateOutcome]) -> None:
    """Print each gate on stdout; exit 1 when one failed (outputs are already written)."""
    for outcome in outcomes:
        typer.echo(f"{'PASS' if outcome.passed else 'FAIL'} {outcome.name}: {outcome.message}")
    failed = [o.name for o in outcomes if not o.passed]
    if failed:
        typer.echo(f"{len(failed)} of {len(outcomes)} gates failed: {', '.join(failed)}")
        raise typer.Exit(1)


def audit(
    model: Path = MODEL,
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
    checkpoints: list[Path] = typer.Option(
        [],
        "--checkpoints",
        help="Training checkpoints of this model, in order (repeatable): knowledge emergence.",
    ),
    junit: Path = typer.Option(None, "--junit", help="Write JUnit XML, one test case per gate."),
    fail_on: list[str] = typer.Option(
        [], "--fail-on", help="'backdoor': fail when a backdoor is suspected."
    ),
    min_reliable_ratio: list[str] = typer.Option(
        [],
        "--min-reliable-ratio",
        help="LAYER=VALUE (repeatable); LAYER is a tensor name, an index (-1: deepest) or '*'.",
    ),
    min_robust_accuracy: float = typer.Option(
        None, "--min-robust-accuracy", help="Fail when PGD accuracy is below this fraction."
    ),
    baseline: Path = typer.Option(None, "--baseline", help="An earlier result.json to compare."),
    max_drop: float = typer.Option(
        None, "--max-drop", help="Percent that knowledge points or reliable ratio may fall."
    ),
) -> None:
    """Audit one model: knowledge points, class-wise patterns, PGD robustness; gate it for CI.

    Exit codes: 0 all gates pass, 1 a gate failed, 2 usage or input error.
    """
    unknown = set(fail_on) - {"backdoor"}
    if unknown:
        raise AuditError(f"--fail-on takes 'backdoor', got {', '.join(sorted(unknown))}")
    spec = GateSpec(
        fail_on_backdoor=bool(fail_on),
        min_reliable_ratio=[parse_threshold(text) for text in min_reliable_ratio],
        min_robust_accuracy=min_robust_accuracy,
        baseline=None if baseline is None else load_result(baseline),
        max_drop=max_drop,
    )
    skipped = set(parse_names(skip))
    needed = spec.needs() & skipped
    if needed:
        raise AuditError(f"the requested gates need {', '.join(sorted(needed))}; do not skip it")
    pm, dataset = load_inputs(model, data, per_class, seed, mean, std)
    config = AuditConfig(
        per_class=per_class,
        seed=seed,
        device=device,
        threads=threads,
        layers=parse_names(layers) or baseline_layers(pm, spec.baseline),
        checkpoints=[str(path) for path in checkpoints],
        patterns_epochs=pattern_epochs,
        eps=eps,
        pgd_steps=steps,
        skip=frozenset(skipped),
    )
    with progress() as bar:
        run = run_audit(pm, dataset, config, stage_progress(bar))
    outcomes = evaluate(run.result, spec)
    paths = write_audit(out, run, outcomes, junit)
    for card in verdicts(run.result):
        typer.echo(f"{card['label']}: {card['text']}")
    typer.echo("wrote " + ", ".join(str(p) for p in paths.values()))
    report_outcomes(outcomes)
