"""The audit pipeline: model + data -> features -> analyses -> results, one settings object.

`audit` and `compare` are the public entry points (the CLI is a thin shell over them). Each
analysis is one entry of `ANALYSES`, a function of (model, data, settings, seed stream, progress)
returning a result object; a run records which ran, with what settings and seeds, and
`onnxaudit.write_report` renders and writes it. Nothing here prints, plots or writes files.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from onnxaudit import executors
from onnxaudit.checks import check_inputs
from onnxaudit.data import Dataset, load_dataset
from onnxaudit.errors import AuditError
from onnxaudit.model import PreparedModel
from onnxaudit.progress import ProgressFn, prefixed, silent
from onnxaudit.results.run import AnalysisResult, AuditResult, CompareResult
from onnxaudit.seeds import purpose
from onnxaudit.settings import ModelOptions, Settings, settings_from

Analysis = Callable[
    [PreparedModel, Dataset, Settings, np.random.SeedSequence, ProgressFn], AnalysisResult
]
ModelInput = str | Path | PreparedModel
DataInput = str | Path | Dataset


def knowledge_subset(data: Dataset, settings: Settings) -> Dataset:
    """The images knowledge points are counted on: the run's subset, or fewer of it."""
    return data.subset(settings.knowledge_per_class, purpose(settings.seed, "knowledge-subset"))


def run_knowledge(
    pm: PreparedModel,
    data: Dataset,
    settings: Settings,
    seed: np.random.SeedSequence,
    progress: ProgressFn,
) -> AnalysisResult:
    """Knowledge points; checkpoints are prepared with the model's own options."""
    from onnxaudit.analyses.knowledge import analyse_knowledge

    return analyse_knowledge(
        pm,
        knowledge_subset(data, settings),
        layers=settings.layers,
        seed=seed,
        checkpoints=[settings.model.prepare(path) for path in settings.checkpoints],
        attack=settings.knowledge_attack,
        device=settings.device,
        progress=progress,
        threads=settings.threads,
        max_memory=settings.max_memory,
    )


def run_patterns(
    pm: PreparedModel,
    data: Dataset,
    settings: Settings,
    seed: np.random.SeedSequence,
    progress: ProgressFn,
) -> AnalysisResult:
    from onnxaudit.analyses.patterns import analyse_patterns

    return analyse_patterns(
        pm,
        data,
        classes=settings.patterns_classes,
        k=settings.patterns_k,
        seed=seed,
        device=settings.device,
        progress=progress,
        canvas=settings.patterns_canvases,
        epochs=settings.patterns_epochs,
        threads=settings.threads,
        max_memory=settings.max_memory,
    )


def run_robustness(
    pm: PreparedModel,
    data: Dataset,
    settings: Settings,
    seed: np.random.SeedSequence,
    progress: ProgressFn,
) -> AnalysisResult:
    from onnxaudit.analyses.robustness import sharded_robustness

    return sharded_robustness(
        pm.proto,
        data.images(pm.info.input_shape),
        np.asarray(data.labels, dtype=np.int64),
        eps=settings.eps,
        steps=settings.pgd_steps,
        step=settings.pgd_step,
        seed=seed,
        device=settings.device,
        threads=settings.threads,
        batch_size=settings.batch_size,
        progress=progress,
        max_memory=settings.max_memory,
    )


# The analyses in the order they run; tests and extensions may swap an entry.
ANALYSES: dict[str, Analysis] = {
    "knowledge": run_knowledge,
    "patterns": run_patterns,
    "robustness": run_robustness,
}


def load_model(path: str | Path, **options: object) -> PreparedModel:
    """The canonical model of an ONNX file; `options` are ModelOptions fields (mean, std, ...)."""
    return ModelOptions(**options).prepare(path)


def load_data(path: str | Path, per_class: int | None = None, seed: int = 0) -> Dataset:
    """A data set (class folders, .npz or IDX), optionally the run's stratified subset."""
    dataset = load_dataset(path)
    return dataset.subset(per_class, purpose(seed, "subset")) if per_class else dataset


def audit(
    model: ModelInput,
    data: DataInput,
    settings: Settings | None = None,
    progress: ProgressFn = silent,
    display_path: str | None = None,
    **overrides: object,
) -> AuditResult:
    """Audit one model: the analyses of `settings` (keyword overrides allowed, e.g.
    `per_class=20, seed=0, skip=["knowledge"]`) on the run's stratified subset of `data`."""
    settings = settings_from(settings, dict(overrides))
    pm, dataset = prepare_inputs(model, data, settings)
    return run_audit(pm, dataset, settings, progress, display_path)


def prepare_inputs(
    model: ModelInput, data: DataInput, settings: Settings
) -> tuple[PreparedModel, Dataset]:
    """The prepared model and the run's subset of the data, checked against each other."""
    pm = model if isinstance(model, PreparedModel) else settings.model.prepare(model)
    dataset = data if isinstance(data, Dataset) else load_dataset(data)
    subset = dataset.subset(settings.per_class, purpose(settings.seed, "subset"))
    check_inputs(pm, subset, settings)
    return pm, subset


def run_audit(
    pm: PreparedModel,
    dataset: Dataset,
    settings: Settings,
    progress: ProgressFn = silent,
    display_path: str | None = None,
) -> AuditResult:
    """Run the analyses of `settings` on an already prepared model and subset (their shards on
    the executor `settings` ask for, or on the one of the run in progress)."""
    from onnxaudit.features.extract import label_order_warning

    warning = label_order_warning(
        pm, dataset, seed=purpose(settings.seed, "subset"), device=settings.device,
        threads=settings.threads,
    )  # fmt: skip
    with executors.session(settings):
        results = {
            name: analysis(pm, dataset, settings, purpose(settings.seed, name), progress)
            for name, analysis in ANALYSES.items()
            if settings.runs(name)
        }
    return AuditResult(pm, dataset, settings, results, display_path, [warning] if warning else [])


