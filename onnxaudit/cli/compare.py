"""`onnxaudit compare`: several models audited on the same images, side by side in one report."""

from __future__ import annotations

import typer

from onnxaudit.cli.common import (
    check_gates_can_run,
    output_lock,
    print_verdict_table,
    progress,
    report_outcomes,
    stage_progress,
)
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
    Junit,
    KnowledgePerClass,
    Layers,
    MaxMemory,
    Mean,
    MinReliableRatio,
    MinRobustAccuracy,
    Models,
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
from onnxaudit.results.gates import evaluate_many
from onnxaudit.settings import PATTERN_EPOCHS


def compare(
    models: Models,
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
    junit: Junit = None,
    fail_on: FailOn = None,
    allow_inconclusive: AllowInconclusive = False,
    min_reliable_ratio: MinReliableRatio = None,
    min_robust_accuracy: MinRobustAccuracy = None,
    workers: Workers = None,
    scheduler: Scheduler = None,
) -> None:
    """Compare models (e.g. normal, adversarially trained, distilled, backdoored) in one report;
    gates apply to every model (exit 1 if any model fails one)."""
    from onnxaudit.data import load_dataset
    from onnxaudit.pipeline import compare as compare_models
    from onnxaudit.pipeline import prepare_inputs
    from onnxaudit.report import write_report

    options = locals()
    settings = settings_from_options(options)
    spec = gates_from_options(options)
    check_gates_can_run(spec, settings)
    if len(models) < 2:
        raise AuditError("compare needs at least two models")
    check_output_dir(out)
    dataset = load_dataset(data)
    prepared = [prepare_inputs(path, dataset, settings)[0] for path in models]  # validate first
    with output_lock(out), progress() as bar:
        result = compare_models(prepared, dataset, settings, stage_progress(bar))
        outcomes = evaluate_many([run.to_dict() for run in result.runs], spec)
        paths = write_report(result, out, outcomes, junit)
    typer.echo("wrote " + ", ".join(str(p) for p in paths.values()))
    print_verdict_table(result.runs)
    report_outcomes(outcomes)
