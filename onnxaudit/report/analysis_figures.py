"""Figures that need an analysis's arrays (images, embeddings, masks), not only its result.json.

A report re-rendered from result.json alone has the built-in charts of figures.py but none of
these; an audit run in this process passes its analysis results here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from onnxaudit.analyses.knowledge.compare import ModelComparison
from onnxaudit.analyses.knowledge.results import KnowledgeResult
from onnxaudit.analyses.patterns.analyse import PatternsResult
from onnxaudit.report.figures import EmbeddedFigure, embed_figure, trigger_key
from onnxaudit.report.knowledge_figures import (
    plot_adversarial,
    plot_comparison,
    plot_knowledge_grid,
    plot_region_embeddings,
    plot_sample_embedding,
)
from onnxaudit.report.pattern_figures import plot_patterns, plot_trigger

FigureMap = dict[str, list[EmbeddedFigure]]


def knowledge_figures(result: KnowledgeResult) -> list[EmbeddedFigure]:
    figures = [
        embed_figure(
            plot_knowledge_grid(result),
            "Knowledge points on images",
            "One image per class (columns), one analysed layer per row: regions that are "
            "knowledge points are outlined (red: for the true class, i.e. reliable; orange: "
            "for another class); the rest of the image is darkened.",
        ),
        embed_figure(
            plot_sample_embedding(result),
            "Sample embedding",
            "The 3-D embedding g of each image's sample feature, seen along three planes; "
            "arrows are the class directions mu_c shared by every layer's regions.",
        ),
        embed_figure(
            plot_region_embeddings(result),
            "Regional embeddings per layer",
            "Regional features h of each analysed layer in the same space, coloured by the "
            "image's class: regions far out along a class direction are knowledge points.",
        ),
    ]
    adversarial = plot_adversarial(result)
    if adversarial is not None:
        figures.append(
            embed_figure(
                adversarial,
                "Regional features under PGD",
                "Per analysed layer, how far the attack moves regional features: mean 1 − cos "
                "(orientation) and mean |strength change|.",
            )
        )
    return figures


def pattern_figures(result: PatternsResult) -> list[EmbeddedFigure]:
    return [
        embed_figure(
            plot_patterns(result),
            "Pattern of each class",
            "Top: the canvas with the pattern's pixels outlined; middle: the pattern alone; "
            "bottom: the searched mask. Titles give the canvas and predictive power (pp); "
            "red titles are suspected backdoor targets.",
        )
    ]


def trigger_figures(result: PatternsResult, model: int = 0) -> FigureMap:
    """A thumbnail of each suspected class's recovered trigger, keyed by `trigger_key`, for the
    verdict block at the top of the backdoor section (`model`: position in a comparison)."""
    figures: FigureMap = {}
    for ti, t in enumerate(result.classes):
        if t in result.verdict.classes:
            title = f"Recovered trigger of class {t} ({result.class_names[ti]})"
            caption = (
                "restart 0's search on the canvas of its smallest white/free mask: the pattern, "
                "the mask, and pattern × mask (what is pasted over other classes' images)"
            )
            figures[trigger_key(t, model)] = [
                embed_figure(plot_trigger(result, ti), title, caption)
            ]
    return figures


def comparison_figures(
    comparisons: Sequence[ModelComparison], reference: str
) -> list[EmbeddedFigure]:
    return [
        embed_figure(
            plot_comparison(item),
            f"{item.model} in {reference}'s embedding",
            "Per analysed-layer position, the distribution over image regions of 1 − cos and "
            "of the strength difference between the model's regional features and the "
            "reference's, both in the reference's space.",
        )
        for item in comparisons
    ]


def analysis_figures(analyses: Mapping[str, object], model: int = 0) -> FigureMap:
    """The image-level figures of each analysis result that has arrays to draw (`model`: the
    position in a comparison, for the trigger thumbnails' keys)."""
    figures: FigureMap = {}
    knowledge, patterns = analyses.get("knowledge"), analyses.get("patterns")
    if isinstance(knowledge, KnowledgeResult):
        figures["knowledge"] = knowledge_figures(knowledge)
    if isinstance(patterns, PatternsResult):
        figures["patterns"] = pattern_figures(patterns)
        figures.update(trigger_figures(patterns, model))
    return figures
