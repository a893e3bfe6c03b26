"""Stage 5 of the pipeline: figures and the self-contained HTML report of a run."""

from onnxaudit.report.figures import EmbeddedFigure, embed_figure
from onnxaudit.report.render import render_report, verdicts
from onnxaudit.report.write import write_report

__all__ = ["EmbeddedFigure", "embed_figure", "render_report", "verdicts", "write_report"]
