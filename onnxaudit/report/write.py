"""Writing a run's outputs: result.json, report.html and (optionally) JUnit XML, all or nothing.

Everything is rendered in memory first; each file then goes through a temp file and a rename,
so a failure before the writes leaves no half-written report behind.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from onnxaudit.report.analysis_figures import FigureMap, analysis_figures, comparison_figures
from onnxaudit.report.figures import TRIGGER_PREFIX, EmbeddedFigure
from onnxaudit.report.render import render_report
from onnxaudit.results.gates import GateOutcome, junit_xml
from onnxaudit.results.run import AuditResult, CompareResult
from onnxaudit.results.schema import dumps, write_atomic


def run_document(result: AuditResult | CompareResult, gates: Sequence[GateOutcome] = ()) -> dict:
    """The result.json of a run, with the gates' outcomes when gates were evaluated."""
    doc = result.to_dict()
    if gates:
        doc["gates"] = [g.to_dict() for g in gates]
    return doc


def run_figures(result: AuditResult | CompareResult) -> FigureMap:
    """The image-level figures of a run (a comparison: each model's patterns, titled by model,
    its suspected classes' triggers, and each model placed in the reference's embedding)."""
    if isinstance(result, AuditResult):
        return analysis_figures(result.analyses)
    figures: FigureMap = {"patterns": []}
    for i, run in enumerate(result.runs):
        own = analysis_figures(run.analyses, model=i)
        figures["patterns"] += [
            EmbeddedFigure(f"{run.name}: {fig.title}", fig.src, fig.caption)
            for fig in own.pop("patterns", [])
        ]
        figures.update((key, value) for key, value in own.items() if key.startswith(TRIGGER_PREFIX))
    knowledge = result.comparison.get("knowledge")
    if knowledge:
        figures["comparison"] = comparison_figures(knowledge, result.runs[0].name)
    return figures


def write_report(
    result: AuditResult | CompareResult,
    out_dir: str | Path,
    gates: Sequence[GateOutcome] = (),
    junit: str | Path | None = None,
    notes: Sequence[str] = (),
) -> dict[str, Path]:
    """Write OUT/result.json and OUT/report.html (and the JUnit file, one test case per gate)."""
    out_dir = Path(out_dir)
    doc = run_document(result, gates)
    outputs = {
        out_dir / "result.json": dumps(doc),
        out_dir / "report.html": render_report(doc, run_figures(result), notes),
    }
    if junit is not None:
        suite = "onnxaudit." + (result.name if isinstance(result, AuditResult) else "compare")
        outputs[Path(junit)] = junit_xml(list(gates), suite=suite)
    for path, text in outputs.items():
        write_atomic(path, text)
    return {path.name: path for path in outputs}
