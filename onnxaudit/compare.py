"""Model comparison: audits of several models on the same images, in one coordinate system.

Every model is audited exactly as `onnxaudit audit` would (same subset, seed and settings); the
knowledge module then embeds each other model's regional features in the FIRST model's sample
embedding (same class directions), so knowledge points and feature changes are comparable.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from onnxaudit.audit import AuditConfig, AuditRun, StageProgress, run_audit
from onnxaudit.errors import AuditError
from onnxaudit.report import EmbeddedFigure, embed_figure
from onnxaudit.results.schema import build_comparison


@dataclass
class CompareRun:
    """The compare@1 document and the figures of the comparison report."""

    doc: dict[str, Any]
    figures: dict[str, list[EmbeddedFigure]] = field(default_factory=dict)


def audit_models(
    models: Sequence[Any],
    dataset: Any,
    config: AuditConfig | Sequence[AuditConfig],
    progress: StageProgress | None = None,
    display_paths: Sequence[str | Path | None] | None = None,
) -> list[AuditRun]:
    """Audit each PreparedModel on the same dataset; one config for all, or one per model (e.g.
    training checkpoints for the one model that has them)."""
    configs = [config] * len(models) if isinstance(config, AuditConfig) else list(config)
    paths = list(display_paths) if display_paths is not None else [None] * len(models)
    return [
        run_audit(pm, dataset, cfg, _prefixed(progress, pm), path)
        for pm, cfg, path in zip(models, configs, paths, strict=True)
    ]


def _prefixed(progress: StageProgress | None, pm: Any) -> StageProgress | None:
    if progress is None:
        return None
    name = Path(pm.path).stem
    return lambda stage, done, total: progress(f"{name}: {stage}", done, total)


def compare_runs(
    runs: Sequence[AuditRun],
    progress: StageProgress | None = None,
    device: str = "auto",
    threads: int | None = None,
) -> CompareRun:
    """Put audited models side by side; the first is the reference coordinate system.

    When the reference's knowledge analysis ran, every other model's knowledge points are
    recounted in the reference's sample-embedding space (knowledge.compare_models).
    """
    if len(runs) < 2:
        raise AuditError("compare needs at least two models")
    names = [run.result["model"]["name"] for run in runs]
    comparison: dict[str, Any] = {
        "reference": names[0],
        "models": names,
        "layer_deltas": [layer_deltas(runs[0].result, run.result) for run in runs[1:]],
    }
    reference = runs[0].analyses.get("knowledge")
    if reference is not None and not isinstance(reference, Mapping):
        from onnxaudit.analyses.knowledge import compare_models

        comparison["knowledge"] = [
            compare_models(
                reference,
                run.model,
                layers=_analysed_layers(run),
                device=device,
                progress=progress,
                threads=threads,
                reference_name=names[0],
            )
            for run in runs[1:]
        ]
    figures = _merge_figures(runs, sections=("patterns",))
    if comparison.get("knowledge"):
        from onnxaudit.analyses.knowledge.plots import plot_comparison

        figures["comparison"] = [
            embed_figure(
                plot_comparison(item),
                f"{item.model} in {names[0]}'s embedding",
                "Per analysed-layer position, the distribution over image regions of 1 − cos and "
                "of the strength difference between the model's regional features and the "
                "reference's, both in the reference's space.",
            )
            for item in comparison["knowledge"]
        ]
    return CompareRun(build_comparison([run.result for run in runs], comparison), figures)


def _analysed_layers(run: AuditRun) -> list[str] | None:
    """The layers the model's own audit analysed, so both views of it use the same maps."""
    layers = (run.result.get("knowledge") or {}).get("layers") or []
    return [entry["name"] for entry in layers] or None


def layer_deltas(reference: dict[str, Any], other: dict[str, Any]) -> dict[str, Any]:
    """Per analysed-layer position: the other model's knowledge points and reliable ratio minus
    the reference's (positions, not names, align models of different architectures)."""
    ref_layers = (reference.get("knowledge") or {}).get("layers") or []
    other_layers = (other.get("knowledge") or {}).get("layers") or []
    rows = []
    for position, (a, b) in enumerate(zip(ref_layers, other_layers, strict=False), start=1):
        rows.append(
            {
                "position": position,
                "reference_layer": a["name"],
                "layer": b["name"],
                "knowledge_points": _diff(b.get("knowledge_points"), a.get("knowledge_points")),
                "reliable_ratio": _diff(b.get("reliable_ratio"), a.get("reliable_ratio")),
            }
        )
    return {"model": other["model"]["name"], "layers": rows}


def _diff(new: float | None, old: float | None) -> float | None:
    return None if new is None or old is None else float(new) - float(old)


def _merge_figures(
    runs: Sequence[AuditRun], sections: Sequence[str]
) -> dict[str, list[EmbeddedFigure]]:
    """Each model's figures of `sections`, titled with the model's name, grouped by section."""
    merged: dict[str, list[EmbeddedFigure]] = {}
    for run in runs:
        name = run.result["model"]["name"]
        for section in sections:
            merged.setdefault(section, []).extend(
                EmbeddedFigure(f"{name}: {fig.title}", fig.src, fig.caption)
                for fig in run.figures.get(section, [])
            )
    return merged
