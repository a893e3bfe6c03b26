"""`onnxaudit audit-many`: audit many models on the same data (one task per model on a cluster),
one report per model and one summary table; the gates apply to every model."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import typer

from onnxaudit.cli.common import check_gates_can_run, output_lock, progress, stage_progress
from onnxaudit.cli.options import (
    AllowInconclusive,
    ChannelOrder,
    ClassNames,
    Data,
    Device,
    Eps,
    FailOn,
    InputScale,
    InputShape,
    KnowledgePerClass,
    Layers,
    ManyModels,
    MaxMemory,
    Mean,
    MinReliableRatio,
    MinRobustAccuracy,
    Only,
    Out,
    PatternEpochs,
    PerClass,
    Scheduler,
    Seed,
    Skip,
    Std,
    Steps,
    Threads,
    Workers,
    gates_from_options,
    settings_from_options,
)
from onnxaudit.errors import AuditError
from onnxaudit.outputs import check_output_dir
from onnxaudit.results.gates import GateOutcome, evaluate
from onnxaudit.results.schema import dumps, write_atomic
from onnxaudit.settings import PATTERN_EPOCHS

if TYPE_CHECKING:
    from onnxaudit.results.run import AuditResult

SUMMARY_COLUMNS = ("model", "Backdoor", "Knowledge", "Robustness", "gates")


def audit_many(
    models: ManyModels,
    data: Data,
    out: Out,
    per_class: PerClass = 20,
    seed: Seed = 0,
    device: Device = "auto",
    threads: Threads = None,
    max_memory: MaxMemory = None,
    input_shape: InputShape = None,
    channel_order: ChannelOrder = None,
    input_scale: InputScale = None,
    mean: Mean = None,
    std: Std = None,
    classes: ClassNames = None,
    layers: Layers = None,
    knowledge_per_class: KnowledgePerClass = None,
    skip: Skip = None,
    only: Only = None,
    eps: Eps = 0.1,
    steps: Steps = 10,
    pattern_epochs: PatternEpochs = PATTERN_EPOCHS,
    fail_on: FailOn = None,
    allow_inconclusive: AllowInconclusive = False,
    min_reliable_ratio: MinReliableRatio = None,
    min_robust_accuracy: MinRobustAccuracy = None,
    workers: Workers = None,
    scheduler: Scheduler = None,
) -> None:
    """Audit every model alone: OUT/<model>/report.html + result.json, OUT/summary.md and
    summary.json. Exit codes: 0 every gate of every model passes, 1 one failed, 2 input error."""
    from onnxaudit.data import load_dataset
    from onnxaudit.pipeline import prepare_inputs, run_audits
    from onnxaudit.report import write_report

    options = locals()
    settings = settings_from_options(options)
    spec = gates_from_options(options)
    check_gates_can_run(spec, settings)
    check_output_dir(out)
    names = [path.stem for path in models]
    twice = sorted({name for name in names if names.count(name) > 1})
    if twice:
        raise AuditError(f"two models named {', '.join(twice)}: their reports would collide")
    dataset = load_dataset(data)
    inputs = [prepare_inputs(path, dataset, settings) for path in models]  # validate first
    with output_lock(out), progress() as bar:
        runs = run_audits(inputs, [settings] * len(inputs), stage_progress(bar))
        outcomes = [evaluate(run.to_dict(), spec) for run in runs]
        for run, gates in zip(runs, outcomes, strict=True):  # written once every audit is done
            write_report(run, out / run.name, gates)
        rows = summary_rows(runs, outcomes)
        write_atomic(out / "summary.json", dumps({"models": rows}))
        write_atomic(out / "summary.md", summary_table(rows))
    typer.echo(summary_table(rows), nl=False)
    typer.echo(f"wrote {len(runs)} reports and {out / 'summary.md'}")
    failed = [row["model"] for row in rows if row["failed"]]
    if failed:
        typer.echo(f"{len(failed)} of {len(rows)} models failed a gate: {', '.join(failed)}")
        raise typer.Exit(1)


def summary_rows(
    runs: Sequence[AuditResult], outcomes: Sequence[Sequence[GateOutcome]]
) -> list[dict[str, object]]:
    """Per model: each verdict line, the gates passed and the names of those that failed."""
    from onnxaudit.report.render import verdicts

    rows = []
    for run, gates in zip(runs, outcomes, strict=True):
        cards = {c["label"]: f"{c['status']}: {c['text']}" for c in verdicts(run.to_dict())}
        failed = [g.name for g in gates if not g.passed]
        rows.append({
            "model": run.name,
            **{label: cards.get(label, "") for label in SUMMARY_COLUMNS[1:-1]},
            "gates": f"{len(gates) - len(failed)}/{len(gates)} passed" if gates else "none",
            "failed": failed,
        })  # fmt: skip
    return rows


def summary_table(rows: Sequence[dict[str, object]]) -> str:
    """The summary as a Markdown table, failed gates named in the last column."""
    lines = ["| " + " | ".join(SUMMARY_COLUMNS) + " |", "|" + "---|" * len(SUMMARY_COLUMNS)]
    for row in rows:
        gates = str(row["gates"]) + (f" (FAIL {', '.join(row['failed'])})" if row["failed"] else "")
        cells = [str(row[c]) for c in SUMMARY_COLUMNS[:-1]] + [gates]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
