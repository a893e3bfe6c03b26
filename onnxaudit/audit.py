"""The audit pipeline: one model, one data subset, every analysis, one result@1 and one report.

`run_audit` computes everything in memory; `write_audit` renders and writes the outputs only once
everything succeeded, each through a temp file and a rename, so a failed audit leaves no
half-written report behind. Analyses are imported when they run: `--skip` avoids their cost.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from onnxaudit.errors import AuditError
from onnxaudit.report import EmbeddedFigure, embed_figure, render_report
from onnxaudit.results.gates import GateOutcome, junit_xml
from onnxaudit.results.schema import build_result, dumps, model_section, write_atomic

ANALYSES = ("knowledge", "patterns", "robustness")
StageProgress = Callable[[str, int, int], None]


@dataclass
class AuditConfig:
    """Every setting of an audit; recorded verbatim in result.json and the report's appendix."""

    per_class: int | None = 20
    seed: int = 0
    device: str = "auto"
    threads: int | None = None
    layers: list[str] | None = None
    knowledge_per_class: int | None = None
    checkpoints: list[str] = field(default_factory=list)
    patterns_k: float = 0.05
    patterns_epochs: float = 5
    eps: float = 0.1
    pgd_steps: int = 10
    skip: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        self.skip = frozenset(self.skip)
        unknown = self.skip - set(ANALYSES)
        if unknown:
            raise AuditError(
                f"cannot skip {', '.join(sorted(unknown))}; analyses are {', '.join(ANALYSES)}"
            )

    def to_dict(self) -> dict[str, Any]:
        settings = asdict(self)
        settings["skip"] = sorted(self.skip)
        return settings


@dataclass
class AuditRun:
    """An audit's result@1 dict, its figures, and the analysis objects (compare reuses them)."""

    result: dict[str, Any]
    figures: dict[str, list[EmbeddedFigure]] = field(default_factory=dict)
    analyses: dict[str, Any] = field(default_factory=dict)
    model: Any = None


def run_audit(
    pm: Any,
    dataset: Any,
    config: AuditConfig,
    progress: StageProgress | None = None,
    display_path: str | Path | None = None,
) -> AuditRun:
    """Run the requested analyses of a PreparedModel on a Dataset (already subset by the caller).

    `display_path` is the model path recorded in the result (e.g. repo-relative for showcases).
    """
    analyses: dict[str, Any] = {}
    if "knowledge" not in config.skip:
        analyses["knowledge"] = _knowledge(pm, dataset, config, progress)
    if "patterns" not in config.skip:
        analyses["patterns"] = _patterns(pm, dataset, config, progress)
    if "robustness" not in config.skip:
        analyses["robustness"] = _robustness(pm, dataset, config, progress)
    result = build_result(
        model_section(pm, display_path),
        dataset.identity(config.per_class, config.seed),
        settings=config.to_dict(),
        **analyses,
    )
    return AuditRun(result, analysis_figures(analyses), analyses, pm)


def _knowledge(pm: Any, dataset: Any, config: AuditConfig, progress: StageProgress | None) -> Any:
    from onnxaudit.analyses.knowledge import analyse_knowledge

    return analyse_knowledge(
        pm,
        dataset,
        layers=config.layers,
        per_class=config.knowledge_per_class,  # None: the audit's whole subset
        seed=config.seed,
        checkpoints=config.checkpoints,
        device=config.device,
        progress=progress,
        threads=config.threads,
    )


def _patterns(pm: Any, dataset: Any, config: AuditConfig, progress: StageProgress | None) -> Any:
    from onnxaudit.analyses.patterns import analyse_patterns

    return analyse_patterns(
        pm,
        dataset,
        k=config.patterns_k,
        seed=config.seed,
        device=config.device,
        progress=progress,
        epochs=config.patterns_epochs,
        threads=config.threads,
    )


