"""What the CLI verbs share: the progress display, running a restricted or full audit, writing
its outputs, printing verdicts and gates."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from onnxaudit.errors import AuditError
from onnxaudit.outputs import check_output_dir, locked_output
from onnxaudit.progress import ProgressFn
from onnxaudit.results.gates import (
    GateOutcome,
    GateSpec,
    baseline_layers,
    check_baseline_matches,
    check_gate_layers,
    evaluate,
)
from onnxaudit.settings import Settings

if TYPE_CHECKING:
    from onnxaudit.results.run import AuditResult

console = Console(stderr=True)


@contextmanager
def progress() -> Iterator[Progress]:
    """A rich progress display on stderr, with elapsed time and ETA per stage."""
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
        console=console,
        transient=False,
    ) as bar:
        yield bar


def stage_progress(bar: Progress) -> ProgressFn:
    """A (stage, done, total) callback drawing one progress bar per stage."""
    tasks: dict[str, int] = {}

    def update(stage: str, done: int, total: int) -> None:
        if stage not in tasks:
            tasks[stage] = bar.add_task(stage, total=total)
        bar.update(tasks[stage], completed=done, total=total)

    return update


def audit_and_write(
    model: Path,
    data: Path,
    settings: Settings,
    out: Path | None,
    spec: GateSpec | None = None,
    junit: Path | None = None,
    summary: Callable[[AuditResult], None] | None = None,
) -> None:
    """The flow of `audit` and of the one-analysis verbs: validate, run, write, print, gate.

    `summary` prints a verb's own lines (e.g. accuracies) in place of the verdict lines."""
    from onnxaudit.analyses.knowledge.analysis import default_layers
    from onnxaudit.pipeline import prepare_inputs, run_audit
    from onnxaudit.report import write_report

    spec = spec or GateSpec()
    check_gates_can_run(spec, settings)
    if out is not None:
        check_output_dir(out)
    pm, dataset = prepare_inputs(model, data, settings)
    check_baseline_matches(spec, pm.info)
    settings = settings.update(layers=settings.layers or baseline_layers(pm.info, spec.baseline))
    if settings.runs("knowledge"):
        check_gate_layers(spec, settings.layers or default_layers(pm.info))
    with output_lock(out), progress() as bar:
        result = run_audit(pm, dataset, settings, stage_progress(bar))
        outcomes = evaluate(result.to_dict(), spec)
        if out is not None:
            paths = write_report(result, out, outcomes, junit)
    if out is not None:
        typer.echo("wrote " + ", ".join(str(p) for p in paths.values()))
    print_warnings(result.warnings)
    (summary or print_verdicts)(result)
    report_outcomes(outcomes)


def check_gates_can_run(spec: GateSpec, settings: Settings) -> None:
    needed = spec.needs() & settings.skip
    if needed:
        raise AuditError(f"the requested gates need {', '.join(sorted(needed))}; do not skip it")


def output_lock(out: Path | None) -> AbstractContextManager:
    """The run's lock on its output folder (nothing to lock without one)."""
    return nullcontext() if out is None else locked_output(out)


def print_verdicts(result: AuditResult) -> None:
    """One line per analysis that ran."""
    from onnxaudit.report.render import verdicts

    for card in verdicts(result.to_dict()):
        if card["status"] != "na":
            typer.echo(f"{card['label']}: {card['text']}")


def print_verdict_table(runs: Sequence[AuditResult]) -> None:
    """One row per model on stdout: each check's status and its reason in words."""
    from onnxaudit.report.render import verdicts

    table = Table(box=None, show_edge=False, pad_edge=False)
    for column in ("model", "backdoor", "robustness", "knowledge"):
        table.add_column(column, overflow="fold")
    for run in runs:
        cards = {card["label"].lower(): card for card in verdicts(run.to_dict())}
        table.add_row(
            run.name,
            *(
                f"{cards[check]['status']}: {cards[check]['text']}"
                for check in ("backdoor", "robustness", "knowledge")
            ),
        )
    Console(width=max(120, console.width)).print(table)


def print_warnings(warnings: Sequence[str | None]) -> None:
    """Warnings on stderr, one line each."""
    for warning in warnings:
        if warning:
            console.print(f"[yellow]warning:[/] {escape(warning)}")


def report_outcomes(outcomes: Sequence[GateOutcome]) -> None:
    """Print each gate on stdout; exit 1 when one failed (outputs are already written)."""
    for outcome in outcomes:
        typer.echo(f"{'PASS' if outcome.passed else 'FAIL'} {outcome.name}: {outcome.message}")
    failed = [o.name for o in outcomes if not o.passed]
    if failed:
        typer.echo(f"{len(failed)} of {len(outcomes)} gates failed: {', '.join(failed)}")
        raise typer.Exit(1)