def audit_in_process(
    pm: PreparedModel,
    dataset: Dataset,
    settings: Settings,
    display_path: str | None,
    numeric_threads: dict[str, int],
    progress: ProgressFn = silent,
) -> AuditResult:
    """A whole audit as one unit of work (on a worker its analyses run there, unsharded, with
    the BLAS / OpenMP thread counts of the process that sent it: the same sums)."""
    with executors.using(executors.IN_PROCESS), executors.same_numeric_threads(numeric_threads):
        return run_audit(pm, dataset, settings, progress, display_path)


def run_audits(
    inputs: Sequence[tuple[PreparedModel, Dataset]],
    settings: Sequence[Settings],
    progress: ProgressFn = silent,
    display_paths: Sequence[str | None] | None = None,
) -> list[AuditResult]:
    """One audit per (model, subset), in order; on a cluster each model is one task."""
    paths = list(display_paths) if display_paths is not None else [None] * len(inputs)
    threads = executors.numeric_threads()
    with executors.session(settings[0]) as executor:
        tasks = [
            executors.Task(
                f"audit {Path(path or pm.path).name}",
                audit_in_process,
                (pm, subset, s, path, threads),
                local={"progress": prefixed(progress, Path(path or pm.path).stem)},
            )
            for (pm, subset), s, path in zip(inputs, settings, paths, strict=True)
        ]
        done = None if executor.slots == 1 else lambda i, n: progress("audits", i, n)
        return executor.run(tasks, done)


def compare(
    models: Sequence[ModelInput],
    data: DataInput,
    settings: Settings | Sequence[Settings] | None = None,
    progress: ProgressFn = silent,
    display_paths: Sequence[str | None] | None = None,
    **overrides: object,
) -> CompareResult:
    """Audit every model on the same images, then put them side by side in the first model's
    coordinate system. One Settings for all or one per model (e.g. checkpoints for one of
    them); every model is validated against the data before any analysis starts."""
    if len(models) < 2:
        raise AuditError("compare needs at least two models")
    if settings is None or isinstance(settings, Settings):
        settings = [settings] * len(models)
    per_model = [settings_from(s, dict(overrides)) for s in settings]
    if len(per_model) != len(models):
        raise AuditError(f"{len(models)} models but {len(per_model)} settings")
    dataset = data if isinstance(data, Dataset) else load_dataset(data)
    inputs = [prepare_inputs(m, dataset, s) for m, s in zip(models, per_model, strict=True)]
    runs = run_audits(inputs, per_model, progress, display_paths)
    return CompareResult(runs, compare_runs(runs, progress))


def compare_runs(runs: Sequence[AuditResult], progress: ProgressFn = silent) -> dict[str, object]:
    """The cross-model section: per-position layer deltas and, when the reference's knowledge
    analysis ran, every other model recounted in the reference's sample-embedding space."""
    from onnxaudit.analyses.knowledge import KnowledgeResult, compare_models

    names = [run.name for run in runs]
    docs = [run.to_dict() for run in runs]
    comparison: dict[str, object] = {
        "reference": names[0],
        "models": names,
        "layer_deltas": [layer_deltas(docs[0], doc) for doc in docs[1:]],
    }
    reference = runs[0].analyses.get("knowledge")
    if isinstance(reference, KnowledgeResult):
        comparison["knowledge"] = [
            compare_models(
                reference,
                run.model,
                layers=_analysed_layers(run),
                device=run.settings.device,
                progress=progress,
                threads=run.settings.threads,
                reference_name=names[0],
                images=reference_images(runs[0], run),
            )
            for run in runs[1:]
        ]
    return comparison


def reference_images(reference: AuditResult, run: AuditResult) -> np.ndarray | None:
    """The reference's knowledge images at `run`'s input size, when it differs (None: same)."""
    knowledge = reference.analyses["knowledge"]
    shape = run.model.info.input_shape
    if tuple(knowledge.images.shape[1:]) == tuple(shape):
        return None
    return knowledge_subset(reference.data, reference.settings).images(shape)


def _analysed_layers(run: AuditResult) -> list[str] | None:
    """The layers the model's own audit analysed, so both views of it use the same maps."""
    knowledge = run.analyses.get("knowledge")
    return [layer.name for layer in knowledge.layers] if knowledge is not None else None


def layer_deltas(reference: dict, other: dict) -> dict[str, object]:
    """Per analysed-layer position: the other model's knowledge points and reliable ratio minus
    the reference's (positions, not names, align models of different architectures)."""
    ref_layers = (reference.get("knowledge") or {}).get("layers") or []
    other_layers = (other.get("knowledge") or {}).get("layers") or []
    rows = [
        {
            "position": position,
            "reference_layer": a["name"],
            "layer": b["name"],
            "knowledge_points": _diff(b.get("knowledge_points"), a.get("knowledge_points")),
            "reliable_ratio": _diff(b.get("reliable_ratio"), a.get("reliable_ratio")),
        }
        for position, (a, b) in enumerate(zip(ref_layers, other_layers, strict=False), start=1)
    ]
    return {"model": other["model"]["name"], "layers": rows}


def _diff(new: float | None, old: float | None) -> float | None:
    return None if new is None or old is None else float(new) - float(old)