def _robustness(pm: Any, dataset: Any, config: AuditConfig, progress: StageProgress | None) -> Any:
    from onnxaudit.analyses.robustness import robustness

    x = dataset.images(pm.info.input_shape)
    labels = np.asarray(dataset.labels, dtype=np.int64)
    if progress is not None:
        progress("robustness (PGD)", 0, 1)
    result = robustness(
        pm.proto,
        x,
        labels,
        eps=config.eps,
        steps=config.pgd_steps,
        seed=config.seed,
        device=config.device,
        threads=config.threads,
    )
    if progress is not None:
        progress("robustness (PGD)", 1, 1)
    return result


def analysis_figures(analyses: Mapping[str, Any]) -> dict[str, list[EmbeddedFigure]]:
    """Image-level figures from the analyses' own plot modules; the report adds the charts it
    can draw from result dicts. Plain dicts (as in tests or re-renders) carry no arrays to plot."""
    figures: dict[str, list[EmbeddedFigure]] = {}
    knowledge = analyses.get("knowledge")
    if knowledge is not None and not isinstance(knowledge, Mapping):
        from onnxaudit.analyses.knowledge.plots import (
            plot_knowledge_grid,
            plot_region_embeddings,
            plot_sample_embedding,
        )

        figures["knowledge"] = [
            embed_figure(
                plot_knowledge_grid(knowledge),
                "Knowledge points on images",
                "One image per class (columns), one analysed layer per row: regions that are "
                "knowledge points are outlined (red: for the true class, i.e. reliable; orange: "
                "for another class); the rest of the image is darkened.",
            ),
            embed_figure(
                plot_sample_embedding(knowledge),
                "Sample embedding",
                "The 3-D embedding g of each image's sample feature, seen along three planes; "
                "arrows are the class directions mu_c shared by every layer's regions.",
            ),
            embed_figure(
                plot_region_embeddings(knowledge),
                "Regional embeddings per layer",
                "Regional features h of each analysed layer in the same space, coloured by the "
                "image's class: regions far out along a class direction are knowledge points.",
            ),
        ]
    patterns = analyses.get("patterns")
    if patterns is not None and not isinstance(patterns, Mapping):
        from onnxaudit.analyses.patterns.plots import plot_patterns

        figures["patterns"] = [
            embed_figure(
                plot_patterns(patterns),
                "Pattern of each class",
                "Top: the canvas with the pattern's pixels outlined; middle: the pattern alone; "
                "bottom: the searched mask. Titles give the canvas and predictive power (pp); "
                "red titles are suspected backdoor targets.",
            )
        ]
    return figures


def baseline_layers(pm: Any, baseline: Mapping[str, Any] | None) -> list[str] | None:
    """The baseline's analysed layers when this model has all of them, so --max-drop compares
    like with like; None (the analysis's default choice) otherwise."""
    if baseline is None:
        return None
    names = [entry["name"] for entry in (baseline.get("knowledge") or {}).get("layers") or []]
    candidates = {layer.name for layer in pm.info.layers}
    return names if names and set(names) <= candidates else None


def write_audit(
    out_dir: str | Path,
    run: AuditRun,
    gates: Sequence[GateOutcome] = (),
    junit: str | Path | None = None,
    notes: Sequence[str] = (),
) -> dict[str, Path]:
    """Write DIR/result.json, DIR/report.html and the JUnit file (one test case per gate)."""
    doc = dict(run.result)
    if gates:
        doc["gates"] = [g.to_dict() for g in gates]
    extra = {}
    if junit is not None:
        extra[Path(junit)] = junit_xml(list(gates), suite=f"onnxaudit.{doc['model']['name']}")
    return write_report(out_dir, doc, run.figures, notes, extra)


def write_report(
    out_dir: str | Path,
    doc: Mapping[str, Any],
    figures: Mapping[str, Sequence[EmbeddedFigure]],
    notes: Sequence[str] = (),
    extra: Mapping[Path, str] | None = None,
) -> dict[str, Path]:
    """Render result.json and report.html (plus `extra` files) in memory, then write each
    through a temp file and a rename: a failure before the writes leaves nothing behind."""
    out_dir = Path(out_dir)
    outputs = {
        out_dir / "result.json": dumps(doc),
        out_dir / "report.html": render_report(doc, figures, notes),
        **(extra or {}),
    }
    for path, text in outputs.items():
        write_atomic(path, text)
    return {path.name: path for path in outputs}
