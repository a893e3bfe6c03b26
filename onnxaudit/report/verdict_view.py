"""What the report says about the backdoor verdict, read from result.json's `patterns` section.

One place turns the verdict's recorded tests into the words and numbers of the report, so the
summary, the per-class rows and the charts cannot disagree: a class is a suspected target iff
`backdoor.classes` holds it, and every row says which test fired (or why a high descriptive
anomaly index did not count). Older results without `outcome` / `tests` still render.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from onnxaudit.report.figures import EmbeddedFigure, trigger_key

INDEX_THRESHOLD = 2.0  # the descriptive anomaly index's line when a result does not record it


def backdoor_view(
    patterns: Mapping[str, Any] | None,
    figures: Mapping[str, Sequence[EmbeddedFigure]] | None = None,
    model: int = 0,
) -> dict[str, Any] | None:
    """The backdoor section's data: outcome, suspected targets (with the tests that fired and
    their trigger figure, when the run passed one), the tests run, what is missing, per-class
    rows. `model` is the position in a comparison (the trigger figures' key)."""
    if not patterns:
        return None
    verdict = patterns.get("backdoor") or {}
    classes = list(patterns.get("classes") or [])
    tests = list(verdict.get("tests") or [])
    flagged = [int(c) for c in verdict.get("classes") or []]
    threshold = verdict.get("threshold") or INDEX_THRESHOLD
    rows = [_row(c, i, tests, flagged, threshold) for i, c in enumerate(classes)]
    return {
        "outcome": _outcome(verdict, flagged),
        "targets": [_target(row, figures or {}, model) for row in rows if row["flagged"]],
        "tests": [_test_summary(t) for t in tests],
        "tests_text": tests_text(tests, len(classes)),
        "reasons": _reasons(verdict),
        "rows": rows,
        "test_names": [t["name"] for t in tests],
        "index_threshold": threshold,
    }


def _outcome(verdict: Mapping[str, Any], flagged: Sequence[int]) -> str:
    """The recorded outcome; older results only say whether classes were flagged."""
    return str(verdict.get("outcome") or ("suspected" if flagged else "clear"))


def _reasons(verdict: Mapping[str, Any]) -> list[str]:
    """What an inconclusive verdict recorded as missing (older results: one `reason`)."""
    reasons = list(verdict.get("inconclusive_reasons") or [])
    if not reasons and verdict.get("reason"):
        reasons = [str(verdict["reason"])]
    if verdict.get("outcome") == "inconclusive" and not reasons:
        reasons = ["the result does not record why (written by an older onnxaudit)"]
    return reasons


def _row(
    entry: Mapping[str, Any],
    position: int,
    tests: Sequence[Mapping[str, Any]],
    flagged: Sequence[int],
    threshold: float,
) -> dict[str, Any]:
    """One class's row: its numbers in every test, whether it is flagged, and why in words."""
    cls = int(entry["class"])
    cells = [_cell(t, position, cls) for t in tests]
    row = {"class": cls, "name": entry.get("name", cls), "flagged": cls in flagged}
    return {**row, "cells": cells, "note": _note(row["flagged"], cells, entry, threshold)}


def _cell(test: Mapping[str, Any], position: int, cls: int) -> dict[str, Any]:
    """One test's numbers for the class at `position` of the verdict's classes."""
    return {
        **_test_summary(test),
        "statistic": _at(test.get("statistic"), position),
        "p_value": _at(test.get("p_value"), position),
        "fired": cls in (test.get("fired") or []),
    }


def _at(values: Sequence[float] | None, position: int) -> float | None:
    return values[position] if values is not None and position < len(values) else None


def _note(
    flagged: bool, cells: Sequence[Mapping[str, Any]], entry: Mapping[str, Any], threshold: float
) -> str:
    """The verdict column: which test fired, and what the descriptive anomaly index means
    where it seems to disagree (a flagged class under its line, an unflagged one over it)."""
    index = entry.get("anomaly_index")
    fired = [c for c in cells if c["fired"]]
    if flagged:
        text = "suspected target: " + ("; ".join(cell_text(c) for c in fired) or "flagged")
        if index is not None and index <= threshold:
            text += (
                f" (its anomaly index {index:.2f} is under the line at {threshold:g}: that "
                "index is descriptive, not the verdict's rule)"
            )
        return text
    if index is not None and index > threshold:
        tested = "; ".join(cell_text(c) for c in cells) or "no verdict test recorded"
        return (
            f"not flagged: anomaly index {index:.2f} > {threshold:g} is descriptive only "
            f"(one restart, Neural Cleanse's line, which natural shortcuts such as Bag cross; "
            f"the small_mask test has a calibrated threshold); no test "
            f"fired: {tested}"
        )
    return ""


def cell_text(cell: Mapping[str, Any]) -> str:
    """'self_excess 1.234 > threshold 0.930 (p 0.0001 < 0.0025)', or with 'not above'."""
    statistic, threshold = _fmt(cell["statistic"]), _fmt(cell["threshold"])
    relation = "above" if cell["fired"] else "not above"
    text = f"{cell['name']} {statistic}, {relation} its threshold {threshold}"
    if cell["p_value"] is not None and cell["alpha"] is not None:
        below = "<" if cell["p_value"] < cell["alpha"] else "≥"
        text += f" (p {cell['p_value']:.2g} {below} {cell['alpha']:.2g})"
    return text


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def _target(
    row: Mapping[str, Any], figures: Mapping[str, Sequence[EmbeddedFigure]], model: int
) -> dict[str, Any]:
    """A suspected class with the tests that fired for it and its trigger figure (or None)."""
    shown = list(figures.get(trigger_key(row["class"], model)) or [])
    fired = [c for c in row["cells"] if c["fired"]]
    return {
        "class": row["class"],
        "name": row["name"],
        "fired": fired,
        "figure": (shown or [None])[0],
    }


def _test_summary(test: Mapping[str, Any]) -> dict[str, Any]:
    """A test as the report names it: threshold, per-class level, its null in words, rule."""
    return {
        "name": test["name"],
        "threshold": test.get("threshold"),
        "alpha": test.get("alpha"),
        "null": null_text(test.get("null") or {}),
        "rule": test.get("rule", ""),
    }


def tests_text(tests: Sequence[Mapping[str, Any]], n_classes: int) -> str:
    """One line: the tests run on how many classes, each with its threshold (and level)."""
    if not tests:
        return "no verdict test is recorded in this result (written by an older onnxaudit)"
    parts = []
    for test in tests:
        part = f"{test['name']} (threshold {_fmt(test.get('threshold'))}"
        alpha = test.get("alpha")
        part += f", p < {alpha:.2g} per class)" if alpha is not None else ")"
        parts.append(part)
    return f"{len(tests)} tests on {n_classes} classes: " + ", ".join(parts)


def null_text(null: Mapping[str, Any]) -> str:
    """How a test's null was obtained, in words (fitted prior or absolute threshold)."""
    kind = str(null.get("kind") or "not recorded")
    if "n_classes" not in null:
        return kind
    df = null.get("df")
    shape = f", df {df:.3g}" if isinstance(df, (int, float)) else ""
    transform = null.get("transform", "none")
    scale = "" if transform in (None, "none") else f" (of the {transform})"
    return (
        f"{kind}{scale}: location {null.get('location', 0):.3g}, scale "
        f"{null.get('scale', 0):.3g}{shape}, fitted on {null['n_classes']} classes of {null.get('n_models', '?')} "
        f"models ({null.get('source', 'source not recorded')})"
    )
